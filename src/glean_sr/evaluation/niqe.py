"""NIQE, the "completely blind" Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik,
IEEE Signal Processing Letters 2013), compatible with the authors' MATLAB release.

NIQE fits a multivariate Gaussian (MVG) to natural-scene-statistics features of the image's
96x96 blocks and measures its distance to an MVG fitted once on pristine photos. Lower is better;
about 3-5 for sharp photos, 8-12 for blurry up-sampling. It needs no ground truth, which is why
real-world restoration tables (GLEAN TPAMI Table 7) report it.

Steps, as the MATLAB ``computequality`` does them (the paper's equation numbers):

1. Y channel of MATLAB ``rgb2ycbcr`` on the 8-bit scale, rounded to integers (MATLAB works on
   ``uint8``); the image is cut to whole 96x96 blocks (top-left kept).
2. At two scales (the image, then MATLAB-bicubic ``imresize`` by 0.5 with antialiasing):
   mean-subtracted contrast-normalised coefficients ``(I - mu) / (sigma + 1)`` with a 7x7
   Gaussian window (7/6 px) and replicated borders (Eq. 1); local statistics in float32 (see
   :func:`_mscn` for why that matters).
3. Per block: the generalised Gaussian fit of the coefficients (shape, variance) and the
   asymmetric generalised Gaussian fit of the products with the four neighbours (horizontal,
   vertical, both diagonals; circular shift inside the block) (Eqs. 2-8): 18 features per scale.
   Shapes are found by moment matching on the grid 0.2:0.001:10, as in MATLAB.
4. MVG of the 36-d block features (NaN rows dropped from the covariance) and
   ``sqrt((nu1 - nu2)^T ((S1 + S2) / 2)^+ (nu1 - nu2))`` against the pristine model (Eq. 10).

The pristine model (``mu_pris_param``, ``cov_pris_param``, ``gaussian_window``) is data:
``glean_sr/data/niqe_pris_params.npz``, taken unchanged from BasicSR 1.4.2
(https://github.com/XPixelGroup/BasicSR, Apache-2.0), which converted the authors' MATLAB
``modelparameters.mat``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import numpy as np

from ..data.imresize import imresize
from .metrics import rgb_to_y

BLOCK_SIZE = 96


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu [36], cov [36, 36], gaussian_window [7, 7])`` of the pristine-image MVG."""
    with resources.files("glean_sr.data").joinpath("niqe_pris_params.npz").open("rb") as f:
        params = np.load(f)
        mu = params["mu_pris_param"].reshape(-1).astype(np.float64)
        cov = params["cov_pris_param"].astype(np.float64)
        window = params["gaussian_window"].astype(np.float64)
    return mu, cov, window


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """Shape grid 0.2:0.001:10 and the GGD moment ratio ``G(2/a)^2 / (G(1/a) G(3/a))``."""
    shapes = np.arange(0.2, 10.001, 0.001)
    lg = np.vectorize(math.lgamma)
    ratio = np.exp(2 * lg(2 / shapes) - lg(1 / shapes) - lg(3 / shapes))
    return shapes, ratio


def _gamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.gamma, otypes=[np.float64])(x)


