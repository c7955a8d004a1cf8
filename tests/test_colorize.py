"""glean_sr.Colorizer and `glean-sr colorize`: any photo in, its L* kept, colour out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY as TINY_GLEAN
from conftest import run_cli
from glean_sr import Colorizer, build_model
from glean_sr.colorspace import rgb_to_lab
from glean_sr.config import GLEANColorizerConfig
from glean_sr.errors import ConfigError
from glean_sr.inference.colorize import lightness_of, reduce_chroma_into_gamut
from glean_sr.io import from_array, read_image, write_image
from glean_sr.models.colorizer import GLEANColorizer

SMALL = GLEANColorizerConfig(
    out_size=32,
    rrdb_channels=8,
    num_rrdbs=1,
    style_channels=32,
    num_mlps=2,
    channel_table={4: 32, 8: 32, 16: 16, 32: 16},
    decoder_channels=16,
)


def _colourful_model() -> GLEANColorizer:
    """A tiny colorizer whose chroma varies over the image and is strong enough to leave
    sRGB's gamut in bright and dark places (a warm cast: a = +22, b = +38 on average)."""
    torch.manual_seed(0)
    model = GLEANColorizer(SMALL).eval()
    with torch.no_grad():
        model.decoder[-1].weight.normal_(std=0.05)
        model.decoder[-1].bias.copy_(torch.tensor([0.2, 0.35]))
    return model


def _lightness(rgb_uint8: np.ndarray) -> np.ndarray:
    """L* ``[H, W]`` of 8-bit sRGB ``[H, W, 3]`` (or ``[H, W]`` grey) in float64."""
    rgb = rgb_uint8.astype(np.float64) / 255
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    return rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1))[0].numpy()


def _one_step(grey: np.ndarray) -> np.ndarray:
    """Per pixel, the L* difference of one 8-bit step at that grey level."""
    levels = _lightness(np.arange(256, dtype=np.uint8)[None])[0]  # L* of grey 0 .. 255
    steps = np.diff(levels)
    return np.concatenate([steps, steps[-1:]])[grey]


