"""``evaluate_colorization()``: score colorizers against colour photos (``glean-sr eval`` with
colorizer models).

Each GT photo (any size; grey ones are skipped, they hold no colour to score) is colorized from
its own L* by :class:`~glean_sr.inference.colorize.Colorizer`, the result rounded to 8 bits as a
saved PNG holds it, and scored against the GT (also on the 8-bit grid):

* PSNR and SSIM on the RGB channels, no border crop (TPAMI 2023, Table 6, reports PSNR);
* colourfulness (Hasler and Suesstrunk 2003, :func:`~glean_sr.evaluation.metrics.colourfulness`)
  of the output, and of the GT for reference.

The baseline row ``grey`` is the zero-chroma prediction: the GT's L* with a* = b* = 0. The
report folder has the layout of the super-resolution report (``per_image.csv``,
``summary.json``, ``report.html`` with centre crops of the L* input, each method and the GT).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..colorspace import lab_to_rgb
from ..errors import GleanError, ImageError
from ..inference.colorize import Colorizer, lightness_of
from ..io import list_images, quantize, read_image, round_to_8bit
from .evaluate import CSV_NAME, DEFINITIONS, HTML_NAME, IMAGES_DIR, SUMMARY_NAME
from .metrics import colourfulness, psnr, ssim
from .report import render_html

COLUMNS = ["psnr_rgb", "ssim_rgb", "colourfulness"]

COLOURFULNESS = {
    "text": "colourfulness (Hasler and Suesstrunk 2003) of the image, sqrt(var(rg) + var(yb)) + "
    "0.3 sqrt(mean(rg)^2 + mean(yb)^2) on the 0-255 scale; compare with the GT row",
    "range": "[0, ~180], 0 for grey",
    "better": "higher",
}


def is_colorizer_source(source: Any) -> bool:
    """Whether ``source`` (a loaded model, a preset name or a model directory) is a
    colorizer, read from its config without loading weights."""
    from ..presets import PRESETS

    if isinstance(source, torch.nn.Module):
        return hasattr(source, "predict_ab")
    text = str(source)
    if text in PRESETS and not Path(text).exists():
        return PRESETS[text].config.model_type == "glean_colorizer"
    config = Path(text).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == (
            "glean_colorizer"
        )
    except (ValueError, AttributeError, OSError):
        return False


def _name(source: Any, taken: set[str]) -> str:
    base = type(source).__name__ if isinstance(source, torch.nn.Module) else Path(str(source)).name
    base = base or str(source)
    name, k = base, 2
    while name in taken or name in ("grey", "gt"):
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _grey(lightness: np.ndarray) -> np.ndarray:
    """The zero-chroma prediction ``[H, W, 3]`` in [0, 1] for L* ``[H, W]``."""
    lab = torch.zeros(3, *lightness.shape)
    lab[0] = torch.from_numpy(lightness)
    return lab_to_rgb(lab, clip=True).permute(1, 2, 0).numpy()


def _centre_square(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(side, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def _save_panels(
    folder: Path, index: int, name: str, panels: dict[str, np.ndarray], values: dict, side: int
) -> dict[str, Any]:
    """Centre crops of one image's panels as PNGs; what the HTML needs about them."""
    from PIL import Image

    sub = folder / f"{index:05d}_{''.join(c if c.isalnum() else '_' for c in Path(name).stem)}"
    sub.mkdir(parents=True, exist_ok=True)
    files = {}
    for k, (label, img) in enumerate(panels.items()):
        crop = _centre_square(img, side)
        Image.fromarray(quantize(crop, 8)).save(sub / f"{k}.png", format="PNG")
        files[label] = f"{folder.name}/{sub.name}/{k}.png"
    h, w = next(iter(panels.values())).shape[:2]
    square, s = min(h, w), min(side, h, w)
    return {  # the crop's place in the photo's centred square
        "name": name,
        "files": files,
        "values": values,
        "crop": [(square - s) // 2, (square - s) // 2, s, s],
        "size": square,
    }


def _lpips(net: Any, img: np.ndarray, gt: np.ndarray) -> float:
    """LPIPS between two ``[H, W, 3]`` images in [0, 1] (the network takes [-1, 1])."""

    def tensor(x: np.ndarray) -> Any:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)[None]
        return t.to(next(net.parameters()).device) * 2 - 1  # [1, 3, H, W]

    with torch.inference_mode():
        return float(net(tensor(img), tensor(gt)).item())


