"""Validation metrics against scikit-image, the 8-bit conversion of the reference, and the
missing-extra message of TensorBoard logging."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from glean_sr.errors import MissingDependencyError
from glean_sr.training.runlog import check_tensorboard
from glean_sr.training.validation import psnr, ssim, to_uint8_rgb


@pytest.fixture(scope="module")
def pair():
    import skimage.data

    a = skimage.data.astronaut()[100:164, 150:230]
    noise = np.random.default_rng(0).normal(0, 12, a.shape)
    b = np.clip(a + noise, 0, 255).astype(np.uint8)
    return a, b


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1).astype(np.float64))


def test_psnr_and_ssim_equal_scikit_image(pair):
    a, b = pair
    expected_psnr = peak_signal_noise_ratio(a, b, data_range=255)
    expected_ssim = structural_similarity(
        a,
        b,
        data_range=255,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert psnr(_chw(a), _chw(b)) == pytest.approx(expected_psnr, abs=1e-6)
    assert ssim(_chw(a), _chw(b)) == pytest.approx(expected_ssim, abs=1e-6)
    assert psnr(_chw(a), _chw(a)) == float("inf") and ssim(_chw(a), _chw(a)) == pytest.approx(1)


def test_outputs_are_measured_as_8_bit_images_like_the_reference():
    # tensor2img: (x + 1) / 2, clamp to [0, 1], x255, round half to even
    x = torch.tensor([-1.5, -1.0, 0.0, 1 / 255, 1.0, 2.0]).view(1, 2, 3)
    out = to_uint8_rgb(x).flatten().tolist()
    assert out == [0.0, 0.0, 128.0, 128.0, 255.0, 255.0]


def test_missing_tensorboard_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"glean-sr\[train\]") as info:
        check_tensorboard()
    assert "train.tensorboard=false" in str(info.value) and "\n" not in str(info.value)
