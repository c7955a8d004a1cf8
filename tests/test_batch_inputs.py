"""Every input a user names is accounted for: the output folder may be the input folder, links
that cannot be followed get their line, and file names with control characters stay on one
line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glean_sr.cli import main
from glean_sr.inference.batch import collect_inputs, output_name_pattern, printable


def _glyph(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def test_output_names_are_recognised_by_their_suffix():
    upscale = output_name_pattern(None, "png")
    assert upscale.fullmatch("a_x4.png") and upscale.fullmatch("b c_x16.PNG")
    assert not upscale.fullmatch("a.png") and not upscale.fullmatch("a_x4.jpg")
    faces = output_name_pattern("_faces", "png", ("_compare",))
    assert faces.fullmatch("p_faces.png") and faces.fullmatch("p_faces_compare.png")
    assert not faces.fullmatch("p.png")
    assert printable("a\nb\tc.png") == "a\\nb\\tc.png" and printable("été.png") == "été.png"


def test_output_folder_equal_to_the_input_folder_restores_every_image(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(("a.png", "b.png")):
        _glyph(folder / name, i)
    assert main(["upscale", str(folder), "-o", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
    out = capsys.readouterr().out
    assert "2 restored" in out
    # a second run takes the two originals again (the results are recognised), and keeps them
    assert main(["upscale", str(folder), "-o", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 image(s)" in out and "2 skipped (output exists)" in out
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
    # an output folder below the input folder is still left out of the inputs
    jobs, _ = collect_inputs([str(folder)], True, folder / "restored")
    (folder / "restored").mkdir()
    _glyph(folder / "restored" / "c.png", 2)
    jobs, _ = collect_inputs([str(folder)], True, folder / "restored")
    assert sorted(j.path.name for j in jobs) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_links_that_cannot_be_followed_get_a_line_and_the_rest_is_restored(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _glyph(folder / "good.png", 0)
    (folder / "gone.png").symlink_to(tmp_path / "missing.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    rc = main(["upscale", str(folder), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 1  # inputs it could not read are failures, said once each
    assert (tmp_path / "out" / "good_x4.png").is_file()
    for name in ("gone.png", "loop.png"):
        lines = [line for line in captured.err.splitlines() if name in line]
        assert len(lines) == 1 and "cannot be followed" in lines[0], captured.err


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _glyph(folder / "two\nlines.png", 0)
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "two\\nlines.png" in out and "two\nlines" not in out
    assert (tmp_path / "out" / "two\nlines_x4.png").is_file()
