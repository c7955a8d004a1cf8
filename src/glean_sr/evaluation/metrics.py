"""Full-reference metrics as super-resolution papers report them: PSNR and SSIM, on RGB or on Y.

Conventions shared by every function here (the same as BasicSR's and mmagic's, which produced the
released GLEAN numbers):

* Images are NumPy arrays ``[H, W, C]`` (RGB, ``C == 3``) or ``[H, W]`` (one channel), floating
  point in ``[0, data_range]``; ``data_range`` defaults to 1.0 (glean-sr's images are float
  ``[0, 1]``). An 8-bit image divided by 255 and ``data_range=1`` gives exactly the values BasicSR
  computes on the ``[0, 255]`` image with ``data_range=255``.
* ``channel="rgb"`` scores all three channels; ``channel="y"`` scores the luma of ITU-R BT.601
  YCbCr as MATLAB's ``rgb2ycbcr`` defines it (:func:`rgb_to_y`), the usual choice for SR tables.
* ``crop_border=b`` removes ``b`` pixels from each of the four edges before scoring (papers crop
  the scale factor for x2-x4 SR; the released GLEAN numbers use 0).
* Computation is in float64; results are Python floats.
"""

from __future__ import annotations

import math

import numpy as np

#: MATLAB ``rgb2ycbcr`` luma row for RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B,
#: with Y in [16, 235] on the 8-bit scale (ITU-R BT.601).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)

CHANNELS = ("rgb", "y")


