"""The one mapping from a config's ``model_type`` to the network class that it describes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import GLEANConfig, LightGLEANConfig
from .glean import GLEAN
from .light_glean import LightGLEAN

#: model_type -> (config class, model class)
MODEL_TYPES: dict[str, tuple[type, type[nn.Module]]] = {
    "glean": (GLEANConfig, GLEAN),
    "lightglean": (LightGLEANConfig, LightGLEAN),
}


def register_model(model_type: str, config_cls: type, model_cls: type[nn.Module]) -> None:
    MODEL_TYPES[model_type] = (config_cls, model_cls)


def build_model(config: Any, device: str | torch.device | None = None) -> nn.Module:
    """Instantiate the network for ``config``.

    ``device="meta"`` builds it without allocating or initialising any weight: the fast path
    when weights are loaded right after (see :func:`glean_sr.weights.pretrained.load_model`).
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"no model is registered for model_type {model_type!r}")
    cls = MODEL_TYPES[model_type][1]
    if device is None:
        return cls(config)
    with torch.device(device):
        return cls(config)
