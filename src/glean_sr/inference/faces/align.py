"""Face alignment and paste-back geometry: the FFHQ crop, warping, the feathered mask.

Coordinates. Points are ``(x, y)`` in pixels with pixel centres at integers (pixel ``[i, j]``
covers ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)``), as dlib and OpenCV report landmarks. An
aligned crop is described independently of its pixel size by *normalised crop coordinates*
``t = (t_x, t_y)`` in ``[0, 1]^2`` (edge to edge): pixel ``(u, v)`` of an ``S x S`` crop has its
centre at ``t = ((u + 0.5) / S, (v + 0.5) / S)``. A :class:`FaceAlignment` is the similarity
transform from ``t`` to photo coordinates,

    p(t) = center + (2 t_x - 1) x + (2 t_y - 1) y,

i.e. the oriented square ("quad") with centre ``center``, half-side vectors ``x`` (towards the
image right of an upright face) and ``y`` (towards its chin), ``y`` = ``x`` turned by +90 deg.

FFHQ alignment (Karras et al., "A Style-Based Generator Architecture for GANs", CVPR 2019, the
FFHQ data set's ``align_face``): from the eye centres (means of dlib's 68-point eye contours) and
the mouth corners,

    x = eye_to_eye - rot90(eye_to_mouth);  |x| = max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)
    center = eye_avg + 0.1 eye_to_mouth

The GLEAN face models were trained on FFHQ crops made exactly this way (their bank and encoder
saw only such faces), so this is the default. :meth:`FaceAlignment.from_template` instead fits a
least-squares similarity (Umeyama 1991) of five points to :data:`FFHQ_TEMPLATE_512`, the mean
positions of those points in FFHQ-aligned faces that GFPGAN/facexlib use: more robust when some
landmarks are poor, less faithful to how each training face was cropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: five points of an FFHQ-aligned 512 x 512 face (GFPGAN / facexlib's ``face_template``): the
#: image-left eye centre, the image-right eye centre, the nose tip, the image-left and
#: image-right mouth corners, ``(x, y)`` with pixel centres at integers.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)


def template_points(size: int) -> np.ndarray:
    """:data:`FFHQ_TEMPLATE_512` scaled to an ``size x size`` crop: ``[5, 2]`` pixel coords."""
    return (FFHQ_TEMPLATE_512 + 0.5) * (size / 512) - 0.5


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """``[5, 2]`` eye centres, nose tip and mouth corners from dlib's 68 points (``[68, 2]``).

    The eye centres are the means of the six eye-contour points (36-41 and 42-47, the FFHQ
    script's definition); the nose tip is point 30, the mouth corners points 48 and 54.
    """
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks68 must be [68, 2], got {list(lm.shape)}")
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


@dataclass(frozen=True)
class FaceAlignment:
    """The oriented square of an aligned face in a photo (see the module docstring).

    Attributes:
        center: ``[2]`` photo coordinates of the crop's centre.
        x: ``[2]`` half-side vector towards the crop's right edge.
        y: ``[2]`` half-side vector towards the crop's bottom edge; ``x`` turned by +90 deg.
    """

    center: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        for name in ("center", "x", "y"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (2,) or not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be 2 finite numbers, got {value!r}")
            object.__setattr__(self, name, value)
        if not np.allclose(self.y, [-self.x[1], self.x[0]], rtol=1e-6, atol=1e-9):
            raise ValueError(f"y must be x turned by +90 degrees, got x={self.x}, y={self.y}")
        if self.side <= 0:
            raise ValueError("the crop must have a positive size")

    @classmethod
    def from_ffhq(cls, points5: np.ndarray) -> FaceAlignment:
        """The FFHQ data set's alignment of a face with five points (see :func:`five_points`;
        the nose is not used)."""
        p = np.asarray(points5, dtype=np.float64)
        if p.shape != (5, 2):
            raise ValueError(f"points5 must be [5, 2], got {list(p.shape)}")
        eye_left, eye_right, _, mouth_left, mouth_right = p
        eye_avg = (eye_left + eye_right) / 2
        eye_to_eye = eye_right - eye_left
        eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
        x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
        norm = math.hypot(*x)
        if norm == 0:
            raise ValueError("degenerate landmarks: the eyes and the mouth coincide")
        x = x / norm * max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
        return cls(center=eye_avg + eye_to_mouth * 0.1, x=x, y=np.array([-x[1], x[0]]))

    @classmethod
    def from_template(cls, points5: np.ndarray) -> FaceAlignment:
        """Least-squares similarity taking :data:`FFHQ_TEMPLATE_512` onto ``points5`` (Umeyama,
        "Least-squares estimation of transformation parameters", PAMI 1991, Eqs. 40-42)."""
        dst = np.asarray(points5, dtype=np.float64)
        if dst.shape != (5, 2):
            raise ValueError(f"points5 must be [5, 2], got {list(dst.shape)}")
        src = (FFHQ_TEMPLATE_512 + 0.5) / 512  # normalised crop coordinates t
        mu_s, mu_d = src.mean(0), dst.mean(0)
        s0, d0 = src - mu_s, dst - mu_d
        cov = d0.T @ s0 / len(src)
        u, sing, vt = np.linalg.svd(cov)
        sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        rot = u @ sign @ vt
        scale = np.trace(np.diag(sing) @ sign) / (s0**2).sum(1).mean()
        a = scale * rot  # p = a t + b
        b = mu_d - a @ mu_s
        x = a[:, 0] / 2  # a[:, 1] / 2 is y, x turned by +90 deg (a is a similarity)
        return cls(center=a @ np.array([0.5, 0.5]) + b, x=x, y=np.array([-x[1], x[0]]))

    @property
    def side(self) -> float:
        """Side of the square in photo pixels: the crop's native resolution."""
        return 2 * math.hypot(*self.x)

    @property
    def angle(self) -> float:
        """Rotation of the face in the photo, degrees (positive: clockwise on screen)."""
        return math.degrees(math.atan2(self.x[1], self.x[0]))

    def t_to_photo(self) -> np.ndarray:
        """``[2, 3]`` affine matrix: normalised crop coordinates ``t`` -> photo coordinates."""
        return np.column_stack([2 * self.x, 2 * self.y, self.center - self.x - self.y])

    def photo_to_t(self) -> np.ndarray:
        """``[2, 3]`` affine matrix: photo coordinates -> normalised crop coordinates ``t``."""
        return invert_affine(self.t_to_photo())

    def crop_to_photo(self, size: int) -> np.ndarray:
        """``[2, 3]``: pixel coordinates of a ``size x size`` crop -> photo coordinates."""
        pixel_to_t = np.array([[1 / size, 0, 0.5 / size], [0, 1 / size, 0.5 / size]])
        return compose_affine(self.t_to_photo(), pixel_to_t)

    def photo_to_crop(self, size: int) -> np.ndarray:
        """``[2, 3]``: photo coordinates -> pixel coordinates of a ``size x size`` crop."""
        return invert_affine(self.crop_to_photo(size))

    def corners(self) -> np.ndarray:
        """``[4, 2]`` photo coordinates of the quad's corners (top-left, bottom-left,
        bottom-right, top-right of the crop)."""
        c, x, y = self.center, self.x, self.y
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])

    def scaled(self, sx: float, sy: float | None = None) -> FaceAlignment:
        """The same square in a photo resized by ``(sx, sy)`` (pixel areas, not centres, scale:
        ``p' = (p + 0.5) s - 0.5``). Only uniform scales keep it a square."""
        sy = sx if sy is None else sy
        if not math.isclose(sx, sy, rel_tol=1e-9):
            raise ValueError(f"a face square scales uniformly only, got sx={sx}, sy={sy}")
        x = self.x * sx
        return FaceAlignment((self.center + 0.5) * sx - 0.5, x, np.array([-x[1], x[0]]))


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``[2, 3]`` matrix of ``p -> outer(inner(p))``."""
    o = np.vstack([outer, [0, 0, 1]])
    i = np.vstack([inner, [0, 0, 1]])
    return (o @ i)[:2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """``[2, 3]`` matrix of the inverse map."""
    return np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``points: [..., 2]`` (x, y) with a ``[2, 3]`` matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def sample_bilinear(
    pixels: np.ndarray, xy: np.ndarray, *, padding: str = "reflection"
) -> np.ndarray:
    """Bilinear samples of ``pixels: [H, W, C]`` at points ``xy: [h, w, 2]`` (pixel coordinates,
    centres at integers) -> ``[h, w, C]`` float32.

    ``padding`` says what lies outside the image: ``"reflection"`` (mirrored about the outer
    edges, the FFHQ script's choice for faces cut by the border), ``"border"`` (edge pixels
    repeated) or ``"zeros"``.
    """
    if padding not in ("reflection", "border", "zeros"):
        raise ValueError(f"padding must be reflection, border or zeros, got {padding!r}")
    h, w = pixels.shape[:2]
    grid = np.empty(xy.shape, dtype=np.float64)
    grid[..., 0] = (2 * xy[..., 0] + 1) / w - 1  # align_corners=False: edges at -1 and +1
    grid[..., 1] = (2 * xy[..., 1] + 1) / h - 1
    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    image = image.permute(2, 0, 1)[None]  # [1, C, H, W]
    g = torch.from_numpy(grid.astype(np.float32))[None]  # [1, h, w, 2]
    out = F.grid_sample(image, g, mode="bilinear", padding_mode=padding, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()  # [h, w, C]


def warp_affine(
    pixels: np.ndarray,
    out_to_in: np.ndarray,
    out_hw: tuple[int, int],
    *,
    padding: str = "reflection",
) -> np.ndarray:
    """Warp ``pixels: [H, W, C]`` into an ``out_hw`` image; ``out_to_in`` (``[2, 3]``) maps each
    output pixel's centre to the input point it samples (bilinearly)."""
    ys, xs = np.mgrid[0 : out_hw[0], 0 : out_hw[1]].astype(np.float64)
    xy = apply_affine(out_to_in, np.stack([xs, ys], axis=-1))
    return sample_bilinear(pixels, xy, padding=padding)


