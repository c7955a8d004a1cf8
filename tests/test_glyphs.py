"""The glyph data set (glean_sr.data.glyphs, glean-sr build-glyphs), built from a few installed
DejaVu fonts copied into a temporary folder, next to an unreadable file posing as a font."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glean_sr.cli import main
from glean_sr.data.fonts import DEFAULT_FONT_ROOTS, base_family, font_files, name_words
from glean_sr.data.glyphs import (
    CHARS,
    MAX_CASE_HEIGHT,
    MIN_CASE_DIFFERENCE,
    SPLITS,
    GlyphSetError,
    build_glyph_set,
    downsample,
    load_split,
    render_glyphs,
    split_families,
)
from glean_sr.errors import GleanError

pytest.importorskip("fontTools", reason="needs the 'glyphs' extra (pip install glean-sr[glyphs])")

#: three families: "DejaVu Sans" (two faces), "DejaVu Serif", "DejaVu Sans Mono"
FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"]
SIZE = 32


def installed_fonts() -> dict:
    found = {path.name: path for _, path in font_files(DEFAULT_FONT_ROOTS)}
    missing = [name for name in FONTS if name not in found]
    if missing:
        pytest.skip(
            f"fonts {missing} are not installed (bash scripts/setup.sh installs fonts-dejavu-core)"
        )
    return found


@pytest.fixture(scope="module")
def fonts_dir(tmp_path_factory):
    installed = installed_fonts()
    folder = tmp_path_factory.mktemp("fonts")
    for name in FONTS:
        shutil.copy(installed[name], folder / name)
    (folder / "broken").mkdir()
    rng = np.random.default_rng(0)
    (folder / "broken" / "x.ttf").write_bytes(rng.integers(0, 256, 5000, np.uint8).tobytes())
    return folder


def build(out, fonts_dir, **kwargs):
    options = dict(size=SIZE, font_roots=[fonts_dir], val_families=1, test_families=1, seed=0)
    return build_glyph_set(out, **(options | kwargs))


@pytest.fixture(scope="module")
def built(tmp_path_factory, fonts_dir):
    out = tmp_path_factory.mktemp("glyphs")
    report = build(out, fonts_dir)
    splits = {name: load_split(out / f"{name}.npz") for name in SPLITS}
    return out, report, splits


def glyphs_of(splits, font):
    """The [62, S, S] glyphs of one font (its file name), in CHARS order."""
    for data in splits.values():
        rows = np.flatnonzero(np.char.endswith(data["fonts"], font))
        if rows.size:
            assert (data["labels"][rows] == np.arange(len(CHARS))).all()
            return data["images"][rows]
    raise AssertionError(f"{font} is in no split")


def ink_rows(glyph, threshold=128):
    rows = np.flatnonzero((glyph < threshold).any(axis=1))
    return rows[0], rows[-1]


def test_splits_hold_62_labelled_glyphs_per_font(built):
    _, report, splits = built
    assert report.fonts_used == len(FONTS)
    for name, data in splits.items():
        n = len(data["labels"])
        assert data["images"].dtype == np.uint8 and data["images"].shape == (n, SIZE, SIZE)
        assert data["labels"].dtype == np.int16
        assert data["fonts"].shape == data["families"].shape == (n,)
        assert data["fonts"].dtype.kind == data["families"].dtype.kind == "U"
        assert n == report.glyphs[name] and n % len(CHARS) == 0
        for font in np.unique(data["fonts"]):
            labels = data["labels"][data["fonts"] == font]
            assert (labels == np.arange(len(CHARS))).all()
    assert sum(report.glyphs.values()) == len(FONTS) * len(CHARS)


def test_ink_is_dark_on_white_paper_and_nothing_is_clipped(built):
    _, _, splits = built
    images = np.concatenate([data["images"] for data in splits.values()])
    assert (images.reshape(len(images), -1).min(axis=1) < 64).all()  # every glyph has dark ink
    assert (images.reshape(len(images), -1).mean(axis=1) > 128).all()  # mostly paper
    frame = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert (frame == 255).all()  # the glyphs fit the box with a margin


def test_one_scale_and_one_baseline_per_font(built):
    _, _, splits = built
    glyphs = dict(zip(CHARS, glyphs_of(splits, "DejaVuSans.ttf"), strict=True))

    def height(c):
        top, bottom = ink_rows(glyphs[c])
        return bottom - top + 1

    assert height("o") < 0.85 * height("O")
    assert height("x") < 0.85 * height("X")
    assert height("l") > height("I")  # the ascender rises above the capitals
    bottoms = {c: ink_rows(glyphs[c])[1] for c in "HExz1"}
    assert len(set(bottoms.values())) == 1, bottoms  # flat feet stand on one baseline
    assert ink_rows(glyphs["g"])[1] > bottoms["x"] + 2  # the descender goes below it


def test_glyphs_are_centred_horizontally(built):
    _, _, splits = built
    for glyph in glyphs_of(splits, "DejaVuSerif.ttf"):
        ink = (255 - glyph.astype(float)).sum(axis=0)
        cols = np.flatnonzero(ink)
        assert abs((cols[0] + cols[-1]) / 2 - (SIZE - 1) / 2) <= 1


def test_splits_are_disjoint_by_family(built):
    out, report, splits = built
    families = {name: set(np.unique(data["families"])) for name, data in splits.items()}
    assert families["train"] | families["val"] | families["test"] == {
        "DejaVu Sans",
        "DejaVu Serif",
        "DejaVu Sans Mono",
    }
    assert len(families["val"]) == len(families["test"]) == 1
    assert not (families["train"] & families["val"] or families["train"] & families["test"])
    assert not families["val"] & families["test"]
    assert {name: sorted(f) for name, f in families.items()} == report.families
    info = json.loads((out / "glyphs.json").read_text())
    split_of_font = {f["font"]: f["split"] for f in info["fonts"]}
    assert split_of_font["DejaVuSans.ttf"] == split_of_font["DejaVuSans-Bold.ttf"]
    assert info["chars"] == CHARS and info["size"] == SIZE and info["fonts_used"] == len(FONTS)


def test_a_broken_font_file_is_skipped_and_counted(built):
    out, report, _ = built
    assert report.skipped == {"unreadable": 1}
    info = json.loads((out / "glyphs.json").read_text())
    assert info["skipped"] == [
        {"font": "broken/x.ttf", "root": str(info["font_roots"][0]), "reason": "unreadable"}
    ]
    assert "4 fonts used, 1 skipped (1 unreadable)" in report.summary()


def test_two_builds_give_identical_arrays_and_overwrite_is_explicit(built, fonts_dir, tmp_path):
    out, _, splits = built
    with pytest.raises(GlyphSetError, match="--overwrite"):
        build(out, fonts_dir)
    build(tmp_path, fonts_dir)
    build(tmp_path, fonts_dir, overwrite=True)
    for name, data in splits.items():
        again = load_split(tmp_path / f"{name}.npz")
        assert again.keys() == data.keys()
        for key in data:
            np.testing.assert_array_equal(again[key], data[key])


def test_the_split_does_not_depend_on_the_order_of_the_families():
    families = [f"family {i}" for i in range(30)]
    split = split_families(families, val_families=3, test_families=5, seed=7)
    assert split == split_families(families[::-1], val_families=3, test_families=5, seed=7)
    assert list(split.values()).count("val") == 3 and list(split.values()).count("test") == 5
    assert split != split_families(families, val_families=3, test_families=5, seed=8)
    with pytest.raises(GlyphSetError, match="leave one for training"):
        split_families(families[:8], val_families=3, test_families=5, seed=0)


def test_each_face_of_a_collection_is_a_font(fonts_dir, tmp_path):
    from fontTools.ttLib import TTCollection, TTFont

    members = ["DejaVuSansMono.ttf", "DejaVuSerif.ttf"]
    collection = TTCollection()
    collection.fonts = [TTFont(fonts_dir / name) for name in members]
    (tmp_path / "fonts").mkdir()
    collection.save(tmp_path / "fonts" / "pair.ttc")
    for index, name in enumerate(members):
        alone = render_glyphs(fonts_dir / name, size=SIZE).images
        inside = render_glyphs(tmp_path / "fonts" / "pair.ttc", index=index, size=SIZE).images
        np.testing.assert_array_equal(inside, alone)
    report = build(tmp_path / "out", tmp_path / "fonts", val_families=0)
    assert report.fonts_used == 2
    info = json.loads((tmp_path / "out" / "glyphs.json").read_text())
    assert sorted(f["font"] for f in info["fonts"]) == ["pair.ttc#0", "pair.ttc#1"]


def test_an_ordinary_font_measures_as_one():
    installed = installed_fonts()
    rendered = render_glyphs(installed["DejaVuSans.ttf"], size=16)
    assert rendered.images.shape == (len(CHARS), 16, 16)
    assert rendered.distinct == len(CHARS)
    assert 0.45 < rendered.case_height < MAX_CASE_HEIGHT
    assert rendered.case_difference > MIN_CASE_DIFFERENCE


def test_downsample_is_the_rounded_mean_of_each_block():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 8, 12), dtype=np.uint8)
    small = downsample(images, 4)
    assert small.shape == (3, 2, 3) and small.dtype == np.uint8
    mean = images.reshape(3, 2, 4, 3, 4).astype(float).mean(axis=(2, 4))
    np.testing.assert_array_equal(small, np.floor(mean + 0.5).astype(np.uint8))
    with pytest.raises(ValueError, match="multiple of 4"):
        downsample(images[:, :6], 4)


def test_font_names_tell_symbol_fonts_and_families():
    assert {"awesome", "regular"} <= name_words("FontAwesome-Regular")
    assert "math" in name_words("DejaVuMathTeXGyre")
    assert "icon" not in name_words("Junicode Two Beta SemiCondensed")
    assert base_family("Latin Modern Mono Light Cond") == "Latin Modern Mono"
    assert base_family("Clear Sans Thin") == "Clear Sans"
    assert base_family("Bold") == "Bold"  # the first word stays


def test_cli_prints_one_summary_line(fonts_dir, tmp_path, capsys):
    splits = ["--val-families", "1", "--test-families", "1"]
    code = main(["build-glyphs", str(tmp_path), "--fonts-dir", str(fonts_dir), *splits, "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    assert out.startswith(f"wrote {tmp_path}: 4 fonts used, 1 skipped (1 unreadable)")
    assert "families train 1, val 1, test 1" in out
    assert (tmp_path / "train.npz").is_file()


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("no fonts", [], "scripts/setup.sh"),
        ("output exists", [], "--overwrite"),
        ("too many families", ["--val-families", "5"], "leave one for training"),
    ],
)
def test_cli_errors_are_one_line(fonts_dir, tmp_path, capsys, case, extra, message):
    fonts = fonts_dir
    if case == "no fonts":
        fonts = tmp_path / "empty"
        fonts.mkdir()
    if case == "output exists":
        (tmp_path / "glyphs.json").write_text("{}")
    code = main(["build-glyphs", str(tmp_path), "--fonts-dir", str(fonts), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("glean-sr build-glyphs: error: ")
    assert message in err


def test_png_export_names_carry_the_character(built, capsys):
    from PIL import Image

    from glean_sr.data.glyphs import CHARS, export_png, glyph_file_name
    from glean_sr.evaluation.scorers import glyph_label

    out, _, splits = built
    counts = export_png(out)
    for split in SPLITS:
        files = sorted((out / split).iterdir())
        assert counts[split] == len(files) == len(splits[split]["images"])
        for i in (0, len(files) - 1):
            label = CHARS[int(splits[split]["labels"][i])]
            assert files[i].name == glyph_file_name(i, label)
            assert glyph_label(files[i].name) == label
            assert np.array_equal(np.asarray(Image.open(files[i])), splits[split]["images"][i])
    with pytest.raises(GleanError, match="--overwrite"):
        export_png(out)
    assert glyph_label("000001_u0061.png") == "a" and glyph_label("photo.png") is None