def _aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric GGD fit by moment matching for each row of ``x: [B, P]``.

    Returns ``(alpha, beta_left, beta_right)``, each ``[B]`` (Lasmar et al.'s estimator, the
    one NIQE's ``estimateaggdparam.m`` uses)."""
    neg, pos = x < 0, x > 0
    x2 = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((x2 * neg).sum(1) / neg.sum(1))
        right_std = np.sqrt((x2 * pos).sum(1) / pos.sum(1))
        gamma_hat = left_std / right_std
        r_hat = np.abs(x).mean(1) ** 2 / x2.mean(1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shapes, ratio = _gamma_table()
    best = np.argmin((ratio[None, :] - r_hat_norm[:, None]) ** 2, axis=1)
    # a block without negative (or positive) values has no ratio (NaN): MATLAB's ``min`` then
    # returns index 1, so the shape is the grid's first value (0.2) and the scales stay NaN
    alpha = shapes[best]
    factor = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
    return alpha, left_std * factor, right_std * factor


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 features of each block ``[B, h, w]`` of normalised coefficients -> ``[B, 18]``."""
    n = blocks.shape[0]
    flat = blocks.reshape(n, -1)
    alpha, beta_l, beta_r = _aggd_fit(flat)
    feats = [alpha, (beta_l + beta_r) / 2]  # symmetric GGD of the coefficients (Eq. 2)
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        shifted = np.roll(blocks, shift, axis=(1, 2))
        alpha, beta_l, beta_r = _aggd_fit((blocks * shifted).reshape(n, -1))
        with np.errstate(invalid="ignore"):
            mean = (beta_r - beta_l) * _gamma(2 / alpha) / _gamma(1 / alpha)  # Eq. 8
        feats += [alpha, mean, beta_l, beta_r]
    return np.stack(feats, axis=1)


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``(I - mu) / (sigma + 1)`` with Gaussian-weighted local statistics, replicated borders.

    The local mean and second moment are summed in float64 and rounded to float32 (as the
    widely used BasicSR port computes them). The rounding matters: in a constant neighbourhood it
    gives exactly ``mu = I`` and ``sigma = 0``, so the coefficient is exactly 0 and counts on
    neither side of the AGGD fits, whereas float64 round-off leaves +-1e-14 values whose signs
    shift the fits (scikit-image's astronaut, which has flat areas: 3.10 instead of 3.065)."""
    k = window.shape[0]
    r = k // 2
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape
    padded = np.pad(img, r, mode="edge")
    sq = padded * padded
    mu = np.zeros_like(img)
    mu2 = np.zeros_like(img)
    for dy in range(k):  # correlation = convolution: the window is symmetric
        for dx in range(k):
            mu += window[dy, dx] * padded[dy : dy + h, dx : dx + w]
            mu2 += window[dy, dx] * sq[dy : dy + h, dx : dx + w]
    mu, mu2 = mu.astype(np.float32), mu2.astype(np.float32)
    sigma = np.sqrt(np.abs(mu2 - mu * mu))
    return ((img.astype(np.float32) - mu) / (sigma + 1)).astype(np.float64)


def niqe_features(y: np.ndarray, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Per-block NIQE features ``[num_blocks, 36]`` of a luma image ``y: [H, W]`` on the 0-255
    scale (already rounded; see :func:`niqe`)."""
    _, _, window = pristine_model()
    h, w = y.shape
    rows, cols = h // block_size, w // block_size
    img = np.asarray(y, dtype=np.float64)[: rows * block_size, : cols * block_size]
    per_scale = []
    for step in (1, 2):
        coeffs = _mscn(img, window)
        size = block_size // step
        blocks = coeffs.reshape(rows, size, cols, size).transpose(0, 2, 1, 3)  # [R, C, s, s]
        per_scale.append(_block_features(blocks.reshape(-1, size, size)))
        if step == 1:
            img = np.asarray(imresize(img / 255.0, 0.5), dtype=np.float64) * 255.0
    return np.concatenate(per_scale, axis=1)


def niqe(
    img: np.ndarray,
    *,
    crop_border: int = 0,
    data_range: float = 1.0,
    block_size: int = BLOCK_SIZE,
) -> float:
    """NIQE of one image (no reference needed); lower is more natural.

    Args:
        img: ``[H, W, 3]`` RGB or ``[H, W]`` luma/grey, values in ``[0, data_range]``.
        crop_border: pixels removed from each edge first (0 in the published protocol).
        data_range: the value of white (1.0 for float images, 255 for 8-bit values).
        block_size: side of the blocks the MVG is fitted to (96, the authors' value; their
            pristine model was fitted with it).

    Returns:
        NIQE, a non-negative float; typically 2-6 for natural photos. Computed on the BT.601 Y
        channel (``rgb2ycbcr``) rounded to 8-bit integers, as MATLAB does on ``uint8`` input.

    Raises:
        ValueError: when the (cropped) image holds fewer than two blocks: with one block the
            covariance of the features is undefined.
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[2] == 3:
        y = rgb_to_y(arr, data_range) / data_range * 255.0
    elif arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        y = arr.reshape(arr.shape[0], arr.shape[1]) / data_range * 255.0
    else:
        raise ValueError(f"niqe needs [H, W, 3] RGB or [H, W] grey, got shape {arr.shape}")
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    h, w = y.shape
    if (h // block_size) * (w // block_size) < 2:
        raise ValueError(
            f"NIQE needs at least two {block_size}x{block_size} blocks, got a {h}x{w} image "
            f"(use images of at least {block_size}x{2 * block_size})"
        )
    y = np.floor(y + 0.5)  # MATLAB's rounding to uint8 (half away from zero; y >= 0)
    feats = niqe_features(y, block_size)
    mu_pris, cov_pris, _ = pristine_model()
    mu = np.nanmean(feats, axis=0)
    finite = feats[~np.isnan(feats).any(axis=1)]
    cov = np.cov(finite, rowvar=False)
    diff = mu_pris - mu
    quality = diff @ np.linalg.pinv((cov_pris + cov) / 2) @ diff
    return float(np.sqrt(quality))
