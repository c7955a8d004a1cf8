"""``glean-sr upscale`` run as a user runs it (a subprocess), on real photos in every odd format.

The model is conftest's small deterministic GLEAN saved with save_pretrained (8 -> 32, x4). The
inputs are scikit-image's astronaut and chelsea at the model's input size, plus the files users
really have: 16-bit PNG, grayscale, palette, RGBA, EXIF-rotated JPEG, ICC-tagged, WebP, TIFF, BMP,
and broken ones. Outputs are checked with Pillow and with tests/imagefiles.py, not glean_sr.io.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage import data

from conftest import run_cli
from glean_sr.data.imresize import imresize
from imagefiles import bad_files, png_decode, png_encode

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
IN, OUT = 8, 32


def small(img: np.ndarray, size: int = IN) -> np.ndarray:
    """A square crop of ``img`` shrunk (MATLAB bicubic) to ``size``."""
    side = min(img.shape[:2])
    return imresize(img[:side, :side], size=(size, size))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of good images and broken files; returns (folder, expectations)."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut, chelsea = small(data.astronaut()), small(data.chelsea()[:, 60:360])
    rgb16 = (small(data.coffee(), 16).astype(np.uint16) * 257) ^ 0x5A  # low bytes matter
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(chelsea).save(folder / "chelsea.png")
    (folder / "deep16.png").write_bytes(png_encode(rgb16))
    Image.fromarray(chelsea).convert("L").save(folder / "gray.png")
    Image.fromarray(astronaut).convert("P").save(folder / "palette.gif")
    ramp = np.linspace(0, 255, IN).astype(np.uint8)[None].repeat(IN, 0)
    Image.fromarray(np.dstack([chelsea, ramp])).save(folder / "cutout.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 16 wide x 8 high, shown rotated: 8 wide x 16 high
    Image.fromarray(small(data.astronaut(), 16)[:8]).save(
        folder / "rotated.jpg", exif=exif, quality=95
    )
    Image.fromarray(astronaut).save(folder / "tagged.png", icc_profile=SRGB)
    Image.fromarray(chelsea).save(folder / "photo.webp", lossless=True)
    Image.fromarray(astronaut).save(folder / "scan.tif")
    Image.fromarray(chelsea).save(folder / "old.bmp")
    expected_bad = bad_files(folder, png_encode(astronaut))
    (folder / "notes.txt").write_text("not an image, and skipped when the folder is searched")
    return folder, expected_bad, {"cutout_alpha": ramp}


@pytest.fixture(scope="module")
def batch_run(inputs, tiny_model_dir, tmp_path_factory):
    folder, _, _ = inputs
    out = tmp_path_factory.mktemp("restored")
    text_file = tmp_path_factory.mktemp("misc") / "readme.txt"
    text_file.write_text("a text file named on the command line")
    result = run_cli(
        "upscale", str(folder), str(text_file), "-m", str(tiny_model_dir), "-o", str(out),
        "--resize", "bicubic", "--fit", "pad", "--batch-size", "3",
    )  # fmt: skip
    return result, out, text_file


GOOD = {  # output name -> (size (w, h), Pillow mode)
    "astronaut_x4.png": ((32, 32), "RGB"),
    "chelsea_x4.png": ((32, 32), "RGB"),
    "deep16_x4.png": ((32, 32), "RGB"),  # 16 bits: checked with png_decode below
    "gray_x4.png": ((32, 32), "L"),
    "palette_x4.png": ((32, 32), "RGB"),
    "cutout_x4.png": ((32, 32), "RGBA"),
    "rotated_x4.png": ((16, 32), "RGB"),  # upright 8x16, padded, restored, padding removed
    "tagged_x4.png": ((32, 32), "RGB"),
    "photo_x4.png": ((32, 32), "RGB"),
    "scan_x4.png": ((32, 32), "RGB"),
    "old_x4.png": ((32, 32), "RGB"),
}


@pytest.mark.slow
def test_good_images_are_restored_with_their_sizes_and_modes(batch_run):
    result, out, _ = batch_run
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)
    for name, (size, mode) in GOOD.items():
        with Image.open(out / name) as im:
            assert (im.size, im.mode) == (size, mode), name
    lines = [line for line in result.stdout.splitlines() if f" -> {out}" in line]
    assert len(lines) == len(GOOD)  # one per image
    assert "done: 11 restored, 7 failed of 18" in result.stdout


@pytest.mark.slow
def test_16bit_alpha_icc_and_exif_are_carried(batch_run, inputs):
    result, out, _ = batch_run
    samples, info = png_decode((out / "deep16_x4.png").read_bytes())
    assert info["depth"] == 16 and samples.shape == (32, 32, 3)
    assert np.any(samples % 257 != 0)  # really 16-bit values, not 8-bit ones stretched

    alpha = np.asarray(Image.open(out / "cutout_x4.png"))[..., 3]
    ramp = inputs[2]["cutout_alpha"] / 255
    want = np.floor(np.clip(imresize(ramp, size=(OUT, OUT)), 0, 1) * 255 + 0.5)
    np.testing.assert_array_equal(alpha, want)

    assert Image.open(out / "tagged_x4.png").info.get("icc_profile") == SRGB
    assert "icc_profile" not in Image.open(out / "astronaut_x4.png").info
    rotated = next(line for line in result.stdout.splitlines() if "rotated.jpg" in line)
    assert "EXIF orientation 6 applied" in rotated
    assert "padding removed: 32x32 -> 16x32" in rotated


@pytest.mark.slow
def test_every_bad_file_gets_one_line_and_the_exit_status_says_so(batch_run, inputs):
    result, _, text_file = batch_run
    _, expected_bad, _ = inputs
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(expected_bad) + 1, result.stderr
    for name, what in {**expected_bad, text_file.name: "not an image file"}.items():
        lines = [line for line in errors if f"/{name}: " in line]
        assert len(lines) == 1 and what in lines[0], (name, lines)
        assert lines[0].startswith("error: ")
    assert "notes.txt" not in result.stdout + result.stderr  # folders: image suffixes only


@pytest.fixture()
def two_images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(small(data.astronaut())).save(folder / "a.png")
    Image.fromarray(small(data.chelsea())).save(folder / "b.jpg", quality=95)
    return folder


@pytest.mark.slow
def test_outputs_are_kept_unless_overwrite_and_inputs_never_touched(two_images, tiny_model_dir):
    out = two_images.parent / "out"
    model = ["-m", str(tiny_model_dir)]
    first = run_cli("upscale", str(two_images), *model, "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.png", "b_x4.png"]
    (out / "a_x4.png").write_bytes(b"keep me")

    again = run_cli("upscale", str(two_images), *model, "-o", str(out))
    assert again.returncode == 0 and (out / "a_x4.png").read_bytes() == b"keep me"
    assert again.stdout.count("skipped") == 3  # two lines and the summary
    assert "2 skipped (output exists)" in again.stdout

    forced = run_cli("upscale", str(two_images / "a.png"), *model, "-o", str(out), "--overwrite")
    assert forced.returncode == 0 and Image.open(out / "a_x4.png").size == (32, 32)

    source = (two_images / "a.png").read_bytes()
    clash = run_cli(
        "upscale", str(two_images / "a.png"), *model, "-o", str(two_images), "--suffix", "",
        "--overwrite",
    )  # fmt: skip
    assert clash.returncode == 1
    assert "would overwrite the input" in clash.stderr and "Traceback" not in clash.stderr
    assert (two_images / "a.png").read_bytes() == source


@pytest.mark.slow
def test_formats_globs_recursion_and_the_size_contract(two_images, tiny_model_dir):
    sub = two_images / "more"
    sub.mkdir()
    Image.fromarray(small(data.coffee(), 24)).save(sub / "c.png")  # 24x24: needs --resize
    out = two_images.parent / "out"
    model = ["-m", str(tiny_model_dir)]

    refused = run_cli("upscale", str(sub / "c.png"), *model, "-o", str(out))
    assert refused.returncode == 1 and not any(out.iterdir())
    assert "24x24, but the model takes exactly 8x8; pass --resize bicubic" in refused.stderr

    run = run_cli(
        "upscale", str(two_images), *model, "-o", str(out), "--recursive",
        "--resize", "area", "--ext", "webp", "--suffix", "_big",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "more" / "c_big.webp").exists() and (out / "a_big.webp").exists()
    assert Image.open(out / "more" / "c_big.webp").size == (32, 32)
    assert "resized 24x24 -> 8x8 (area average)" in run.stdout

    globbed = run_cli("upscale", str(two_images / "*.jpg"), *model, "-o", str(out), "--ext", "tif")
    assert globbed.returncode == 0, globbed.stderr
    assert Image.open(out / "b_x4.tif").size == (32, 32)


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(two_images, tmp_path):
    bad_model = run_cli("upscale", str(two_images), "-m", str(tmp_path / "nope"), "-o", "x")
    assert bad_model.returncode == 1 and "Traceback" not in bad_model.stderr
    assert bad_model.stderr.strip().count("\n") == 0
    assert "neither an existing file or directory, a preset name" in bad_model.stderr


def test_input_collection_rules(tmp_path):
    from glean_sr.inference.batch import collect_inputs

    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "restored").mkdir()
    for name in ("a.png", "b.JPG", ".hidden.png", "sub/c.webp", "restored/a_x4.png"):
        (root / name).write_bytes(b"x")
    (root / "notes.txt").write_text("x")
    out = root / "restored"

    def names(jobs):
        return [j.path.relative_to(root).as_posix() for j in jobs]

    flat, errors = collect_inputs([str(root)], recursive=False, out_dir=out)
    assert names(flat) == ["a.png", "b.JPG"] and errors == []
    deep, _ = collect_inputs([str(root)], recursive=True, out_dir=out)
    assert names(deep) == ["a.png", "b.JPG", "sub/c.webp"]  # not the earlier outputs
    assert [j.subdir.as_posix() for j in deep] == [".", ".", "sub"]
    explicit, errors = collect_inputs(
        [str(root / "notes.txt"), str(root / "a.png"), str(root / "*.png"), "missing.png"],
        recursive=False,
    )
    assert names(explicit) == ["notes.txt", "a.png"]  # named files are tried; each file once
    assert errors == ["missing.png: no such file or folder"]
    _, errors = collect_inputs([str(root / "sub")], recursive=False)
    assert errors == []
    _, errors = collect_inputs([str(root / "restored" / "*.gif")], recursive=False)
    assert errors == [f"{root}/restored/*.gif: the pattern matches no image files"]


@pytest.mark.slow
def test_plain_runs_the_definition_with_the_same_result(two_images, tiny_model_dir, tmp_path):
    """``--plain`` switches the CPU fast path off; the restored file is the same."""
    model = ["-m", str(tiny_model_dir), "--device", "cpu"]
    fast = run_cli("upscale", str(two_images / "a.png"), *model, "-o", str(tmp_path / "f"))
    plain = run_cli(
        "upscale", str(two_images / "a.png"), *model, "--plain", "-o", str(tmp_path / "p")
    )
    assert fast.returncode == 0 and plain.returncode == 0, plain.stderr
    a = np.asarray(Image.open(tmp_path / "f" / "a_x4.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "p" / "a_x4.png"), dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # 8-bit rounding of equal floats