def feather_mask(t: np.ndarray, side_px: float, feather_px: float) -> np.ndarray:
    """Paste-back weights at normalised crop coordinates ``t: [..., 2]``: 0 outside the crop,
    1 deeper inside than ``feather_px`` (pixels of a crop ``side_px`` wide), rising in between
    with a smoothstep ``3 w^2 - 2 w^3`` so neither the weight nor its slope jumps (no seam)."""
    inside = np.minimum(np.minimum(t[..., 0], t[..., 1]), np.minimum(1 - t[..., 0], 1 - t[..., 1]))
    w = np.clip(inside * side_px / max(feather_px, 1e-6), 0, 1)
    return w * w * (3 - 2 * w)


@dataclass
class PasteRegion:
    """Where one face went in the output: ``box = (top, left, bottom, right)`` (exclusive ends)
    and the weights ``mask: [bottom - top, right - left]`` in ``[0, 1]`` it was blended with."""

    box: tuple[int, int, int, int]
    mask: np.ndarray


def paste_face(
    canvas: np.ndarray,
    face: np.ndarray,
    alignment: FaceAlignment,
    *,
    feather: float = 0.1,
) -> PasteRegion | None:
    """Blend ``face: [m, m, C]`` (an aligned crop, any size) into ``canvas: [H, W, C]`` in place.

    ``alignment`` is the face's square in ``canvas`` coordinates. Each canvas pixel ``q`` inside
    the square samples the face bilinearly at ``t = photo_to_t(q)`` and becomes
    ``(1 - mask) canvas + mask face(t)`` with ``mask = feather_mask(t, m, feather * m)``.
    Returns the region touched, or ``None`` if the square lies outside the canvas.

    For a face without aliasing, resize it first to its size in the canvas (``alignment.side``).
    """
    h, w = canvas.shape[:2]
    m = face.shape[0]
    if face.shape[1] != m or face.shape[2] != canvas.shape[2]:
        raise ValueError(f"face must be [m, m, {canvas.shape[2]}], got {list(face.shape)}")
    corners = alignment.corners()
    top = max(0, math.floor(corners[:, 1].min()))
    left = max(0, math.floor(corners[:, 0].min()))
    bottom = min(h, math.ceil(corners[:, 1].max()) + 1)
    right = min(w, math.ceil(corners[:, 0].max()) + 1)
    if top >= bottom or left >= right:
        return None
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float64)
    t = apply_affine(alignment.photo_to_t(), np.stack([xs, ys], axis=-1))  # [h', w', 2]
    mask = feather_mask(t, m, feather * m)
    sampled = sample_bilinear(face, t * m - 0.5, padding="border")
    region = canvas[top:bottom, left:right]
    weight = mask[..., None].astype(np.float32)
    canvas[top:bottom, left:right] = region * (1 - weight) + sampled * weight
    return PasteRegion((top, left, bottom, right), mask.astype(np.float32))
