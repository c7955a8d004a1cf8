"""``glean-sr faces PHOTO... -m MODEL -o OUT_DIR``: restore every face in whole photos.

PHOTO is a file, a folder or a glob, as for ``upscale`` (whose input collection, output planning
and reporting this command shares). For each photo it writes ``OUT_DIR/<name>_faces.<ext>``
(the photo enlarged ``--upscale`` times with every face restored and pasted back), a side-by-side
comparison ``<name>_faces_compare.<ext>`` unless ``--no-comparison``, and with ``--save-crops``
each face as the model saw it and as it came back, in ``<name>_faces_crops/``. Each photo gets
one line (a photo without a face says so; its enlarged photo is still written); a bad file never
stops the others; the exit status is 1 if any photo failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import GleanError
from .upscale import (
    OUTPUT_EXTENSIONS,
    Reporter,
    _positive_int,
    add_device_options,
    collect_inputs,
    plan_outputs,
)

FACE_RESIZES = ("auto", "area", "bicubic")  # glean_sr.inference.faces.restorer, without torch
ALIGNMENTS = ("ffhq", "template")
DETECTORS = ("hog", "cnn")


def _upscale(text: str) -> int:
    value = _positive_int(text)
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
        "-m", "--model", required=True, help="face model: preset name, model directory or file"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the results"
    )
    p.add_argument(
        "--upscale",
        type=_upscale,
        default=2,
        help="enlarge the whole photo this many times (default 2)",
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
        "glean-sr model that enlarges exactly --upscale times and takes the whole photo (it runs "
        "without tiles, so the photo must be exactly its input size; the face models are not "
        "general models)",
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
        type=_positive_int,
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
        type=_positive_int,
        default=None,
        help="refuse larger photos (default: Pillow's limit, about 89 million pixels)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from PIL import Image

    from ..inference.faces import DlibFaceDetector, FaceRestorer
    from ..io import read_image, write_image

    start = time.perf_counter()
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise GleanError(f"{out_dir} exists and is not a folder; give -o a folder")
    if "/" in args.suffix or os.sep in args.suffix:
        raise GleanError(f"--suffix must not contain a path separator, got {args.suffix!r}")
    if args.min_face < 8:
        raise GleanError(f"--min-face must be at least 8 pixels, got {args.min_face}")
    if args.max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.max_pixels)

    jobs, input_errors = collect_inputs(args.inputs, args.recursive, out_dir)
    if not jobs:
        for message in input_errors:
            print(f"error: {message}", file=sys.stderr)
        raise GleanError("no input photos found; give image files, folders or glob patterns")
    plan_outputs(jobs, out_dir, args.suffix, args.ext)
    todo = [j for j in jobs if not j.problem and (args.overwrite or not j.output.exists())]
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
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
        print(
            f"{len(jobs)} photo(s), face model {args.model} ({restorer.in_size} -> "
            f"{restorer.out_size}, crops resized by {restorer.resize}), photos x{args.upscale} "
            f"(background: {args.background}) on {restorer.upscaler.device}, "
            f"{restorer.upscaler.precision}",
            flush=True,
        )

    report = Reporter(len(jobs))
    for message in input_errors:
        report.failed += 1
        report.line(f"error: {message}", error=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GleanError(f"{out_dir}: cannot create the output folder: {exc.strerror}") from None

    faces_total = without_faces = 0
    try:
        for job in jobs:
            if job.problem:
                report.fail(job.problem)
                continue
            if job.output.exists() and not args.overwrite:
                report.skip(f"{job.path}: skipped, {job.output} exists (--overwrite replaces it)")
                continue
            try:
                photo = read_image(job.path, max_pixels=args.max_pixels)
                result = restorer(photo)
                job.output.parent.mkdir(parents=True, exist_ok=True)
                notes = list(write_image(result.data, job.output, overwrite=args.overwrite))
                written = [str(job.output)]
                stem = job.output.with_suffix("")
                if not args.no_comparison:
                    compare = stem.with_name(stem.name + "_compare").with_suffix(job.output.suffix)
                    write_image(result.comparison(), compare, overwrite=args.overwrite)
                    written.append(str(compare))
                if args.save_crops and result.record.faces:
                    written.append(_save_crops(result, stem, args.overwrite, write_image))
            except GleanError as exc:
                report.fail(str(exc))
                continue
            except Exception as exc:
                if args.debug:
                    raise
                report.fail(
                    f"{job.path}: internal error: {type(exc).__name__}: {exc} "
                    "(run with --debug for details and please report it)"
                )
                continue
            faces_total += len(result.record.faces)
            without_faces += not result.record.faces
            steps = "; ".join([photo.describe(), *result.record.steps, *notes])
            report.ok(f"{job.path}: {steps} -> {', '.join(written)}")
    finally:
        report.close()

    elapsed = time.perf_counter() - start
    total = len(jobs) + len(input_errors)
    parts = [f"{report.done} photo(s) done ({faces_total} face(s) restored"]
    parts[0] += f", {without_faces} photo(s) without a face)" if without_faces else ")"
    if report.failed:
        parts.append(f"{report.failed} failed")
    if report.skipped:
        parts.append(f"{report.skipped} skipped (output exists)")
    print(f"done: {', '.join(parts)} of {total} in {elapsed:.1f} s; outputs in {out_dir}")
    return 1 if report.failed else 0


def _save_crops(result, stem: Path, overwrite: bool, write_image) -> str:
    """Write each face's model input and output as PNGs into ``<stem>_crops/``."""
    folder = stem.with_name(stem.name + "_crops")
    folder.mkdir(parents=True, exist_ok=True)
    data = result.data
    for face in result.record.faces:
        for kind, pixels in (("input", face.lq), ("restored", face.restored)):
            image = data.replace(pixels=pixels, alpha=None, mode="", notes=())
            write_image(image, folder / f"face{face.index:02d}_{kind}.png", overwrite=overwrite)
    return f"{folder}/ ({len(result.record.faces)} face(s))"
