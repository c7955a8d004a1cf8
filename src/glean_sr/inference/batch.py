"""Restoring many image files: finding the inputs, naming the outputs, one line per file.

What ``glean-sr upscale`` and ``glean-sr faces`` do with their ``INPUT...`` arguments, as library
functions:

1. :func:`collect_inputs` expands files, folders and glob patterns into :class:`Job` s, each file
   once, in the order given;
2. :func:`plan_outputs` names each job's output (``OUT_DIR/<sub-folder>/<stem><suffix>.<ext>``)
   and marks, before any work, an output that would overwrite an input or another output;
3. :func:`upscale_files` (an :class:`~glean_sr.inference.upscaler.Upscaler`, batched) or
   :func:`restore_photos` (a :class:`~glean_sr.inference.faces.FaceRestorer`) run the jobs and
   write the results; a :class:`Reporter` prints one line per file above a progress bar, and a
   bad file never stops the others;
4. :func:`summary_line` is the closing ``done: ...`` line.

An existing output is kept unless ``overwrite``; an input is never written over.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ..errors import GleanError
from ..io import is_image_file, list_images, read_image, write_image, write_image_rows

T = TypeVar("T")


@dataclass
class Job:
    """One input file and where its result goes."""

    path: Path
    subdir: Path  # relative folder under OUT_DIR (non-empty only for recursive folders)
    output: Path | None = None
    problem: str | None = None  # known before any work: a name collision or an input in the way


def check_output_options(out_dir: Path, suffix: str | None) -> None:
    """Refuse an output folder that is a file and a suffix that would leave it.

    Raises:
        GleanError: one line naming the option.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise GleanError(f"{out_dir} exists and is not a folder; give -o a folder")
    if suffix is not None and ("/" in suffix or os.sep in suffix):
        raise GleanError(f"--suffix must not contain a path separator, got {suffix!r}")


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name) written as escapes, so that
    one message stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def output_name_pattern(
    suffix: str | None, ext: str, extras: tuple[str, ...] = ()
) -> re.Pattern[str]:
    """File names a run writes: ``<stem><suffix><extra>.<ext>`` for ``extra`` in ``("",
    *extras)``; an unknown suffix (``None``: the model's factor or ``--outscale`` decides it) is
    ``_x<number>``, upscale's default."""
    mark = re.escape(suffix) if suffix is not None else r"_x\d+(?:\.\d+)?"
    tails = "|".join(re.escape(e) for e in ("", *extras))
    return re.compile(rf".+{mark}(?:{tails})\.{re.escape(ext)}", re.IGNORECASE)


def collect_inputs(
    specs: list[str],
    recursive: bool,
    out_dir: Path | None = None,
    outputs: re.Pattern[str] | None = None,
) -> tuple[list[Job], list[str]]:
    """Expand files, folders and globs into jobs (in the order given, each file once); the
    second list holds one message per spec that names nothing usable.

    A file named explicitly is taken whatever its suffix; folders and globs give their image
    files (:func:`glean_sr.io.is_image_file`: hidden files are skipped), and nothing inside
    ``out_dir``, so earlier results in an output folder under an input folder are not restored
    again. When the output folder *is* an input folder, its files are inputs except those whose
    names match ``outputs`` (:func:`output_name_pattern`), results already written there.
    ``recursive`` searches sub-folders (and ``**`` in globs); a folder's jobs keep their
    sub-folder, which the outputs mirror. Links that cannot be followed (dangling, or a loop)
    get a line each.
    """
    out_resolved = out_dir.resolve() if out_dir is not None else None
    input_dirs = {Path(spec).resolve() for spec in specs if Path(spec).is_dir()}

    def outside_output(p: Path) -> bool:
        if out_resolved is None or not p.resolve().is_relative_to(out_resolved):
            return True
        if out_resolved in input_dirs and p.resolve().parent == out_resolved:
            return outputs is None or not outputs.fullmatch(p.name)
        return False

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
            listed = p.rglob("*") if recursive else p.iterdir()
            errors += [
                f"{printable(str(f))}: a link that cannot be followed (its target is missing, or "
                f"it is a loop of links); skipped"
                for f in sorted(listed)
                if f.is_symlink() and not f.exists()
            ]
            images = [f for f in list_images(p, recursive=recursive) if outside_output(f)]
            if not images:
                hint = "" if recursive else " (--recursive searches sub-folders)"
                errors.append(f"{spec}: no image files in this folder{hint}")
            for f in images:
                add(f, f.parent.relative_to(p))
        elif p.exists():
            add(p, Path())  # named explicitly: tried whatever its suffix
        elif glob.has_magic(spec):
            matches = [Path(m) for m in sorted(glob.glob(spec, recursive=recursive))]
            images = [f for f in matches if is_image_file(f) and outside_output(f)]
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
    """Per-file lines above a progress bar (stdout; errors on stderr), and the counts for the
    summary."""

    def __init__(self, total: int, input_errors: list[str] = (), *, progress: bool = True):
        from tqdm import tqdm

        # disable=None: a bar only on a terminal; progress=False: none (torchrun's other ranks)
        disable = None if progress else True
        self.bar = tqdm(total=total, unit="img", disable=disable, file=sys.stderr, leave=False)
        self.done = self.failed = self.skipped = 0
        for message in input_errors:  # counted, but not files the bar goes through
            self.failed += 1
            self.line(f"error: {message}", error=True)

    def line(self, text: str, *, error: bool = False) -> None:
        self.bar.write(printable(text), file=sys.stderr if error else sys.stdout)

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

    def internal_error(self, job: Job, exc: Exception) -> None:
        """A bug met on one file: one line asking for a report."""
        self.fail(
            f"{job.path}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for details and please report it)"
        )

    def close(self) -> None:
        self.bar.close()


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GleanError(f"{out_dir}: cannot create the output folder: {exc.strerror}") from None


