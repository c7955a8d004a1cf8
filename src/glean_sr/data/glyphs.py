"""A data set of character glyphs rendered from the installed fonts, for restoring tiny text.

Every usable font gives the 62 glyphs of :data:`CHARS`, each a ``[S, S]`` uint8 image of dark ink
on white paper (0 = ink, 255 = paper). A font is usable when its character map covers all 62
characters, its name is not that of a symbol, icon, math or emoji font, every glyph leaves ink,
at least :data:`MIN_DISTINCT` of its 62 renders differ (a font that draws many letters with one
placeholder shape fails this), and its lowercase letters are not capitals: neither as tall as the
capitals (all-caps fonts, keycaps, white-on-black boxes, dingbats) nor shaped like them (small
caps). Identical font files, faces of the same family and style (one design shipped twice, e.g.
as a static and a variable font) and identical renders count once.

One pixel size per font, so the proportions of the font survive (``o`` stays smaller than ``O``):
the size makes the union of the 62 ink boxes (the highest ascender to the lowest descender, and
the widest glyph) fill :data:`FILL` of the box. All glyphs of a font stand on one baseline, each
centred horizontally. They are drawn :data:`SUPERSAMPLE` times larger and reduced by the exact
mean of each ``SUPERSAMPLE x SUPERSAMPLE`` block, so thin strokes become grey, not gaps.

Fonts are split by family, so the Regular, Bold and Italic of a family land in one split: the
typographic family name without trailing weight, width and slope words
(:func:`glean_sr.data.fonts.base_family`: "Clear Sans Light" and "Roboto Condensed" go with
"Clear Sans" and "Roboto"). A seeded choice of families from the sorted list is kept for
validation and test, the rest is for training. Nothing depends on the order in which the file
system lists files.

Output ``OUT/``: ``train.npz``, ``val.npz`` and ``test.npz``, each with ``images`` uint8
``[N, S, S]``, ``labels`` int16 ``[N]`` (index into :data:`CHARS`), ``fonts`` (the font file's
path relative to its root, ``#index`` appended for a face of a collection) and ``families``;
``glyphs.json`` lists the splits' families and counts and every font used or skipped. With
``png=True`` each split is also written as a folder of PNG files, ``OUT/<split>/NNNNNN_uXXXX.png``
(``XXXX`` the character's code point in hex, so ``000007_u0041.png`` is an ``A``), the form that
``glean-sr train`` and ``glean-sr eval`` read (``eval --metrics chars`` takes the label from the
name).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, GleanError
from .fonts import DEFAULT_FONT_ROOTS, FaceInfo, FontFace, font_files, read_faces

#: the classes, in label order: A-Z, a-z, 0-9
CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits
#: the least number of distinct renders among the 62 glyphs of a usable font
MIN_DISTINCT = 55
#: lowercase letters of x-height, and the highest median ratio of their height to the capitals'
#: (ordinary fonts: 0.45-0.86; all-caps fonts, keycaps and dingbats: 0.98 and more)
X_HEIGHT_LETTERS = "acemnorsuvwxz"
MAX_CASE_HEIGHT = 0.92
#: letters whose two cases differ in shape, and the least median shape difference of a pair: the
#: L1 distance of the two inks scaled to one box over their total ink, 0 = same, 1 = disjoint
#: (small caps: 0.04-0.16; ordinary fonts: 0.2 and more)
CASE_PAIRS = "abdeghnqrt"
MIN_CASE_DIFFERENCE = 0.16
#: the part of the box that a font's tallest span or widest glyph fills
FILL = 0.9
SUPERSAMPLE = 4
SPLITS = ("train", "val", "test")
INFO_NAME = "glyphs.json"

#: a glyph cropped to its ink, and the row of the ink's top relative to the baseline
Ink = tuple[np.ndarray, int]


class GlyphSetError(GleanError):
    """No usable fonts, an existing output, or too few font families for the splits."""


@dataclass(frozen=True)
class RenderedFont:
    """``images``: ``[62, S, S]`` uint8, 0 = ink; ``pixel_size``: the font size in pixels of the
    supersampled box; ``distinct``: the number of different supersampled renders;
    ``case_height`` and ``case_difference``: how tall and how differently shaped the lowercase
    letters are next to the capitals (see :data:`MAX_CASE_HEIGHT`, :data:`MIN_CASE_DIFFERENCE`;
    NaN when a glyph is empty)."""

    images: np.ndarray
    pixel_size: int
    distinct: int
    case_height: float
    case_difference: float


@dataclass(frozen=True)
class GlyphFont:
    """A font in the data set."""

    info: FaceInfo
    sha256: str  # of the font file
    rendered: RenderedFont


@dataclass
class GlyphSetReport:
    """What :func:`build_glyph_set` wrote."""

    out_dir: Path
    fonts_used: int
    skipped: dict[str, int]  # reason -> number of fonts
    families: dict[str, list[str]]  # split -> its families
    glyphs: dict[str, int]  # split -> number of glyphs

    def summary(self) -> str:
        """One line: fonts used and skipped, families and glyphs per split."""
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        skipped = sum(self.skipped.values())
        families = ", ".join(f"{s} {len(self.families[s])}" for s in SPLITS)
        glyphs = ", ".join(f"{s} {self.glyphs[s]}" for s in SPLITS)
        return (
            f"wrote {self.out_dir}: {self.fonts_used} fonts used, {skipped} skipped"
            f"{f' ({reasons})' if reasons else ''}; families {families}; glyphs {glyphs}"
        )


def _glyph_ink(font: Any, char: str) -> Ink | None:
    """``char`` drawn with the Pillow ``font``, cropped to its ink; None when it leaves none."""
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = font.getbbox(char, anchor="ls")  # the pen origin on the baseline is (0, 0)
    pad = 2
    canvas = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 255)
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), char, font=font, fill=0, anchor="ls")
    pixels = np.asarray(canvas)
    rows = np.flatnonzero((pixels < 255).any(axis=1))
    cols = np.flatnonzero((pixels < 255).any(axis=0))
    if rows.size == 0:
        return None
    h, w = pixels.shape
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == h - 1 or cols[-1] == w - 1:
        raise ValueError(f"the ink of {char!r} reaches beyond the box Pillow reports for it")
    crop = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return crop, int(rows[0]) - pad + y0


def _span(inks: Sequence[Ink | None]) -> tuple[int, int, int]:
    """The union of the ink boxes: its top (relative to the baseline), height and widest glyph."""
    drawn = [ink for ink in inks if ink is not None]
    if not drawn:
        return 0, 0, 0
    top = min(t for _, t in drawn)
    bottom = max(t + crop.shape[0] for crop, t in drawn)
    return top, bottom - top, max(crop.shape[1] for crop, _ in drawn)


def render_glyphs(path: str | os.PathLike, *, index: int = 0, size: int = 32) -> RenderedFont:
    """The glyphs of :data:`CHARS` in the font at ``path`` (face ``index`` of a collection).

    A first pass at a pixel size of the supersampled box measures the ink; the font is then drawn
    at the one size that makes its tallest span or widest glyph fill :data:`FILL` of the box (a
    pixel smaller until hinting lets it fit). Raises OSError or ValueError when Pillow cannot
    draw the font.
    """
    from PIL import ImageFont

    if size < 1:
        raise ValueError(f"size must be at least 1 pixel, got {size}")
    box = SUPERSAMPLE * size

    def inks_at(pixel_size: int) -> list[Ink | None]:
        font = ImageFont.truetype(
            os.fspath(path), pixel_size, index=index, layout_engine=ImageFont.Layout.BASIC
        )
        return [_glyph_ink(font, c) for c in CHARS]

    _, height, width = _span(inks_at(box))
    pixel_size = max(1, int(FILL * box * box / max(height, width))) if height else box
    inks = inks_at(pixel_size)
    top, height, width = _span(inks)
    while max(height, width) > box and pixel_size > 1:
        pixel_size -= 1
        inks = inks_at(pixel_size)
        top, height, width = _span(inks)
    if max(height, width) > box:
        raise ValueError(f"the glyphs do not fit a {box}-pixel box at any size")

    glyphs = np.full((len(CHARS), box, box), 255, dtype=np.uint8)  # [62, 4S, 4S]
    baseline = (box - height) // 2 - top  # the row of the baseline: the union centred vertically
    for glyph, ink in zip(glyphs, inks, strict=True):
        if ink is not None:
            crop, ink_top = ink
            y, x = baseline + ink_top, (box - crop.shape[1]) // 2
            glyph[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    distinct = len({glyph.tobytes() for glyph in glyphs})
    return RenderedFont(
        downsample(glyphs, SUPERSAMPLE), pixel_size, distinct, *_case_measures(inks)
    )


def _case_measures(inks: Sequence[Ink | None]) -> tuple[float, float]:
    """The median height ratio of the x-height letters to their capitals, and the median shape
    difference of the :data:`CASE_PAIRS` (NaN, NaN when a glyph is empty)."""
    from PIL import Image

    crops = {c: ink[0] for c, ink in zip(CHARS, inks, strict=True) if ink is not None}
    if len(crops) < len(CHARS):
        return float("nan"), float("nan")

    def ink(crop: np.ndarray) -> np.ndarray:  # scaled to one box, 1 = ink
        scaled = Image.fromarray(crop).resize((24, 24), Image.Resampling.BILINEAR)
        return 1 - np.asarray(scaled, dtype=np.float32) / 255

    heights = [crops[c].shape[0] / crops[c.upper()].shape[0] for c in X_HEIGHT_LETTERS]
    differences = []
    for c in CASE_PAIRS:
        lower, upper = ink(crops[c]), ink(crops[c.upper()])
        differences.append(float(np.abs(lower - upper).sum() / (lower.sum() + upper.sum())))
    return float(np.median(heights)), float(np.median(differences))


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor x factor`` block, rounded half up: ``[N, H, W]`` uint8 ->
    ``[N, H // factor, W // factor]`` uint8 (H and W must be multiples of ``factor``)."""
    n, h, w = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image side {h}x{w} is not a multiple of {factor}")
    blocks = images.reshape(n, h // factor, factor, w // factor, factor)  # [N, h, f, w, f]
    sums = blocks.sum(axis=(2, 4), dtype=np.uint32)
    area = factor * factor
    return ((sums + area // 2) // area).astype(np.uint8)


def collect_fonts(
    roots: Iterable[str | os.PathLike], *, size: int = 32, progress: bool = False
) -> tuple[list[GlyphFont], list[tuple[FontFace, str]]]:
    """The usable fonts under ``roots``, rendered at ``size``, and each skipped font (a face,
    or a whole file when it cannot be read) with the reason."""
    roots = list(roots)
    files = font_files(roots)
    if not files:
        shown = ", ".join(os.fspath(r) for r in roots)
        raise GlyphSetError(
            f"no font files (.ttf, .otf, .ttc, .otc) under {shown}: install the font packages "
            f"with  bash scripts/setup.sh  (or apt-get install fonts-dejavu-core ...)"
        )
    used: list[GlyphFont] = []
    skipped: list[tuple[FontFace, str]] = []
    seen_files: set[str] = set()
    seen_names: set[tuple[str, str]] = set()
    seen_renders: set[bytes] = set()
    if progress:
        from tqdm.auto import tqdm

        files = tqdm(files, desc="fonts", unit="file")
    for root, path in files:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha256 in seen_files:
            skipped.append((FontFace(root, path), "duplicate file"))
            continue
        seen_files.add(sha256)
        try:
            infos = read_faces(root, path, CHARS)
        except Exception:  # fontTools raises many kinds of error on malformed data
            skipped.append((FontFace(root, path), "unreadable"))
            continue
        for info in infos:
            verdict = _examine(info, size, seen_names, seen_renders)
            if isinstance(verdict, str):
                skipped.append((info.face, verdict))
            else:
                used.append(GlyphFont(info, sha256, verdict))
    return used, skipped


def _examine(
    info: FaceInfo, size: int, seen_names: set[tuple[str, str]], seen_renders: set[bytes]
) -> RenderedFont | str:
    """The face's glyphs, or why it is skipped; a used face's name and render join the seen."""
    name = (info.family.casefold(), info.style.casefold())
    if not info.is_text_font:
        return "not a text font"
    if not info.covers:
        return "missing characters"
    if name in seen_names:
        return "duplicate name"
    try:
        rendered = render_glyphs(info.face.path, index=info.face.index, size=size)
    except (OSError, ValueError):
        return "unreadable"
    if not (rendered.images < 255).any(axis=(1, 2)).all():
        return "empty glyph"
    if rendered.distinct < MIN_DISTINCT:
        return "few distinct glyphs"
    if rendered.case_height > MAX_CASE_HEIGHT or rendered.case_difference < MIN_CASE_DIFFERENCE:
        return "lowercase like capitals"
    digest = hashlib.sha256(rendered.images.tobytes()).digest()
    if digest in seen_renders:
        return "duplicate render"
    seen_names.add(name)
    seen_renders.add(digest)
    return rendered


def split_families(
    families: Iterable[str], *, val_families: int, test_families: int, seed: int
) -> dict[str, str]:
    """family -> ``"train"``, ``"val"`` or ``"test"``: a seeded permutation of the sorted
    families gives the first ``val_families`` to validation, the next ``test_families`` to test."""
    names = sorted(set(families))
    if val_families < 0 or test_families < 0:
        raise ConfigError(
            f"val_families and test_families must be >= 0, got {val_families}, {test_families}"
        )
    if val_families + test_families >= len(names):
        raise GlyphSetError(
            f"{len(names)} font families cannot give {val_families} validation and "
            f"{test_families} test families and leave one for training: lower --val-families "
            f"or --test-families, or install more fonts"
        )
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    split = {family: "train" for family in names}
    split.update({family: "val" for family in order[:val_families]})
    split.update({family: "test" for family in order[val_families : val_families + test_families]})
    return split


def _split_arrays(fonts: Sequence[GlyphFont], size: int) -> dict[str, np.ndarray]:
    images = [f.rendered.images for f in fonts]
    return {
        "images": np.concatenate(images) if images else np.zeros((0, size, size), np.uint8),
        "labels": np.tile(np.arange(len(CHARS), dtype=np.int16), len(fonts)),
        "fonts": np.array([f.info.face.name for f in fonts for _ in CHARS], dtype=str),
        "families": np.array([f.info.base_family for f in fonts for _ in CHARS], dtype=str),
    }


def build_glyph_set(
    out_dir: str | os.PathLike,
    *,
    size: int = 32,
    font_roots: Sequence[str | os.PathLike] = DEFAULT_FONT_ROOTS,
    val_families: int = 10,
    test_families: int = 20,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> GlyphSetReport:
    """Render the glyph data set of the fonts under ``font_roots`` into ``out_dir``.

    Files are written atomically, ``glyphs.json`` last; an existing output is an error unless
    ``overwrite``. A font file that cannot be read is skipped and counted.
    """
    if size < 1:
        raise ConfigError(f"size must be at least 1 pixel, got {size}")
    if val_families < 0 or test_families < 0:
        raise ConfigError(
            f"val_families and test_families must be >= 0, got {val_families}, {test_families}"
        )
    out = Path(out_dir).expanduser()
    targets = {name: out / f"{name}.npz" for name in SPLITS}
    existing = [p for p in [*targets.values(), out / INFO_NAME] if p.exists()]
    if existing and not overwrite:
        raise GlyphSetError(f"{existing[0]} exists; pass --overwrite to replace the glyph set")
    fonts, skipped = collect_fonts(font_roots, size=size, progress=progress)
    if not fonts:
        reasons = sorted(Counter(reason for _, reason in skipped).items())
        raise GlyphSetError(
            f"none of the {len(skipped)} fonts found is a usable text font "
            f"({', '.join(f'{n} {reason}' for reason, n in reasons)})"
        )
    split_of = split_families(
        (f.info.base_family for f in fonts),
        val_families=val_families,
        test_families=test_families,
        seed=seed,
    )
    by_split = {name: [f for f in fonts if split_of[f.info.base_family] == name] for name in SPLITS}

    out.mkdir(parents=True, exist_ok=True)
    for name, path in targets.items():
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **_split_arrays(by_split[name], size))
        _write(path, buffer.getvalue(), overwrite)
    report = GlyphSetReport(
        out_dir=out,
        fonts_used=len(fonts),
        skipped=dict(Counter(reason for _, reason in skipped)),
        families={n: sorted({f.info.base_family for f in by_split[n]}) for n in SPLITS},
        glyphs={n: len(by_split[n]) * len(CHARS) for n in SPLITS},
    )
    info = _description(report, fonts, skipped, split_of, size=size, seed=seed, roots=font_roots)
    _write(out / INFO_NAME, (json.dumps(info, indent=1) + "\n").encode(), overwrite)
    return report


def _description(
    report: GlyphSetReport,
    fonts: Sequence[GlyphFont],
    skipped: Sequence[tuple[FontFace, str]],
    split_of: dict[str, str],
    *,
    size: int,
    seed: int,
    roots: Sequence[str | os.PathLike],
) -> dict[str, Any]:
    """The content of ``glyphs.json``."""
    return {
        "chars": CHARS,
        "size": size,
        "supersample": SUPERSAMPLE,
        "fill": FILL,
        "seed": seed,
        "font_roots": [os.fspath(r) for r in roots],
        "fonts_used": report.fonts_used,
        "fonts_skipped": report.skipped,
        "splits": {n: {"families": report.families[n], "glyphs": report.glyphs[n]} for n in SPLITS},
        "fonts": [
            {
                "font": f.info.face.name,
                "root": os.fspath(f.info.face.root),
                "family": f.info.base_family,
                "family_name": f.info.family,
                "style": f.info.style,
                "split": split_of[f.info.base_family],
                "pixel_size": f.rendered.pixel_size,
                "sha256": f.sha256,
            }
            for f in fonts
        ],
        "skipped": [
            {"font": face.name, "root": os.fspath(face.root), "reason": reason}
            for face, reason in skipped
        ],
    }


def _write(path: Path, data: bytes, overwrite: bool) -> None:
    try:
        atomic_write_bytes(path, data, overwrite=overwrite)
    except FileExistsError:
        raise GlyphSetError(f"{path} exists; pass --overwrite to replace the glyph set") from None


def load_split(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a split file written by :func:`build_glyph_set` (no pickled objects)."""
    with np.load(Path(path).expanduser(), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def glyph_file_name(index: int, char: str) -> str:
    """``000123_u0041.png``: the PNG name of glyph ``index`` of a split, showing ``char``."""
    return f"{index:06d}_u{ord(char):04x}.png"


def export_png(out_dir: str | os.PathLike, *, overwrite: bool = False) -> dict[str, int]:
    """Write every split of the glyph set in ``out_dir`` as a folder of PNG files (see the
    module docstring); returns the number of files per split."""
    from PIL import Image

    root = Path(out_dir).expanduser()
    counts = {}
    for split in SPLITS:
        data = load_split(root / f"{split}.npz")
        folder = root / split
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise GlyphSetError(f"{folder} is not empty; pass --overwrite to replace its PNGs")
        folder.mkdir(exist_ok=True)
        for i, (img, label) in enumerate(zip(data["images"], data["labels"], strict=True)):
            Image.fromarray(img).save(folder / glyph_file_name(i, CHARS[int(label)]))
        counts[split] = len(data["images"])
    return counts
