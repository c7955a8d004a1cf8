"""Offline face detection with landmarks: dlib's detectors and its 68-point shape predictor.

Why dlib. The FFHQ data set, on which every GLEAN face model was trained, was aligned from dlib's
68-point landmarks (the FFHQ script's ``align_face``); with the same landmark model our crops are
the crops those models were trained on. The weights ship inside PyPI packages (``dlib-bin``: the
HOG detector; ``face-recognition-models``: the 68-point predictor and the MMOD CNN detector),
so nothing is downloaded at run time. Both are the ``faces`` extra.

Stages of :meth:`DlibFaceDetector.detect`:

1. Find candidate boxes with the HOG detector (``detector="hog"``, fast, frontal faces up to about
   +-30 deg of in-plane rotation) or the MMOD CNN (``"cnn"``, slower, more poses) on the photo
   upsampled so that faces of ``min_face`` pixels reach the detector's 80-pixel window.
2. Put the 68 landmarks on each box.
3. Refine and verify: warp the face upright into a 256-pixel FFHQ crop, detect again there and
   put the landmarks again, then map them back. On a rotated face the predictor (which starts
   from a mean upright shape) is then no longer off: on the astronaut turned by 30 deg the eye
   centres were 5 to 8 pixels off before this step and under 1 pixel after it. A candidate that
   is not found again in its own upright crop where a face would be, or whose landmarks jump
   (a badge or a pattern that only looked like a face), is dropped.
4. Drop duplicates (the same eyes found twice), largest face first.

``face_recognition_models`` itself is never imported: its ``__init__`` needs ``pkg_resources``,
which setuptools 81 removed. Its files are found through the import system instead.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, MissingDependencyError, missing_extra
from ...io import quantize
from .. import DETECTORS
from .align import FaceAlignment, apply_affine, five_points, warp_affine

#: side of the upright crop the landmarks are refined in (the face spans about half of it)
REFINE_SIZE = 256
#: the HOG detector's window: faces smaller than this are found only in an upsampled photo
HOG_WINDOW = 80


@dataclass
class DetectedFace:
    """One face found in a photo.

    Attributes:
        box: ``(left, top, right, bottom)`` of the detector's box, photo pixels.
        score: the detector's confidence (HOG: SVM margin, > 0; CNN: MMOD score).
        landmarks: ``[68, 2]`` float64 ``(x, y)`` photo coordinates, dlib's 68-point layout.
        refined: the landmarks were put again on the upright crop (step 3).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    refined: bool = False

    @property
    def points5(self) -> np.ndarray:
        """``[5, 2]`` eye centres, nose tip, mouth corners (see :func:`five_points`)."""
        return five_points(self.landmarks)

    @property
    def eye_distance(self) -> float:
        p = self.points5
        return float(np.hypot(*(p[1] - p[0])))

    @property
    def center(self) -> np.ndarray:
        """``[2]`` the midpoint between the eyes."""
        p = self.points5
        return (p[0] + p[1]) / 2


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise missing_extra("dlib-bin", "faces") from None
    return dlib


def face_models_dir() -> Path:
    """The folder of ``face-recognition-models``' weight files (without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("face-recognition-models", "faces")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (folder / "shape_predictor_68_face_landmarks.dat").is_file():
        raise MissingDependencyError(
            f"{folder}: the face-recognition-models installation has no "
            "shape_predictor_68_face_landmarks.dat; reinstall it with "
            "pip install --force-reinstall face-recognition-models"
        )
    return folder


def _to_uint8_rgb(pixels: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` float in [0, 1] -> contiguous uint8 ``[H, W, 3]`` (gray repeated), the form
    dlib takes; rounded by :func:`glean_sr.io.quantize`."""
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    return np.ascontiguousarray(quantize(rgb, 8))


