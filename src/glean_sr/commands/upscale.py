"""``glean-sr upscale INPUT... -m MODEL -o OUT_DIR``: restore every image given.

INPUT is a file, a folder (its image files; ``--recursive`` for sub-folders, whose structure the
outputs mirror) or a glob pattern. Each image gets one line: what was done to it and where the
result went, or what is wrong with it; a bad file never stops the others. The exit status is 1 if
any input failed. An existing output is kept unless ``--overwrite``; an input is never written
over.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import GleanError
from ..inference import FIT_MODES, PRECISION_NAMES, RESIZE_METHODS

OUTPUT_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_device_options(p: argparse.ArgumentParser, *, batch_size: int, unit: str) -> None:
    """``--device``, ``--precision`` and ``--batch-size``, shared by the restoring commands."""
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        default="fp32",
        help="fp32 (default), bf16 (fast on GPUs and recent CPUs) or fp16 (fast on GPUs)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=batch_size,
        help=f"{unit} per forward pass (default {batch_size})",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="restore images (files, folders or globs) with a GLEAN model",
        description="Restore every image given with a GLEAN model. The model takes exactly "
        "in_size x in_size pixels: other sizes need --resize, non-square images --fit. Use "
        "--resize bicubic for the released models (their inputs were made with MATLAB's bicubic).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument(
        "-m", "--model", required=True, help="preset name, model directory, weight file or URL"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the restored images"
    )
    add_device_options(p, batch_size=1, unit="images")
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
        help="an image of another size than the model's input: refuse it (error, the default), "
        "MATLAB-compatible bicubic (how the released models' inputs were made), or area average",
    )
    p.add_argument(
        "--fit",
        choices=FIT_MODES,
        default=None,
        help="a non-square image: keep the centred square (crop) or mirror it out to a square "
        "(pad; the padding is cut off the output again). Default: refuse it",
    )
    p.add_argument("--suffix", default=None, help="added to each output name (default _x<scale>)")
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
        type=_positive_int,
        default=None,
        help="refuse larger images (default: Pillow's limit, about 89 million pixels)",
    )
    p.set_defaults(func=run)


@dataclass
class Job:
    """One input file and where its result goes."""

    path: Path
    subdir: Path  # relative folder under OUT_DIR (non-empty only for --recursive folders)
    output: Path | None = None
    problem: str | None = None  # known before any work: a name collision or an input in the way


def collect_inputs(
    specs: list[str], recursive: bool, out_dir: Path | None = None
) -> tuple[list[Job], list[str]]:
    """Expand files, folders and globs into jobs (in the order given, each file once); the
    second list holds one message per INPUT that names nothing usable.

    Searching folders and globs skips hidden files and anything inside ``out_dir``, so earlier
    results in an output folder under an input folder are not restored again.
    """
    from ..io import IMAGE_SUFFIXES

    out_resolved = out_dir.resolve() if out_dir is not None else None

    def is_image(p: Path) -> bool:
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            return False
        return out_resolved is None or not p.resolve().is_relative_to(out_resolved)

    jobs: list[Job] = []
    errors: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, subdir: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path, subdir))

    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(p.rglob("*") if recursive else p.iterdir())
            images = [f for f in found if is_image(f)]
            if not images:
                hint = "" if recursive else " (--recursive searches sub-folders)"
                errors.append(f"{spec}: no image files in this folder{hint}")
            for f in images:
                add(f, f.parent.relative_to(p))
        elif p.exists():
            add(p, Path())  # named explicitly: tried whatever its suffix
        elif glob.has_magic(spec):
            images = [Path(m) for m in sorted(glob.glob(spec, recursive=recursive))]
            images = [f for f in images if is_image(f)]
            if not images:
                errors.append(f"{spec}: the pattern matches no image files")
            for f in images:
                add(f, Path())
        else:
            errors.append(f"{spec}: no such file or folder")
    return jobs, errors


def plan_outputs(jobs: list[Job], out_dir: Path, suffix: str, ext: str) -> None:
    """Set each job's output path; mark outputs that would hit an input or another output."""
    inputs = {job.path.resolve(): job.path for job in jobs}
    claimed: dict[Path, Path] = {}
    for job in jobs:
        job.output = out_dir / job.subdir / f"{job.path.stem}{suffix}.{ext}"
        key = job.output.resolve()
        hit = inputs.get(key)
        if hit is None and job.output.exists():
            hit = next((p for p in inputs.values() if _same_file(p, job.output)), None)
        if hit is not None:
            job.problem = (
                f"{job.path}: the output {job.output} would overwrite the input {hit}; "
                "choose another -o or --suffix"
            )
        elif key in claimed:
            job.problem = (
                f"{job.path}: the output {job.output} is also the output of {claimed[key]}; "
                "restore them into different folders"
            )
        else:
            claimed[key] = job.path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class Reporter:
    """Per-image lines above a progress bar, and the counts for the summary."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="img", disable=None, file=sys.stderr, leave=False)
        self.done = self.failed = self.skipped = 0

    def line(self, text: str, *, error: bool = False) -> None:
        self.bar.write(text, file=sys.stderr if error else sys.stdout)

    def ok(self, text: str) -> None:
        self.done += 1
        self.line(text)
        self.bar.update()

    def fail(self, message: str) -> None:
        self.failed += 1
        self.line(f"error: {message}", error=True)
        self.bar.update()

    def skip(self, text: str) -> None:
        self.skipped += 1
        self.line(text)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..inference.upscaler import Upscaler
    from ..io import read_image, write_image

    start = time.perf_counter()
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise GleanError(f"{out_dir} exists and is not a folder; give -o a folder")
    if args.suffix is not None and ("/" in args.suffix or os.sep in args.suffix):
        raise GleanError(f"--suffix must not contain a path separator, got {args.suffix!r}")
    if args.max_pixels is not None:  # Pillow refuses twice its own limit before we can ask
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.max_pixels)

    jobs, input_errors = collect_inputs(args.inputs, args.recursive, out_dir)
    if not jobs:
        for message in input_errors:
            print(f"error: {message}", file=sys.stderr)
        raise GleanError("no input images found; give image files, folders or glob patterns")
    upscaler = Upscaler.from_pretrained(
        args.model,
        device=args.device,
        precision=args.precision,
        resize=args.resize,
        fit=args.fit,
        batch_size=args.batch_size,
        compile=args.compile,
    )
    suffix = args.suffix if args.suffix is not None else f"_x{upscaler.scale}"
    plan_outputs(jobs, out_dir, suffix, args.ext)
    print(
        f"{len(jobs)} image(s), model {args.model} ({upscaler.in_size} -> {upscaler.out_size}, "
        f"x{upscaler.scale}) on {upscaler.device}, {upscaler.precision}",
        flush=True,
    )
    for note in upscaler.notes:
        print(f"note: {note}", flush=True)

    report = Reporter(len(jobs))
    for message in input_errors:
        report.failed += 1
        report.line(f"error: {message}", error=True)

    def internal(job: Job, exc: Exception) -> None:
        if args.debug:
            raise exc
        report.fail(
            f"{job.path}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for details and please report it)"
        )

    def flush(pending: list) -> None:
        if not pending:
            return
        try:
            restored = upscaler.restore([prep for _, prep in pending])
        except Exception as exc:
            if args.debug:
                raise
            hint = ""
            if "out of memory" in str(exc).lower():
                hint = " (out of memory: try --batch-size 1, or --device cpu)"
            for job, _ in pending:
                report.fail(f"{job.path}: the model failed: {type(exc).__name__}: {exc}{hint}")
            pending.clear()
            return
        for (job, prep), (data, record) in zip(pending, restored, strict=True):
            try:
                job.output.parent.mkdir(parents=True, exist_ok=True)
                notes = write_image(data, job.output, overwrite=args.overwrite)
            except GleanError as exc:
                report.fail(str(exc))
                continue
            except Exception as exc:
                internal(job, exc)
                continue
            steps = "; ".join([prep.image.describe(), *record.steps, *notes])
            report.ok(f"{job.path}: {steps} -> {job.output}")
        pending.clear()

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GleanError(f"{out_dir}: cannot create the output folder: {exc.strerror}") from None
    pending: list = []
    try:
        for job in jobs:
            if job.problem:
                report.fail(job.problem)
                continue
            if job.output.exists() and not args.overwrite:
                report.skip(f"{job.path}: skipped, {job.output} exists (--overwrite replaces it)")
                continue
            try:
                prep = upscaler.prepare(read_image(job.path, max_pixels=args.max_pixels))
            except GleanError as exc:
                report.fail(str(exc))
                continue
            except Exception as exc:
                internal(job, exc)
                continue
            pending.append((job, prep))
            if len(pending) >= upscaler.batch_size:
                flush(pending)
        flush(pending)
    finally:
        report.close()

    elapsed = time.perf_counter() - start
    total = len(jobs) + len(input_errors)
    parts = [f"{report.done} restored"]
    if report.failed:
        parts.append(f"{report.failed} failed")
    if report.skipped:
        parts.append(f"{report.skipped} skipped (output exists)")
    print(f"done: {', '.join(parts)} of {total} in {elapsed:.1f} s; outputs in {out_dir}")
    return 1 if report.failed else 0
