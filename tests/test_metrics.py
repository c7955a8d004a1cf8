"""PSNR/SSIM against scikit-image on the same arrays; NIQE against the published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from glean_sr.evaluation.metrics import psnr, rgb_to_y, ssim
from glean_sr.evaluation.niqe import niqe


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A real photo and a degraded copy (noise + a blur-like shift), float64 in [0, 1]."""
    gt = data.astronaut()[100:300, 150:350].astype(np.float64) / 255
    rng = np.random.default_rng(seed)
    sr = 0.7 * gt + 0.3 * np.roll(gt, 2, axis=1) + rng.normal(0, 0.03, gt.shape)
    return np.clip(sr, 0, 1), gt


def _sk_ssim(a, b, **kw):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kw
    )


def test_rgb_to_y_is_matlab_rgb2ycbcr():
    img = data.coffee().astype(np.float64) / 255
    assert np.allclose(rgb_to_y(img), rgb2ycbcr(img)[..., 0] / 255, atol=1e-12)
    assert rgb_to_y(np.zeros(3)) == pytest.approx(16 / 255)
    assert rgb_to_y(np.ones(3)) == pytest.approx(235 / 255)
    # data_range only rescales
    assert np.allclose(rgb_to_y(img * 255, data_range=255), rgb_to_y(img) * 255)


@pytest.mark.parametrize("crop", [0, 4])
def test_psnr_equals_scikit_image(crop):
    sr, gt = _pair()
    c = slice(crop, gt.shape[0] - crop), slice(crop, gt.shape[1] - crop)
    expected = peak_signal_noise_ratio(gt[c], sr[c], data_range=1.0)
    assert abs(psnr(sr, gt, crop_border=crop) - expected) < 1e-6
    expected_y = peak_signal_noise_ratio(rgb_to_y(gt)[c], rgb_to_y(sr)[c], data_range=1.0)
    assert abs(psnr(sr, gt, crop_border=crop, channel="y") - expected_y) < 1e-6
    # 8-bit scale with data_range=255 is the same number
    assert abs(psnr(sr * 255, gt * 255, crop_border=crop, data_range=255) - expected) < 1e-6


@pytest.mark.parametrize("crop", [0, 4])
def test_ssim_equals_scikit_image(crop):
    sr, gt = _pair(1)
    c = slice(crop, gt.shape[0] - crop), slice(crop, gt.shape[1] - crop)
    expected = _sk_ssim(gt[c], sr[c], data_range=1.0, channel_axis=2)
    assert abs(ssim(sr, gt, crop_border=crop) - expected) < 1e-6
    expected_y = _sk_ssim(rgb_to_y(gt)[c], rgb_to_y(sr)[c], data_range=1.0)
    assert abs(ssim(sr, gt, crop_border=crop, channel="y") - expected_y) < 1e-6
    gray = sr[..., 1], gt[..., 1]
    assert abs(ssim(*gray) - _sk_ssim(gray[1], gray[0], data_range=1.0)) < 1e-6


def test_identical_images_and_errors():
    _, gt = _pair()
    assert psnr(gt, gt) == math.inf
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        psnr(gt, gt[:-1])
    with pytest.raises(ValueError, match="channel"):
        ssim(gt, gt, channel="lab")
    with pytest.raises(ValueError, match="crop_border"):
        psnr(gt, gt, crop_border=100)


def _blurred_astronaut() -> np.ndarray:
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (test extra) is not installed")
    img = data.astronaut()
    small = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("astronaut", 3.065), ("chelsea", 2.626), ("coffee", 4.115), ("astronaut_x8_blur", 10.070)],
)
def test_niqe_matches_published_implementation(name, expected):
    """Values of the MATLAB-compatible reference (BasicSR's calculate_niqe, Y channel, no crop)."""
    img = _blurred_astronaut() if name == "astronaut_x8_blur" else getattr(data, name)()
    value = niqe(img.astype(np.float64) / 255)
    assert abs(value - expected) < 0.05, value
    # the 8-bit scale gives the same value
    assert niqe(img, data_range=255) == pytest.approx(value, abs=1e-9)


def test_niqe_needs_two_blocks():
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(np.zeros((96, 150, 3)))
