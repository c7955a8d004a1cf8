"""``glean-sr colorize PHOTO... -m MODEL -o OUT_DIR``: colour for grey (or colour) photos.

PHOTO is a file, a folder (its image files; ``--recursive`` for sub-folders, whose structure
the outputs mirror) or a glob pattern. Any size, grey or colour (its L* is used), 8 or 16 bits.
Each photo gets one line: what was done and where the result went, or what is wrong with it; a
bad file never stops the others. The exit status is 1 if any input failed. An existing output
is kept unless ``--overwrite``; an input is never written over. The work is done by
:class:`glean_sr.inference.colorize.Colorizer` and :func:`glean_sr.inference.batch.convert_files`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import GleanError
from ..inference import OUTPUT_EXTENSIONS, PRECISION_NAMES
from .options import positive_int

#: added to each output name unless --suffix says otherwise
DEFAULT_SUFFIX = "_color"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "colorize",
        help="colour grey photos (files, folders or globs) with a GLEAN colorizer",
        description="Colour every photo given with a GLEAN colorizer (model type "
        "glean_colorizer, TPAMI 2023 Sec. 5.4). Any size: the chroma is predicted at the "
        "model's size and resized back; the output keeps the input's full-resolution L*. "
        "Colour photos are colorized from their L*.",
    )
    p.add_argument("inputs", nargs="+", metavar="PHOTO", help="image files, folders or globs")
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="a colorizer: model directory (a training run's final/ or best/), weight file, "
        "URL or Hugging Face Hub repo",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the colour photos"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        default="fp32",
        help="fp32 (default), bf16 (fast on GPUs and recent CPUs) or fp16 (fast on GPUs)",
    )
    p.add_argument(
        "--suffix", default=DEFAULT_SUFFIX, help=f"added to each output name ({DEFAULT_SUFFIX})"
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
        help="refuse larger images, from their headers (default: $GLEAN_SR_MAX_PIXELS, "
        "else 67,108,864 = 8192 x 8192)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.batch import (
        Reporter,
        check_output_options,
        collect_inputs,
        convert_files,
        output_name_pattern,
        plan_outputs,
        summary_line,
    )
    from ..inference.colorize import Colorizer

    start = time.perf_counter()
    out_dir = Path(args.output)
    check_output_options(out_dir, args.suffix)
    outputs = output_name_pattern(args.suffix, args.ext)  # earlier results, when -o is an input
    jobs, input_errors = collect_inputs(args.inputs, args.recursive, out_dir, outputs)
    if not jobs:
        for message in input_errors:
            print(f"error: {message}", file=sys.stderr)
        raise GleanError("no input images found; give image files, folders or glob patterns")
    colorizer = Colorizer.from_pretrained(args.model, device=args.device, precision=args.precision)
    plan_outputs(jobs, out_dir, args.suffix, args.ext)
    print(
        f"{len(jobs)} photo(s), model {args.model} ({colorizer.describe()}) on "
        f"{colorizer.device}, {colorizer.precision}",
        flush=True,
    )

    def convert(image):
        data, record = colorizer.colorize_data(image)
        return data, record.steps

    report = Reporter(len(jobs), input_errors)
    convert_files(
        convert,
        jobs,
        out_dir,
        report,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        debug=args.debug,
    )
    total = len(jobs) + len(input_errors)
    done = f"{report.done} colorized"
    print(summary_line(report, total, time.perf_counter() - start, out_dir, done=done))
    return 1 if report.failed else 0