def rgb_to_y(img: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """BT.601 luma of an RGB image, like MATLAB's ``rgb2ycbcr(img)(:, :, 1)``.

    Args:
        img: ``[..., 3]`` RGB in ``[0, data_range]``.
        data_range: the value of white (1.0 for float images, 255 for 8-bit values).

    Returns:
        ``[...]`` float64 Y in ``[16/255, 235/255] * data_range`` (not rounded):
        ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in ``[0, 1]``.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.shape[-1] != 3:
        raise ValueError(f"rgb_to_y needs [..., 3] RGB, got shape {img.shape}")
    rgb01 = img / data_range
    return (16.0 + rgb01 @ _Y_WEIGHTS) / 255.0 * data_range


def _prepare(
    img: np.ndarray, channel: str, crop_border: int, data_range: float, name: str
) -> np.ndarray:
    """float64 ``[H, W, C]`` in the requested colour space, borders cropped."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"{name} must be [H, W] or [H, W, C], got shape {img.shape}")
    if channel == "y":
        if img.shape[2] == 3:
            img = rgb_to_y(img, data_range)[:, :, None]
        elif img.shape[2] != 1:
            raise ValueError(f"channel='y' needs RGB or one-channel {name}, got {img.shape}")
    if crop_border:
        h, w = img.shape[:2]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    return img


def _check_pair(sr: np.ndarray, gt: np.ndarray) -> None:
    if np.shape(sr) != np.shape(gt):
        raise ValueError(
            f"sr and gt must have the same shape, got {np.shape(sr)} and {np.shape(gt)}"
        )


def psnr(
    sr: np.ndarray,
    gt: np.ndarray,
    *,
    crop_border: int = 0,
    channel: str = "rgb",
    data_range: float = 1.0,
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Args:
        sr: restored image ``[H, W, 3]`` or ``[H, W]``, values in ``[0, data_range]``.
        gt: ground truth of the same shape.
        crop_border: pixels removed from each edge before scoring.
        channel: ``"rgb"`` (MSE over all channels) or ``"y"`` (BT.601 luma only).
        data_range: the value of white (1.0 for float images).

    Returns:
        PSNR in dB, higher is better; ``inf`` for identical images. Typical SR values are
        20-40 dB. The MSE is taken over every pixel and channel at once (as scikit-image and
        BasicSR do), not averaged per channel.
    """
    _check_pair(sr, gt)
    a = _prepare(sr, channel, crop_border, data_range, "sr")
    b = _prepare(gt, channel, crop_border, data_range, "gt")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_1d(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of ``x: [H, W, C]`` with the 1-D kernel ``g`` along H and W:
    MATLAB's ``filter2(g' * g, x, 'valid')`` per channel (the kernel is symmetric). Shifted
    sums in float64 NumPy: exact enough and, unlike float64 convolutions in torch, fast."""
    k = g.size
    h = x.shape[0] - k + 1
    acc = g[0] * x[:h]
    for i in range(1, k):
        acc += g[i] * x[i : i + h]
    w = x.shape[1] - k + 1
    out = g[0] * acc[:, :w]
    for i in range(1, k):
        out += g[i] * acc[:, i : i + w]
    return out  # [H - k + 1, W - k + 1, C]


def ssim(
    sr: np.ndarray,
    gt: np.ndarray,
    *,
    crop_border: int = 0,
    channel: str = "rgb",
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> float:
    """Structural similarity (Wang et al., TIP 2004, Eq. 13 with the Gaussian window of Sec. III-C).

    Local means, variances and covariance are Gaussian-weighted averages over an
    ``window_size x window_size`` window (sigma 1.5, normalised), computed only where the window
    fits inside the image ('valid'); population (not sample) statistics;
    ``C1 = (0.01 data_range)^2``, ``C2 = (0.03 data_range)^2``. The SSIM map is averaged over
    the image, then over channels. This equals the authors' MATLAB ``ssim_index``, BasicSR's
    ``calculate_ssim`` and scikit-image's ``structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range)``.

    Args:
        sr: restored image ``[H, W, 3]`` or ``[H, W]``, values in ``[0, data_range]``.
        gt: ground truth of the same shape.
        crop_border: pixels removed from each edge before scoring.
        channel: ``"rgb"`` (mean over the three channels) or ``"y"`` (BT.601 luma only).
        data_range: the value of white (1.0 for float images).
        window_size: odd window side (11 in the paper).
        sigma: the Gaussian's standard deviation in pixels (1.5 in the paper).

    Returns:
        SSIM in ``[-1, 1]``, higher is better, 1 for identical images.
    """
    _check_pair(sr, gt)
    if window_size < 3 or window_size % 2 == 0:
        raise ValueError(f"window_size must be odd and >= 3, got {window_size}")
    a = _prepare(sr, channel, crop_border, data_range, "sr")
    b = _prepare(gt, channel, crop_border, data_range, "gt")
    if min(a.shape[:2]) < window_size:
        size = f"{window_size}x{window_size}"
        raise ValueError(f"SSIM needs images of at least {size}, got shape {a.shape}")
    g = _gaussian_1d(sigma, window_size // 2)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = _filter_valid(a, g), _filter_valid(b, g)
    var_x = _filter_valid(a * a, g) - mu_x**2
    var_y = _filter_valid(b * b, g) - mu_y**2
    cov_xy = _filter_valid(a * b, g) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean(axis=(0, 1)).mean())  # per channel, then over channels


def colourfulness(img: np.ndarray, data_range: float = 1.0) -> float:
    """Colourfulness of an RGB image (Hasler and Suesstrunk, "Measuring colourfulness in natural
    images", SPIE 2003, Eq. 3): with ``rg = R - G`` and ``yb = (R + G) / 2 - B`` on the 0-255
    scale, ``sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)``.

    No reference image. ``img`` is ``[H, W, 3]`` in ``[0, data_range]``. Range ``[0, ~180]``:
    0 for a grey image; the paper's scale reads 15 slightly, 33 moderately, 59 quite, 82 highly
    and 109 extremely colourful. Higher is more colourful (not better in itself).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"colourfulness needs an RGB image [H, W, 3], got shape {img.shape}")
    rgb = img.astype(np.float64) * (255.0 / data_range)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    spread = math.sqrt(rg.std() ** 2 + yb.std() ** 2)
    return float(spread + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
