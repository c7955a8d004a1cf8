"""``glean-sr upscale INPUT... -m MODEL -o OUT_DIR``: restore every image given.

INPUT is a file, a folder (its image files; ``--recursive`` for sub-folders, whose structure the
outputs mirror) or a glob pattern. Each image gets one line: what was done to it and where the
result went, or what is wrong with it; a bad file never stops the others. The exit status is 1 if
any input failed. An existing output is kept unless ``--overwrite``; an input is never written
over. The work is done by :mod:`glean_sr.inference.batch`. Started by ``torchrun
--nproc-per-node N -m glean_sr upscale ...``, the processes share out the inputs, one device
each, and a rerun after a process died restores only what is missing
(:mod:`glean_sr.inference.sharding`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GleanError
from ..inference import FIT_MODES, OUTPUT_EXTENSIONS, RESIZE_METHODS
from ..presets import DEMO_HELP, DEMO_MODEL
from .options import add_device_options, add_tile_options, outscale_type, positive_int

if TYPE_CHECKING:
    from ..inference.sharding import Shard


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="restore images (files, folders or globs) with a GLEAN model or a general upscaler",
        description="Restore every image given with a GLEAN model, or enlarge it with a general "
        "upscaler (-m realesrgan_x4plus, realesrgan_x2plus). A GLEAN model takes exactly "
        "in_size x in_size pixels: other sizes need --resize, non-square images --fit; use "
        "--resize bicubic for the released models (their inputs were made with MATLAB's "
        "bicubic). A general upscaler takes any size; --tile bounds its memory on large images.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument(
        "-m",
        "--model",
        default=DEMO_MODEL,
        help=f"preset name (a GLEAN model, or realesrgan_x4plus / realesrgan_x2plus), model "
        f"directory, weight file (Real-ESRGAN's RRDBNet .pth files too), URL, Hugging Face Hub "
        f"repo (owner/repo[@rev]) or Hub file (hf://owner/repo/file.pth) ({DEMO_HELP})",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the restored images"
    )
    add_device_options(p, batch_size=1, unit="images (tiles with --tile)")
    add_tile_options(p, what="a model that takes any size (realesrgan_*)")
    p.add_argument(
        "--outscale",
        type=outscale_type,
        default=None,
        metavar="S",
        help="final size: S times the input's size (rounded), any number up to 64; the model's "
        "output is resized to it with Lanczos (Pillow's, a = 3). Default: the model's factor",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model: slow first batch (minutes on a CPU); meant for GPUs, "
        "on a CPU the default path is as fast and leaner",
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_METHODS,
        default="error",
        help="an image of another size than a GLEAN model's input: refuse it (error, the "
        "default), MATLAB-compatible bicubic (how the released models' inputs were made), or "
        "area average",
    )
    p.add_argument(
        "--fit",
        choices=FIT_MODES,
        default=None,
        help="a non-square image: keep the centred square (crop) or mirror it out to a square "
        "(pad; the padding is cut off the output again). Default: refuse it",
    )
    p.add_argument(
        "--suffix",
        default=None,
        help="added to each output name (default _x<scale>, or _x<S> with --outscale)",
    )
    p.add_argument(
        "--ext", default="png", type=str.lower, choices=OUTPUT_EXTENSIONS, help="output format"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="search folders (and ** in globs) recursively; outputs mirror the sub-folders",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help=(
            "refuse larger images, from their headers (default: $GLEAN_SR_MAX_PIXELS, "
            "else 67,108,864 = 8192 x 8192)"
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.sharding import Shard

    # under torchrun each process restores its part of the inputs (inference/sharding.py)
    with Shard.join(args.device) as shard:
        return _run(args, shard)


def _run(args: argparse.Namespace, shard: Shard) -> int:
    from ..inference.batch import (
        Reporter,
        check_output_options,
        collect_inputs,
        output_name_pattern,
        plan_outputs,
        summary_line,
        upscale_files,
    )
    from ..inference.sharding import add_up, split_jobs
    from ..inference.upscaler import Upscaler

    start = time.perf_counter()
    out_dir = Path(args.output)
    check_output_options(out_dir, args.suffix)

    def find_inputs():
        outputs = output_name_pattern(args.suffix, args.ext)  # earlier results, when -o is an input
        jobs, input_errors = collect_inputs(args.inputs, args.recursive, out_dir, outputs)
        if not jobs:
            for message in input_errors:
                print(f"error: {message}", file=sys.stderr)
            raise GleanError("no input images found; give image files, folders or glob patterns")
        return jobs, input_errors

    jobs, input_errors = shard.from_main(find_inputs)
    upscaler = Upscaler.from_pretrained(
        args.model,
        device=shard.device,
        precision=args.precision,
        resize=args.resize,
        fit=args.fit,
        batch_size=args.batch_size,
        fast=not args.plain,
        compile=args.compile,
        tile=args.tile,
        tile_pad=args.tile_pad,
        outscale=args.outscale,
    )
    factor = f"{args.outscale:g}" if args.outscale is not None else upscaler.scale
    suffix = args.suffix if args.suffix is not None else f"_x{factor}"
    plan_outputs(jobs, out_dir, suffix, args.ext)
    mine = split_jobs(shard, jobs, overwrite=args.overwrite)
    if shard.is_main:
        print(
            f"{len(jobs)} image(s), model {args.model} ({upscaler.describe()}) on "
            f"{shard.where(upscaler.device)}, {upscaler.precision}",
            flush=True,
        )
        for note in upscaler.notes:
            print(f"note: {note}", flush=True)

    report = Reporter(len(mine), input_errors if shard.is_main else [], progress=shard.is_main)
    upscale_files(
        upscaler,
        mine,
        out_dir,
        report,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        debug=args.debug,
    )
    add_up(shard, report)
    if not shard.is_main:
        return 0
    total = len(jobs) + len(input_errors)
    print(summary_line(report, total, time.perf_counter() - start, out_dir))
    return 1 if report.failed else 0
