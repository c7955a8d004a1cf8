"""Equalized-learning-rate layers shared by StyleGAN2's generator and discriminator.

Equalized learning rate (Karras et al. 2018, PGGAN Sec. 4.1): weights are stored as
``N(0, 1)`` samples and scaled by ``gain / sqrt(fan_in)`` at every forward, never baked into the
stored tensor, so files stay interchangeable with the reference implementations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import bias_lrelu, blur2d, make_fir_kernel, upfirdn2d


class EqualizedWeight(nn.Module):
    """Holds ``weight_orig`` ~ N(0, 1 / lr_mul); the used weight is ``weight_orig * scale``.

    ``scale = gain * lr_mul / sqrt(fan_in)`` is applied at every forward (equalized learning rate),
    never baked into the stored tensor, so files stay interchangeable with the reference.
    """

    def __init__(self, shape: tuple[int, ...], fan_in: int, gain: float = 1.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(shape).div_(lr_mul))
        self.scale = gain * lr_mul / math.sqrt(fan_in)

    def forward(self) -> Tensor:
        return self.weight_orig * self.scale

    def extra_repr(self) -> str:
        return f"shape={tuple(self.weight_orig.shape)}, scale={self.scale:.6g}"


class EqualLinear(nn.Module):
    """Equalized-lr linear layer ``x @ W.T + bias * lr_mul``, optionally with bias + leaky ReLU.

    Keys: ``linear.weight_orig [out, in]``, ``bias [out]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activate: bool = False,
    ):
        super().__init__()
        self.linear = EqualizedWeight((out_features, in_features), in_features, lr_mul=lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, in]`` -> ``[N, out]``."""
        bias = self.bias * self.lr_mul
        if self.activate:
            return bias_lrelu(F.linear(x, self.linear()), bias)
        return F.linear(x, self.linear(), bias)

    def extra_repr(self) -> str:
        out_f, in_f = self.linear.weight_orig.shape
        return f"{in_f} -> {out_f}, lr_mul={self.lr_mul}, activate={self.activate}"


class PixelNorm(nn.Module):
    """Normalise each latent to unit mean square: ``z * rsqrt(mean(z ** 2) + 1e-8)``."""

    def forward(self, z: Tensor) -> Tensor:
        return z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)


class FIRFilter(nn.Module):
    """A fixed FIR filter (``kernel`` buffer) applied with ``upfirdn2d`` semantics."""

    def __init__(
        self,
        taps: tuple[int, ...],
        pad: tuple[int, int, int, int],
        up: int = 1,
        gain: float | None = None,
    ):
        super().__init__()
        gain = float(up**2) if gain is None else gain
        self.register_buffer("kernel", make_fir_kernel(taps, gain=gain))
        self.pad = pad
        self.up = up

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """``x: [N, C, H, W]``; ``bias [C]`` is added to the filtered result."""
        if self.up == 1:
            return blur2d(x, self.kernel, self.pad, bias)
        y = upfirdn2d(x, self.kernel, up=self.up, pad=self.pad)
        return y if bias is None else y + bias.to(y.dtype)[None, :, None, None]

    def extra_repr(self) -> str:
        return f"up={self.up}, pad={self.pad}"


class NoiseInjection(nn.Module):
    """``x + weight * noise``; ``weight`` is a learned scalar (key ``weight [1]``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor, gain: float = 1.0) -> Tensor:
        """``x + gain * weight * noise``; ``noise: [1 or N, 1, H, W]`` broadcasts over channels."""
        return x + noise.to(x.dtype) * (self.weight.to(x.dtype) * gain)  # [1 or N, 1, H, W]


class BiasAct(nn.Module):
    """Per-channel bias then leaky ReLU(0.2) x sqrt(2) (key ``bias [C]``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return bias_lrelu(x, self.bias)
