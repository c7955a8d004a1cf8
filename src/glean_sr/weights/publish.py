"""``glean-sr publish``: a model folder ready for the Hugging Face Hub, and its upload.

The folder is what ``from_pretrained("owner/repo")`` and every glean-sr command read back:
``config.json``, ``model.safetensors`` (whose metadata records the original file's name, its
SHA-256 and the digest of its tensors) and ``README.md``, a model card with the Hub's YAML
front matter (licence, ``library_name: glean-sr``, tags, ``pipeline_tag: image-to-image``), the
architecture, where the weights came from, the input contract and, given an eval summary
(``glean-sr eval``'s ``summary.json``), the measured metrics.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import GleanError, WeightsError
from ..limits import loads_json
from ..serialization import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME
from . import hf_hub
from .pretrained import build_resolved, provenance, resolve

TAGS = ("glean", "super-resolution", "image-restoration", "stylegan2", "image-to-image")
_METRIC_NAMES = {
    "psnr_rgb": "PSNR (RGB, dB)",
    "psnr_y": "PSNR (Y, dB)",
    "ssim_rgb": "SSIM (RGB)",
    "ssim_y": "SSIM (Y)",
    "lpips": "LPIPS",
    "fid": "FID",
    "char_acc": "character accuracy",
    "fid_glyph": "glyph FID",
    "identity": "identity similarity",
}


@dataclass
class Published:
    folder: Path
    url: str | None  # the Hub repository, when uploaded


def _architecture(model: Any) -> list[str]:
    c = model.config
    counts = model.parameter_counts() if hasattr(model, "parameter_counts") else {}
    counts.setdefault("total", sum(p.numel() for p in model.parameters()))
    lines = [
        f"- **Type**: `{c.model_type}`, {_sizes(c)}",
        f"- **Parameters**: {counts['total']:,}"
        + (f" ({counts['bank']:,} in the frozen bank)" if counts.get("bank") else ""),
    ]
    bank = getattr(c, "channels", None)
    if bank:
        widths = ", ".join(f"{r}: {w}" for r, w in sorted(bank.items()))
        lines.append(f"- **Latent bank**: StyleGAN2, widths {{{widths}}}")
    return lines


def _sizes(c: Any) -> str:
    """What goes in and out: a fixed size (GLEAN) or any size times a factor (Real-ESRGAN)."""
    if hasattr(c, "in_size"):
        return (
            f"{c.in_size} x {c.in_size} px in, {c.out_size} x {c.out_size} px out "
            f"(x{c.out_size // c.in_size})"
        )
    return f"images of any size in, x{c.scale} out"


def _metrics(summary: dict[str, Any], row: str | None, source: str) -> tuple[str, list[str]]:
    """The eval summary's row for this model and the bicubic row, as a Markdown table."""
    results = summary.get("results")
    if not isinstance(results, dict) or not results:
        raise GleanError("the eval summary has no results (it is glean-sr eval's summary.json)")
    if row is None:
        names = [m.get("name") for m in summary.get("models", []) if m.get("source") == source]
        others = [k for k in results if k not in ("bicubic", "gt")]
        row = names[0] if names else (others[0] if len(others) == 1 else None)
        if row is None:
            raise GleanError(
                f"the eval summary has several models ({', '.join(others)}); name this one's "
                f"row with --eval-row"
            )
    if row not in results:
        raise GleanError(f"the eval summary has no row '{row}' (rows: {', '.join(results)})")
    columns = [c for c in summary.get("columns", results[row]) if c in results[row]]
    head = "| | " + " | ".join(_METRIC_NAMES.get(c, c) for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name, label in ((row, "this model"), ("bicubic", "bicubic"), ("gt", "ground truth")):
        values = results.get(name)
        if values:
            cells = [f"{values[c]:.4g}" if c in values else "" for c in columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    where = f"{summary.get('num_images', '?')} images of `{summary.get('gt_dir', '?')}`"
    lq = summary.get("lq", {}).get("made_from_gt") or "the LQ folder given to eval"
    return where, [*lines, "", f"LQ: {lq}."]


_INTROS = {
    "realesrgan_rrdbnet": "Real-ESRGAN's RRDBNet (Wang et al., ICCVW 2021), a general upscaler "
    "for images of any size, as glean-sr runs it (the background model of `glean-sr faces`).",
}


def _input_contract(c: Any) -> str:
    if hasattr(c, "in_size"):
        return (
            f"- RGB images of {c.in_size} x {c.in_size} px (other sizes are resized to it by "
            f"`glean-sr upscale`); the network takes `[N, 3, {c.in_size}, {c.in_size}]` in "
            f"[-1, 1] and returns `[N, 3, {c.out_size}, {c.out_size}]` in [-1, 1]."
        )
    return (
        f"- RGB images of any size (`--tile` for large ones); the network takes `[N, 3, H, W]` in "
        f"[-1, 1] and returns `[N, 3, {c.scale}H, {c.scale}W]` in [-1, 1]."
    )


def model_card(
    model: Any,
    *,
    name: str,
    origin: dict[str, str],
    license: str,
    summary: dict[str, Any] | None = None,
    eval_row: str | None = None,
    source: str = "",
    repo: str | None = None,
) -> str:
    """The Markdown model card (YAML front matter first) of a published model; ``repo`` is the
    Hub repository it goes to (a placeholder in the usage lines when not known yet)."""
    repo = repo or "OWNER/REPO"
    from .. import __version__

    c = model.config
    front = [
        "---",
        f"license: {license}",
        "library_name: glean-sr",
        "pipeline_tag: image-to-image",
        "tags:",
        *[f"- {t}" for t in TAGS],
        "---",
    ]
    body = [
        f"# {name}",
        "",
        _INTROS.get(
            c.model_type,
            "A GLEAN restorer (Chan et al., CVPR 2021 / TPAMI 2023): an encoder, a frozen "
            "generative latent bank and a decoder, one forward pass per image.",
        ),
        "",
        "## Use",
        "",
        "```bash",
        "pip install 'glean-sr[hub]'",
        f"glean-sr upscale photo.png -m {repo} -o restored/",
        "```",
        "",
        "```python",
        "import glean_sr",
        f'model = glean_sr.load_model("{repo}")',
        "```",
        "",
        "## Input",
        "",
        _input_contract(c),
        "",
        "## Architecture",
        "",
        *_architecture(model),
        "",
        "## Where the weights come from",
        "",
    ]
    if origin.get("original_file"):
        body.append(
            f"- Converted from `{origin['original_file']}`, SHA-256 "
            f"`{origin.get('original_sha256', 'unknown')}`."
        )
    if origin.get("preset"):
        body.append(f"- glean-sr preset: `{origin['preset']}`.")
    body.append(
        f"- Digest of the tensors (SHA-256 of their float32 values, keys sorted): "
        f"`{origin['tensors_sha256']}`."
    )
    body.append(f"- Written by glean-sr {__version__}.")
    if summary is not None:
        where, table = _metrics(summary, eval_row, source)
        body += ["", "## Measured", "", f"`glean-sr eval` on {where}:", "", *table]
    return "\n".join([*front, "", *body]) + "\n"


def publish(
    source: str,
    out_dir: str | os.PathLike,
    *,
    summary_path: str | os.PathLike | None = None,
    eval_row: str | None = None,
    license: str = "apache-2.0",
    name: str | None = None,
    repo: str | None = None,
    private: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Published:
    """Write ``out_dir`` (config, weights with provenance, model card) for ``source`` and, with
    ``repo``, upload it to that Hub repository (created when missing; needs a login)."""
    out = Path(out_dir).expanduser()
    existing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME) if (out / n).exists()]
    if existing and not overwrite:
        raise GleanError(f"{out} already holds {', '.join(existing)}; pass --overwrite")
    summary = None
    if summary_path is not None:
        try:
            summary = loads_json(Path(summary_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GleanError(f"{summary_path}: not a readable eval summary ({exc})") from None
        if not isinstance(summary, dict):
            raise GleanError(f"{summary_path}: not an eval summary (a JSON object)")
    resolved = resolve(source, progress=progress)
    if resolved.state_dict is None:
        raise WeightsError(f"'{source}' has no weights to publish")
    origin = provenance(resolved)
    model = build_resolved(resolved)
    meta = {k: v for k, v in origin.items() if k != "preset"}
    model.save_pretrained(out, dtype=None, metadata=meta)
    card = model_card(
        model,
        name=name or (resolved.preset.name if resolved.preset else out.name),
        origin=origin,
        license=license,
        summary=summary,
        eval_row=eval_row,
        source=os.fspath(source),
        repo=repo,
    )
    atomic_write_bytes(out / MODEL_CARD_NAME, card.encode("utf-8"))
    url = upload(out, repo, private=private) if repo else None
    return Published(out, url)


def upload(folder: Path, repo: str, *, private: bool = False) -> str:
    """Upload ``folder`` to the Hub model repository ``repo`` (created if missing)."""
    hub = hf_hub.require_hub()
    api = hub.HfApi()
    try:
        if api.token is None and hub.get_token() is None:
            raise GleanError(
                "not logged in to the Hugging Face Hub: run `hf auth login` (or set HF_TOKEN) "
                "and publish again; the folder is written"
            )
    except AttributeError:  # older huggingface_hub: HfApi has no .token
        if hub.get_token() is None:
            raise GleanError(
                "not logged in to the Hugging Face Hub: run `hf auth login` (or set HF_TOKEN)"
            ) from None
    try:
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        api.create_commit(  # one commit of the three files: they always belong together
            repo_id=repo,
            repo_type="model",
            operations=[
                hub.CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                for name in (CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME)
            ],
            commit_message="Upload with glean-sr publish",
        )
    except (OSError, ValueError, hub.errors.HfHubHTTPError) as exc:
        raise GleanError(f"uploading {folder} to {repo} failed: {exc}".replace("\n", " ")) from None
    return str(url)


__all__ = ["TAGS", "Published", "model_card", "publish", "upload"]
