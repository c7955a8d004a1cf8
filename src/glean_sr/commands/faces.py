"""``glean-sr faces PHOTO... -m MODEL -o OUT_DIR``: restore every face in whole photos.

PHOTO is a file, a folder or a glob, as for ``upscale``. For each photo it writes
``OUT_DIR/<name>_faces.<ext>`` (the photo enlarged ``--upscale`` times with every face restored
and pasted back), a side-by-side comparison ``<name>_faces_compare.<ext>`` unless
``--no-comparison``, with ``--draw-boxes`` the restored photo with what was detected drawn on it
(``<name>_faces_boxes.<ext>``), and with ``--save-crops`` each face as the model saw it and as it
came back, in ``<name>_faces_crops/``. Each photo gets one line (a photo without a face says so; its
enlarged photo is still written); a bad file never stops the others; the exit status is 1 if any
photo failed. The work is done by :mod:`glean_sr.inference.batch`, as for ``upscale``, and as
for ``upscale`` torchrun shares the photos out over processes (``torchrun --nproc-per-node N -m
glean_sr faces ...``; :mod:`glean_sr.inference.sharding`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GleanError
from ..inference import ALIGNMENTS, DETECTORS, FACE_RESIZES, OUTPUT_EXTENSIONS
from ..presets import DEMO_MODEL
from .options import add_device_options, add_tile_options, positive_int

if TYPE_CHECKING:
    from ..inference.sharding import Shard


def _upscale(text: str) -> int:
    value = positive_int(text)
    if value > 16:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 16, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "faces",
        help="restore every face in whole photos (detect, align, restore, paste back)",
        description="Find every face in each photo, align it to the FFHQ crop the face models "
        "were trained on, restore it with a GLEAN face model and paste it back into the photo "
        "enlarged --upscale times. Detection is offline (dlib; pip install 'glean-sr[faces]'). "
        "Use glean_in128out1024_4x2_300k_ffhq_celebahq for real photos (blind restoration) and "
        "glean_ffhq_16x for faces that were only reduced in size.",
    )
    p.add_argument("inputs", nargs="+", metavar="PHOTO", help="photo files, folders or globs")
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help=f"face model: preset name, model directory, file, URL or Hub repo (glean_ffhq_16x, "
        f"glean_in128out1024_4x2_300k_ffhq_celebahq; the shipped demo {DEMO_MODEL} restores "
        f"glyphs, not faces)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the results"
    )
    p.add_argument(
        "--upscale",
        type=_upscale,
        default=2,
        help="enlarge the whole photo this many times (default 2); a --background upscaler "
        "of another factor is resized to it (Lanczos)",
    )
    p.add_argument(
        "--only-center-face",
        action="store_true",
        help="restore only the face nearest the centre of each photo",
    )
    p.add_argument(
        "--background",
        default="bicubic",
        metavar="bicubic|MODEL",
        help="how the photo around the faces is enlarged: MATLAB bicubic (default), or a "
        "general upscaler that takes any size, run before the faces are pasted: a preset "
        "(realesrgan_x2plus, realesrgan_x4plus), a Real-ESRGAN RRDBNet .pth or a model "
        "directory of one (the face models are not general models: they turn anything into a "
        "face)",
    )
    add_tile_options(p, what="the --background upscaler")
    p.add_argument(
        "--draw-boxes",
        action="store_true",
        help="also write the restored photo with what was detected drawn on it "
        "(<name>_faces_boxes.<ext>): each restored face's aligned square and five landmarks in "
        "green, faces found but not restored (--only-center-face) in red",
    )
    p.add_argument(
        "--save-crops",
        action="store_true",
        help="also write each face as the model saw it and as it came back",
    )
    p.add_argument(
        "--no-comparison",
        action="store_true",
        help="do not write the side-by-side comparison (enlarged photo | restored photo)",
    )
    p.add_argument(
        "--face-resize",
        choices=FACE_RESIZES,
        default="auto",
        help="how a face crop is shrunk to the model's input: area (the blind model's inputs), "
        "bicubic (MATLAB, the bicubic models' inputs) or auto (area for the blind model's "
        "architecture, else bicubic; the default)",
    )
    p.add_argument(
        "--alignment",
        choices=ALIGNMENTS,
        default="ffhq",
        help="ffhq: the FFHQ data set's crop rule (default); template: least squares to the "
        "5-point FFHQ template",
    )
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default="hog",
        help="dlib's HOG detector (default, fast) or its CNN (slower, more poses)",
    )
    p.add_argument(
        "--min-face",
        type=positive_int,
        default=40,
        help="smallest face side to look for, in pixels (default 40; 20 finds smaller faces, "
        "takes longer and takes more badges and patterns for faces)",
    )
    add_device_options(p, batch_size=4, unit="faces")
    p.add_argument("--suffix", default="_faces", help="added to each output name (_faces)")
    p.add_argument(
        "--ext", default="png", type=str.lower, choices=OUTPUT_EXTENSIONS, help="output format"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "-r", "--recursive", action="store_true", help="search folders (and ** in globs) deeply"
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help=(
            "refuse larger photos, from their headers (default: $GLEAN_SR_MAX_PIXELS, "
            "else 67,108,864 = 8192 x 8192)"
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.sharding import Shard

    # under torchrun each process restores its part of the photos (inference/sharding.py)
    with Shard.join(args.device) as shard:
        return _run(args, shard)


def _run(args: argparse.Namespace, shard: Shard) -> int:
    from ..inference.batch import (
        Reporter,
        check_output_options,
        collect_inputs,
        output_name_pattern,
        plan_outputs,
        restore_photos,
        summary_line,
    )
    from ..inference.faces import DlibFaceDetector, FaceRestorer
    from ..inference.sharding import add_up, split_jobs

    start = time.perf_counter()
    out_dir = Path(args.output)
    check_output_options(out_dir, args.suffix)
    if args.min_face < 8:
        raise GleanError(f"--min-face must be at least 8 pixels, got {args.min_face}")

    def find_inputs():
        # earlier results (photos and comparisons), when -o is also an input folder
        outputs = output_name_pattern(args.suffix, args.ext, ("_compare", "_boxes"))
        jobs, input_errors = collect_inputs(args.inputs, args.recursive, out_dir, outputs)
        if not jobs:
            for message in input_errors:
                print(f"error: {message}", file=sys.stderr)
            raise GleanError("no input photos found; give image files, folders or glob patterns")
        return jobs, input_errors

    jobs, input_errors = shard.from_main(find_inputs)
    plan_outputs(jobs, out_dir, args.suffix, args.ext)
    mine = split_jobs(shard, jobs, overwrite=args.overwrite)
    todo = [j for j in mine if not j.problem and (args.overwrite or not j.output.exists())]
    restorer = None
    if todo:  # nothing is loaded when every output already exists
        detector = DlibFaceDetector(detector=args.detector, min_face=args.min_face)
        restorer = FaceRestorer.from_pretrained(
            args.model,
            background=args.background,
            detector=detector,
            upscale=args.upscale,
            resize=args.face_resize,
            alignment=args.alignment,
            only_center_face=args.only_center_face,
            device=shard.device,
            precision=args.precision,
            batch_size=args.batch_size,
            fast=not args.plain,
            tile=args.tile,
            tile_pad=args.tile_pad,
        )
        background = args.background
        if restorer.background is not None:
            background += f": {restorer.background.describe()}"
        if shard.is_main:
            print(
                f"{len(jobs)} photo(s), face model {args.model} ({restorer.in_size} -> "
                f"{restorer.out_size}, crops resized by {restorer.resize}), photos "
                f"x{args.upscale} (background {background}) on "
                f"{shard.where(restorer.upscaler.device)}, {restorer.upscaler.precision}",
                flush=True,
            )

    report = Reporter(len(mine), input_errors if shard.is_main else [], progress=shard.is_main)
    counts = restore_photos(
        restorer,
        mine,
        out_dir,
        report,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        comparison=not args.no_comparison,
        save_crops=args.save_crops,
        boxes=args.draw_boxes,
        debug=args.debug,
    )
    add_up(shard, report)
    counts.faces, counts.without_faces = shard.sum(counts.faces, counts.without_faces)
    if not shard.is_main:
        return 0
    done = f"{report.done} photo(s) done ({counts.faces} face(s) restored"
    done += f", {counts.without_faces} photo(s) without a face)" if counts.without_faces else ")"
    total = len(jobs) + len(input_errors)
    print(summary_line(report, total, time.perf_counter() - start, out_dir, done))
    return 1 if report.failed else 0
