"""``evaluate()``: score restorers against ground truth the way the GLEAN papers report it.

The protocol of the released models' README numbers (mmediting's GLEAN configs):

* LQ inputs are made from the GT with MATLAB's ``imresize(gt, 1/scale, 'bicubic')`` and stored
  as 8-bit images (unless an LQ folder is given);
* the restored image is clamped to ``[0, 1]`` and rounded to 8 bits, ties to even, before
  scoring (mmediting's ``tensor2img``; :func:`glean_sr.io.quantize`), which is also what a
  saved PNG holds;
* PSNR and SSIM on the RGB channels, no border crop, averaged over images.

Bicubic up-sampling of the same LQ (MATLAB-compatible) is always scored as the baseline row.

Images are streamed in batches: memory stays bounded whatever the number of images (the
per-image CSV is written as it goes; only the report's first few crops and the FID statistics,
``2048 x 2048`` per method, are kept).

Under torchrun (``torchrun --nproc-per-node N -m glean_sr eval ...``) each process scores a
contiguous run of the GT images on its own device (:mod:`glean_sr.inference.sharding`); rank 0
gathers the per-image rows (in GT order), the sums behind the means and the FID statistics, and
writes the report once. Per-image values are those of one process; means and FID agree with one
process's to float64 rounding (the sums are added in another order).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes, remove_interrupted_writes
from ..devices import resolve_device
from ..errors import ConfigError, GleanError, ImageError
from ..inference.cpu_fast import accelerate
from ..inference.sharding import Shard
from ..io import (
    IMAGE_SUFFIXES,
    list_images,
    quantize,
    read_image_size,
    read_rgb,
    round_to_8bit,
    tensor_to_pixels,
)
from ..training.distributed import DistInfo
from ..weights.pretrained import load_model
from .metrics import psnr, ssim

#: every metric ``evaluate`` knows; FID is a data-set metric, the others are per image
METRICS = ("psnr", "ssim", "niqe", "lpips", "fid", "identity", "arcface", "chars")
CHANNEL_CHOICES = ("rgb", "y", "both")

CSV_NAME = "per_image.csv"
SUMMARY_NAME = "summary.json"
HTML_NAME = "report.html"
IMAGES_DIR = "images"

#: what each reported column means: range, direction, colour space (border crop is global)
DEFINITIONS: dict[str, dict[str, str]] = {
    "psnr_rgb": {
        "text": "PSNR in dB over the R, G and B channels, 10 log10(1 / MSE), images in [0, 1]",
        "range": "[0, inf), typically 20-40",
        "better": "higher",
    },
    "psnr_y": {
        "text": "PSNR in dB on the BT.601 luma Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 "
        "(MATLAB rgb2ycbcr), data range 1",
        "range": "[0, inf), typically 20-40",
        "better": "higher",
    },
    "ssim_rgb": {
        "text": "SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5, valid region), mean "
        "over R, G and B",
        "range": "[-1, 1]",
        "better": "higher",
    },
    "ssim_y": {
        "text": "SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5) on BT.601 luma Y",
        "range": "[-1, 1]",
        "better": "higher",
    },
    "niqe": {
        "text": "NIQE (Mittal et al. 2013, MATLAB-compatible, 96x96 blocks) on the 8-bit Y "
        "channel; no reference needed",
        "range": "[0, inf), about 3-5 for sharp photos",
        "better": "lower",
    },
    "lpips": {
        "text": "LPIPS v0.1 (Zhang et al. 2018) distance to GT, inputs scaled to [-1, 1]",
        "range": "[0, ~1]",
        "better": "lower",
    },
    "fid": {
        "text": "FID (Heusel et al. 2017) between the method's outputs and the GT set, "
        "InceptionV3 pool3 features at 299x299 (bilinear), over the whole set",
        "range": "[0, inf)",
        "better": "lower",
    },
    "identity_dlib": {
        "text": "cosine similarity of dlib's 128-d face descriptors of output and GT (face "
        "found on the GT, same box used for both)",
        "range": "[-1, 1]",
        "better": "higher",
    },
    "char_acc": {
        "text": "share of images whose character a glyph classifier (glean-sr "
        "train-glyph-classifier) reads correctly; the label comes from the file name "
        "(..._u0041.png is A); the GT row is the classifier's ceiling",
        "range": "[0, 1]",
        "better": "higher",
    },
    "fid_glyph": {
        "text": "FID between the method's outputs and the GT set in the glyph classifier's "
        "penultimate features (a domain FID that needs no download), over the whole set",
        "range": "[0, inf)",
        "better": "lower",
    },
    "identity_arcface": {
        "text": "cosine similarity of ArcFace (iresnet) 512-d embeddings of output and GT, the "
        "whole image resized to 112x112",
        "range": "[-1, 1]",
        "better": "higher",
    },
}


@dataclass(frozen=True)
class EvalOptions:
    """What ``evaluate`` measures and how.

    Attributes:
        metrics: any of :data:`METRICS`; ``lpips``, ``fid`` and ``arcface`` need weight files.
        channel: ``"rgb"``, ``"y"`` (BT.601 luma) or ``"both"``: where PSNR/SSIM are computed.
        crop_border: pixels removed from each edge before PSNR/SSIM/NIQE (0 in the release).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        batch_size: images restored at once.
        fast: on the CPU, run GLEAN and LightGLEAN through the CPU fast path
            (:mod:`glean_sr.inference.cpu_fast`); ``False`` runs the plain definitions.
        report_images: how many images (the first ones) get crops in the HTML report.
        crop_size: side of the centre crop shown per image (output pixels).
        lpips_weights, lpips_backbone, fid_weights, arcface_weights: weight files for those
            metrics (see :mod:`.lpips`, :mod:`.fid`, :mod:`.arcface`).
        glyph_classifier: the classifier directory of the ``chars`` metric (character
            accuracy and ``fid_glyph``; :mod:`.glyph_classifier`).
        overwrite: replace report files already in the output folder.
    """

    metrics: tuple[str, ...] = ("psnr", "ssim")
    channel: str = "rgb"
    crop_border: int = 0
    device: str = "auto"
    batch_size: int = 1
    fast: bool = True
    report_images: int = 8
    crop_size: int = 256
    lpips_weights: str | None = None
    lpips_backbone: str | None = None
    fid_weights: str | None = None
    arcface_weights: str | None = None
    glyph_classifier: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ConfigError(
                f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(METRICS)}"
            )
        if len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"metrics listed twice: {', '.join(self.metrics)}")
        if self.channel not in CHANNEL_CHOICES:
            raise ConfigError(f"channel must be one of {', '.join(CHANNEL_CHOICES)}")
        for name in ("crop_border", "report_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "crop_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def channels(self) -> tuple[str, ...]:
        return ("rgb", "y") if self.channel == "both" else (self.channel,)

    def columns(self) -> list[str]:
        """Per-image metric columns, in report order."""
        cols = []
        for m in self.metrics:
            if m in ("psnr", "ssim"):
                cols += [f"{m}_{c}" for c in self.channels]
            elif m in ("niqe", "lpips"):
                cols.append(m)
            elif m == "identity":
                cols.append("identity_dlib")
            elif m == "arcface":
                cols.append("identity_arcface")
            elif m == "chars":
                cols.append("char_acc")
        return cols


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding the pixels (the decoded size
    is checked again when the image is read); an image over the pixel limit is refused here,
    so it is skipped like an unreadable one instead of stopping the run as a wrong size."""
    width, height = read_image_size(path)
    return height, width