def evaluate_colorization(
    models: Sequence[Any],
    gt_dir: str | Path,
    out_dir: str | Path,
    *,
    device: str = "auto",
    report_images: int = 8,
    crop_size: int = 256,
    overwrite: bool = False,
    max_pixels: int | None = None,
    lpips_weights: str | Path | None = None,
    lpips_backbone: str | Path | None = None,
) -> dict[str, Any]:
    """Score colorizers (model sources or loaded models) on the colour photos in ``gt_dir``
    (see the module docstring) and write the report into ``out_dir``; returns the summary.
    With ``lpips_weights`` (the LPIPS v0.1 linear layers, as for SR) LPIPS is scored too."""
    from .. import __version__

    gt_path, out = Path(gt_dir), Path(out_dir)
    if not gt_path.is_dir():
        raise GleanError(f"--gt {gt_path}: not a directory")
    existing = [n for n in (CSV_NAME, SUMMARY_NAME, HTML_NAME) if (out / n).exists()]
    if existing and not overwrite:
        raise GleanError(
            f"-o {out}: already holds a report ({', '.join(existing)}); pass --overwrite"
        )
    columns = [*COLUMNS, *(["lpips"] if lpips_weights else [])]
    lpips_net = None
    if lpips_weights:
        from ..devices import resolve_device
        from .lpips import LPIPS

        lpips_device = resolve_device(device)
        lpips_net = LPIPS.from_files(lpips_weights, lpips_backbone, device=lpips_device)
    taken: set[str] = set()
    colorizers = {_name(m, taken): Colorizer.from_pretrained(m, device=device) for m in models}
    images = list_images(gt_path)
    if not images:
        raise GleanError(f"--gt {gt_path}: no images")
    methods = ["grey", *colorizers]
    sums = {m: {c: 0.0 for c in columns} for m in [*methods, "gt"]}
    skipped: list[dict[str, str]] = []
    shown: list[dict[str, Any]] = []
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["image", "method", *columns])
    out.mkdir(parents=True, exist_ok=True)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    started, count = time.perf_counter(), 0
    for path in images:
        try:
            photo = read_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            skipped.append({"image": path.name, "reason": str(exc)})
            continue
        if photo.is_grayscale:
            skipped.append({"image": path.name, "reason": "grey: no colour to score"})
            continue
        gt = round_to_8bit(photo.pixels)
        lightness = lightness_of(photo)
        outputs = {"grey": round_to_8bit(_grey(lightness))}
        for name, colorizer in colorizers.items():
            outputs[name] = round_to_8bit(colorizer.colorize_data(photo)[0].pixels)
        values: dict[str, dict[str, float | None]] = {}
        for method, img in outputs.items():
            values[method] = {
                "psnr_rgb": min(psnr(img, gt), 100.0),  # identical images: capped, not inf
                "ssim_rgb": ssim(img, gt) if min(gt.shape[:2]) >= 11 else None,
                "colourfulness": colourfulness(img),
            }
        if lpips_net is not None:
            for method, img in outputs.items():
                values[method]["lpips"] = _lpips(lpips_net, img, gt)
        values["gt"] = {c: None for c in columns} | {"colourfulness": colourfulness(gt)}
        for method, row in values.items():
            writer.writerow(
                [path.name, method, *("" if row[c] is None else row[c] for c in columns)]
            )
            for c in columns:
                if row[c] is not None:
                    sums[method][c] += row[c]
        if len(shown) < report_images:
            panels = {"L* input": _grey(lightness), **outputs, "GT": gt}
            labels = {"grey": "grey", "GT": "gt"}
            shown.append(
                _save_panels(
                    out / IMAGES_DIR,
                    count,
                    path.name,
                    panels,
                    {k: values.get(labels.get(k, k), {}) for k in panels},
                    crop_size,
                )
            )
        count += 1
    if count == 0:
        raise GleanError(f"--gt {gt_path}: no colour photo could be scored")
    results = {
        m: {c: (sums[m][c] / count if m != "gt" or c == "colourfulness" else None) for c in columns}
        for m in [*methods, "gt"]
    }
    first = next(iter(colorizers.values()))
    summary = {
        "task": "colorization",
        "glean_sr_version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gt_dir": str(gt_path),
        "num_images": count,
        "seconds": time.perf_counter() - started,
        "models": [
            {"name": n, "in_size": c.size, "out_size": c.size} for n, c in colorizers.items()
        ],
        "scale": 1,
        "lq": {"made_from_gt": "L* of the GT"},
        "protocol": {
            "channel": "rgb",
            "crop_border": 0,
            "outputs": "rounded to 8 bits; chroma predicted at "
            f"{first.size}x{first.size} and joined to the GT's full-resolution L*",
        },
        "columns": columns,
        "definitions": {
            "psnr_rgb": DEFINITIONS["psnr_rgb"],
            "ssim_rgb": DEFINITIONS["ssim_rgb"],
            "colourfulness": COLOURFULNESS,
            **({"lpips": DEFINITIONS["lpips"]} if lpips_net is not None else {}),
        },
        "results": results,
        "skipped": skipped,
    }
    atomic_write_bytes(out / CSV_NAME, rows.getvalue().encode())
    atomic_write_bytes(out / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write_bytes(out / HTML_NAME, render_html(summary, shown).encode())
    return summary


__all__ = ["COLUMNS", "evaluate_colorization", "is_colorizer_source"]
