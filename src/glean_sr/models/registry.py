"""The one mapping from a config's ``model_type`` to the network class that it describes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..config import (
    GLEANBigGANConfig,
    GLEANBigGANDeepConfig,
    GLEANColorizerConfig,
    GLEANConfig,
    GLEANNoBankConfig,
    LightGLEANBigGANConfig,
    LightGLEANBigGANDeepConfig,
    LightGLEANConfig,
    RealESRGANConfig,
)
from .colorizer import GLEANColorizer
from .glean import GLEAN, GLEANNoBank
from .glean_biggan import GLEANBigGAN
from .light_glean import LightGLEAN
from .light_glean_biggan import LightGLEANBigGAN
from .realesrgan import RRDBNet

#: model_type -> (config class, model class)
MODEL_TYPES: dict[str, tuple[type, type[nn.Module]]] = {
    "glean": (GLEANConfig, GLEAN),
    "glean_nobank": (GLEANNoBankConfig, GLEANNoBank),
    "lightglean": (LightGLEANConfig, LightGLEAN),
    "realesrgan_rrdbnet": (RealESRGANConfig, RRDBNet),
    "glean_colorizer": (GLEANColorizerConfig, GLEANColorizer),
    "glean_biggan": (GLEANBigGANConfig, GLEANBigGAN),
    "glean_biggan_deep": (GLEANBigGANDeepConfig, GLEANBigGAN),
    "lightglean_biggan": (LightGLEANBigGANConfig, LightGLEANBigGAN),
    "lightglean_biggan_deep": (LightGLEANBigGANDeepConfig, LightGLEANBigGAN),
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
        if torch.device(device).type != "meta":
            return cls(config)
        with _SkipRandomInit():
            return cls(config)


class _SkipRandomInit(TorchFunctionMode):
    """Initialisation of meta tensors as a no-op: ``torch.randn(shape)`` becomes
    ``torch.empty(shape)``, and in-place value changes (``normal_``, ``div_``, ...) leave a meta
    tensor as it is (it has no values; shape, dtype and layout do not change).

    PyTorch runs these ops on meta tensors through its Python meta functions, whose first use
    imports sympy and torch._dynamo: about 75 MB of resident memory for the rest of the process,
    a tenth of what GLEAN's weights take, spent on tensors that the weights replace right after.
    """

    _FACTORIES = (torch.randn, torch.rand)
    _IN_PLACE = tuple(
        getattr(torch.Tensor, name)
        for name in ("normal_", "uniform_", "fill_", "zero_", "add_", "sub_", "mul_", "div_")
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._FACTORIES:
            out = torch.empty(*args, **{k: v for k, v in kwargs.items() if k != "generator"})
            if out.is_meta:
                return out
        elif func in self._IN_PLACE and args[0].is_meta:
            return args[0]
        return func(*args, **kwargs)
