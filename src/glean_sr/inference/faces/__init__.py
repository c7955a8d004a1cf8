"""Whole-photo face restoration: detect, align, restore, paste back (see :mod:`.restorer`).

The detector needs the ``faces`` extra (``pip install 'glean-sr[faces]'``: dlib-bin and
face-recognition-models); it is imported only when a detector is built.
"""

from .align import FFHQ_TEMPLATE_512, FaceAlignment, five_points, paste_face, template_points
from .detect import DetectedFace, DlibFaceDetector
from .restorer import (
    FaceRecord,
    FaceRestorer,
    FaceRestoreRecord,
    FaceRestoreResult,
    default_face_resize,
)

__all__ = [
    "FFHQ_TEMPLATE_512",
    "DetectedFace",
    "DlibFaceDetector",
    "FaceAlignment",
    "FaceRecord",
    "FaceRestoreRecord",
    "FaceRestoreResult",
    "FaceRestorer",
    "default_face_resize",
    "five_points",
    "paste_face",
    "template_points",
]
