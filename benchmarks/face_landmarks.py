"""How precisely the face detector puts the five alignment points, on a real face.

There are no ground-truth landmarks for scikit-image's astronaut, so this measures consistency
under known transforms, which bounds the random part of the error: the photo is scaled (0.2 to
1.5) and turned (-35 to +35 deg) by a known similarity, faces are detected, and the five points
(eye centres, nose tip, mouth corners) are mapped back and compared with those found in the
untouched photo. Errors are in pixels of the 512-pixel photo (the eyes are 43 pixels apart).

    python benchmarks/face_landmarks.py
"""

from __future__ import annotations

import time

import numpy as np
from skimage import data, transform

from glean_sr.inference.faces import DlibFaceDetector

SCALES = (0.2, 0.25, 0.4, 0.6, 1.0, 1.5)
ANGLES = (-35, -30, -20, 0, 20, 30, 35)
NAMES = ("left eye", "right eye", "nose", "mouth L", "mouth R")


def main() -> None:
    photo = data.astronaut().astype(np.float32) / 255
    detector = DlibFaceDetector(min_face=20)
    faces, _ = detector.detect(photo)
    base = faces[0].points5
    centre = base[:2].mean(0)
    errors, missed, timings = [], [], []
    for scale in SCALES:
        for angle in ANGLES:
            th = np.deg2rad(angle)
            a = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
            size = int(512 * scale)
            shift = np.array([size / 2, size / 2]) - a @ centre
            matrix = np.eye(3)
            matrix[:2, :2], matrix[:2, 2] = a, shift
            moved = transform.warp(
                photo, np.linalg.inv(matrix), output_shape=(size, size), order=3, mode="reflect"
            ).astype(np.float32)
            start = time.perf_counter()
            found, _ = detector.detect(moved)
            timings.append(time.perf_counter() - start)
            expected = base @ a.T + shift
            near = [f for f in found if np.hypot(*(f.points5[0] - expected[0])) < 10 * scale]
            if not near:
                missed.append((scale, angle))
                continue
            errors.append(np.hypot(*(near[0].points5 - expected).T) / scale)
    errors = np.array(errors)
    print(f"{len(errors)} of {len(SCALES) * len(ANGLES)} transformed photos: face found")
    print(f"missed (scale, degrees): {missed}")
    for name, column in zip(NAMES, errors.T, strict=True):
        print(f"{name:10s} mean {column.mean():.2f} px, max {column.max():.2f} px")
    print(f"detection time: median {np.median(timings):.2f} s per photo")


if __name__ == "__main__":
    main()
