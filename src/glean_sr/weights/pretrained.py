"""``load_model`` / ``save_pretrained``: every way a user can name a model, one strict loader.

A *source* is any of

* a preset name (``glean_ffhq_16x``): downloaded once into the cache, verified by SHA-256;
* a glean-sr model directory: ``config.json`` + ``model.safetensors``;
* a released mmediting/mmagic ``.pth`` (``{"state_dict": {"generator.*", "discriminator.*",
  "perceptual_loss.*"}}``), a bare GLEAN state_dict (``.pth``/``.pt``) or a ``.safetensors`` file:
  the architecture is inferred from the tensor shapes;
* an ``http(s)://`` URL of any of those files;
* a Hugging Face Hub repository (``owner/repo[@revision]``: a model directory there) or one file
  in one (``hf://owner/repo[@revision]/path/file.pth``), see :mod:`glean_sr.weights.hf_hub`;
* ``preset=source``: a preset's original file from any of the above, checked against its
  SHA-256, or a converted copy whose tensors are recorded as the original's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import config_from_dict, config_to_dict, describe_size
from ..errors import ConfigError, DownloadError, WeightsError
from ..limits import loads_json
from ..models.registry import build_model
from ..presets import PRESETS, Preset, find_preset_for_config
from ..serialization import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME
from . import hf_hub, hub
from .glean_format import compare_state_dict, infer_config, to_float32, unwrap_restorer_checkpoint
from .safe_load import read_weights_file


@dataclass
class ResolvedWeights:
    """Where a source's weights are and what they are, before a model is built."""

    source: str
    path: Path | None  # None for an architecture-only preset
    format: str
    config: Any
    state_dict: dict[str, Tensor] | None
    unexpected: list[str]
    preset: Preset | None = None


def _preset_hint(config: Any) -> str:
    name = find_preset_for_config(config)
    if name:
        p = PRESETS[name]
        return f"; the file fits preset '{name}' ({describe_size(p.config)})"
    return ""


def _read_model_dir(directory: Path) -> tuple[Any, dict[str, Tensor]]:
    config_path = directory / CONFIG_NAME
    weights_path = directory / WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise WeightsError(
                f"{directory}: a glean-sr model directory needs {CONFIG_NAME} and {WEIGHTS_NAME}; "
                f"{p.name} is missing"
            )
    try:
        config = config_from_dict(loads_json(config_path.read_text()))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{config_path}: not valid JSON ({exc})") from None
    except ConfigError as exc:
        raise WeightsError(f"{config_path}: {exc}") from None
    if config.model_type == "stylegan2":
        raise WeightsError(
            f"{directory}: a StyleGAN2 latent bank, not a restorer: load it with "
            f"glean_sr.load_bank (or glean-sr sample-bank) and build a GLEAN around it with "
            f"glean_sr.build_glean_from_bank"
        )
    if config.model_type in ("biggan", "biggan_deep"):
        raise WeightsError(
            f"{directory}: a BigGAN latent bank, not a restorer: load it with glean_sr.load_bank "
            f"(or glean-sr sample-bank) and build a GLEAN around it with "
            f"glean_sr.build_glean_biggan_from_bank"
        )
    sd = to_float32(read_weights_file(weights_path), str(weights_path))
    return config, sd


def _preset_file(preset: Preset, progress: bool) -> Path:
    """The preset's original file: from the cache, else from each of its sources in turn (the
    released URL through ``$GLEAN_SR_MIRROR``, then any Hub copies the table lists), each
    verified against the original's SHA-256. When all fail, one line lists the sources and
    the two ways out."""
    tried = []
    for source in preset.sources:
        try:
            if source.startswith("hf://"):
                ref = hf_hub.parse_hub_source(source)
                return _verified(hf_hub.hub_file(ref, progress=progress), preset)
            return hub.download(
                source, sha256_prefix=preset.sha256_prefix, progress=progress, what=preset.name
            )
        except (DownloadError, WeightsError) as exc:
            tried.append(f"{source}: {exc}")
    raise DownloadError(
        f"could not get the weights of '{preset.name}' (tried {'; '.join(tried)}). Ways out: "
        f"a local copy of {preset.filename} (-m {preset.name}=path/to/{preset.filename}, checked "
        f"against SHA-256 {preset.sha256_prefix}...) or a copy on the Hugging Face Hub "
        f"(-m {preset.name}=hf://owner/repo/{preset.filename}, or -m owner/repo for a converted "
        f"one)"
    )


def _verified(path: Path, preset: Preset) -> Path:
    """``path`` when its SHA-256 is the preset original's; else one line saying it is not."""
    if preset.sha256_prefix is None:
        return path
    digest = hub.sha256_file(path)
    if not digest.startswith(preset.sha256_prefix):
        raise WeightsError(
            f"{path}: SHA-256 {digest[:8]}... is not that of {preset.name}'s original file "
            f"({preset.filename}, {preset.sha256_prefix}...); it is another file, or a damaged copy"
        )
    return path


