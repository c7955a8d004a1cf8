"""A photo's enlargement written band by band: the PNG encoder, the banded Lanczos resize, and
``glean-sr upscale`` with a model that takes any size never holding its output whole."""

from __future__ import annotations

import io
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image
from skimage import data

from glean_sr.data.imresize import LanczosRows, lanczos_resize, lanczos_rows
from glean_sr.errors import ImageError
from glean_sr.inference.batch import Reporter, collect_inputs, plan_outputs, upscale_files
from glean_sr.inference.tiling import TiledRun
from glean_sr.inference.upscaler import Upscaler
from glean_sr.io import from_array, read_image, to_array, write_image, write_image_rows
from glean_sr.png import PngWriter, filter_rows
from test_background import rrdb


def _photo(channels: int, bit_depth: int) -> np.ndarray:
    rgb = data.astronaut()[100:260, 150:270].astype(np.uint16)  # [160, 120, 3]
    planes = {1: rgb[..., :1], 2: np.dstack([rgb[..., :1], rgb[..., 2:]]), 3: rgb}
    samples = planes.get(channels, np.dstack([rgb, 255 - rgb[..., 1:2]]))
    if bit_depth == 16:  # low bytes that differ from the high ones
        return samples * 256 + np.arange(samples.size).reshape(samples.shape) % 256
    return samples.astype(np.uint8)


def _encode(samples: np.ndarray, bit_depth: int, bands: list[int], icc=None) -> bytes:
    h, w, c = samples.shape
    out = io.BytesIO()
    png = PngWriter(out, w, h, c, bit_depth, icc_profile=icc)
    y, i = 0, 0
    while y < h:
        n = bands[i % len(bands)]
        png.write(samples[y : y + n].astype(np.uint8 if bit_depth == 8 else np.uint16))
        y, i = y + n, i + 1
    png.close()
    return out.getvalue()


