"""Blind-restoration degradations of the in128 -> 1024 face recipe, as pure seeded functions.

The reference (mmediting 0.x ``glean_in128out1024_4x2_300k_ffhq_celebahq.py``) makes each LQ
training image from its GT on the fly (TPAMI 2023, Sec. 5.5, Eq. 11, with the config's ranges):

    blur (iso/aniso Gaussian, 41x41, sigma U[0.2, 10], angle U[-pi, pi])
    -> down-resize by U[1/32, 1] (bilinear | area | bicubic)
    -> Gaussian noise, sigma U[0, 50] / 255
    -> JPEG, quality U[5, 50]
    -> resize back to the GT size (bilinear | area | bicubic) -> quantise to 8 bit
    -> area resize to 128 x 128

Every function here is pure: randomness comes only from an explicit ``numpy.random.Generator``,
so the same seed gives the same output on every machine and in every data-loader worker.
Images are ``[H, W, C]`` float32 RGB in [0, 1] (values may leave [0, 1] between steps, as in the
reference, until the quantisation clips them). Conversions to 8 bits (the JPEG encoder's input, the
quantisation) are :func:`glean_sr.io.quantize`: clip, x255, round half to even, as the reference.

Differences from the reference, on purpose: resizing and blurring follow OpenCV's definitions
(``cv2.resize`` half-pixel centres, ``cv2.filter2D`` reflect-101 borders) but are computed here
with NumPy, and JPEG uses Pillow, so OpenCV is not needed. The reference JPEG-encoded RGB arrays
as if they were BGR (OpenCV's order), which weights the chroma conversion differently; here the
encoder is told the true channel order.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..io import quantize, round_to_8bit

ResizeMethod = Literal["bilinear", "bicubic", "area"]
RESIZE_METHODS: tuple[str, ...] = ("bilinear", "area", "bicubic")


# -- blur ---------------------------------------------------------------------------------------


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """A ``[size, size]`` bivariate Gaussian kernel, normalised to sum 1 (float64).

    The covariance is ``R diag(sigma_x**2, sigma_y**2) R^T`` with ``R`` the rotation by
    ``theta`` (radians, counter-clockwise in (x, y) = (column, row) coordinates); for
    ``sigma_x == sigma_y`` the kernel is isotropic and ``theta`` has no effect. ``size`` is odd.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if not (sigma_x > 0 and sigma_y > 0):
        raise ValueError(f"sigmas must be positive, got {sigma_x}, {sigma_y}")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    r = np.arange(size, dtype=np.float64) - size // 2
    xy = np.stack(np.meshgrid(r, r, indexing="xy"), axis=-1)  # [size, size, 2] = (x, y)
    mahalanobis = np.einsum("...i,ij,...j->...", xy, np.linalg.inv(cov), xy)
    kernel = np.exp(-0.5 * mahalanobis)
    return kernel / kernel.sum()


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of ``img [H, W, C]`` with ``kernel [k, k]`` (k odd), reflect-101
    borders (``cv2.filter2D`` semantics). Computed by FFT; returns float32."""
    k = kernel.shape[0]
    if kernel.shape != (k, k) or k % 2 == 0:
        raise ValueError(f"kernel must be square with odd size, got {kernel.shape}")
    pad = k // 2
    x = np.pad(img.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    shape = x.shape[:2]
    spectrum = np.fft.rfft2(x, s=shape, axes=(0, 1))
    # correlation = convolution with the flipped kernel; the first k - 1 rows/cols wrap around
    kspec = np.fft.rfft2(kernel[::-1, ::-1], s=shape)[..., None]
    out = np.fft.irfft2(spectrum * kspec, s=shape, axes=(0, 1))
    h, w = img.shape[:2]
    return out[k - 1 : k - 1 + h, k - 1 : k - 1 + w].astype(np.float32)


# -- resize -------------------------------------------------------------------------------------


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel with OpenCV's ``a = -0.75``."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _resize_weights(in_len: int, out_len: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices ``[out_len, taps]`` and weights for one axis (OpenCV's definitions)."""
    scale = in_len / out_len
    dst = np.arange(out_len, dtype=np.float64)
    if method in ("bilinear", "bicubic"):
        src = (dst + 0.5) * scale - 0.5  # half-pixel centres, no anti-aliasing (cv2.resize)
        base = np.floor(src)
        if method == "bilinear":
            offsets = np.arange(2)
            frac = (src - base)[:, None]
            weights = np.where(offsets == 0, 1 - frac, frac)
        else:
            offsets = np.arange(-1, 3)
            weights = _cubic(src[:, None] - (base[:, None] + offsets))
        idx = base[:, None].astype(np.int64) + offsets
    elif method == "area":
        # each output pixel averages the input interval it covers, weighted by overlap
        # (cv2.INTER_AREA; when enlarging this blends at most two neighbours)
        lo, hi = dst * scale, np.minimum((dst + 1) * scale, in_len)
        taps = math.ceil(scale) + 1
        idx = np.floor(lo).astype(np.int64)[:, None] + np.arange(taps)
        overlap = np.minimum(hi[:, None], idx + 1) - np.maximum(lo[:, None], idx)
        weights = np.clip(overlap, 0, None) / (hi - lo)[:, None]
    else:
        raise ValueError(f"resize method must be bilinear, bicubic or area, got {method!r}")
    return np.clip(idx, 0, in_len - 1), weights  # replicate borders


