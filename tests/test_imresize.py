"""glean_sr.imresize against references computed independently of it.

Reference: PIL's float ('F' mode) bicubic resize uses the same Keys kernel (a = -0.5), the same
pixel-centre convention and the same antialiasing (support stretched by 1 / scale) as MATLAB, but
renormalises at the borders instead of mirroring. Symmetric padding by more than the kernel's
reach, a PIL resize of the padded image and a crop therefore give MATLAB's result everywhere,
computed by different code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from glean_sr.data.imresize import _cubic, imresize


def pil_reference(img: np.ndarray, out_hw: tuple[int, int], pad: int) -> np.ndarray:
    """MATLAB imresize of a 2-D float image, via symmetric padding + PIL; needs pad * scale
    integral in both axes."""
    h, w = img.shape
    sh, sw = out_hw[0] / h, out_hw[1] / w
    padded = np.pad(img, pad, mode="symmetric").astype(np.float32)
    ph, pw = round((h + 2 * pad) * sh), round((w + 2 * pad) * sw)
    resized = np.asarray(Image.fromarray(padded, mode="F").resize((pw, ph), Image.BICUBIC))
    ch, cw = round(pad * sh), round(pad * sw)
    return resized[ch : ch + out_hw[0], cw : cw + out_hw[1]].astype(np.float64)


@pytest.fixture(scope="module")
def gray():
    return data.camera()[100:196, 150:246].astype(np.float64) / 255  # 96 x 96 real photo


@pytest.mark.parametrize(
    "scale,pad",
    [
        (1 / 8, 16),  # the released x8 protocol
        (1 / 16, 32),  # the released x16 protocol
        (1 / 4, 16),
        (1 / 3, 12),  # non-power-of-two integer factor
        (2, 4),
        (4, 4),
        (1.5, 4),  # non-integer up-scaling
        (0.75, 8),  # non-integer down-scaling
    ],
)
def test_matches_independent_reference(gray, scale, pad):
    out = imresize(gray, scale)
    expected_hw = (int(np.ceil(96 * scale)), int(np.ceil(96 * scale)))
    assert out.shape == expected_hw
    ref = pil_reference(gray, expected_hw, pad)
    np.testing.assert_allclose(out, ref, atol=2e-5)  # PIL computes in float32


def test_non_square_size_argument(gray):
    img = gray[:, :64]
    out = imresize(img, size=(24, 16))
    np.testing.assert_allclose(out, pil_reference(img, (24, 16), 16), atol=2e-5)


def test_hand_computed_upscale_weights():
    """x2 up-sampling of an impulse: the taps are the cubic kernel at distances 0.25, 0.75, ..."""
    img = np.zeros((1, 9))
    img[0, 4] = 1.0
    out = imresize(img, size=(1, 18), antialiasing=True)[0]
    # output j (1-based) samples u = j / 2 + 0.25; the impulse sits at input position 5
    u = np.arange(1, 19) / 2 + 0.25
    np.testing.assert_allclose(out, _cubic(u - 5), atol=1e-12)


def test_kernel_values():
    np.testing.assert_allclose(
        _cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])),
        [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0],
    )


def test_uint8_rgb_rounds_and_keeps_dtype():
    img = data.chelsea()[:256, :256]  # H x W x 3 uint8
    out = imresize(img, 1 / 8)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    ref = np.stack(
        [pil_reference(img[..., c].astype(np.float64), (32, 32), 16) for c in range(3)], -1
    )
    assert np.abs(out.astype(np.float64) - ref).max() <= 0.5 + 1e-3


def test_constant_image_stays_constant():
    img = np.full((40, 30, 3), 0.3)
    for scale in (0.25, 0.7, 1.3, 3):
        np.testing.assert_allclose(imresize(img, scale), 0.3, atol=1e-12)


def test_torch_batch_equals_numpy(gray):
    t = torch.from_numpy(np.stack([gray, 1 - gray])[None]).float()  # [1, 2, H, W]
    out = imresize(t, 1 / 4)
    assert out.shape == (1, 2, 24, 24) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0, 0].numpy(), imresize(gray, 1 / 4), atol=1e-6)
    np.testing.assert_allclose(out[0, 1].numpy(), imresize(1 - gray, 1 / 4), atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="positive"):
        imresize(np.zeros((4, 4)), -1)
