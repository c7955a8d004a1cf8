"""``glean-sr build-glyphs OUT_DIR``: a data set of character glyphs from the installed fonts."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-glyphs",
        help="render A-Z, a-z, 0-9 of the installed fonts into a train/val/test glyph data set",
        description="Render the 62 characters A-Z, a-z, 0-9 of every usable installed font as "
        "dark-on-white SIZE x SIZE images (one scale per font, common baseline) and split the "
        "fonts by family into OUT_DIR/train.npz, val.npz and test.npz, described by "
        "OUT_DIR/glyphs.json. The fonts come from the Debian font packages that "
        "scripts/setup.sh installs.",
    )
    p.add_argument("out_dir", help="folder for the .npz files and glyphs.json")
    p.add_argument("--size", type=int, default=32, help="side of a glyph in pixels (default 32)")
    p.add_argument(
        "--fonts-dir",
        action="extend",
        nargs="+",
        metavar="DIR",
        help="folders searched for .ttf/.otf/.ttc/.otc files (default: /usr/share/fonts and "
        "/usr/share/texmf/fonts/opentype)",
    )
    p.add_argument(
        "--val-families", type=int, default=10, help="font families for validation (default 10)"
    )
    p.add_argument(
        "--test-families", type=int, default=20, help="font families for test (default 20)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the family split (default 0)")
    p.add_argument(
        "--png",
        action="store_true",
        help="also write each split as a folder of PNGs named NNNNNN_uXXXX.png (XXXX: the "
        "character's code point), for glean-sr train and eval",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing glyph set")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.fonts import DEFAULT_FONT_ROOTS
    from ..data.glyphs import build_glyph_set

    report = build_glyph_set(
        args.out_dir,
        size=args.size,
        font_roots=args.fonts_dir or DEFAULT_FONT_ROOTS,
        val_families=args.val_families,
        test_families=args.test_families,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(report.summary())
    if args.png:
        from ..data.glyphs import export_png

        counts = export_png(args.out_dir, overwrite=args.overwrite)
        done = ", ".join(f"{n} in {args.out_dir}/{split}" for split, n in counts.items())
        print(f"wrote PNGs: {done}")
    return 0