def test_colorize_astronaut_keeps_its_l_within_one_8_bit_step(tmp_path):
    """The issue's check, end to end through the command line."""
    skimage_data = pytest.importorskip("skimage.data")
    grey = np.asarray(Image.fromarray(skimage_data.astronaut()).convert("L"))  # [512, 512]
    Image.fromarray(grey).save(tmp_path / "astronaut.png")
    _colourful_model().save_pretrained(tmp_path / "model")

    result = run_cli(
        "colorize", str(tmp_path / "astronaut.png"), "-m", str(tmp_path / "model"),
        "-o", str(tmp_path / "out"), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out_path = tmp_path / "out" / "astronaut_color.png"
    assert f"-> {out_path}" in result.stdout
    assert "512x512 L 8-bit PNG; L* of the grey input; L* resized 512x512 -> 32x32" in result.stdout
    assert "chroma reduced into the sRGB gamut at" in result.stdout  # that path is exercised
    assert "done: 1 colorized of 1" in result.stdout
    out = np.asarray(Image.open(out_path))
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    lab = rgb_to_lab(torch.from_numpy(out.astype(np.float64) / 255).permute(2, 0, 1)).numpy()
    assert np.hypot(lab[1], lab[2]).mean() > 10  # a colour image, not grey
    error = np.abs(lab[0] - _lightness(grey))
    assert (error <= _one_step(grey)).all(), error.max()


def test_any_size_grey_or_colour_8_or_16_bits_alpha_and_icc():
    colorizer = Colorizer(_colourful_model(), device="cpu")
    rng = np.random.default_rng(0)
    # 16-bit grey, not square, not the model's size
    grey16 = (rng.random((37, 50)) * 65535).astype(np.uint16)
    out = colorizer(grey16)
    assert out.image.shape == (37, 50, 3) and out.image.dtype == np.uint16
    assert out.data.bit_depth == 16 and out.record.grayscale
    want = _lightness_float(grey16.astype(np.float64) / 65535)
    assert np.abs(_lightness_float(out.image.astype(np.float64) / 65535) - want).max() < 0.01
    # colour with alpha and an RGB ICC profile: its L* is used, its colour replaced
    rgba = rng.integers(0, 256, (40, 24, 4), dtype=np.uint8)
    data = from_array(rgba).replace(icc_profile=b"rgb-profile")
    result, record = colorizer.colorize_data(data)
    assert not record.grayscale and "its colour replaced" in record.describe()
    assert np.array_equal(result.alpha, data.alpha) and result.icc_profile == b"rgb-profile"
    assert np.abs(lightness_of(result) - lightness_of(data)).max() < 1e-3
    assert np.abs(result.pixels - data.pixels).max() > 0.1  # new colours
    # a grey image's GRAY profile does not describe the RGB output
    grey_data = from_array(grey16[:32, :32]).replace(icc_profile=b"gray-profile")
    result, record = colorizer.colorize_data(grey_data)
    assert result.icc_profile is None and "GRAY ICC profile dropped" in record.describe()
    assert "resized" not in record.describe()  # already the model's size


def _lightness_float(grey: np.ndarray) -> np.ndarray:
    if grey.ndim == 2:
        grey = np.repeat(grey[..., None], 3, axis=2)
    return rgb_to_lab(torch.from_numpy(grey).permute(2, 0, 1))[0].numpy()


def test_out_of_gamut_colours_lose_chroma_not_lightness():
    lab = torch.tensor([[95.0, 30.0, 90.0], [20.0, -60.0, -80.0], [50.0, 10.0, 10.0]]).T
    rgb, changed = reduce_chroma_into_gamut(lab[..., None])  # [3, 3, 1]
    assert changed == 2  # the first two are outside sRGB, the third inside
    assert rgb.min() >= 0 and rgb.max() <= 1
    back = rgb_to_lab(rgb.double())
    assert torch.allclose(back[0, :, 0], lab[0].double(), atol=0.05)  # L* kept
    hue = torch.atan2(back[2, :2, 0], back[1, :2, 0])
    assert torch.allclose(hue, torch.atan2(lab[2, :2], lab[1, :2]).double(), atol=0.05)
    assert torch.allclose(back[:, 2, 0], lab[:, 2].double(), atol=1e-3)  # in gamut: as it was


def test_bad_files_get_a_line_and_the_batch_goes_on(tmp_path):
    _colourful_model().save_pretrained(tmp_path / "model")
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(from_array(np.full((20, 30), 128, np.uint8)), photos / "a.png")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(from_array(np.zeros((8, 8, 3), np.uint8)), photos / "c.jpg")
    result = run_cli(
        "colorize", str(photos), str(tmp_path / "missing.png"), "-m", str(tmp_path / "model"),
        "-o", str(photos), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 1
    assert "missing.png: no such file or folder" in result.stderr
    assert "broken.png" in result.stderr and result.stderr.count("error:") == 2
    assert read_image(photos / "a_color.png").pixels.shape == (20, 30, 3)
    assert read_image(photos / "c_color.png").pixels.shape == (8, 8, 3)
    assert "done: 2 colorized, 2 failed of 4" in result.stdout
    # the inputs are untouched, and with an empty suffix an output would overwrite its input
    assert (np.asarray(Image.open(photos / "a.png")) == 128).all()
    again = run_cli(
        "colorize", str(photos / "a.png"), "-m", str(tmp_path / "model"), "-o", str(photos),
        "--suffix", "", "--device", "cpu",
    )  # fmt: skip
    assert again.returncode == 1 and "would overwrite the input" in again.stderr


def test_a_super_resolution_model_is_refused():
    with pytest.raises(ConfigError, match="colorize needs a colorizer"):
        Colorizer(build_model(TINY_GLEAN), device="cpu")


def test_upscale_refuses_a_colorizer():
    from glean_sr import Upscaler

    with pytest.raises(ConfigError, match="colorizer; glean-sr colorize"):
        Upscaler(_colourful_model(), device="cpu")
