"""The glean-sr model directory: ``config.json`` + ``model.safetensors``, written atomically.

The writer sits below both the networks and the loaders (:mod:`glean_sr.weights.pretrained`
reads these directories), so that a model can save itself without the networks importing the
weight loaders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from .atomic import atomic_write_bytes, remove_interrupted_writes
from .config import config_to_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"  # the Hugging Face Hub's model card


def save_state_dict_safetensors(
    sd: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically (temporary file + rename)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata or {}))


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` into ``directory``.

    ``dtype`` (e.g. ``torch.float16``) stores the floating-point tensors in that type, half the
    size for fp16; loading always gives float32 weights back. Each file is written to a
    temporary name and renamed, so an interrupted save never leaves a half-written file under
    the final name. ``metadata`` (strings) is added to the safetensors header.
    """
    from . import __version__

    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("save_pretrained needs a glean-sr model (it has no .config)")
    for name in (WEIGHTS_NAME, CONFIG_NAME):  # what a write killed midway left behind
        remove_interrupted_writes(out / name)
    meta = {**(metadata or {}), "format": "pt", "glean_sr_version": __version__}
    meta["model_type"] = config.model_type
    sd = model.state_dict()
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    save_state_dict_safetensors(sd, out / WEIGHTS_NAME, meta)
    text = json.dumps(config_to_dict(config), indent=2) + "\n"
    atomic_write_bytes(out / CONFIG_NAME, text.encode())
    return out
