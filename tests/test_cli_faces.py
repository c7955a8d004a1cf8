"""``glean-sr faces`` run as a user runs it (a subprocess) on a folder of real and broken photos.

The face model is conftest's small deterministic GLEAN saved with save_pretrained (8 -> 32).
Outputs are read back with Pillow.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import SRC, run_cli
from glean_sr.data.imresize import imresize

pytest.importorskip("dlib", reason="needs the faces extra: pip install 'glean-sr[faces]'")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    astronaut = imresize(data.astronaut(), size=(200, 200))
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(astronaut).convert("L").save(folder / "gray.png")
    Image.fromarray(imresize(data.coffee(), size=(80, 120))).save(folder / "coffee.jpg")
    good = (folder / "astronaut.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "letter.jpg").write_text("Dear user, this is not a JPEG.\n")
    return folder


@pytest.fixture(scope="module")
def faces_run(photos, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("restored")
    result = run_cli(
        "faces", str(photos), "-m", str(tiny_model_dir), "-o", str(out), "--save-crops",
        "--device", "cpu",
    )  # fmt: skip
    return result, out


@pytest.mark.slow
def test_each_photo_gets_one_line_and_the_batch_goes_on(faces_run, photos):
    result, _ = faces_run
    assert result.returncode == 1, result.stderr  # two inputs failed
    lines = {line.split(": ", 1)[0]: line for line in result.stdout.splitlines() if ": " in line}
    assert "1 face found" in lines[str(photos / "astronaut.png")]
    assert "1 face found" in lines[str(photos / "gray.png")]
    coffee = lines[str(photos / "coffee.jpg")]
    assert "no face found" in coffee and "background x2" in coffee
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert any(str(photos / "truncated.png") in e and "truncated" in e for e in errors)
    assert any(str(photos / "letter.jpg") in e and "not an image file" in e for e in errors)
    assert "Traceback" not in result.stderr
    assert "3 photo(s) done (2 face(s) restored, 1 photo(s) without a face), 2 failed of 5" in (
        result.stdout
    )


@pytest.mark.slow
def test_outputs_are_written(faces_run):
    _, out = faces_run
    with Image.open(out / "astronaut_faces.png") as im:
        assert im.size == (400, 400) and im.mode == "RGB"
    with Image.open(out / "gray_faces.png") as im:
        assert im.size == (400, 400) and im.mode == "L"
    with Image.open(out / "coffee_faces.png") as im:  # no face: still enlarged and written
        assert im.size == (240, 160)
    with Image.open(out / "astronaut_faces_compare.png") as im:
        assert im.size == (2 * 400 + 4, 400)
        pair = np.asarray(im)
    with Image.open(out / "astronaut_faces.png") as im:
        np.testing.assert_array_equal(pair[:, 404:], np.asarray(im))
    crops = out / "astronaut_faces_crops"
    with Image.open(crops / "face01_input.png") as im:
        assert im.size == (8, 8)
    with Image.open(crops / "face01_restored.png") as im:
        assert im.size == (32, 32)
    assert not (out / "coffee_faces_crops").exists()


@pytest.mark.slow
def test_existing_outputs_are_kept(faces_run, photos, tiny_model_dir):
    _, out = faces_run
    before = (out / "astronaut_faces.png").read_bytes()
    again = run_cli(
        "faces", str(photos / "astronaut.png"), "-m", str(tiny_model_dir), "-o", str(out),
        "--device", "cpu",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout and "--overwrite" in again.stdout
    assert (out / "astronaut_faces.png").read_bytes() == before


@pytest.mark.slow
def test_without_the_faces_extra_the_error_names_it(photos, tiny_model_dir, tmp_path):
    fake = tmp_path / "fake" / "dlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named dlib')\n")
    result = run_cli(
        "faces", str(photos / "astronaut.png"), "-m", str(tiny_model_dir), "-o",
        str(tmp_path / "out"), env={"PYTHONPATH": f"{fake.parent}{os.pathsep}{SRC}"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "glean-sr faces: error: this feature needs the optional package 'dlib-bin': "
        "install it with  pip install 'glean-sr[faces]'"
    ]
