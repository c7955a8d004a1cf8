"""glean_sr.Upscaler: the input contract, its records, padding removal, alpha, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import glean_sr
from glean_sr.data.imresize import imresize
from glean_sr.errors import ConfigError, ImageError
from glean_sr.io import from_array, quantize

IN, OUT = 8, 32  # the tiny model of conftest.py: x4


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()[30:222, 150:342]  # 192 x 192, the face


def model_output(model, pixels: np.ndarray) -> np.ndarray:
    """The model applied by hand: ``[S, S, 3]`` in [0, 1] -> ``[O, O, 3]`` in [0, 1]."""
    lq = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        sr = model(lq)
    return ((sr[0].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)


def matlab_lq(pixels: np.ndarray) -> np.ndarray:
    """What --resize bicubic must feed the model for an 8-bit image (as the released LR PNGs)."""
    return quantize(np.clip(imresize(pixels.astype(np.float64), size=(IN, IN)), 0, 1), 8) / 255


def test_model_size_input_needs_nothing(tiny_model, astronaut):
    small = imresize(astronaut, size=(IN, IN))  # uint8, at the model's input size
    out, record = glean_sr.Upscaler(tiny_model, device="cpu")(small)
    assert out.dtype == np.uint8 and out.shape == (OUT, OUT, 3)
    assert record.resize is None and record.crop is None and record.pad is None
    assert record.model_input_hw == (IN, IN) and record.output_hw == (OUT, OUT)
    assert record.steps == ["restored 8x8 -> 32x32 (x4)"]
    np.testing.assert_array_equal(out, quantize(model_output(tiny_model, small / 255), 8))


def test_wrong_size_is_an_error_that_names_the_options(tiny_model, astronaut):
    up = glean_sr.Upscaler(tiny_model, device="cpu")
    with pytest.raises(ImageError) as info:
        up(astronaut)
    message = str(info.value)
    assert "192x192, but the model takes exactly 8x8" in message
    assert "--resize bicubic (MATLAB-compatible" in message and "--resize area" in message
    assert "--fit" not in message
    with pytest.raises(ImageError, match="--fit crop .* and --resize bicubic"):
        up(astronaut[:, :100])
    with pytest.raises(ImageError, match="--fit crop"):
        glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic")(astronaut[:, :100])


def test_bicubic_feeds_the_matlab_resize(tiny_model, astronaut):
    up = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic")
    prepared = up.prepare(from_array(astronaut))
    np.testing.assert_allclose(prepared.lq, matlab_lq(astronaut / 255), atol=1e-6)
    assert prepared.record.resize == "bicubic"
    assert prepared.record.steps == ["resized 192x192 -> 8x8 (MATLAB-compatible bicubic)"]


def test_area_feeds_the_block_mean(tiny_model, astronaut):
    up = glean_sr.Upscaler(tiny_model, device="cpu", resize="area")
    prepared = up.prepare(from_array(astronaut))
    block = astronaut.astype(np.float64).reshape(8, 24, 8, 24, 3).mean(axis=(1, 3)) / 255
    np.testing.assert_allclose(prepared.lq, quantize(block, 8) / 255, atol=1e-6)


def test_crop_keeps_the_centred_square(tiny_model, astronaut):
    wide = astronaut[:80]  # 80 x 192
    up = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic", fit="crop")
    out, record = up(wide)
    assert record.crop == (0, 56, 80, 80)
    assert record.steps[0] == "centre-cropped 192x80 -> 80x80 at x=56, y=0"
    want = quantize(model_output(tiny_model, matlab_lq(wide[:, 56:136] / 255)), 8)
    np.testing.assert_array_equal(out, want)


def test_pad_is_removed_from_the_output(tiny_model, astronaut):
    tall = astronaut[:, 40:136]  # 192 high, 96 wide
    up = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic", fit="pad")
    out, record = up(tall)
    assert record.pad == (0, 0, 48, 48)
    assert record.output_hw == (32, 16) and out.shape == (32, 16, 3)  # the input's aspect ratio
    padded = np.pad(tall / 255, ((0, 0), (48, 48), (0, 0)), mode="symmetric")
    full = quantize(model_output(tiny_model, matlab_lq(padded)), 8)
    np.testing.assert_array_equal(out, full[:, 8:24])  # 48 of 192 columns -> 8 of 32
    assert "padding removed: 32x32 -> 16x32" in record.steps


def test_alpha_is_resized_separately_and_reattached(tiny_model, astronaut):
    alpha = np.linspace(0, 255, 192).astype(np.uint8)[None].repeat(192, 0)
    rgba = np.dstack([astronaut, alpha])
    up = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic")
    out, record = up(Image.fromarray(rgba))
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (OUT, OUT)
    got = np.asarray(out)
    want_alpha = quantize(np.clip(imresize(alpha / 255, size=(OUT, OUT)), 0, 1), 8)
    np.testing.assert_array_equal(got[..., 3], want_alpha)
    rgb_alone, _ = up(astronaut)
    np.testing.assert_array_equal(got[..., :3], rgb_alone)  # colour does not see the alpha
    assert record.alpha and "alpha reattached" in record.steps


def test_grayscale_goes_through_as_three_channels(tiny_model, astronaut):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    out, record = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic")(gray)
    assert out.shape == (OUT, OUT) and out.dtype == np.uint8 and record.grayscale
    lq = matlab_lq(gray[..., None] / 255)
    sr = model_output(tiny_model, np.repeat(lq, 3, axis=2))
    luma = sr @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_array_equal(out, quantize(luma, 8))


def test_output_follows_the_input_kind(tiny_model, astronaut):
    up = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic")
    deep = astronaut.astype(np.uint16) * 257
    out16 = up(deep).image
    assert out16.dtype == np.uint16 and out16.shape == (OUT, OUT, 3)
    outf = up(astronaut / 255.0).image
    assert outf.dtype == np.float64 and outf.min() >= 0 and outf.max() <= 1
    result = up(from_array(deep))
    assert isinstance(result.image, glean_sr.ImageData) and result.image.bit_depth == 16


def test_batch_equals_one_by_one(tiny_model, astronaut):
    images = [astronaut, astronaut[::-1], astronaut[:, ::-1], astronaut[:100, :150]]
    one = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic", fit="pad")
    three = glean_sr.Upscaler(tiny_model, device="cpu", resize="bicubic", fit="pad", batch_size=3)
    for a, b in zip(one.upscale(images), three.upscale(images), strict=True):
        np.testing.assert_allclose(a.data.pixels, b.data.pixels, atol=1e-5)
        assert a.record == b.record


def test_from_pretrained_loads_a_saved_model(tiny_model, tiny_model_dir, astronaut):
    small = imresize(astronaut, size=(IN, IN))
    loaded = glean_sr.Upscaler.from_pretrained(tiny_model_dir, device="cpu")
    assert (loaded.in_size, loaded.out_size, loaded.scale) == (IN, OUT, 4)
    np.testing.assert_array_equal(
        loaded(small).image, glean_sr.Upscaler(tiny_model, device="cpu")(small).image
    )


def test_bf16_stays_close_to_fp32(tiny_model, astronaut):
    small = imresize(astronaut, size=(IN, IN))
    fp32 = glean_sr.Upscaler(tiny_model, device="cpu")(small).data.pixels
    bf16 = glean_sr.Upscaler(tiny_model, device="cpu", precision="bf16")(small).data.pixels
    psnr = 10 * np.log10(1 / np.mean((fp32 - bf16) ** 2))
    assert psnr > 35, psnr  # bf16 keeps 8 bits of mantissa


def test_fp16_on_cpu_works_and_says_it_is_slow(tiny_model):
    upscaler = glean_sr.Upscaler(tiny_model, device="cpu", precision="fp16")
    assert any("bf16 is the fast choice" in note for note in upscaler.notes)
    assert glean_sr.Upscaler(tiny_model, device="cpu", precision="bf16").notes == []


def test_invalid_settings_are_one_line_errors(tiny_model):
    with pytest.raises(ConfigError, match="precision must be one of"):
        glean_sr.Upscaler(tiny_model, device="cpu", precision="fp8")
    with pytest.raises(ConfigError, match="resize must be one of error, bicubic, area"):
        glean_sr.Upscaler(tiny_model, device="cpu", resize="lanczos")
    with pytest.raises(ConfigError, match="fit must be"):
        glean_sr.Upscaler(tiny_model, device="cpu", fit="stretch")
    with pytest.raises(ConfigError, match="batch_size"):
        glean_sr.Upscaler(tiny_model, device="cpu", batch_size=0)
    with pytest.raises(ConfigError, match="cuda"):  # no GPU here; on a GPU machine: no 99th
        glean_sr.Upscaler(tiny_model, device="cuda:99")
    with pytest.raises(ConfigError, match="unknown device"):
        glean_sr.Upscaler(tiny_model, device="gpu")
    with pytest.raises(ConfigError, match="glean-sr restorer"):
        glean_sr.Upscaler(torch.nn.Conv2d(3, 3, 1), device="cpu")


@pytest.mark.slow
def test_compiled_model_gives_the_same_images(tiny_model, astronaut):
    """torch.compile (inductor, C++ on the CPU) changes the execution, not the result."""
    small = imresize(astronaut, size=(IN, IN))
    eager = glean_sr.Upscaler(tiny_model, device="cpu")(small).data.pixels
    compiled = glean_sr.Upscaler(tiny_model, device="cpu", compile=True)
    assert compiled.compiled
    np.testing.assert_allclose(compiled(small).data.pixels, eager, atol=1e-5)
