"""Low-level operations of StyleGAN2, in plain PyTorch, as published.

``upfirdn2d`` follows its definition literally (StyleGAN2 paper, App. B: upsample by zero
insertion, pad, FIR-filter, downsample); ``blur2d`` is its ``up = down = 1`` case written as one
depthwise convolution. Faster execution forms for CPU inference live in
:mod:`glean_sr.inference.cpu_fast` and are tested against these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Gain of StyleGAN2's bias + leaky ReLU (``fused_bias_leakyrelu`` in mmcv, ``lrelu`` in NVIDIA's
#: ``bias_act``): keeps the activation variance at 1 for unit-variance inputs.
LRELU_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2


def make_fir_kernel(taps: tuple[int, ...] | list[int], gain: float = 1.0) -> Tensor:
    """2-D separable FIR kernel ``outer(taps, taps) / sum * gain`` (float32, ``[k, k]``), on the
    default device (computed on the CPU: no arithmetic on meta tensors, see
    :func:`glean_sr.models.registry.build_model`)."""
    t = torch.tensor(taps, dtype=torch.float32, device="cpu")
    k = t[None, :] * t[:, None]
    return torch.tensor((k / k.sum() * gain).tolist(), dtype=torch.float32)  # exact values


def _pad4(pad: int | tuple[int, ...]) -> tuple[int, int, int, int]:
    """Normalise padding to ``(x0, x1, y0, y1)``; a 2-tuple ``(p0, p1)`` applies to both axes."""
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return (pad[0], pad[1], pad[2], pad[3])
    raise ValueError(f"pad must be an int, a 2-tuple or a 4-tuple, got {pad!r}")


def upfirdn2d(
    x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: int | tuple[int, ...] = 0
) -> Tensor:
    """Reference up-sample, FIR-filter, down-sample.

    ``x: [N, C, H, W]``; ``kernel: [kh, kw]``. Steps: insert ``up - 1`` zeros after every sample,
    pad by ``(x0, x1, y0, y1)`` (negative values crop), convolve with ``kernel`` (a true
    convolution: the kernel is flipped), keep every ``down``-th sample. Output size per axis:
    ``(H * up + y0 + y1 - kh) // down + 1``.
    """
    x0, x1, y0, y1 = _pad4(pad)
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    if up > 1:
        x = x.reshape(n * c, 1, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n * c, 1, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[
        :,
        :,
        max(-y0, 0) : x.shape[2] - max(-y1, 0),
        max(-x0, 0) : x.shape[3] - max(-x1, 0),
    ]
    weight = kernel.flip(0, 1)[None, None].to(x.dtype)
    x = F.conv2d(x, weight)
    x = x[:, :, ::down, ::down]
    return x.reshape(n, c, x.shape[2], x.shape[3])  # [N, C, H', W']


def blur2d(
    x: Tensor, kernel: Tensor, pad: tuple[int, int, int, int], bias: Tensor | None = None
) -> Tensor:
    """``upfirdn2d(x, kernel, pad=pad) + bias`` with ``up = down = 1``, as one depthwise
    convolution. ``x: [N, C, H, W]``; ``pad = (x0, x1, y0, y1)``, all >= 0; ``bias: [C]``."""
    c = x.shape[1]
    weight = kernel.flip(0, 1).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    b = None if bias is None else bias.to(x.dtype)
    return F.conv2d(F.pad(x, list(pad)), weight, b, groups=c)


def bias_lrelu(x: Tensor, bias: Tensor) -> Tensor:
    """StyleGAN2's fused activation: ``leaky_relu(x + bias, 0.2) * sqrt(2)``; ``x: [N, C, ...]``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.to(x.dtype).reshape(shape), LRELU_SLOPE) * LRELU_GAIN
