"""Model complexity: parameters per part and multiply-accumulates (MACs) per forward pass.

Two MAC conventions are reported, both for batch 1 and one restoration forward pass:

* ``macs``: every multiply-accumulate of every convolution, transposed convolution and matrix
  product that the forward executes, the bank's modulated convolutions included. Two FLOPs per MAC
  gives ``gflops`` (705.2 G for GLEAN 64 -> 1024).
* ``macs_modules``: MACs of ``nn.Conv2d`` / ``nn.Linear`` modules only, i.e. what module-hook
  counters (thop, ptflops) see. The bank's modulated convolutions run as functional ops and are
  not counted. This is the convention of the papers' tables: it gives 277.2 G for GLEAN
  64 -> 1024, against the 277.5 G of TPAMI Table 1.

Counting runs on the meta device: no memory is allocated and no arithmetic is done. A model that
takes any size (RRDBNet) is counted on a :data:`ANY_SIZE_INPUT` x :data:`ANY_SIZE_INPUT` input;
its MACs grow with the number of input pixels.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models.registry import build_model

#: the input side at which a model that takes any size is counted
ANY_SIZE_INPUT = 64


def _module_macs_hook(counter: list[int]):
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = math.prod(module.kernel_size)
            counter[0] += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            counter[0] += output.numel() * module.in_features

    return hook


def count_macs(model: nn.Module, batch: int = 1) -> dict[str, int]:
    """MACs of one forward pass of ``model`` on a ``[batch, C, in, in]`` input (both conventions;
    ``in`` is :data:`ANY_SIZE_INPUT` for a model that takes any size).

    ``model`` may be on any device; a meta-device copy is used, so real weights are untouched.
    """
    meta = build_model(model.config, device="meta").eval()
    counter = [0]
    handles = [
        m.register_forward_hook(_module_macs_hook(counter))
        for m in meta.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    side = getattr(meta, "in_size", None) or ANY_SIZE_INPUT
    lq = torch.empty(batch, meta.img_channels, side, side, device="meta")
    flops = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), flops:
            meta(lq)
    finally:
        for h in handles:
            h.remove()
    total_flops = flops.get_total_flops()
    return {"macs": total_flops // 2, "macs_modules": counter[0]}


def complexity(model: nn.Module) -> dict[str, Any]:
    """``{"params": {part: n, ..., "total": n}, "macs": n, "macs_modules": n, "gflops": x}``."""
    macs = count_macs(model)
    return {
        "params": model.parameter_counts(),
        "macs": macs["macs"],
        "macs_modules": macs["macs_modules"],
        "gflops": round(2 * macs["macs"] / 1e9, 3),
    }