def _skipped(job: Job, overwrite: bool, report: Reporter) -> bool:
    """Report a job that is not run (a planned collision, an existing output)."""
    if job.problem:
        report.fail(job.problem)
        return True
    if job.output.exists() and not overwrite:
        report.skip(f"{job.path}: skipped, {job.output} exists (--overwrite replaces it)")
        return True
    return False


def _guarded(job: Job, report: Reporter, debug: bool, work: Callable[[], T]) -> T | None:
    """``work()`` for ``job``, or ``None`` once its failure is reported: a :class:`GleanError`
    is the file's one error line, any other exception an internal error (re-raised with
    ``debug``). ``work`` never returns ``None`` itself."""
    try:
        return work()
    except GleanError as exc:
        report.fail(str(exc))
    except Exception as exc:
        if debug:
            raise
        report.internal_error(job, exc)
    return None


def _write(data: Any, output: Path, overwrite: bool) -> list[str]:
    """Write ``data`` to ``output`` (its folder made first); the writer's notes."""
    _make_folder(output.parent)
    return list(write_image(data, output, overwrite=overwrite))


def _write_streamed(streamed: Any, output: Path, overwrite: bool) -> Any:
    """Write an :class:`~glean_sr.inference.upscaler.StreamedImage` as a PNG band by band;
    returns its record."""
    _make_folder(output.parent)
    write_image_rows(
        output,
        streamed.bands,
        width=streamed.width,
        height=streamed.height,
        bit_depth=streamed.bit_depth,
        icc_profile=streamed.icc_profile,
        overwrite=overwrite,
    )
    return streamed.record


def upscale_files(
    upscaler: Any,
    jobs: list[Job],
    out_dir: Path,
    report: Reporter,
    *,
    overwrite: bool = False,
    max_pixels: int | None = None,
    debug: bool = False,
) -> None:
    """Restore every planned job with ``upscaler`` (``upscaler.batch_size`` images per forward
    pass; one image at a time for a model that takes any size) and write the results; one line
    per job through ``report``.

    ``debug`` re-raises unexpected exceptions instead of reporting them as internal errors.
    The report is closed at the end.
    """
    pending: list = []
    # a model that takes any size runs one image at a time (batch_size counts its tiles), and
    # writes a PNG band by band as its tiles finish: only the photo and one band are held
    streams = getattr(upscaler, "any_size", False)
    images_per_batch = 1 if streams else upscaler.batch_size

    def model_failed(exc: Exception) -> None:
        if debug:
            raise exc
        hint = ""
        if "out of memory" in str(exc).lower():
            hint = " (out of memory: try --batch-size 1 or --tile, or --device cpu)"
        for job, _ in pending:
            report.fail(f"{job.path}: the model failed: {type(exc).__name__}: {exc}{hint}")
        pending.clear()

    def flush() -> None:
        if not pending:
            return
        if streams and pending[0][0].output.suffix.lower() == ".png":
            ((job, prep),) = pending
            try:
                record = _write_streamed(upscaler.stream(prep), job.output, overwrite)
            except GleanError as exc:  # the file could not be written
                report.fail(str(exc))
            except Exception as exc:
                model_failed(exc)
                return
            else:
                steps = "; ".join([prep.image.describe(), *record.steps])
                report.ok(f"{job.path}: {steps} -> {job.output}")
            pending.clear()
            return
        try:
            restored = upscaler.restore([prep for _, prep in pending])
        except Exception as exc:
            model_failed(exc)
            return
        for (job, prep), (data, record) in zip(pending, restored, strict=True):
            notes = _guarded(job, report, debug, partial(_write, data, job.output, overwrite))
            if notes is None:
                continue
            steps = "; ".join([prep.image.describe(), *record.steps, *notes])
            report.ok(f"{job.path}: {steps} -> {job.output}")
        pending.clear()

    try:
        _make_folder(out_dir)
        for job in jobs:
            if _skipped(job, overwrite, report):
                continue
            read = partial(read_image, job.path, max_pixels=max_pixels)
            prep = _guarded(job, report, debug, lambda read=read: upscaler.prepare(read()))
            if prep is None:
                continue
            pending.append((job, prep))
            if len(pending) >= images_per_batch:
                flush()
        flush()
    finally:
        report.close()


