"""glean_sr.io: what real files need, checked against references that do not use glean_sr.io."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps
from skimage import data

from glean_sr.data.imresize import area_matrix, area_resize
from glean_sr.errors import ImageError
from glean_sr.io import (
    from_array,
    pixels_to_tensor,
    read_image,
    tensor_to_pixels,
    to_array,
    to_pil,
    write_image,
)
from imagefiles import bad_files, png_decode, png_encode

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()[40:88, 180:244]  # 48 x 64 RGB uint8, a real photo


def samples16(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """16-bit samples whose low bytes matter (a reader keeping only high bytes fails)."""
    return np.random.default_rng(seed).integers(0, 65536, (h, w, c), dtype=np.uint16)


# --------------------------------------------------------------------------------------------
# 16 bits


@pytest.mark.parametrize("channels,mode", [(1, "I;16"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_16bit_png_read_exactly_with_every_filter(tmp_path, channels, mode):
    want = samples16(11, 7, channels)
    path = tmp_path / "x.png"
    path.write_bytes(png_encode(want))
    img = read_image(path)
    assert img.bit_depth == 16 and img.mode == mode and img.format == "PNG"
    np.testing.assert_array_equal(to_array(img), want)


@pytest.mark.parametrize(
    "options",
    [{}, {"byteorder": ">"}, {"compression": "zlib"}],
    ids=["raw-little-endian", "raw-big-endian", "deflate"],
)
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_tiff_read_exactly(tmp_path, options, channels):
    tifffile = pytest.importorskip("tifffile", reason="tifffile comes with scikit-image")
    want = samples16(9, 6, channels, seed=1)
    path = tmp_path / "x.tif"
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(path, want, photometric="rgb", **options, **extra)
    img = read_image(path)
    assert img.bit_depth == 16 and (img.alpha is not None) == (channels == 4)
    np.testing.assert_array_equal(to_array(img), want)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_written_exactly(tmp_path, channels):
    want = samples16(5, 8, channels, seed=2)
    img = from_array(want)
    assert img.bit_depth == 16
    path = tmp_path / "y.png"
    write_image(img.replace(icc_profile=SRGB if channels >= 3 else None), path)
    got, info = png_decode(path.read_bytes())  # the specification, not Pillow
    assert info["depth"] == 16
    np.testing.assert_array_equal(got, want)
    assert info["icc"] == (SRGB if channels >= 3 else None)
    if channels == 1:  # and Pillow agrees
        np.testing.assert_array_equal(np.asarray(Image.open(path)), want[..., 0])


def test_8bit_png_round_trip_every_mode(tmp_path, photo):
    rgba = np.dstack([photo, np.arange(photo.shape[1], dtype=np.uint8)[None].repeat(48, 0) * 4])
    for arr in (photo, rgba, photo[..., 0], rgba[..., [0, 3]]):
        path = tmp_path / f"m{arr.ndim}{arr.shape[-1]}.png"
        write_image(from_array(arr), path)
        back = to_array(read_image(path))
        np.testing.assert_array_equal(back.reshape(arr.shape), arr)
        np.testing.assert_array_equal(np.asarray(Image.open(path)).reshape(arr.shape), arr)


# --------------------------------------------------------------------------------------------
# modes, EXIF, ICC


def test_modes_match_pillow_conversions(tmp_path, photo):
    pil = Image.fromarray(photo)
    ramp = np.linspace(0, 255, 64).astype(np.uint8)[None].repeat(48, 0)
    rgba = Image.fromarray(np.dstack([photo, ramp]))
    cases = {
        "gray.png": (pil.convert("L"), 1, False),
        "bilevel.png": (pil.convert("1"), 1, False),
        "palette.png": (pil.convert("P"), 3, False),
        "cmyk.jpg": (pil.convert("CMYK"), 3, False),
        "rgba.webp": (rgba, 3, True),
        "la.png": (rgba.convert("LA"), 1, True),
        "photo.bmp": (pil, 3, False),
    }
    for name, (im, channels, has_alpha) in cases.items():
        path = tmp_path / name
        im.save(path, **({"lossless": True} if name.endswith("webp") else {}))
        img = read_image(path)
        assert img.channels == channels and (img.alpha is not None) == has_alpha, name
        assert img.mode == im.mode and img.bit_depth == 8
        reference = Image.open(path).convert({1: "L", 3: "RGB"}[channels])
        np.testing.assert_array_equal(to_array(img)[..., :channels].squeeze(), reference)
    assert read_image(tmp_path / "palette.png").notes == ("palette expanded to RGB",)
    assert read_image(tmp_path / "cmyk.jpg").notes == ("converted from CMYK to RGB",)


def test_palette_transparency_becomes_alpha(tmp_path, photo):
    im = Image.fromarray(photo).convert("P")
    im.info["transparency"] = 0
    im.save(tmp_path / "t.png", transparency=0)
    img = read_image(tmp_path / "t.png")
    want = np.asarray(Image.open(tmp_path / "t.png").convert("RGBA"))[..., 3]
    assert img.alpha is not None
    np.testing.assert_array_equal(to_array(img)[..., 3], want)
    assert want.min() == 0 and want.max() == 255


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, photo, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(photo).save(path, exif=exif, quality=95)
    img = read_image(path)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(to_array(img), upright)
    if orientation in (5, 6, 7, 8):
        assert (img.height, img.width) == (64, 48)
    assert any("EXIF orientation" in n for n in img.notes) == (orientation != 1)


def test_icc_profile_kept_through_every_format(tmp_path, photo):
    for ext in ("png", "jpg", "webp", "tif"):
        src = tmp_path / f"in.{ext}"
        Image.fromarray(photo).save(src, icc_profile=SRGB)
        img = read_image(src)
        assert img.icc_profile == SRGB, ext
        out = tmp_path / f"out.{ext}"
        write_image(img, out)
        assert Image.open(out).info.get("icc_profile") == SRGB, ext


def test_icc_profile_that_does_not_fit_is_dropped(tmp_path, photo):
    Image.fromarray(photo[..., 0]).save(tmp_path / "g.png", icc_profile=SRGB)  # RGB profile
    img = read_image(tmp_path / "g.png")
    assert img.icc_profile is None
    assert img.notes == ("RGB ICC profile dropped (the pixels are GRAY)",)


# --------------------------------------------------------------------------------------------
# bad files


def test_every_bad_file_gets_one_line_naming_it(tmp_path, photo):
    good = png_encode(photo)
    expected = bad_files(tmp_path, good)
    for name, what in expected.items():
        with pytest.raises(ImageError) as info:
            read_image(tmp_path / name)
        message = str(info.value)
        assert message.startswith(str(tmp_path / name) + ": ")
        assert what in message and "\n" not in message, message
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)


def test_pixel_limit_is_checked_before_decoding(tmp_path, photo):
    (tmp_path / "p.png").write_bytes(png_encode(photo))
    with pytest.raises(ImageError, match=r"48 = 3,072 pixels is more than the limit of 3,000"):
        read_image(tmp_path / "p.png", max_pixels=3000)
    assert read_image(tmp_path / "p.png", max_pixels=3072).width == 64


# --------------------------------------------------------------------------------------------
# writing


def test_write_never_overwrites_unless_asked_and_leaves_no_temp_files(tmp_path, photo):
    path = tmp_path / "o.png"
    path.write_bytes(b"user data")
    with pytest.raises(ImageError, match="exists; pass --overwrite"):
        write_image(from_array(photo), path)
    assert path.read_bytes() == b"user data"
    write_image(from_array(photo), path, overwrite=True)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), photo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
    with pytest.raises(ImageError, match="unknown image file suffix"):
        write_image(from_array(photo), tmp_path / "o.xyz")


def test_formats_that_cannot_hold_something_say_so(tmp_path, photo):
    rgba = from_array(np.dstack([photo, np.full(photo.shape[:2], 9, np.uint8)]))
    assert write_image(rgba, tmp_path / "a.jpg") == ("alpha dropped (JPEG output has none)",)
    assert Image.open(tmp_path / "a.jpg").mode == "RGB"
    assert write_image(rgba, tmp_path / "a.webp") == ()
    assert Image.open(tmp_path / "a.webp").mode == "RGBA"
    deep = from_array(samples16(4, 4, 3))
    assert write_image(deep, tmp_path / "d.tif")[0].startswith("written with 8 bits")
    gray16 = from_array(samples16(4, 4, 1))
    assert write_image(gray16, tmp_path / "g.tif") == ()
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "g.tif")), to_array(gray16)[..., 0]
    )


def test_from_array_validates():
    with pytest.raises(ValueError, match=r"float image must be in \[0, 1\]"):
        from_array(np.full((2, 2, 3), 1.5))
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        from_array(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="shape"):
        from_array(np.zeros((2, 2, 5), np.uint8))


def test_to_pil_keeps_16bit_gray_and_icc(photo):
    gray16 = from_array(samples16(3, 5, 1)).replace(icc_profile=b"x" * 20)
    pil = to_pil(gray16)
    assert pil.mode == "I;16" and pil.info["icc_profile"] == b"x" * 20
    np.testing.assert_array_equal(np.asarray(pil), to_array(gray16)[..., 0])
    assert to_pil(from_array(photo)).mode == "RGB"


# --------------------------------------------------------------------------------------------
# model tensors


def test_tensor_round_trip_and_grayscale(photo):
    rgb = from_array(photo).pixels
    t = pixels_to_tensor([rgb, rgb[::-1]])
    assert t.shape == (2, 3, 48, 64) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_allclose(tensor_to_pixels(t)[1], rgb[::-1], atol=1e-6)

    gray = rgb[..., :1]
    tg = pixels_to_tensor(gray)
    assert torch.equal(tg[:, 0], tg[:, 1]) and torch.equal(tg[:, 0], tg[:, 2])
    back = tensor_to_pixels(tg, channels=1)[0]
    assert back.shape == (48, 64, 1)
    np.testing.assert_allclose(back, gray, atol=1e-6)  # luma of equal channels is the channel
    luma = tensor_to_pixels(t[:1], channels=1)[0][..., 0]
    pil_luma = np.asarray(Image.fromarray(photo).convert("L"), dtype=np.float64) / 255
    assert np.abs(luma - pil_luma).max() <= 0.5 / 255 + 1e-6  # Pillow rounds to 8 bits


# --------------------------------------------------------------------------------------------
# area resize (the --resize area choice)


def test_area_resize_is_block_mean_for_integer_factors(photo):
    img = photo.astype(np.float64)
    block = img.reshape(12, 4, 16, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(img, (12, 16)), block, atol=1e-12)


def test_area_resize_keeps_the_mean_for_any_factor(photo):
    img = photo.astype(np.float64) / 255
    for size in ((7, 9), (20, 33), (48, 64), (60, 70)):
        out = area_resize(img, size)
        assert out.shape == (*size, 3)
        np.testing.assert_allclose(out.mean(axis=(0, 1)), img.mean(axis=(0, 1)), atol=1e-12)
    m = area_matrix(10, 4)  # each output covers 2.5 inputs
    np.testing.assert_allclose(m[1], [0, 0, 0.2, 0.4, 0.4, 0, 0, 0, 0, 0])


def test_16bit_fallback_says_what_it_kept(tmp_path, monkeypatch):
    """If Pillow's decoders ever stop allowing the low-byte pass, reading still works, says it
    kept 8 bits, and marks the image 8-bit (so nothing claims precision it does not have)."""
    import glean_sr.io as gio

    def broken(*args):
        raise OSError("decoder changed")

    monkeypatch.setattr(gio, "_read_16bit_colour", broken)
    want = samples16(4, 6, 3)
    (tmp_path / "d.png").write_bytes(png_encode(want))
    img = read_image(tmp_path / "d.png")
    assert img.bit_depth == 8
    assert img.notes == ("16-bit colour read with 8 bits only (decoder changed)",)
    np.testing.assert_array_equal(to_array(img), want >> 8)  # Pillow's high bytes