@dataclass
class _Model:
    name: str
    source: str
    module: Any


#: the model folders ``glean-sr train`` writes in a run folder: named after the run
_RUN_OUTPUTS = ("final", "best")


def _model_name(source: Any, taken: set[str]) -> str:
    from ..presets import PRESETS

    if isinstance(source, torch.nn.Module):
        base = type(source).__name__
    elif str(source) in PRESETS:
        base = str(source)
    else:
        p = Path(str(source))
        base = p.name if p.is_dir() else p.stem
        if p.is_dir() and base in _RUN_OUTPUTS and p.parent.name:
            base = p.parent.name if base == "final" else f"{p.parent.name}-{base}"  # runs/x/final
    base = base.replace(",", "_") or "model"
    name, k = base, 2
    while name in taken or name in ("bicubic", "gt", "lq"):
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _load_models(sources: Sequence[Any], device: torch.device, fast: bool) -> list[_Model]:
    if not sources:
        raise ConfigError("give at least one model to evaluate (-m MODEL)")
    taken: set[str] = set()
    models = []
    for src in sources:
        if isinstance(src, torch.nn.Module):
            module = src.to(device).eval()
        else:
            module = load_model(src, device=device)
        if fast:  # as the Upscaler runs models
            module = accelerate(module, device)
        if getattr(module, "img_channels", 3) != 3:
            raise ConfigError(f"{src}: only RGB models can be evaluated")
        if not hasattr(module, "in_size"):  # a general upscaler such as Real-ESRGAN's RRDBNet
            raise ConfigError(
                f"{src}: eval scores restorers of one input size (GLEAN, LightGLEAN); this "
                f"{module.config.model_type} takes any size: restore the LQ folder with glean-sr "
                f"upscale and score the results against the GT with your metric tool"
            )
        models.append(_Model(_model_name(src, taken), str(src), module))
    sizes = {(m.module.in_size, m.module.out_size) for m in models}
    if len(sizes) > 1:
        described = ", ".join(
            f"{m.name} {m.module.in_size} -> {m.module.out_size} (x{m.module.scale})"
            for m in models
        )
        raise ConfigError(
            f"the models restore different sizes ({described}); one GT set fits one size: "
            f"evaluate them in separate runs"
        )
    return models


