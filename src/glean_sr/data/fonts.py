"""Font files on disk and what their tables say: names, families and character coverage.

Read with fontTools (the ``glyphs`` extra), lazily: only the ``name`` and ``cmap`` tables of a
face are parsed. Collections (.ttc, .otc) give one :class:`FontFace` per face.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import missing_extra

#: where Debian's font packages put their files (TeX Gyre and Latin Modern live under texmf)
DEFAULT_FONT_ROOTS = ("/usr/share/fonts", "/usr/share/texmf/fonts/opentype")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
COLLECTION_SUFFIXES = (".ttc", ".otc")
#: a font with a word starting so in its family, style or file name draws no ordinary text
#: (words split at case changes too: "FontAwesome", "DejaVuMathTeXGyre")
NOT_TEXT_WORDS = ("symbol", "dingbat", "awesome", "icon", "dseg", "math", "emoji", "wingding")
#: words that name a member of a family rather than the family (weights, widths, slopes, sizes)
STYLE_WORDS = frozenset(
    """thin hairline extralight ultralight light book regular normal medium demi demibold semibold
    bold extrabold ultrabold black heavy extra cn cond condensed semicondensed narrow compressed
    extended expanded semiexpanded wide italic oblique slanted unslanted upright half display
    text caption""".split()  # noqa: SIM905 (a word list reads better as text)
)


@dataclass(frozen=True)
class FontFace:
    """One face of a font file found under ``root``; ``index`` counts faces in a collection."""

    root: Path
    path: Path
    index: int = 0

    @property
    def name(self) -> str:
        """The file's path relative to its root, with ``#index`` for a face of a collection."""
        rel = self.path.relative_to(self.root).as_posix()
        return f"{rel}#{self.index}" if self.path.suffix.lower() in COLLECTION_SUFFIXES else rel


@dataclass(frozen=True)
class FaceInfo:
    """What a face's tables say: typographic family and style names, character coverage."""

    face: FontFace
    family: str
    style: str
    covers: bool  # the character map has every character asked for

    @property
    def base_family(self) -> str:
        """The family without its style words (see :func:`base_family`)."""
        return base_family(self.family)

    @property
    def is_text_font(self) -> bool:
        """False for symbol, icon, dingbat, math and emoji fonts, told by their names."""
        words = name_words(f"{self.family} {self.style} {self.face.path.stem}")
        return not any(word.startswith(NOT_TEXT_WORDS) for word in words)


def base_family(family: str) -> str:
    """``family`` without trailing :data:`STYLE_WORDS`: ``"Latin Modern Mono Light Cond"`` ->
    ``"Latin Modern Mono"``; the first word always stays."""
    words = family.split()
    while len(words) > 1 and words[-1].casefold() in STYLE_WORDS:
        words.pop()
    return " ".join(words)


def name_words(name: str) -> set[str]:
    """The lowercase words of a font name, split at non-letters and case changes:
    ``"FontAwesome-Regular"`` -> ``{"font", "awesome", "regular"}``."""
    return {w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", name)}


def font_files(roots: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """``(root, file)`` of every .ttf/.otf/.ttc/.otc file under ``roots``, in the order of the
    roots and then of the relative paths; roots that do not exist are passed over."""
    found = []
    for root in (Path(r).expanduser() for r in roots):
        if root.is_dir():
            files = [p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES]
            found += sorted((root, p) for p in files if p.is_file())
    return found


def read_faces(root: Path, path: Path, chars: str) -> list[FaceInfo]:
    """The names of each face of a font file, and whether its character map has all ``chars``.

    The family is the typographic family (name ID 16) where the font has one, else the family
    (ID 1), so that e.g. "DejaVu Sans Condensed" belongs to "DejaVu Sans". Raises whatever
    fontTools raises on a malformed file.
    """
    try:
        from fontTools.ttLib import TTCollection, TTFont
    except ImportError:
        raise missing_extra("fonttools", "glyphs") from None

    if path.suffix.lower() in COLLECTION_SUFFIXES:
        opened = TTCollection(path, lazy=True)
        faces = opened.fonts
    else:
        opened = TTFont(path, lazy=True)
        faces = [opened]
    try:
        infos = []
        for index, tt in enumerate(faces):
            names = tt["name"]
            family = names.getDebugName(16) or names.getDebugName(1) or path.stem
            style = names.getDebugName(17) or names.getDebugName(2) or ""
            cmap = tt.getBestCmap() or {}
            covers = all(ord(c) in cmap for c in chars)
            face = FontFace(root, path, index)
            infos.append(FaceInfo(face, family.strip(), style.strip(), covers))
        return infos
    finally:
        opened.close()
