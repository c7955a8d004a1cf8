"""``glean-sr prepare GT_DIR -o LQ_DIR``: write the LQ images of a GT folder for training."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="write LQ training/validation images from a GT folder (bicubic or blind)",
        description="Make the low-quality images of a data set from its ground truth: MATLAB-"
        "compatible bicubic down-sampling (the released models' BIxN_down folders) or the "
        "in128out1024 blind face degradation (seeded per file name).",
    )
    p.add_argument("gt_dir", help="folder of GT images")
    p.add_argument("-o", "--output", required=True, help="folder for the LQ images")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--scale", type=int, help="down-sampling factor (bicubic), e.g. 8")
    size.add_argument("--size", type=int, help="side of the LQ images in pixels, e.g. 32")
    p.add_argument(
        "--degradation", choices=["bicubic", "blind_face"], default="bicubic", help="how"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the blind degradation")
    p.add_argument("--meta-file", default="", help="only the images listed in this file")
    p.add_argument("--write-meta", default="", help="also write a GLEAN meta-info list here")
    p.add_argument("--overwrite", action="store_true", help="replace existing LQ files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_lq

    report = prepare_lq(
        args.gt_dir,
        args.output,
        size=args.size,
        scale=args.scale,
        degradation=args.degradation,
        seed=args.seed,
        meta_file=args.meta_file,
        write_meta=args.write_meta,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    for _, reason in report.failed:
        print(f"glean-sr prepare: error: {reason}", file=sys.stderr)
    kept = f", {len(report.skipped)} kept (exist; --overwrite replaces)" if report.skipped else ""
    done = len(report.written)
    print(f"wrote {done} LQ images to {args.output}{kept}, {len(report.failed)} failed")
    return 1 if report.failed else 0