def _resize_axis(x: np.ndarray, out_len: int, axis: int, method: str) -> np.ndarray:
    idx, weights = _resize_weights(x.shape[axis], out_len, method)
    taken = np.take(x, idx, axis=axis)  # the axis becomes [out_len, taps]
    shape = [1] * taken.ndim
    shape[axis], shape[axis + 1] = weights.shape
    return (taken * weights.astype(x.dtype).reshape(shape)).sum(axis=axis + 1)


def resize(img: np.ndarray, size: tuple[int, int], method: ResizeMethod) -> np.ndarray:
    """Resize ``img [H, W, C]`` to ``size = (height, width)`` like ``cv2.resize`` with
    ``INTER_LINEAR`` / ``INTER_CUBIC`` / ``INTER_AREA``; computed in float32 as OpenCV does."""
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be positive, got {size}")
    x = img.astype(np.float32)
    if x.shape[:2] != (out_h, out_w):
        x = _resize_axis(_resize_axis(x, out_h, 0, method), out_w, 1, method)
    return x


# -- noise, compression -------------------------------------------------------------------------


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``img + N(0, sigma^2)`` independently per pixel and channel (``sigma`` on the [0, 1] scale);
    no clipping."""
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return img.astype(np.float32) + noise


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``img [H, W, 3]`` as a JPEG of ``quality`` (1-95) with Pillow and decode it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(quantize(img, 8), mode="RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


# -- the blind pipeline -------------------------------------------------------------------------


@dataclass(frozen=True)
class BlindParams:
    """One draw of the blind pipeline's random choices (see :meth:`BlindDegradation.sample`)."""

    isotropic: bool
    sigma_x: float
    sigma_y: float
    theta: float
    down_scale: float
    down_method: str
    noise_sigma: float  # on the [0, 1] scale
    jpeg_quality: int
    up_method: str


@dataclass(frozen=True)
class BlindDegradation:
    """The in128out1024 recipe's degradation; defaults are the reference config's values.

    ``degrade(gt, rng)`` maps ``gt [H, W, 3]`` float RGB in [0, 1] to an LQ image
    ``[out_size, out_size, 3]`` float32 in [0, 1].
    """

    kernel_size: int = 41
    isotropic_prob: float = 0.5
    sigma: tuple[float, float] = (0.2, 10.0)
    rotation: tuple[float, float] = (-math.pi, math.pi)
    down_scale: tuple[float, float] = (1 / 32, 1.0)
    noise_sigma: tuple[float, float] = (0.0, 50.0)  # on the 0-255 scale, as configured
    jpeg_quality: tuple[int, int] = (5, 50)
    resize_methods: tuple[str, ...] = RESIZE_METHODS
    out_size: int = 128

    def sample(self, rng: np.random.Generator) -> BlindParams:
        """Draw every random choice of one degradation (uniform ranges, equiprobable methods)."""
        isotropic = bool(rng.random() < self.isotropic_prob)
        sigma_x = float(rng.uniform(*self.sigma))
        sigma_y = float(rng.uniform(*self.sigma))
        theta = float(rng.uniform(*self.rotation))
        if isotropic:
            sigma_y, theta = sigma_x, 0.0
        return BlindParams(
            isotropic=isotropic,
            sigma_x=sigma_x,
            sigma_y=sigma_y,
            theta=theta,
            down_scale=float(rng.uniform(*self.down_scale)),
            down_method=str(rng.choice(self.resize_methods)),
            noise_sigma=float(rng.uniform(*self.noise_sigma)) / 255.0,
            jpeg_quality=round(float(rng.uniform(*self.jpeg_quality))),
            up_method=str(rng.choice(self.resize_methods)),
        )

    def apply(self, gt: np.ndarray, p: BlindParams, rng: np.random.Generator) -> np.ndarray:
        """Run the pipeline with the choices ``p``; ``rng`` draws the noise field."""
        h, w = gt.shape[:2]
        kernel = gaussian_kernel(self.kernel_size, p.sigma_x, p.sigma_y, p.theta)
        x = filter2d(gt, kernel)
        small = (max(1, int(h * p.down_scale)), max(1, int(w * p.down_scale)))
        x = resize(x, small, p.down_method)  # type: ignore[arg-type]
        x = add_gaussian_noise(x, p.noise_sigma, rng)
        x = jpeg_compress(x, p.jpeg_quality)
        x = round_to_8bit(resize(x, (h, w), p.up_method))  # type: ignore[arg-type]
        return resize(x, (self.out_size, self.out_size), "area")

    def degrade(self, gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if gt.ndim != 3 or gt.shape[2] != 3:
            raise ValueError(f"gt must be [H, W, 3], got {gt.shape}")
        return self.apply(gt, self.sample(rng), rng)


__all__ = [
    "RESIZE_METHODS",
    "BlindDegradation",
    "BlindParams",
    "add_gaussian_noise",
    "filter2d",
    "gaussian_kernel",
    "jpeg_compress",
    "resize",
]
