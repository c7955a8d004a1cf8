"""The visual report of ``glean-sr eval``: one self-contained folder with ``report.html`` and the
crops it shows under ``images/`` (relative links, so the folder can be moved or zipped).

The page has the summary table (one row per method, the best value of each column in bold, the
metric definitions below it) and, for the first few images, side-by-side centre crops of the LQ
input (shown enlarged with nearest-neighbour pixels), bicubic, each model and the GT, each with
its per-image metrics.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ..io import quantize


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "image"


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(quantize(img, 8)).save(path, format="PNG")


def save_crops(
    folder: Path,
    *,
    index: int,
    name: str,
    lq: np.ndarray,
    outputs: dict[str, np.ndarray],
    gt: np.ndarray,
    crop_size: int,
    values: dict[str, dict[str, float | None]],
) -> dict[str, Any]:
    """Write the centre crops of one image (``crop_size`` output pixels and the matching LQ
    region) and return what the HTML needs about them."""
    size = gt.shape[0]
    scale = size // lq.shape[0]
    side = min(crop_size, size)
    side -= side % scale  # the LQ crop must cover the same area
    side = max(side, scale)
    top = (size - side) // 2
    top -= top % scale
    sub = folder / f"{index:05d}_{_safe(Path(name).stem)}"
    sub.mkdir(parents=True, exist_ok=True)
    files = {}
    lq_crop = lq[top // scale : (top + side) // scale, top // scale : (top + side) // scale]
    panels = [("LQ", lq_crop), *outputs.items(), ("GT", gt[top : top + side, top : top + side])]
    for label, img in panels:
        if label not in ("LQ", "GT"):
            img = img[top : top + side, top : top + side]
        file = sub / f"{_safe(label)}.png"
        _save_png(file, img)
        files[label] = f"{folder.name}/{sub.name}/{file.name}"
    return {
        "name": name,
        "files": files,
        "values": values,
        "crop": [top, top, side, side],
        "size": size,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}"
    return html.escape(str(value))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
p.meta { color: #555; margin: 2px 0; font-size: 13px; }
table.metrics { border-collapse: collapse; margin: 16px 0; font-size: 14px; }
table.metrics th, table.metrics td { border: 1px solid #bbb; padding: 4px 10px; text-align: right; }
table.metrics th { background: #e8eef7; }
table.metrics th:first-child { text-align: left; }
table.metrics td.method { text-align: left; font-weight: 600; }
table.metrics td.best { font-weight: 700; background: #dff3df; }
dl.defs { font-size: 12px; color: #444; }
dl.defs dt { font-weight: 600; float: left; clear: left; width: 140px; }
dl.defs dd { margin-left: 150px; margin-bottom: 2px; }
div.image { margin: 18px 0 28px 0; }
div.row { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; text-align: center; font-size: 12px; }
figure img { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #999;
  display: block; background: #eee; }
figcaption { margin-top: 3px; max-width: 192px; }
figcaption b { display: block; font-size: 13px; }
"""


def render_html(summary: dict[str, Any], shown: list[dict[str, Any]]) -> str:
    """The report page for ``summary`` (see :func:`glean_sr.evaluation.evaluate.evaluate`)."""
    columns: list[str] = summary["columns"]
    results: dict[str, dict[str, float | None]] = summary["results"]
    defs = summary["definitions"]
    best: dict[str, float] = {}
    for c in columns:
        vals = [
            r[c]
            for m, r in results.items()
            if m != "gt" and isinstance(r.get(c), float) and math.isfinite(r[c])
        ]
        if vals:
            best[c] = max(vals) if defs[c]["better"] == "higher" else min(vals)
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>glean-sr eval: {esc(', '.join(m['name'] for m in summary['models']))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>glean-sr evaluation</h1>",
    ]
    models = ", ".join(
        f"{esc(m['name'])} ({m['in_size']} &rarr; {m['out_size']})" for m in summary["models"]
    )
    lq = summary["lq"]
    lq_text = lq.get("dir") or lq.get("made_from_gt")
    proto = summary["protocol"]
    out += [
        f"<p class='meta'>models: {models}, x{summary['scale']}</p>",
        f"<p class='meta'>GT: {esc(summary['gt_dir'])} &middot; {summary['num_images']} images"
        f"{' &middot; ' + str(len(summary['skipped'])) + ' skipped' if summary['skipped'] else ''}"
        f" &middot; LQ: {esc(str(lq_text))}</p>",
        f"<p class='meta'>PSNR/SSIM on {esc(proto['channel'])}, border crop "
        f"{proto['crop_border']}; outputs {esc(proto['outputs'])}</p>",
        "<table class='metrics' id='summary'><tr><th>method</th>",
        *(
            f"<th>{esc(c)} {'&uarr;' if defs[c]['better'] == 'higher' else '&darr;'}</th>"
            for c in columns
        ),
        "</tr>",
    ]
    for method, row in results.items():
        cells = []
        for c in columns:
            v = row.get(c)
            cls = " class='best'" if c in best and v == best[c] and method != "gt" else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        label = "GT (reference)" if method == "gt" else method
        out.append(f"<tr><td class='method'>{esc(label)}</td>{''.join(cells)}</tr>")
    out.append("</table><dl class='defs'>")
    for c in columns:
        d = defs[c]
        out.append(
            f"<dt>{esc(c)}</dt><dd>{esc(d['text'])}; range {esc(d['range'])}, "
            f"{esc(d['better'])} is better</dd>"
        )
    out.append("</dl>")
    if shown:
        out.append(f"<h2>First {len(shown)} images (centre crops)</h2>")
    per_image_cols = [c for c in columns if c != "fid"]
    for item in shown:
        top, left, h, w = item["crop"]
        out.append(
            f"<div class='image'><p class='meta'><b>{esc(item['name'])}</b> &middot; crop "
            f"{w}x{h} at ({left}, {top}) of {item['size']}x{item['size']}</p><div class='row'>"
        )
        for label, src in item["files"].items():
            vals = item["values"].get(label, {})
            text = "".join(
                f"<br>{esc(c)} {_fmt(vals[c])}" for c in per_image_cols if vals.get(c) is not None
            )
            out.append(
                f"<figure><img src='{quote(src)}' alt='{esc(label)}'>"
                f"<figcaption><b>{esc(label)}</b>{text}</figcaption></figure>"
            )
        out.append("</div></div>")
    out.append(
        f"<p class='meta'>glean-sr {esc(summary['glean_sr_version'])} &middot; "
        f"{esc(summary['created'])} &middot; per-image values: per_image.csv, summary: "
        f"summary.json</p></body></html>"
    )
    return "\n".join(out) + "\n"
