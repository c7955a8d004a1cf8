"""The image boundary (glean_sr.io): one rounding rule to integer samples, one reader of RGB
pixels, one image lister, and every module converting through them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glean_sr.errors import ImageError
from glean_sr.io import (
    IMAGE_SUFFIXES,
    as_image_data,
    from_array,
    image_like,
    list_images,
    quantize,
    read_image,
    read_rgb,
    round_to_8bit,
    write_image,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "glean_sr"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_rounds_half_to_even_after_clipping(dtype):
    k = np.arange(255)
    ties = ((k + 0.5) / 255).astype(dtype)  # x * 255 is exactly k + 0.5 in both precisions
    assert np.array_equal(ties * dtype(255), k + 0.5)
    assert quantize(ties, 8).tolist() == (k + k % 2).tolist()  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    nudge = dtype(1e-3 / 255)  # well above the rounding error of x * 255
    below, above = ties - nudge, ties + nudge
    assert quantize(below, 8).tolist() == k.tolist()
    assert quantize(above, 8).tolist() == (k + 1).tolist()
    out = quantize(np.array([-0.3, 0.0, 1.0, 1.7, 0.5 / 255, 1.5 / 255], dtype), 8)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 255, 255, 0, 2]


def test_quantize_16_bit_and_8_bit_grid():
    levels = np.arange(65536) / 65535
    assert np.array_equal(quantize(levels, 16), np.arange(65536, dtype=np.uint16))
    assert quantize(np.array([0.5 / 65535, 1.5 / 65535]), 16).tolist() == [0, 2]
    x = np.random.default_rng(0).uniform(-0.1, 1.1, 1000).astype(np.float32)
    snapped = round_to_8bit(x)
    assert snapped.dtype == np.float32
    assert np.array_equal(snapped, quantize(x, 8).astype(np.float32) / 255)
    assert np.array_equal(quantize(snapped, 8), quantize(x, 8))  # on the grid: a fixed point
    with pytest.raises(ValueError, match="bit_depth must be 8 or 16"):
        quantize(x, 12)


def test_written_files_hold_the_quantized_samples(tmp_path):
    ties = ((np.arange(24) + 0.5) / 255).astype(np.float32).reshape(2, 4, 3)
    write_image(from_array(ties), tmp_path / "ties.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ties.png")), quantize(ties, 8))


def test_read_rgb_types_and_channels(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray16 = np.random.default_rng(2).integers(0, 65536, (5, 7), dtype=np.uint16)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    write_image(from_array(gray16), tmp_path / "gray16.png")
    exact = read_rgb(tmp_path / "rgb.png", keep_uint8=True)
    assert exact.dtype == np.uint8 and np.array_equal(exact, rgb)
    unit = read_rgb(tmp_path / "rgb.png")
    assert unit.dtype == np.float32 and np.array_equal(quantize(unit, 8), rgb)
    wide = read_rgb(tmp_path / "gray16.png", keep_uint8=True)  # 16 bits stay float
    assert wide.dtype == np.float32 and wide.shape == (5, 7, 3)
    assert np.array_equal(quantize(wide[..., 1], 16), gray16)
    with pytest.raises(ImageError, match="no such file"):
        read_rgb(tmp_path / "missing.png")


def test_list_images_one_set_of_suffixes(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.gif", "d.txt", ".hidden.png", "sub/e.webp"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.gif"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == [
        "a.jpg",
        "b.PNG",
        "c.gif",
        "e.webp",
    ]
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"} == IMAGE_SUFFIXES
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "a.jpg")


def test_image_kinds_round_trip(tmp_path):
    arr8 = np.random.default_rng(3).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    for original in [arr8, arr8[..., 0], arr8.astype(np.uint16) * 257, arr8 / np.float32(255)]:
        back = image_like(original, as_image_data(original))
        assert back.dtype == original.dtype and np.array_equal(back, original)
    pil = Image.fromarray(arr8[..., :3])
    assert np.array_equal(np.asarray(image_like(pil, as_image_data(pil))), arr8[..., :3])
    pil.save(tmp_path / "p.png")
    data = read_image(tmp_path / "p.png")
    assert image_like(tmp_path / "p.png", as_image_data(tmp_path / "p.png")).source == data.source
    with pytest.raises(TypeError, match="expected a PIL image"):
        as_image_data(3)


#: the only conversions to integer samples outside glean_sr/io.py, each with its reason
OTHER_ROUNDING = {
    # MATLAB's imresize returns uint8 rounded half away from zero; its outputs are the released
    # LQ images
    "data/imresize.py",
    # MATLAB's niqe rounds its luma to uint8 the same way
    "evaluation/niqe.py",
    # the glyph renderer's exact integer mean of supersampled uint8 blocks (no float pixels)
    "data/glyphs.py",
}
ROUNDING = re.compile(
    r"astype\(np\.uint(8|16)\)|floor\([^)]*\+ ?0\.5|\.round_?\(\)|np\.rint\(|np\.round\("
)


def test_no_module_rounds_to_integer_samples_on_its_own():
    """Every other conversion of float pixels to integer samples goes through io.quantize."""
    found = sorted(
        f"{p.relative_to(SRC).as_posix()}:{i}"
        for p in SRC.rglob("*.py")
        if p.name != "io.py" or p.parent != SRC
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if ROUNDING.search(line) and p.relative_to(SRC).as_posix() not in OTHER_ROUNDING
    )
    assert found == []