def _split_preset_source(text: str) -> tuple[Preset | None, str]:
    """``preset=source``: the preset's weights from another source, verified against it."""
    name, sep, rest = text.partition("=")
    if not sep or name not in PRESETS or Path(text).exists():
        return None, text
    if not rest:
        raise WeightsError(f"'{text}': name the file after '=' (e.g. {name}=path/to/file.pth)")
    return PRESETS[name], rest


def _locate(text: str, progress: bool) -> tuple[Path, str | None]:
    """A local path for ``text``: itself, a download, a Hub file or a Hub model folder; and the
    Hub repo it came from, if any."""
    path = Path(text).expanduser()
    if path.exists():
        return path, None
    if text.startswith(("http://", "https://")):
        return hub.download(text, progress=progress), None
    ref = hf_hub.parse_hub_source(text)
    if ref is None:
        known = ", ".join(sorted(PRESETS))
        raise WeightsError(
            f"'{text}' is neither an existing file or directory, a preset name (presets: "
            f"{known}), an http(s) URL nor a Hugging Face Hub repo (owner/repo, "
            f"hf://owner/repo/file.pth)"
        )
    if ref.filename:
        return hf_hub.hub_file(ref, progress=progress), str(ref)
    folder = hf_hub.hub_directory(
        ref, (CONFIG_NAME, WEIGHTS_NAME), (MODEL_CARD_NAME,), progress=progress
    )
    return folder, str(ref)


def resolve(
    source: str | os.PathLike, *, config: Any = None, progress: bool = True
) -> ResolvedWeights:
    """Find and read the weights ``source`` names, and determine their architecture.

    ``source``: a model directory, a weight file, a preset name, an http(s) URL, a Hub repo
    (``owner/repo[@revision]``) or Hub file (``hf://owner/repo[@revision]/file``), or
    ``preset=source`` for a preset's original file from any of those (checked by SHA-256), or a
    converted copy of it whose recorded tensors are the original's.
    """
    text = os.fspath(source)
    preset, text = _split_preset_source(text)
    if preset is None and text in PRESETS and not Path(text).exists():
        preset = PRESETS[text]
        if preset.packaged_path is not None:
            shipped = preset.packaged_path
            if not shipped.is_dir():
                raise WeightsError(
                    f"the files of '{text}' are missing from this installation ({shipped}); "
                    f"reinstall glean-sr"
                )
            file_config, sd = _read_model_dir(shipped)
            return ResolvedWeights(
                text, shipped, "glean-sr directory (shipped)", file_config, sd, [], preset
            )
        if not preset.sources:
            return ResolvedWeights(
                text, None, "preset (no weights)", preset.config, None, [], preset
            )
        path, origin = _preset_file(preset, progress), None
    else:
        path, origin = _locate(text, progress)
    fmt_note = f" from {origin}" if origin else ""
    if path.is_dir():
        file_config, sd = _read_model_dir(path)
        if preset is not None:
            _check_converted_copy(path, sd, preset)
            config = preset.config
        return ResolvedWeights(
            text, path, "glean-sr directory" + fmt_note, config or file_config, sd, [], preset
        )
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file")
    if preset is not None and os.fspath(source) != preset.name:
        _verified(path, preset)
    obj = read_weights_file(path)
    unwrapped = unwrap_restorer_checkpoint(obj, str(path))
    sd = to_float32(unwrapped.state_dict, str(path))
    fmt = unwrapped.format if path.suffix != ".safetensors" else "safetensors state_dict"
    inferred = infer_config(sd, str(path))
    if preset is not None:
        config = preset.config
    return ResolvedWeights(
        text,
        path,
        fmt + fmt_note,
        config if config is not None else inferred,
        sd,
        unwrapped.unexpected,
        preset,
    )


def _check_converted_copy(folder: Path, sd: dict[str, Tensor], preset: Preset) -> None:
    """A converted copy stands for a preset when the original it records is the preset's file
    and its tensors are still the ones recorded at conversion (see :func:`provenance`)."""
    meta = safetensors_metadata(folder / WEIGHTS_NAME)
    original = meta.get("original_sha256", "")
    if preset.sha256_prefix is None or not original.startswith(preset.sha256_prefix):
        raise WeightsError(
            f"{folder}: not a converted copy of {preset.name}: it records "
            f"{'original SHA-256 ' + original[:8] + '...' if original else 'no original file'}, "
            f"{preset.name}'s original is {preset.sha256_prefix}..."
        )
    if meta.get("tensors_sha256") != tensors_digest(sd):
        raise WeightsError(
            f"{folder}: its tensors are not those converted from {preset.name}'s original (an "
            f"fp16 copy or a changed file); convert the original with --dtype fp32"
        )