class DlibFaceDetector:
    """Faces and 68 landmarks, fully offline (see the module docstring).

    Args:
        detector: ``"hog"`` (default) or ``"cnn"``.
        min_face: the smallest face side, in photo pixels, to look for; decides how much the
            photo is upsampled for the detector (the HOG window is 80 pixels: 40 doubles it
            once). Smaller values find smaller faces, and more false ones (at 20, a badge on
            the astronaut's suit passes for a face in some reductions of the photo).
        threshold: detector score below which a candidate is dropped (HOG: 0 is dlib's own
            default; the refinement step removes most false positives above it).
        max_detect_pixels: the upsampled photo never has more pixels than this; on larger
            photos faces smaller than ``min_face`` can be missed, and a note says so.
    """

    def __init__(
        self,
        *,
        detector: str = "hog",
        min_face: int = 40,
        threshold: float = 0.0,
        max_detect_pixels: int = 16_000_000,
    ):
        if detector not in DETECTORS:
            raise ConfigError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        if not isinstance(min_face, int) or isinstance(min_face, bool) or min_face < 8:
            raise ConfigError(f"min_face must be an integer >= 8 pixels, got {min_face!r}")
        if max_detect_pixels < 1:
            raise ConfigError(f"max_detect_pixels must be positive, got {max_detect_pixels!r}")
        self.detector_name = detector
        self.min_face = min_face
        self.threshold = float(threshold)
        self.max_detect_pixels = int(max_detect_pixels)
        dlib = _import_dlib()
        folder = face_models_dir()
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._cnn = (
            dlib.cnn_face_detection_model_v1(str(folder / "mmod_human_face_detector.dat"))
            if detector == "cnn"
            else None
        )
        predictor = folder / "shape_predictor_68_face_landmarks.dat"
        self._predictor = dlib.shape_predictor(str(predictor))

    def __repr__(self) -> str:
        return (
            f"DlibFaceDetector(detector={self.detector_name!r}, min_face={self.min_face}, "
            f"threshold={self.threshold})"
        )

    def upsampling(self, height: int, width: int) -> tuple[int, str | None]:
        """How often the detector doubles a ``height x width`` photo, and a note if the pixel
        budget kept it from reaching ``min_face``."""
        wanted = max(0, math.ceil(math.log2(HOG_WINDOW / self.min_face)))
        times = wanted
        while times > 0 and height * width * 4**times > self.max_detect_pixels:
            times -= 1
        note = None
        if times < wanted:
            smallest = HOG_WINDOW / 2**times
            note = f"photo too large to look for faces under {smallest:.0f} px"
        return times, note

    def _boxes(self, rgb: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        if self._cnn is not None:
            found = self._cnn(rgb, upsample)
            return [(d.rect, float(d.confidence)) for d in found if d.confidence >= self.threshold]
        rects, scores, _ = self._hog.run(rgb, upsample, self.threshold)
        return list(zip(rects, (float(s) for s in scores), strict=True))

    def _landmarks(self, rgb: np.ndarray, rect: Any) -> np.ndarray:
        shape = self._predictor(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)  # [68, 2]

    def detect(self, pixels: np.ndarray) -> tuple[list[DetectedFace], list[str]]:
        """Faces in ``pixels: [H, W, C]`` (float in [0, 1], C = 1 or 3), largest first, and
        notes about the search (e.g. that small faces could not be searched for)."""
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
            raise ValueError(f"pixels must be [H, W, 1] or [H, W, 3], got {list(pixels.shape)}")
        rgb = _to_uint8_rgb(pixels)
        upsample, note = self.upsampling(*rgb.shape[:2])
        notes = [note] if note else []
        faces = []
        for rect, score in self._boxes(rgb, upsample):
            box = (rect.left(), rect.top(), rect.right(), rect.bottom())
            face = DetectedFace(box, score, self._landmarks(rgb, rect))
            face = self._refine(pixels, face)
            if face is not None:
                faces.append(face)
        return _deduplicate(faces), notes

    def _refine(self, pixels: np.ndarray, face: DetectedFace) -> DetectedFace | None:
        """Step 3: landmarks again on the upright crop. A HOG candidate is dropped unless it is
        found again there with a box of a face's size and place, a score of at least
        :data:`MIN_CROP_SCORE`, and landmarks that moved less than :data:`MAX_LANDMARK_SHIFT`;
        a CNN candidate (MMOD has few false positives and finds poses HOG does not) then keeps
        its first landmarks instead."""
        try:
            alignment = FaceAlignment.from_ffhq(face.points5)
        except ValueError:
            return None
        crop_to_photo = alignment.crop_to_photo(REFINE_SIZE)
        crop = warp_affine(pixels, crop_to_photo, (REFINE_SIZE, REFINE_SIZE))
        rgb = _to_uint8_rgb(crop)
        rects, scores, _ = self._hog.run(rgb, 0, -1.0)
        found = [(r, float(s)) for r, s in zip(rects, scores, strict=True)]
        best = min(found, key=lambda rs: _distance_to_expected_box(rs[0]), default=None)
        if best is None or _distance_to_expected_box(best[0]) > 1 or best[1] < MIN_CROP_SCORE:
            return face if self._cnn is not None else None
        refined = DetectedFace(
            face.box, face.score, apply_affine(crop_to_photo, self._landmarks(rgb, best[0])), True
        )
        moved = np.abs(refined.points5 - face.points5).max()
        if moved > MAX_LANDMARK_SHIFT * refined.eye_distance:
            return face if self._cnn is not None else None
        return refined


#: where dlib's HOG box of a face lies in its FFHQ crop, as fractions of the crop side: centre
#: (x, y) and side (measured: 0.496, 0.605, 0.484 on the astronaut at 25 scales and rotations,
#: 0.58 wide on faces of 20 pixels)
EXPECTED_BOX = (0.5, 0.6, 0.485)
#: how far a box may be from :data:`EXPECTED_BOX`: centre, and side as a ratio
BOX_TOLERANCE = (0.12, 1.35)
#: the smallest HOG score of the face found again in its upright crop
MIN_CROP_SCORE = 0.15
#: the most a landmark may move when put again on the upright crop, in eye distances
MAX_LANDMARK_SHIFT = 0.35
# Measured on the astronaut at 6 scales (eye distance 8 to 65 px) and 7 rotations (-35 to +35
# deg), and on 12 other scikit-image photos: the real face scored 0.19 to 1.63 in its crop and its
# landmarks moved at most 0.19 eye distances (0.53 once, on an 11-pixel face at 35 deg); the
# only false candidates (the mission patch on the astronaut's suit) either missed the expected
# box or moved 0.4 to 0.6 eye distances.


def _distance_to_expected_box(rect: Any) -> float:
    """How far a box in the refinement crop is from where a face's box lies there, in units of
    :data:`BOX_TOLERANCE` (<= 1: acceptable)."""
    cx, cy, side = (v * REFINE_SIZE for v in EXPECTED_BOX)
    width = rect.right() - rect.left()
    off = math.hypot((rect.left() + rect.right()) / 2 - cx, (rect.top() + rect.bottom()) / 2 - cy)
    ratio = max(width / side, side / max(width, 1))
    return max(off / (BOX_TOLERANCE[0] * REFINE_SIZE), math.log(ratio) / math.log(BOX_TOLERANCE[1]))


def _deduplicate(faces: list[DetectedFace]) -> list[DetectedFace]:
    """Largest first; a face whose eyes lie within a third of its eye distance of a kept
    face's is the same face found twice."""
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda f: -f.eye_distance):
        p = face.points5
        same = any(
            max(np.hypot(*(p[0] - k.points5[0])), np.hypot(*(p[1] - k.points5[1])))
            < k.eye_distance / 3
            for k in kept
        )
        if not same:
            kept.append(face)
    return kept
