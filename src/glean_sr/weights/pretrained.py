"""``load_model`` / ``save_pretrained``: every way a user can name a model, one strict loader.

A *source* is any of

* a preset name (``glean_ffhq_16x``): downloaded once into the cache, verified by SHA-256;
* a glean-sr model directory: ``config.json`` + ``model.safetensors``;
* a released mmediting/mmagic ``.pth`` (``{"state_dict": {"generator.*", "discriminator.*",
  "perceptual_loss.*"}}``), a bare GLEAN state_dict (``.pth``/``.pt``) or a ``.safetensors`` file:
  the architecture is inferred from the tensor shapes;
* an ``http(s)://`` URL of any of those files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import config_from_dict, config_to_dict
from ..errors import ConfigError, WeightsError
from ..limits import loads_json
from ..models.registry import build_model
from ..presets import PRESETS, Preset, find_preset_for_config
from ..serialization import CONFIG_NAME, WEIGHTS_NAME
from . import hub
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
        return f"; the file fits preset '{name}' ({p.config.in_size} -> {p.config.out_size})"
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
    sd = to_float32(read_weights_file(weights_path), str(weights_path))
    return config, sd


def resolve(
    source: str | os.PathLike, *, config: Any = None, progress: bool = True
) -> ResolvedWeights:
    """Find and read the weights ``source`` names, and determine their architecture."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    preset = None
    if path.is_dir():
        file_config, sd = _read_model_dir(path)
        return ResolvedWeights(text, path, "glean-sr directory", file_config, sd, [], None)
    if not path.exists():
        if text in PRESETS:
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
            if preset.url is None:
                return ResolvedWeights(
                    text, None, "preset (no weights)", preset.config, None, [], preset
                )
            path = hub.download(
                preset.url, sha256_prefix=preset.sha256_prefix, progress=progress, what=text
            )
        elif text.startswith(("http://", "https://")):
            path = hub.download(text, progress=progress)
        else:
            known = ", ".join(sorted(PRESETS))
            raise WeightsError(
                f"'{text}' is neither an existing file or directory nor a preset name "
                f"(presets: {known})"
            )
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file")
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
        fmt,
        config if config is not None else inferred,
        sd,
        unwrapped.unexpected,
        preset,
    )


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
    resolved = resolve(source, config=config, progress=progress)
    if resolved.state_dict is None:
        raise WeightsError(
            f"preset '{resolved.source}' has no released weights; build it with "
            f"glean_sr.build_model(glean_sr.PRESETS['{resolved.source}'].config) or train it"
        )
    model = build_model(resolved.config, device="meta")
    expected = model.state_dict()
    mismatch = compare_state_dict(expected, resolved.state_dict, resolved.unexpected)
    if mismatch:
        what = f"{type(model).__name__} {resolved.config.in_size} -> {resolved.config.out_size}"
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
