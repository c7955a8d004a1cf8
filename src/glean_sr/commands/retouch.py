"""``glean-sr retouch IMAGE... -m MODEL [--mask MASK.png] -o OUT_DIR``: undo amateur retouching.

Each image is shrunk to the model's input by MATLAB-compatible bicubic, restored by the model,
and blended back inside the mask (feathered inward), the rest untouched; without ``--mask`` the
whole image is restored (CVPR 2021, Appendix B.2). One line per image; a bad file never stops
the others; the exit status is 1 if any input failed. An existing output is kept unless
``--overwrite``; an input is never written over. The work is done by
:class:`glean_sr.inference.retouch.Retoucher` and :func:`glean_sr.inference.batch.convert_files`.
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
DEFAULT_SUFFIX = "_retouched"


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retouch",
        help="remove retouching artefacts: shrink, restore with a GLEAN model, blend in a mask",
        description="Shrink each image to the model's input (MATLAB bicubic), where retouching "
        "artefacts vanish, restore it with the model, and blend the result into the original "
        "inside --mask (feathered inward; outside it every pixel stays as it was). Without "
        "--mask the whole image is restored. A GLEAN model takes square images (an aligned "
        "face for the face models) of any side.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="preset name, model directory, weight file, URL or Hugging Face Hub repo of a "
        "super-resolution model (e.g. glean_ffhq_16x for faces)",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="MASK",
        help="image of the same size: white marks what to retouch (default: the whole image)",
    )
    p.add_argument(
        "--feather",
        type=_non_negative_int,
        default=None,
        metavar="PX",
        help="width of the blend inside the mask's edge (default: the shorter side / 64)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the results"
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
    from ..inference.retouch import Retoucher, mask_from_image
    from ..io import read_image

    start = time.perf_counter()
    out_dir = Path(args.output)
    check_output_options(out_dir, args.suffix)
    mask = None
    if args.mask is not None:
        mask = mask_from_image(read_image(args.mask, max_pixels=args.max_pixels))
    outputs = output_name_pattern(args.suffix, args.ext)  # earlier results, when -o is an input
    jobs, input_errors = collect_inputs(args.inputs, args.recursive, out_dir, outputs)
    if mask is not None:  # the mask is no image to retouch
        jobs = [job for job in jobs if job.path.resolve() != Path(args.mask).resolve()]
    if not jobs:
        for message in input_errors:
            print(f"error: {message}", file=sys.stderr)
        raise GleanError("no input images found; give image files, folders or glob patterns")
    retoucher = Retoucher.from_pretrained(args.model, device=args.device, precision=args.precision)
    plan_outputs(jobs, out_dir, args.suffix, args.ext)
    where = f"inside {args.mask}" if mask is not None else "whole images"
    print(
        f"{len(jobs)} image(s), {where}, model {args.model} ({retoucher.describe()}) on "
        f"{retoucher.device}",
        flush=True,
    )

    def convert(image):
        data, record = retoucher.retouch_data(image, mask, args.feather)
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
    done = f"{report.done} retouched"
    print(summary_line(report, total, time.perf_counter() - start, out_dir, done=done))
    return 1 if report.failed else 0
