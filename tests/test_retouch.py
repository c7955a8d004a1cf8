"""glean_sr.Retoucher and `glean-sr retouch`: shrink, restore, blend inside a feathered mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, run_cli
from glean_sr import Retoucher, Upscaler, build_model
from glean_sr.config import GLEANColorizerConfig
from glean_sr.data.imresize import imresize
from glean_sr.errors import ConfigError, ImageError
from glean_sr.inference.retouch import feather_mask, mask_from_image
from glean_sr.io import from_array, read_image, write_image


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TINY).eval()  # GLEAN 8 -> 32


def _photo(side: int) -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return imresize(skimage_data.astronaut(), size=(side, side))  # uint8 [side, side, 3]


def _disc(side: int, radius: float) -> np.ndarray:
    y, x = np.mgrid[:side, :side]
    return (y - side / 2) ** 2 + (x - side / 2) ** 2 < radius**2


def test_pixels_outside_the_mask_are_the_inputs_bit_for_bit(model, tmp_path):
    """The issue's check, end to end through the command line: a 64 px photo, an 8 px model
    input, a disc-shaped mask."""
    photo = _photo(64)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    inside = _disc(64, 20)
    Image.fromarray((inside * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    model.save_pretrained(tmp_path / "model")
    result = run_cli(
        "retouch", str(tmp_path / "photo.png"), "-m", str(tmp_path / "model"),
        "--mask", str(tmp_path / "mask.png"), "-o", str(tmp_path / "out"), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "shrunk 64x64 -> 8x8 (MATLAB bicubic)" in result.stdout
    assert "resized 32x32 -> 64x64 (MATLAB bicubic)" in result.stdout
    assert f"blended inside the mask ({inside.sum()} pixels, feathered over 1 px)" in result.stdout
    assert "done: 1 retouched of 1" in result.stdout
    out = np.asarray(Image.open(tmp_path / "out" / "photo_retouched.png"))
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[~inside], photo[~inside])
    assert (out[inside] != photo[inside]).any(axis=-1).mean() > 0.9  # restored inside


def test_whole_image_without_a_mask_is_the_restored_image(model):
    photo = _photo(32)
    retoucher = Retoucher(model, device="cpu")
    result, record = retoucher(photo)
    shrunk = imresize(photo, size=(8, 8))  # uint8, as MATLAB shrinks 8-bit images
    want = Upscaler(model, device="cpu")(shrunk).image
    assert np.array_equal(result, want)
    assert record.masked_pixels == 32 * 32 and "the whole image replaced" in record.describe()


def test_16_bit_grey_with_alpha_keeps_everything_outside(model):
    rng = np.random.default_rng(1)
    grey16 = (rng.random((40, 40)) * 65535).astype(np.uint16)
    alpha = (rng.random((40, 40)) * 65535).astype(np.uint16)
    image = np.dstack([grey16, alpha])  # [40, 40, 2]: grey + alpha
    inside = _disc(40, 12)
    mask = from_array(np.dstack([np.full((40, 40), 255, np.uint8), inside * np.uint8(255)]))
    out, record = Retoucher(model, device="cpu")(image, mask, feather=4)
    assert out.dtype == np.uint16 and out.shape == (40, 40, 2)
    assert np.array_equal(out[~inside], image[~inside])  # grey and alpha, bit for bit
    assert np.array_equal(out[..., 1], alpha)  # alpha is never retouched
    assert (out[inside][:, 0] != grey16[inside]).mean() > 0.9
    assert record.feather == 4 and record.model_input_hw == (8, 8)


def test_feathering_rises_inside_the_mask_only():
    inside = _disc(64, 24)
    weight = feather_mask(inside, 6)
    assert (weight[~inside] == 0).all()
    assert (weight[32, 32] == 1) and weight.max() == 1
    row = weight[32, 8:33]  # from outside towards the centre
    assert (np.diff(row) >= 0).all() and 0 < row[row > 0][0] < 0.25
    assert np.array_equal(feather_mask(inside, 0), inside.astype(np.float32))
    # a transparent pixel counts as black; colour masks use their luma
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, 3] = rgba[1, 1, 3] = 255
    assert mask_from_image(rgba).tolist() == [[True, False], [False, True]]


def test_bad_inputs_get_a_line_and_the_batch_goes_on(model, tmp_path):
    model.save_pretrained(tmp_path / "model")
    images = tmp_path / "images"
    images.mkdir()
    write_image(from_array(_photo(48)), images / "a.png")
    write_image(from_array(_photo(48)[:, :40]), images / "wide.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    result = run_cli(
        "retouch", str(images), "-m", str(tmp_path / "model"), "-o", str(images),
        "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 1
    assert "wide.png: 40x48; this model restores 8x8 squares" in result.stderr
    assert "broken.jpg" in result.stderr
    assert read_image(images / "a_retouched.png").pixels.shape == (48, 48, 3)
    assert "done: 1 retouched, 2 failed of 3" in result.stdout
    with pytest.raises(ImageError, match="the mask is 10x10, the image 48x48"):
        Retoucher(model, device="cpu")(_photo(48), np.zeros((10, 10), np.uint8))


def test_a_colorizer_is_refused():
    colorizer = build_model(GLEANColorizerConfig(out_size=8, rrdb_channels=4, num_rrdbs=0,
                                                 style_channels=8, num_mlps=1,
                                                 channel_table={4: 8, 8: 8}))  # fmt: skip
    with pytest.raises(ConfigError, match="this is a colorizer"):
        Retoucher(colorizer, device="cpu")


@pytest.mark.parametrize("scale", [4, 2])
def test_a_model_of_any_size_shrinks_by_its_own_factor(scale):
    from glean_sr.config import RealESRGANConfig

    torch.manual_seed(0)
    model = build_model(
        RealESRGANConfig(scale=scale, rrdb_channels=8, num_rrdbs=1, growth_channels=8)
    )
    image = np.random.default_rng(2).integers(0, 256, (50, 37, 3), dtype=np.uint8)
    inside = np.zeros((50, 37), bool)
    inside[10:30, 5:20] = True
    out, record = Retoucher(model, device="cpu")(image, inside.astype(np.uint8) * 255)
    assert out.shape == image.shape and np.array_equal(out[~inside], image[~inside])
    # x2 folds its input by pixel-unshuffle: sizes are multiples of 2
    h, w = {4: (12, 9), 2: (24, 18)}[scale]
    assert record.model_input_hw == (h, w)
    assert f"restored {w}x{h} -> 36x48 (x{scale}); resized 36x48 -> 37x50" in record.describe()
