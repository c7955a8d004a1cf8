"""CIE Lab in torch (glean_sr.colorspace) against scikit-image's rgb2lab / lab2rgb."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glean_sr.colorspace import lab_to_rgb, rgb_to_lab, rgb_to_lightness

skimage_color = pytest.importorskip("skimage.color")
skimage_data = pytest.importorskip("skimage.data")

#: every colour photo bundled with scikit-image (no download)
PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "colorwheel",
]


def _photo(name: str) -> np.ndarray:
    if name.startswith("motorcycle_"):
        left, right, _ = skimage_data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(skimage_data, name)()[..., :3]


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


@pytest.mark.parametrize("name", PHOTOS)
def test_lab_equals_scikit_image_on_every_pixel(name):
    photo = _photo(name)
    assert photo.dtype == np.uint8 and photo.shape[2] == 3
    rgb = photo.astype(np.float64) / 255
    want_lab = skimage_color.rgb2lab(rgb)  # [H, W, 3]
    got_lab = rgb_to_lab(_chw(rgb)).permute(1, 2, 0).numpy()
    assert np.abs(got_lab - want_lab).max() < 1e-4
    # back from scikit-image's Lab: its lab2rgb clips to [0, 1]
    want_rgb = skimage_color.lab2rgb(want_lab)
    got_rgb = lab_to_rgb(_chw(want_lab), clip=True).permute(1, 2, 0).numpy()
    assert np.abs(got_rgb - want_rgb).max() < 1e-4
    assert np.abs(got_rgb - rgb).max() < 1e-4  # a round trip
    lightness = rgb_to_lightness(_chw(rgb))[0].numpy()
    assert np.abs(lightness - want_lab[..., 0]).max() < 1e-4
    # float32, as the models run it, stays within the same bound
    got32 = rgb_to_lab(_chw(rgb).float()).permute(1, 2, 0).numpy()
    assert np.abs(got32 - want_lab).max() < 1e-3


def test_out_of_gamut_lab_matches_scikit_image_and_unclipped_extends_it():
    rng = np.random.default_rng(0)
    lab = np.stack(
        [
            rng.uniform(0, 100, (40, 50)),
            rng.uniform(-128, 127, (40, 50)),
            rng.uniform(-128, 127, (40, 50)),
        ],
        axis=-1,
    )
    with pytest.warns(UserWarning, match="negative Z values"):
        want = skimage_color.lab2rgb(lab)
    assert np.abs(lab_to_rgb(_chw(lab), clip=True).permute(1, 2, 0).numpy() - want).max() < 1e-4
    unclipped = lab_to_rgb(_chw(lab)).permute(1, 2, 0).numpy()
    assert unclipped.min() < -0.1 and unclipped.max() > 1.1  # out of gamut, kept
    assert np.array_equal(
        np.clip(unclipped, 0, 1), lab_to_rgb(_chw(lab), clip=True).permute(1, 2, 0).numpy()
    )


def test_gradients_are_finite_everywhere():
    # black, white, the thresholds of both companding curves, and out-of-gamut Lab
    values = torch.tensor([0.0, 1.0, 0.04045, 0.0031308, 0.5], dtype=torch.float64)
    rgb = values.view(1, 1, 5).expand(3, 5, 5).clone().requires_grad_(True)
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab = torch.tensor([[0.0, 100.0, 50.0], [0.0, 90.0, -120.0], [0.0, -120.0, 127.0]])
    lab = lab.view(3, 3, 1).expand(3, 3, 4).clone().double().requires_grad_(True)
    lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()
    assert torch.autograd.gradcheck(
        rgb_to_lab, (torch.rand(3, 4, 4, dtype=torch.float64).requires_grad_(),)
    )
    assert torch.autograd.gradcheck(
        lab_to_rgb, (rgb_to_lab(torch.rand(3, 4, 4, dtype=torch.float64)).requires_grad_(),)
    )


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        rgb_to_lab(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="floating point"):
        lab_to_rgb(torch.zeros(3, 2, 2, dtype=torch.uint8))
    assert rgb_to_lab(torch.rand(2, 5, 3, 4, 4)).shape == (2, 5, 3, 4, 4)


def test_mixed_precision_does_not_lower_the_conversions_precision():
    """Under torch.autocast (bf16 training and inference) a matrix product would run in bf16:
    an error of about 1 in L*."""
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    lab, back = rgb_to_lab(rgb), lab_to_rgb(rgb_to_lab(rgb))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(rgb_to_lab(rgb), lab)
        assert torch.equal(lab_to_rgb(lab), back)
    assert (back - rgb).abs().max() < 1e-4
