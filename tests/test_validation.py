"""Validation during training: the reference's 8-bit conversion, the metrics of ``glean-sr eval``
averaged over the validation set, and the missing-extra message of TensorBoard logging."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from glean_sr.data.datasets import SRDataset
from glean_sr.errors import MissingDependencyError
from glean_sr.io import quantize, tensor_to_pixels
from glean_sr.training.distributed import DistInfo
from glean_sr.training.runlog import check_tensorboard
from glean_sr.training.validation import validate
from training_helpers import make_image_set


def test_outputs_are_measured_as_8_bit_images_like_the_reference():
    # tensor2img: (x + 1) / 2, clamp to [0, 1], x255, round half to even; validate converts with
    # the library's one conversion, so a model returning these values scores as their 8-bit form
    x = torch.tensor([-1.5, -1.0, 0.0, 1 / 255, 1.0, 2.0]).view(1, 2, 3)
    out = quantize(tensor_to_pixels(x[None], channels=1)[0], 8)
    assert out.shape == (2, 3, 1) and out.dtype == np.uint8
    assert out.flatten().tolist() == [0, 0, 128, 128, 255, 255]


class _Bicubic(torch.nn.Module):
    def forward(self, lq):
        return torch.nn.functional.interpolate(lq, scale_factor=2, mode="bicubic")


def test_validate_averages_rgb_psnr_and_ssim_over_the_set(tmp_path):
    paths = make_image_set(tmp_path, 3, gt_size=24, lq_size=12, seed=4)
    dataset = SRDataset(**paths, in_size=12, out_size=24)
    model = _Bicubic()
    result = validate(model, dataset, device=torch.device("cpu"), info=DistInfo())
    psnrs, ssims = [], []
    for i in range(3):
        sample = dataset[i]
        with torch.no_grad():
            sr = model(sample["lq"][None])[0]
        a = np.clip((sr.permute(1, 2, 0).numpy() + 1) * 127.5, 0, 255).round().astype(np.uint8)
        b = np.round((sample["gt"].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        psnrs.append(peak_signal_noise_ratio(b, a, data_range=255))
        ssims.append(
            structural_similarity(
                b, a, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )
        )  # fmt: skip
    assert result["images"] == 3
    assert result["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-6)
    assert result["ssim"] == pytest.approx(np.mean(ssims), abs=1e-6)
    assert validate(model, dataset, device=torch.device("cpu"), info=DistInfo(), max_images=1)[
        "psnr"
    ] == pytest.approx(psnrs[0], abs=1e-6)


def test_missing_tensorboard_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"glean-sr\[train\]") as info:
        check_tensorboard()
    assert "train.tensorboard=false" in str(info.value) and "\n" not in str(info.value)