def _unfilter(scanlines: np.ndarray, bpp: int) -> np.ndarray:
    """PNG's reconstruction (spec 9.2), pixel by pixel as the specification writes it."""
    rows = []
    prior = [0] * (scanlines.shape[1] - 1)
    for line in scanlines.tolist():
        kind, filtered, row = line[0], line[1:], []
        for i, x in enumerate(filtered):
            a = row[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            if kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                pred = (0, a, b, (a + b) // 2, None)[kind]
            row.append((x + pred) % 256)
        rows.append(row)
        prior = row
    return np.asarray(rows, np.uint8)


def test_filters_invert_by_the_specifications_reconstruction_and_all_five_are_used():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(0, 3, (12, 30), dtype=np.uint8), axis=1, dtype=np.uint8)
    for rows, bpp in ((rng.integers(0, 256, (6, 24), dtype=np.uint8), 3), (smooth, 1)):
        above = rng.integers(0, 256, rows.shape[1], dtype=np.uint8)
        filtered = filter_rows(rows, above, bpp)
        first = _unfilter(np.vstack([np.r_[0, above].astype(np.uint8), filtered]), bpp)
        np.testing.assert_array_equal(first[1:], rows)
    kinds = set(filter_rows(data.astronaut().reshape(512, -1), np.zeros(1536, np.uint8), 3)[:, 0])
    assert kinds == {0, 1, 2, 3, 4} or len(kinds) >= 4


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_written_in_bands_decodes_to_its_samples_with_the_same_bytes(
    tmp_path, channels, bit_depth
):
    samples = _photo(channels, bit_depth)
    whole = _encode(samples, bit_depth, [samples.shape[0]])
    assert _encode(samples, bit_depth, [1, 7, 50]) == whole  # bytes do not depend on banding
    path = tmp_path / "x.png"
    path.write_bytes(whole)
    back = to_array(read_image(path), bit_depth=bit_depth)
    np.testing.assert_array_equal(back, samples)
    if bit_depth == 8:  # and Pillow's own decoder agrees
        with Image.open(path) as im:
            pil = np.asarray(im)
        np.testing.assert_array_equal(pil.reshape(samples.shape), samples)
    # every chunk's CRC and the zlib stream are valid
    body, chunks = whole[8:], []
    while body:
        n = int.from_bytes(body[:4], "big")
        kind, payload, crc = body[4:8], body[8 : 8 + n], body[8 + n : 12 + n]
        assert int.from_bytes(crc, "big") == zlib.crc32(kind + payload)
        chunks.append(kind)
        body = body[12 + n :]
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks


def test_png_writer_refuses_wrong_rows():
    out = io.BytesIO()
    png = PngWriter(out, 4, 3, 3, 8)
    with pytest.raises(ValueError, match=r"expected uint8 \[n, 4, 3\]"):
        png.write(np.zeros((1, 4, 3), np.uint16))
    png.write(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="4 rows for an image of 3"):
        png.write(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2 of 3 rows"):
        png.close()


def test_write_image_rows_matches_write_image_and_leaves_nothing_when_interrupted(tmp_path):
    rgba = data.astronaut()[:90, :70]
    image = from_array(np.dstack([rgba, rgba[..., :1]]))
    image.icc_profile = None
    write_image(image, tmp_path / "whole.png")
    bands = (to_array(image)[y : y + 16].astype(np.float32) / 255 for y in range(0, 90, 16))
    write_image_rows(tmp_path / "rows.png", bands, width=70, height=90)
    assert (tmp_path / "rows.png").read_bytes() == (tmp_path / "whole.png").read_bytes()

    with pytest.raises(ImageError, match="exists; pass --overwrite"):
        write_image_rows(tmp_path / "rows.png", iter([]), width=70, height=90)
    with pytest.raises(ImageError, match="band by band are PNG files"):
        write_image_rows(tmp_path / "rows.jpg", iter([]), width=70, height=90)

    def failing():
        yield np.zeros((10, 70, 3), np.float32)
        raise RuntimeError("the model failed")

    with pytest.raises(RuntimeError, match="the model failed"):
        write_image_rows(tmp_path / "cut.png", failing(), width=70, height=90)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.png", "whole.png"]


@pytest.mark.parametrize("out_hw", [(1050, 700), (123, 77), (301, 450), (300, 200)])
def test_lanczos_in_bands_equals_the_whole_resize(out_hw):
    img = data.astronaut().astype(np.float32)[:300, :200] / 255
    whole = lanczos_resize(img, out_hw)
    for bands in ([37], [1], [300], [7, 50]):
        resizer, parts, y, i = LanczosRows(img.shape[:2], out_hw), [], 0, 0
        while y < img.shape[0]:
            n = bands[i % len(bands)]
            parts += resizer.feed(img[y : y + n])
            y, i = y + n, i + 1
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=2e-6)
    first, stop = out_hw[0] // 3, out_hw[0] // 2  # from source rows 40..200, which they need
    rows = lanczos_rows(img[40:200], 40, img.shape[:2], (first, stop), out_hw)
    np.testing.assert_allclose(rows, whole[first:stop], atol=2e-6)


def test_tiled_bands_hold_one_row_of_tiles():
    model = rrdb(4)
    pixels = data.chelsea()[:40, :50].astype(np.float32) / 255
    run = TiledRun(pixels, model, scale=4, model_channels=3, tile=16, tile_pad=6)
    heights = [band.shape[0] for band in run.bands()]
    assert sum(heights) == 160 and len(heights) == run.grid[0] == 3
    assert max(heights) <= (16 + 6 // 2) * 4  # a row of tiles and half a cross-fade more


def test_streamed_upscale_writes_what_the_in_memory_result_holds(tmp_path):
    """``glean-sr upscale`` of an any-size model goes band by band into the PNG; the file holds
    exactly the Upscaler's in-memory result (RGB, grey, RGBA with outscale, 16 bits)."""
    model = rrdb(4)
    chelsea = data.chelsea()[:29, :37]
    inputs = {
        "rgb.png": chelsea,
        "grey.png": chelsea[..., 1],
        "rgba.png": np.dstack([chelsea, 255 - chelsea[..., :1]]),
    }
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, pixels in inputs.items():
        Image.fromarray(pixels).save(photos / name)
    write_image(from_array(chelsea.astype(np.uint16) * 257), photos / "deep.png")
    for outscale in (None, 2.5):
        up = Upscaler(model, device="cpu", tile=16, tile_pad=6, outscale=outscale)
        out = tmp_path / f"out{outscale}"
        jobs, errors = collect_inputs([str(photos)], recursive=False)
        plan_outputs(jobs, out, "_x", "png")
        upscale_files(up, jobs, out, Reporter(len(jobs), errors, progress=False))
        assert len(jobs) == 4
        for job in jobs:
            expected = up(read_image(job.path)).data
            assert job.output.read_bytes() == encode_bytes(expected, tmp_path)


def encode_bytes(image, folder: Path) -> bytes:
    path = folder / "expected.png"
    write_image(image, path, overwrite=True)
    return path.read_bytes()


def test_upscale_never_holds_the_enlargement_whole(tmp_path):
    """Python-side peak memory (NumPy's arrays; tracemalloc) of ``upscale_files`` on a photo
    whose float32 enlargement is 56 MiB: a row of tiles, not the output. The network is
    replaced by a nearest-neighbour enlargement: what is measured is what the pipeline around it
    holds (reading, tiles, blending, writing)."""
    photo = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()).resize((640, 480)).save(photo)
    up = Upscaler(rrdb(4), device="cpu", tile=32, tile_pad=8)
    up.forward = lambda lq: F.interpolate(lq, scale_factor=4, mode="nearest")
    jobs, errors = collect_inputs([str(photo)], recursive=False)
    plan_outputs(jobs, tmp_path / "out", "_x4", "png")
    tracemalloc.start()
    try:
        upscale_files(up, jobs, tmp_path / "out", Reporter(1, errors, progress=False))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with Image.open(jobs[0].output) as result:
        assert result.size == (2560, 1920)
        expected = np.asarray(Image.open(photo)).repeat(4, axis=0).repeat(4, axis=1)
        np.testing.assert_array_equal(np.asarray(result), expected)
    output_bytes = 2560 * 1920 * 3 * 4
    assert peak < output_bytes / 3, f"peak {peak / 2**20:.1f} MiB"


def test_a_sub_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    Image.fromarray(data.chelsea()[:20, :20]).save(photos / "cat.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the sub-folder goes")
    jobs, errors = collect_inputs([str(tmp_path / "photos")], recursive=True)
    plan_outputs(jobs, out, "_x4", "png")
    report = Reporter(len(jobs), errors, progress=False)
    upscale_files(Upscaler(rrdb(4), device="cpu", tile=16), jobs, out, report)
    err = capsys.readouterr().err
    assert report.failed == 1 and "cannot create the output folder" in err
    assert "the model failed" not in err and len(err.strip().splitlines()) == 1