def tensors_digest(sd: dict[str, Tensor]) -> str:
    """SHA-256 of a state_dict's float32 values, keys sorted: equal exactly when every tensor
    is, whatever file format or storage type held them."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(sd):
        t = sd[key].detach().to("cpu")
        t = t.float() if t.is_floating_point() else t
        h.update(f"{key}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def provenance(resolved: ResolvedWeights) -> dict[str, str]:
    """What a converted copy records about the file it came from (safetensors metadata and the
    model card): its name, SHA-256 and the digest of its tensors, and the preset it is."""
    out: dict[str, str] = {}
    path = resolved.path
    if path is not None and path.is_file():
        out["original_file"] = path.name
        out["original_sha256"] = hub.sha256_file(path)
    elif path is not None and (path / WEIGHTS_NAME).is_file():
        meta = safetensors_metadata(path / WEIGHTS_NAME)
        kept = {k: v for k, v in meta.items() if k in ("original_file", "original_sha256")}
        if not kept:  # a folder that records no earlier original is the original
            kept = {
                "original_file": WEIGHTS_NAME,
                "original_sha256": hub.sha256_file(path / WEIGHTS_NAME),
            }
        out.update(kept)
    if resolved.state_dict is not None:  # the model's tensors, not the file's training extras
        extra = set(resolved.unexpected)
        own = {k: v for k, v in resolved.state_dict.items() if k not in extra}
        out["tensors_sha256"] = tensors_digest(own)
    if resolved.preset is not None:
        out["preset"] = resolved.preset.name
    return out


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file's header (empty when it has none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None


def load_model(
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    config: Any = None,
    progress: bool = True,
) -> nn.Module:
    """Load a restorer from a preset name, a model directory, a weight file or a URL.

    The architecture is inferred from the file; pass ``config`` (a config object or a preset
    name) only to insist on one, in which case a file of another architecture is an error that
    says which preset it fits. Loading is strict: every key must be present with the right
    shape, and only the reference's training-only parts (``discriminator.*``,
    ``perceptual_loss.*``) may be extra. Returns the model in eval mode on ``device``.
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise WeightsError(f"unknown preset '{config}' (presets: {', '.join(sorted(PRESETS))})")
        config = PRESETS[config].config
    return build_resolved(resolve(source, config=config, progress=progress), device)


def build_resolved(resolved: ResolvedWeights, device: str | torch.device = "cpu") -> nn.Module:
    """The model of resolved weights (see :func:`load_model`), checked strictly."""
    if resolved.state_dict is None:
        raise WeightsError(
            f"preset '{resolved.source}' has no released weights; build it with "
            f"glean_sr.build_model(glean_sr.PRESETS['{resolved.source}'].config) or train it"
        )
    model = build_model(resolved.config, device="meta")
    expected = model.state_dict()
    mismatch = compare_state_dict(expected, resolved.state_dict, resolved.unexpected)
    if mismatch:
        what = f"{type(model).__name__} {describe_size(resolved.config)}"
        try:
            hint = _preset_hint(infer_config(resolved.state_dict, "file"))
        except WeightsError:
            hint = ""  # the file's own architecture cannot be read: no preset to suggest
        raise WeightsError(f"{resolved.path}: does not fit {what}: {mismatch.describe()}{hint}")
    model.load_state_dict(resolved.state_dict, strict=True, assign=True)
    if hasattr(model, "freeze_bank"):
        model.freeze_bank()
    return model.to(device).eval()


def describe(source: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """What ``glean-sr info`` prints: format, config, parameters per part and MACs.

    A preset name is described from its architecture alone (nothing is downloaded); a file is
    read and checked strictly against the architecture inferred from it.
    """
    from ..analysis import complexity

    text = os.fspath(source)
    if text in PRESETS and not Path(text).exists():
        preset = PRESETS[text]
        config, fmt, path = preset.config, "preset", None
    else:
        resolved = resolve(text, progress=progress)
        preset, config, fmt, path = resolved.preset, resolved.config, resolved.format, resolved.path
        model = build_model(config, device="meta")
        mismatch = compare_state_dict(model.state_dict(), resolved.state_dict, resolved.unexpected)
        if mismatch:
            raise WeightsError(f"{path}: does not fit the inferred {config}: {mismatch.describe()}")
    model = build_model(config, device="meta")
    info: dict[str, Any] = {
        "source": text,
        "path": str(path) if path else None,
        "format": fmt,
        "model_type": config.model_type,
        "config": config_to_dict(config),
        "preset": preset.name if preset else find_preset_for_config(config),
        "url": preset.url if preset else None,
    }
    info.update(complexity(model))
    return info
