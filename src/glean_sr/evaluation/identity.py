"""Face identity similarity with dlib's offline 128-d face descriptor (needs ``glean-sr[faces]``).

dlib's ResNet face recognition model (``dlib_face_recognition_resnet_model_v1.dat``, shipped by
the ``face-recognition-models`` package, 99.38% on LFW) maps a face, aligned with the 5-point
landmark model, to a 128-d descriptor. We report the cosine similarity of the output's and the
GT's descriptors (1 = same direction). The face is found once, on the GT (dlib's HOG frontal
detector, upsampling the image once), and the same box is used for the output, so a restorer is
not rewarded or punished for where the detector happens to fire.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import missing_extra


def _models_dir() -> Path:
    # face_recognition_models' own __init__ imports pkg_resources, which new setuptools lack;
    # the data files are all we need, so find the package without importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("face-recognition-models", "faces")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibIdentity:
    """``similarity(sr, gt)`` for ``[H, W, 3]`` uint8 RGB images of the same size."""

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise missing_extra("dlib-bin", "faces") from None
        models = _models_dir()
        self._dlib = dlib
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def find_face(self, img: np.ndarray):
        """The largest face box on ``img`` (uint8 ``[H, W, 3]``), or None."""
        boxes = self.detector(np.ascontiguousarray(img), self.upsample)
        if len(boxes) == 0:
            return None
        return max(boxes, key=lambda b: b.area())

    def descriptor(self, img: np.ndarray, box) -> np.ndarray:
        """The 128-d descriptor of the face in ``box`` on ``img`` (uint8 ``[H, W, 3]``)."""
        img = np.ascontiguousarray(img)
        shape = self.landmarks(img, box)
        return np.asarray(self.encoder.compute_face_descriptor(img, shape), dtype=np.float64)

    def similarity(self, sr: np.ndarray, gt: np.ndarray, box=None) -> float | None:
        """Cosine similarity in ``[-1, 1]``, or None when no face is found on the GT."""
        box = box if box is not None else self.find_face(gt)
        if box is None:
            return None
        a, b = self.descriptor(sr, box), self.descriptor(gt, box)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