@dataclass
class _Item:
    name: str
    gt_path: Path
    lq_path: Path | None


def _plan(
    gt_dir: Path, lq_dir: Path | None, in_size: int, out_size: int, what: str
) -> tuple[list[_Item], list[dict[str, str]]]:
    """Pair GT and LQ files and check every size from the headers, before any work is done."""
    if not gt_dir.is_dir():
        raise GleanError(f"--gt {gt_dir}: not a directory")
    gts = list_images(gt_dir)
    if not gts:
        raise GleanError(
            f"--gt {gt_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this directory"
        )
    skipped: list[dict[str, str]] = []
    lq_by_stem: dict[str, Path] = {}
    if lq_dir is not None:
        if not lq_dir.is_dir():
            raise GleanError(f"--lq {lq_dir}: not a directory")
        for p in list_images(lq_dir):
            lq_by_stem.setdefault(p.stem, p)
    items, wrong_gt, wrong_lq, missing_lq = [], [], [], []
    for gt in gts:
        try:
            hw = image_size(gt)
        except ImageError as exc:
            skipped.append({"image": gt.name, "reason": str(exc)})
            continue
        if hw != (out_size, out_size):
            wrong_gt.append((gt, hw))
            continue
        lq = None
        if lq_dir is not None:
            lq = lq_by_stem.get(gt.stem)
            if lq is None:
                missing_lq.append(gt)
                continue
            try:
                lq_hw = image_size(lq)
            except ImageError as exc:
                skipped.append({"image": gt.name, "reason": str(exc)})
                continue
            if lq_hw != (in_size, in_size):
                wrong_lq.append((lq, lq_hw))
                continue
        items.append(_Item(gt.name, gt, lq))
    if wrong_gt:
        path, (h, w) = wrong_gt[0]
        raise GleanError(
            f"--gt {gt_dir}: {len(wrong_gt)} of {len(gts)} images are not {out_size}x{out_size} "
            f"(e.g. {path.name} is {w}x{h}), but {what} restores {in_size} -> {out_size}: use GT "
            f"images of {out_size}x{out_size} or a model made for this resolution"
        )
    if missing_lq:
        raise GleanError(
            f"--lq {lq_dir}: no LQ image for {len(missing_lq)} GT images (e.g. "
            f"{missing_lq[0].stem}.*); LQ files must have the GT file names (any image suffix)"
        )
    if wrong_lq:
        path, (h, w) = wrong_lq[0]
        raise GleanError(
            f"--lq {lq_dir}: {len(wrong_lq)} images are not {in_size}x{in_size} (e.g. "
            f"{path.name} is {w}x{h}), the input size of {what}; leave out --lq to make LQ from "
            f"GT with MATLAB bicubic"
        )
    if not items:
        raise GleanError(f"--gt {gt_dir}: none of the {len(gts)} images could be read")
    return items, skipped