def convert_files(
    convert: Callable[[Any], tuple[Any, list[str]]],
    jobs: list[Job],
    out_dir: Path,
    report: Reporter,
    *,
    overwrite: bool = False,
    max_pixels: int | None = None,
    debug: bool = False,
) -> None:
    """Read, convert and write every planned job, one at a time: ``convert(image)`` takes the
    read :class:`~glean_sr.io.ImageData` and returns ``(result, steps)``, the steps being what
    was done in words (``glean-sr colorize`` and ``retouch``). One line per job through
    ``report``; a bad file is its line and the others go on. The report is closed at the end.
    """

    def work(job: Job) -> tuple[Any, list[str], list[str]]:
        image = read_image(job.path, max_pixels=max_pixels)
        result, steps = convert(image)
        return image, steps, _write(result, job.output, overwrite)

    try:
        _make_folder(out_dir)
        for job in jobs:
            if _skipped(job, overwrite, report):
                continue
            done = _guarded(job, report, debug, partial(work, job))
            if done is not None:
                image, steps, notes = done
                report.ok(
                    f"{job.path}: {'; '.join([image.describe(), *steps, *notes])} -> {job.output}"
                )
    finally:
        report.close()


@dataclass
class PhotoCounts:
    """Faces restored over all photos, and photos in which none was found."""

    faces: int = 0
    without_faces: int = 0


def _restore_photo(
    restorer: Any,
    job: Job,
    max_pixels: int | None,
    overwrite: bool,
    comparison: bool,
    save_crops: bool,
    boxes: bool = False,
) -> tuple[Any, Any, list[str], list[str]]:
    """Read, restore and write one photo: ``(photo, result, writer notes, what was written)``.

    The restored photo is written last: a run killed midway leaves it absent, so the rerun
    (which skips existing outputs) makes the photo's comparison, boxes and crops again; those
    left by the killed run are replaced."""
    photo = read_image(job.path, max_pixels=max_pixels)
    result = restorer(photo)
    written = [str(job.output)]
    stem = job.output.with_suffix("")
    if comparison:
        compare = stem.with_name(stem.name + "_compare").with_suffix(job.output.suffix)
        _write(result.comparison(), compare, overwrite=True)
        written.append(str(compare))
    if boxes:
        drawn = stem.with_name(stem.name + "_boxes").with_suffix(job.output.suffix)
        _write(result.boxes(), drawn, overwrite=True)
        written.append(str(drawn))
    if save_crops and result.record.faces:
        folder = stem.with_name(stem.name + "_crops")
        result.save_crops(folder, overwrite=True)
        written.append(f"{folder}/ ({len(result.record.faces)} face(s))")
    notes = _write(result.data, job.output, overwrite)
    return photo, result, notes, written


def restore_photos(
    restorer: Any,
    jobs: list[Job],
    out_dir: Path,
    report: Reporter,
    *,
    overwrite: bool = False,
    max_pixels: int | None = None,
    comparison: bool = True,
    save_crops: bool = False,
    boxes: bool = False,
    debug: bool = False,
) -> PhotoCounts:
    """Restore the faces of every planned photo with ``restorer`` (a
    :class:`~glean_sr.inference.faces.FaceRestorer`) and write, per photo, the result, with
    ``comparison`` the side-by-side ``<output stem>_compare.<ext>``, with ``boxes`` the restored
    photo with what was detected drawn on it (``<output stem>_boxes.<ext>``), and with
    ``save_crops`` each face as the model saw it and as it came back in ``<output stem>_crops/``.

    ``restorer`` may be ``None`` when no job is to be run (every output exists). ``debug``
    re-raises unexpected exceptions instead of reporting them as internal errors. The report
    is closed at the end.
    """
    counts = PhotoCounts()
    try:
        _make_folder(out_dir)
        for job in jobs:
            if _skipped(job, overwrite, report):
                continue
            work = partial(
                _restore_photo, restorer, job, max_pixels, overwrite, comparison, save_crops, boxes
            )
            done = _guarded(job, report, debug, work)
            if done is None:
                continue
            photo, result, notes, written = done
            counts.faces += len(result.record.faces)
            counts.without_faces += not result.record.faces
            steps = "; ".join([photo.describe(), *result.record.steps, *notes])
            report.ok(f"{job.path}: {steps} -> {', '.join(written)}")
    finally:
        report.close()
    return counts


def summary_line(
    report: Reporter, total: int, seconds: float, out_dir: Path, done: str | None = None
) -> str:
    """``done: 3 restored, 1 failed of 4 in 2.0 s; outputs in OUT_DIR``; ``done`` replaces the
    ``"<n> restored"`` part."""
    parts = [done if done is not None else f"{report.done} restored"]
    if report.failed:
        parts.append(f"{report.failed} failed")
    if report.skipped:
        parts.append(f"{report.skipped} skipped (output exists)")
    return f"done: {', '.join(parts)} of {total} in {seconds:.1f} s; outputs in {out_dir}"


__all__ = [
    "Job",
    "PhotoCounts",
    "Reporter",
    "check_output_options",
    "collect_inputs",
    "convert_files",
    "output_name_pattern",
    "plan_outputs",
    "printable",
    "restore_photos",
    "summary_line",
    "upscale_files",
]