def _batches(items: list[_Item], size: int) -> Iterator[list[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6f}"


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass
class _Running:
    """Per-method sums for the summary means (finite values only, count of the rest)."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    non_finite: dict[str, int] = field(default_factory=dict)

    def add(self, column: str, value: float | None) -> None:
        if value is None or math.isnan(value):
            return
        if math.isinf(value):
            self.non_finite[column] = self.non_finite.get(column, 0) + 1
            return
        self.sums[column] = self.sums.get(column, 0.0) + value
        self.counts[column] = self.counts.get(column, 0) + 1

    def merge(self, other: _Running) -> None:
        """Add another process's sums and counts."""
        for mine, theirs in (
            (self.sums, other.sums),
            (self.counts, other.counts),
            (self.non_finite, other.non_finite),
        ):
            for column, value in theirs.items():
                mine[column] = mine.get(column, 0) + value

    def mean(self, column: str) -> float | None:
        if self.non_finite.get(column):
            return math.inf  # e.g. an output identical to its GT: PSNR is infinite
        n = self.counts.get(column, 0)
        return self.sums[column] / n if n else None


def _read_pair(
    item: _Item, in_size: int, out_size: int, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """GT and LQ of one item, float32 ``[H, W, 3]`` in [0, 1]; LQ made from GT if not given."""
    from ..data.imresize import imresize

    gt = read_rgb(item.gt_path)
    if gt.shape[:2] != (out_size, out_size):
        raise ImageError(
            f"{item.gt_path}: decoded as {gt.shape[1]}x{gt.shape[0]}, not {out_size}x{out_size}"
        )
    if item.lq_path is None:  # MATLAB imresize of the 8-bit image (rounds like MATLAB)
        return gt, imresize(quantize(gt, 8), 1.0 / scale).astype(np.float32) / 255.0
    lq = read_rgb(item.lq_path)
    if lq.shape[:2] != (in_size, in_size):
        raise ImageError(
            f"{item.lq_path}: decoded as {lq.shape[1]}x{lq.shape[0]}, not {in_size}x{in_size}"
        )
    return gt, lq


def _restore(
    loaded: list[_Model], lqs: list[np.ndarray], scale: int, device: torch.device
) -> dict[str, list[np.ndarray]]:
    """Bicubic (MATLAB-compatible, on the 8-bit LQ) and every model's outputs for a batch,
    rounded to 8 bits."""
    from ..data.imresize import imresize

    outputs = {
        "bicubic": [imresize(quantize(lq, 8), float(scale)).astype(np.float32) / 255 for lq in lqs]
    }
    lq_t = torch.from_numpy(np.stack(lqs)).permute(0, 3, 1, 2).to(device)  # [N, 3, h, w]
    with torch.inference_mode():
        for m in loaded:
            sr = m.module(lq_t * 2 - 1)  # [N, 3, H, W], RGB about [-1, 1]
            outputs[m.name] = [round_to_8bit(x) for x in tensor_to_pixels(sr)]
    return outputs


def _score_pairs(
    gts: list[np.ndarray],
    outputs: dict[str, list[np.ndarray]],
    values: dict[str, list[dict[str, float | None]]],
    options: EvalOptions,
) -> None:
    """PSNR and SSIM of every output against its GT."""
    for method, images in outputs.items():
        for i, (sr, gt) in enumerate(zip(images, gts, strict=True)):
            for c in options.channels:
                kw = {"crop_border": options.crop_border, "channel": c}
                if "psnr" in options.metrics:
                    values[method][i][f"psnr_{c}"] = psnr(sr, gt, **kw)
                if "ssim" in options.metrics:
                    values[method][i][f"ssim_{c}"] = ssim(sr, gt, **kw)


def evaluate(
    models: Sequence[Any],
    gt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    lq_dir: str | os.PathLike | None = None,
    options: EvalOptions | None = None,
    progress: bool = True,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Restore every GT image's LQ with each model and score the results; write the report.

    Args:
        models: preset names, model files/directories (anything ``load_model`` takes) or
            loaded restorers; all must restore the same ``in_size -> out_size``.
        gt_dir: folder of ground-truth images, each ``out_size x out_size``.
        out_dir: report folder (created): ``per_image.csv``, ``summary.json``, ``report.html``
            and ``images/``.
        lq_dir: folder of LQ inputs named like the GT files (``in_size x in_size``); without it
            LQ is made from GT with MATLAB-compatible bicubic at the models' factor.
        options: what to measure (:class:`EvalOptions`).
        progress: show a progress bar on stderr.
        shard: this process's part of a torchrun job
            (:meth:`glean_sr.inference.sharding.Shard.join`; its device replaces
            ``options.device``): each process scores a contiguous run of the GT images, and
            rank 0 gathers the rows, the sums and the FID statistics and writes the report
            once. ``None``: everything in this process.

    Returns:
        The summary (also written to ``summary.json``), on every process.

    Raises:
        GleanError: one-line problems with the inputs (sizes, missing files, weights).
    """
    from tqdm.auto import tqdm

    from . import report
    from .scorers import build_scorers

    options = options or EvalOptions()
    shard = shard or Shard(DistInfo(), resolve_device(options.device))
    gt_dir, out = Path(gt_dir), Path(out_dir)
    lq_path = Path(lq_dir) if lq_dir is not None else None

    def check_output() -> None:
        if out.exists() and not out.is_dir():
            raise GleanError(f"-o {out}: exists and is not a directory")
        existing = [n for n in (CSV_NAME, SUMMARY_NAME, HTML_NAME) if (out / n).exists()]
        if existing and not options.overwrite:
            raise GleanError(
                f"-o {out}: already holds a report ({', '.join(existing)}); pass --overwrite"
            )
        remove_interrupted_writes(out / CSV_NAME)  # the parts of a run that was killed

    shard.from_main(check_output)
    device = shard.device
    loaded = _load_models(models, device, options.fast)
    first = loaded[0].module
    in_size, out_size, scale = first.in_size, first.out_size, first.scale
    what = loaded[0].name if len(loaded) == 1 else "the models"
    items, skipped = shard.from_main(lambda: _plan(gt_dir, lq_path, in_size, out_size, what))
    scorers = build_scorers(options, out_size=out_size, device=device, num_images=len(items))

    methods = ["bicubic", *[m.name for m in loaded]]
    columns = options.columns()
    # no-reference metrics and the classifier's ceiling are also given for the GT
    has_gt_row = "niqe" in options.metrics or "chars" in options.metrics
    rows_methods = [*methods, "gt"] if has_gt_row else methods
    running = {m: _Running() for m in rows_methods}

    out.mkdir(parents=True, exist_ok=True)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    first_item, stop = shard.bounds(len(items))
    mine = items[first_item:stop]
    read_skipped: list[dict[str, str]] = []
    shown: list[dict[str, Any]] = []  # crops of this process's first report_images images
    started = time.perf_counter()
    done = 0
    # this process's rows; rank 0's file becomes per_image.csv, with the others' appended
    fd, csv_tmp = tempfile.mkstemp(prefix=f".{CSV_NAME}.", suffix=".tmp", dir=out)
    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8", newline="") as f,
            tqdm(
                total=len(mine), unit="img", disable=not (progress and shard.is_main), desc="eval"
            ) as bar,
        ):
            writer = csv.writer(f)
            if shard.is_main:
                writer.writerow(["image", "method", *columns, "note"])
            index = first_item  # of the next image in items
            for batch in _batches(mine, options.batch_size):
                names, indices, gts, lqs = [], [], [], []
                for item in batch:
                    index += 1
                    try:
                        gt, lq = _read_pair(item, in_size, out_size, scale)
                    except ImageError as exc:
                        read_skipped.append({"image": item.name, "reason": str(exc)})
                        bar.write(f"skipped: {exc}")
                        bar.update(1)
                        continue
                    names.append(item.name)
                    indices.append(index - 1)
                    gts.append(gt)
                    lqs.append(lq)
                if not names:
                    continue
                outputs = _restore(loaded, lqs, scale, device)
                values = {m: [dict.fromkeys(columns) for _ in names] for m in rows_methods}
                notes = {m: ["" for _ in names] for m in rows_methods}
                _score_pairs(gts, outputs, values, options)
                for scorer in scorers:
                    scorer.score(gts, outputs, values, notes, names)
                for i, name in enumerate(names):
                    for m in rows_methods:
                        row = values[m][i]
                        writer.writerow([name, m, *(_fmt(row[c]) for c in columns), notes[m][i]])
                        for c in columns:
                            running[m].add(c, row[c])
                    if len(shown) < options.report_images:
                        per_panel = {m: values[m][i] for m in methods}
                        if has_gt_row:
                            per_panel["GT"] = values["gt"][i]
                        shown.append(
                            report.save_crops(
                                out / IMAGES_DIR,
                                index=indices[i],
                                name=name,
                                lq=lqs[i],
                                outputs={m: outputs[m][i] for m in methods},
                                gt=gts[i],
                                crop_size=options.crop_size,
                                values=per_panel,
                            )
                        )
                done += len(names)
                bar.update(len(names))
        part = (csv_tmp, done, running, read_skipped, shown, [s.state() for s in scorers])
        parts = shard.gather_to_main(part)
    except BaseException:
        if os.path.exists(csv_tmp):
            os.unlink(csv_tmp)
        raise

    def finish() -> dict[str, Any]:
        try:
            return _finish(parts)
        finally:
            for path, *_ in parts:  # rank 0 removes every process's rows file
                if os.path.exists(path):
                    os.unlink(path)

    def _finish(parts: list[tuple]) -> dict[str, Any]:
        total = sum(p[1] for p in parts)
        if total == 0:
            raise GleanError(f"--gt {gt_dir}: none of the {len(items)} images could be read")
        with open(csv_tmp, "ab") as whole:
            for path, *_ in parts[1:]:  # contiguous runs: in rank order, the rows are in order
                with open(path, "rb") as rows:
                    shutil.copyfileobj(rows, whole)
        os.replace(csv_tmp, out / CSV_NAME)
        sums = {m: _Running() for m in rows_methods}
        shown_all: list[dict[str, Any]] = []
        for _, _, process_sums, read_skips, crops, _ in parts:
            for m in rows_methods:
                sums[m].merge(process_sums[m])
            skipped.extend(read_skips)
            shown_all.extend(crops)
        for k, scorer in enumerate(scorers):  # rank 0's own statistics are in it already
            scorer.merge([states[k] for *_, states in parts[1:]])
        for crop in shown_all[options.report_images :]:  # candidates of later processes
            shutil.rmtree(out / Path(next(iter(crop["files"].values()))).parent)
        shown = shown_all[: options.report_images]
        seconds = time.perf_counter() - started

        results: dict[str, dict[str, float | None]] = {}
        for m in rows_methods:
            results[m] = {c: sums[m].mean(c) for c in columns if sums[m].mean(c) is not None}
        for scorer in scorers:
            for m, extra in scorer.finish().items():
                results.setdefault(m, {}).update(extra)
        summary = _summary(
            loaded, gt_dir, lq_path, options, scale, in_size, out_size, total, skipped, results,
            seconds,
        )  # fmt: skip
        infinite = {m: dict(sums[m].non_finite) for m in rows_methods if sums[m].non_finite}
        if infinite:  # why a mean is infinite (null in JSON): outputs identical to their GT
            summary["infinite_values"] = infinite
        text = json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(out / SUMMARY_NAME, text.encode())
        atomic_write_bytes(out / HTML_NAME, report.render_html(summary, shown).encode())
        return summary

    return shard.from_main(finish)


def _json_safe(obj: Any) -> Any:
    """Infinite/NaN floats become ``null`` (JSON has no such numbers)."""
    if isinstance(obj, float):
        return _finite_or_none(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _summary(
    loaded: list[_Model],
    gt_dir: Path,
    lq_dir: Path | None,
    options: EvalOptions,
    scale: int,
    in_size: int,
    out_size: int,
    done: int,
    skipped: list[dict[str, str]],
    results: dict[str, dict[str, float | None]],
    seconds: float,
) -> dict[str, Any]:
    from .. import __version__

    columns = [
        *options.columns(),
        *(["fid"] if "fid" in options.metrics else []),
        *(["fid_glyph"] if "chars" in options.metrics else []),
    ]
    lq = (
        {"dir": str(lq_dir)}
        if lq_dir is not None
        else {"made_from_gt": f"MATLAB-compatible bicubic imresize by 1/{scale}, 8-bit"}
    )
    opts = asdict(options)
    opts.pop("overwrite")
    return {
        "glean_sr_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "gt_dir": str(gt_dir),
        "lq": lq,
        "models": [
            {"name": m.name, "source": m.source, "in_size": in_size, "out_size": out_size}
            for m in loaded
        ],
        "scale": scale,
        "protocol": {
            "channel": options.channel,
            "crop_border": options.crop_border,
            "outputs": "clamped to [0, 1] and rounded to 8 bits before scoring",
            "baseline": "bicubic: MATLAB-compatible imresize of the LQ by the model's factor",
            "mean": "per-image values averaged over images; a mean with an infinite value "
            "(PSNR of an output identical to its GT) is infinite, written null in JSON, and "
            "'infinite_values' counts them",
        },
        "options": opts,
        "num_images": done,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "columns": columns,
        "definitions": {c: DEFINITIONS[c] for c in columns},
        "results": results,
    }
