"""StyleGAN2 (config-f) generator: the latent bank.

The module tree and state_dict keys are mmagic's ``StyleGANv2Generator`` (the layout of every
released GLEAN checkpoint), so released files load without renaming:

    style_mapping.{1..num_mlps}.{bias, linear.weight_orig}    mapping MLP (index 0 is PixelNorm)
    constant_input.input                                      [1, 512, 4, 4]
    conv1.*, to_rgb1.*                                        the 4x4 stage
    convs.{2b}, convs.{2b+1}, to_rgbs.{b}                     block b -> resolution 2 ** (b + 3)
    injected_noise_{l}                                        stored noise of synthesis layer l

Numerics follow the StyleGAN2 paper (Karras et al., CVPR 2020): equalized learning rate applied
at run time (Sec. B of the PGGAN paper), weight modulation and demodulation (Eq. 1-3), transposed
convolution + 4x4 FIR up-sampling, bias + leaky ReLU x sqrt(2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import StyleGAN2Config
from .ops import (
    LRELU_GAIN,
    LRELU_SLOPE,
    RowFunction,
    bias_lrelu,
    blur2d,
    conv_rows,
    conv_transpose_blur,
    conv_transpose_blur_rows,
    fast_paths_enabled,
    fir_taps,
    is_channels_last,
    keep_format,
    make_fir_kernel,
    relayout_,
    upfirdn2d,
)

NoiseMode = Literal["const", "random", "none"]


def _match_format(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` in ``x``'s memory format: convolutions keep channels-last activations
    channels-last only when their weights are channels-last too (transposed ones at least)."""
    if is_channels_last(x):
        return weight.contiguous(memory_format=torch.channels_last)
    return weight


def _can_inplace(t: Tensor) -> bool:
    """True when autograd does not need ``t`` (inference), so it may be overwritten."""
    return not (torch.is_grad_enabled() and t.requires_grad)


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


class ModulatedConv2d(nn.Module):
    """Modulated (and demodulated) convolution, StyleGAN2 Eq. 1-3.

    Keys: ``weight_orig [1, out, in, k, k]``, ``style_modulation.{bias, linear.weight_orig}``,
    ``blur.kernel [4, 4]`` when up-sampling.

    The modulation is applied either to the weights (one kernel per sample, a grouped
    convolution) or to the activations (scale the input channels, one shared convolution, scale
    the output channels), whichever moves fewer numbers; both compute the same function.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_channels: int,
        *,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: tuple[int, ...] = (1, 3, 3, 1),
        eps: float = 1e-8,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.eps = eps
        self.style_modulation = EqualLinear(style_channels, in_channels, bias_init=1.0)
        fan_in = in_channels * kernel_size * kernel_size
        self.weight_orig = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
        )
        self.scale = 1.0 / math.sqrt(fan_in)
        if upsample:
            # conv_transpose(stride 2) gives 2H + 1 samples; the 4-tap blur with pad 1 on both
            # sides brings it back to 2H (gain 4 = up ** 2 keeps the DC level).
            self.blur = FIRFilter(blur_kernel, pad=(1, 1, 1, 1), gain=4.0)

    def forward(
        self, x: Tensor, w: Tensor, *, gain: float = 1.0, bias: Tensor | None = None
    ) -> Tensor:
        """``x: [N, in, H, W]``, ``w: [N, style_channels]`` -> ``gain * conv + bias``,
        ``[N, out, H', W']`` with ``H' = 2H`` when up-sampling, else ``H``.

        ``gain`` and ``bias [out]`` let the layer that follows fold its scale and bias into this
        convolution (they ride on the modulated weights and on the convolution's own bias), so
        they cost no extra pass over the output.
        """
        n, c, h, wd = x.shape
        weight, styles, factor = self._modulation(w, gain)
        out_hw = (2 * h) * (2 * wd) if self.upsample else h * wd
        weight_cost = n * self.out_channels * c * self.kernel_size**2
        act_cost = n * (c * h * wd + self.out_channels * out_hw)
        if weight_cost <= act_cost and fast_paths_enabled():
            y = self._forward_weight_modulated(x, weight, styles, factor, bias)
        else:
            y = self._forward_activation_modulated(x, weight, styles, factor, bias)
        return keep_format(y, x)

    def _modulation(self, w: Tensor, gain: float) -> tuple[Tensor, Tensor, Tensor]:
        """``(weight [out, in, k, k], styles [N, in], factor [N, out])``: the stored weight, the
        input-channel styles with the equalized-lr scale folded in (``weight * styles`` is the
        scaled weight modulated, without a pass over the weight to scale it) and the
        per-sample, per-output-channel factor (demodulation, Eq. 3, times the folded ``gain``)."""
        styles = self.style_modulation(w) * self.scale  # [N, in]
        weight = self.weight_orig[0]  # [out, in, k, k]
        if self.demodulate:
            wsq = self._squared_weight()  # [out, in]
            factor = torch.rsqrt(styles.square() @ wsq.t() + self.eps) * gain  # [N, out]
        else:
            factor = torch.full_like(styles[:, :1], gain).expand(-1, self.out_channels)
        return weight, styles, factor

    def store_channels_last(self) -> None:
        """Lay the stored weight out in memory as the channels-last convolutions read it
        (values, shape and key unchanged): ``[out, in, k, k]`` with ``in`` innermost, or, for
        the up-sampling layer, its transpose ``[in, out, k, k]`` with ``out`` innermost. Then
        neither the per-sample weights' pass over it nor oneDNN's check of the shared weight's
        layout copies it at each call."""
        if self.kernel_size == 1:  # a 1x1 weight is channels-last already
            return
        order = (0, 2, 3, 4, 1) if self.upsample else (0, 1, 3, 4, 2)  # storage order
        self.weight_orig.data = relayout_(self.weight_orig.data, order)

    def _squared_weight(self) -> Tensor:
        """``sum over the kernel of weight ** 2``, ``[out, in]``: what demodulation needs of the
        weight. In inference it is kept until the weight changes (two passes over each weight
        saved per call: 9.4 MB each for the 512-channel layers)."""
        weight = self.weight_orig
        if not fast_paths_enabled(weight) or torch.compiler.is_compiling():
            return weight[0].square().sum(dim=(2, 3))
        try:
            key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        except RuntimeError:  # an inference tensor: no version counter to key the cache on
            return weight[0].square().sum(dim=(2, 3))
        cached = self.__dict__.get("_wsq_cache")
        if cached is None or cached[0] != key:
            cached = (key, weight[0].square().sum(dim=(2, 3)))
            self.__dict__["_wsq_cache"] = cached
        return cached[1]

    def grouped_weight(
        self, w: Tensor, like: Tensor, *, gain: float = 1.0, bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The per-sample modulated weights as one grouped convolution (``groups = N``) takes
        them: ``[N * out, in, k, k]``, or ``[N * in, out, k, k]`` for the transposed
        up-sampling convolution, and the bias ``[N * out]``; in ``like``'s dtype and memory
        format. ``w: [N, style_channels]``; ``gain`` and ``bias`` as in :meth:`forward`."""
        weight, styles, factor = self._modulation(w, gain)
        return self._grouped_weight(weight, styles, factor, bias, like)

    def _grouped_weight(
        self, weight: Tensor, styles: Tensor, factor: Tensor, bias: Tensor | None, like: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        n, c, k = styles.shape[0], self.in_channels, self.kernel_size
        b = None if bias is None else bias.to(like.dtype).repeat(n)  # [N*out]
        if is_channels_last(like):
            # one pass straight into the channels-last layout oneDNN wants. The grouped weight is
            # [N * a, b, k, k], stored [N, a, k, k, b]: (a, b) = (out, in) for the convolution,
            # (in, out) for the transposed one
            pair = styles[:, None, :] * factor[:, :, None]  # [N, out, in]
            base = weight  # [out, in, k, k]
            if self.upsample:
                pair, base = pair.transpose(1, 2), weight.transpose(0, 1)
            a, bb = base.shape[:2]
            w = torch.empty(n, a, k, k, bb, dtype=like.dtype, device=like.device)
            torch.mul(base.permute(0, 2, 3, 1)[None], pair[:, :, None, None, :], out=w)
            return w.permute(0, 1, 4, 2, 3).reshape(n * a, bb, k, k), b
        w = weight[None] * styles[:, None, :, None, None] * factor[:, :, None, None, None]
        w = w.to(like.dtype)  # [N, out, in, k, k]
        if self.upsample:
            w = w.transpose(1, 2).reshape(n * c, self.out_channels, k, k)  # [N*in, out, k, k]
        else:
            w = w.reshape(n * self.out_channels, c, k, k)
        return _match_format(w, like), b

    def _forward_weight_modulated(
        self, x: Tensor, weight: Tensor, styles: Tensor, factor: Tensor, bias: Tensor | None
    ) -> Tensor:
        n, c, h, wd = x.shape
        x = x.reshape(1, n * c, h, wd)  # [1, N*in, H, W]
        w, b = self._grouped_weight(weight, styles, factor, bias, x)
        if self.upsample:
            x = conv_transpose_blur(x, w, self.blur.kernel, b, groups=n)
        else:
            x = F.conv2d(x, w, b, padding=self.kernel_size // 2, groups=n)
        return x.reshape(n, self.out_channels, *x.shape[-2:])

    def _forward_activation_modulated(
        self, x: Tensor, weight: Tensor, styles: Tensor, factor: Tensor, bias: Tensor | None
    ) -> Tensor:
        x = x * styles[:, :, None, None].to(x.dtype)
        weight = weight.to(x.dtype)
        if self.upsample:  # the FIR filter is linear per channel: scale after it
            x = conv_transpose_blur(x, _match_format(weight.transpose(0, 1), x), self.blur.kernel)
        else:
            x = F.conv2d(x, _match_format(weight, x), padding=self.kernel_size // 2)
        scale = factor[:, :, None, None].to(x.dtype)
        x = x.mul_(scale) if _can_inplace(x) else x * scale
        if bias is None:
            return x
        b = bias.to(x.dtype)[None, :, None, None]
        return x.add_(b) if _can_inplace(x) else x + b

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, k={self.kernel_size}, "
            f"upsample={self.upsample}, demodulate={self.demodulate}"
        )


class NoiseInjection(nn.Module):
    """``x + weight * noise``; ``weight`` is a learned scalar (key ``weight [1]``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor, gain: float = 1.0) -> Tensor:
        """``x + gain * weight * noise``; ``noise: [1 or N, 1, H, W]`` broadcasts over channels."""
        scaled = noise.to(x.dtype) * (self.weight.to(x.dtype) * gain)  # [1 or N, 1, H, W]
        return x.add_(scaled) if _can_inplace(x) else x + scaled


class BiasAct(nn.Module):
    """Per-channel bias then leaky ReLU(0.2) x sqrt(2) (key ``bias [C]``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return bias_lrelu(x, self.bias, inplace=_can_inplace(x))


class ModulatedStyleConv(nn.Module):
    """Modulated conv -> noise -> bias + activation (one synthesis layer)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_channels: int,
        *,
        upsample: bool = False,
        blur_kernel: tuple[int, ...] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels,
            out_channels,
            3,
            style_channels,
            upsample=upsample,
            blur_kernel=blur_kernel,
        )
        self.noise_injector = NoiseInjection()
        self.activate = BiasAct(out_channels)

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None) -> Tensor:
        """``x: [N, in, H, W]``, ``w: [N, S]``, ``noise: [1 or N, 1, H', W']`` or None.

        Computes ``lrelu(conv + noise + bias) * sqrt(2)`` as ``lrelu(sqrt(2) * conv +
        sqrt(2) * noise + sqrt(2) * bias)`` (leaky ReLU is positively homogeneous): the gain and
        the bias ride on the convolution, leaving two passes over the output (noise, ReLU).
        """
        gain = LRELU_GAIN
        x = self.conv(x, w, gain=gain, bias=self.activate.bias * gain)
        if noise is not None:
            x = self.noise_injector(x, noise, gain)
        return F.leaky_relu_(x, LRELU_SLOPE) if _can_inplace(x) else F.leaky_relu(x, LRELU_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias, plus the up-sampled previous image."""

    def __init__(
        self,
        in_channels: int,
        style_channels: int,
        out_channels: int = 3,
        *,
        upsample: bool = True,
        blur_kernel: tuple[int, ...] = (1, 3, 3, 1),
    ):
        super().__init__()
        if upsample:
            # upfirdn2d(up=2) with the 4-tap kernel: pad (2, 1) keeps the grid aligned.
            self.upsample = FIRFilter(blur_kernel, pad=(2, 1, 2, 1), up=2)
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_channels, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None = None) -> Tensor:
        img = self.conv(x, w) + self.bias.to(x.dtype)
        if skip is not None:
            img = img + self.upsample(skip)
        return img


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network (key ``input [1, C, 4, 4]``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 config-f generator (mapping + synthesis) in the mmagic key layout.

    ``generate`` samples images; GLEAN drives ``conv1`` and :meth:`style_block` directly with
    latents from its encoder.
    """

    def __init__(self, config: StyleGAN2Config, *, first_resolution: int | None = None):
        """``first_resolution``: keep only the synthesis blocks producing this resolution and
        above (and the mapping network), as LightGLEAN's bank does (TPAMI Sec. 4, Eq. 10). The
        kept modules have the same keys as in the full generator; the coarse ones, the 4x4
        stage and their noise maps are absent, so such a bank cannot sample images itself."""
        super().__init__()
        self.config = config
        if first_resolution is not None and first_resolution not in config.resolutions:
            raise ValueError(
                f"first_resolution must be one of {config.resolutions}, got {first_resolution}"
            )
        self.first_resolution = first_resolution
        ch = config.channels
        s = config.style_channels
        bk = config.blur_kernel
        self.style_mapping = nn.Sequential(
            PixelNorm(),
            *[
                EqualLinear(s, s, lr_mul=config.lr_mlp, activate=True)
                for _ in range(config.num_mlps)
            ],
        )
        if first_resolution is None:
            self.constant_input = ConstantInput(ch[4])
            self.conv1 = ModulatedStyleConv(ch[4], ch[4], s, blur_kernel=bk)
            self.to_rgb1 = ToRGB(ch[4], s, config.img_channels, upsample=False, blur_kernel=bk)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for res in config.resolutions:
            if first_resolution is not None and res < first_resolution:
                # placeholders without parameters keep the kept blocks' indices (and keys)
                self.convs.extend([nn.Identity(), nn.Identity()])
                self.to_rgbs.append(nn.Identity())
                continue
            in_ch = ch[res // 2]
            self.convs.append(ModulatedStyleConv(in_ch, ch[res], s, upsample=True, blur_kernel=bk))
            self.convs.append(ModulatedStyleConv(ch[res], ch[res], s, blur_kernel=bk))
            self.to_rgbs.append(ToRGB(ch[res], s, config.img_channels, blur_kernel=bk))
        first_noise = 0 if first_resolution is None else self.first_layer(first_resolution)
        for layer in range(first_noise, config.num_noises):
            res = 2 ** ((layer + 5) // 2)
            self.register_buffer(f"injected_noise_{layer}", torch.randn(1, 1, res, res))

    def _reference_param(self) -> Tensor:
        """A parameter whose device and dtype the generator's inputs should follow."""
        return self.style_mapping[1].bias if self.config.num_mlps else next(self.parameters())

    def _require_full(self, what: str) -> None:
        if self.first_resolution is not None:
            raise ValueError(
                f"{what} needs the full generator; this bank keeps only the blocks from "
                f"{self.first_resolution} px up"
            )

    # -- structure -------------------------------------------------------------------------------

    @staticmethod
    def first_layer(res: int) -> int:
        """Index of the up-sampling synthesis layer that produces resolution ``res``.

        Layer 0 is ``conv1`` (4x4); resolution ``res = 2 ** k`` has layers ``2k - 5`` (up-sampling)
        and ``2k - 4``; its ToRGB reads latent ``2k - 3``. Noise map ``l`` and latent ``l`` belong
        to layer ``l``.
        """
        return 2 * int(math.log2(res)) - 5

    def block(self, res: int) -> tuple[ModulatedStyleConv, ModulatedStyleConv, ToRGB]:
        """The (up-sampling conv, conv, ToRGB) modules producing resolution ``res`` (8 .. out)."""
        b = int(math.log2(res)) - 3
        return self.convs[2 * b], self.convs[2 * b + 1], self.to_rgbs[b]

    def noise(self, layer: int, x: Tensor, mode: NoiseMode) -> Tensor | None:
        """Noise for synthesis layer ``layer`` whose output has ``x``'s batch and size."""
        if mode == "const":
            return getattr(self, f"injected_noise_{layer}")
        if mode == "random":
            res = 2 ** ((layer + 5) // 2)
            return torch.randn(x.shape[0], 1, res, res, device=x.device, dtype=x.dtype)
        if mode == "none":
            return None
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {mode!r}")

    # -- forward paths ---------------------------------------------------------------------------

    def set_w_avg(self, w_avg: Tensor | None) -> None:
        """Store (or with ``None`` drop) the truncation centre that came with the weights, ``[S]``.

        NVIDIA's mapping network tracks the average ``w`` during training (``mapping.w_avg``);
        rosinality's converted files carry it as ``latent_avg``. When present, truncation uses it
        instead of estimating the mean from samples. It is a non-persistent buffer: it moves with
        ``.to()`` but is not part of ``state_dict()``, so bank and GLEAN files keep their exact
        key sets (bank directories store it explicitly).
        """
        if w_avg is None:
            self._buffers.pop("w_avg", None)
            self._non_persistent_buffers_set.discard("w_avg")
            return
        expected = (self.config.style_channels,)
        if tuple(w_avg.shape) != expected:
            raise ValueError(f"w_avg must be [{expected[0]}], got {list(w_avg.shape)}")
        param = self._reference_param()
        value = w_avg.detach().to(device=param.device, dtype=param.dtype).clone()
        self.register_buffer("w_avg", value, persistent=False)

    @property
    def stored_w_avg(self) -> Tensor | None:
        """The truncation centre stored with the weights (``[S]``), or None."""
        return self._buffers.get("w_avg")

    def mapping(
        self, z: Tensor, truncation_psi: float = 1.0, w_avg: Tensor | None = None
    ) -> Tensor:
        """``z: [N, S]`` -> ``w: [N, S]``; truncation pulls ``w`` towards ``w_avg`` when psi < 1.

        The centre is ``w_avg`` if given, else the stored one (:meth:`set_w_avg`), else
        :meth:`mean_latent`.
        """
        w = self.style_mapping(z)
        if truncation_psi != 1.0:
            w = self._truncate(w, truncation_psi, w_avg)
        return w

    def _truncate(self, w: Tensor, truncation_psi: float, w_avg: Tensor | None) -> Tensor:
        if w_avg is None:
            w_avg = self.stored_w_avg
        if w_avg is None:
            w_avg = self.mean_latent()
        return w_avg.to(w) + truncation_psi * (w - w_avg.to(w))

    @torch.no_grad()
    def mean_latent(self, num_samples: int = 4096, seed: int = 0) -> Tensor:
        """Mean of ``w`` over ``num_samples`` seeded ``z`` draws: the truncation centre ``[S]``."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(num_samples, self.config.style_channels, generator=g)
        return self.style_mapping(z.to(self._reference_param())).mean(dim=0)

    def style_block(
        self,
        res: int,
        x: Tensor,
        ws: Tensor,
        noise_mode: NoiseMode = "const",
        *,
        release_memory: bool = False,
    ) -> Tensor:
        """Run the two synthesis layers that produce resolution ``res``.

        ``x: [N, C_{res/2}, res/2, res/2]``, ``ws: [N, L, S]`` -> ``[N, C_res, res, res]``.
        ``release_memory`` hands freed heap memory back before each layer
        (:func:`~glean_sr.models.heap.release_free_memory`), for the largest blocks.
        """
        up_conv, conv, _ = self.block(res)
        layer = self.first_layer(res)
        x = up_conv(x, ws[:, layer], self.noise(layer, x, noise_mode))
        return conv(x, ws[:, layer + 1], self.noise(layer + 1, x, noise_mode))

    def block_rows(
        self, res: int, x: Tensor, ws: Tensor, noise_mode: NoiseMode = "const"
    ) -> RowFunction:
        """:meth:`style_block` as a function ``(a, b) -> rows [a, b)`` of its output, computed
        from the rows of ``x`` they depend on (inference only).

        The decoders consume the bank's largest block this way, in row bands, so that neither
        of its two full-size activations (2 x 134 MB at 1024 px for GLEAN) ever exists whole.
        The modulated weights are made once, here; each call recomputes one row above and below
        its band of the up-sampling layer, which the second layer's 3x3 window needs.
        """
        up, conv, _ = self.block(res)
        layer = self.first_layer(res)
        n, _, h, w = x.shape
        x = x.reshape(1, -1, h, w)  # [1, N * C, h, w]: one grouped convolution per layer
        gain = LRELU_GAIN
        w_up, b_up = up.conv.grouped_weight(
            ws[:, layer], x, gain=gain, bias=up.activate.bias * gain
        )
        w_cv, b_cv = conv.conv.grouped_weight(
            ws[:, layer + 1], x, gain=gain, bias=conv.activate.bias * gain
        )
        taps = fir_taps(up.conv.blur.kernel, w_up.shape[1] * n, x)
        noise_up = self.noise(layer, x, noise_mode)
        noise_cv = self.noise(layer + 1, x, noise_mode)

        def activate(layer: ModulatedStyleConv, t: Tensor, noise: Tensor | None, a: int) -> Tensor:
            t = t.reshape(n, -1, *t.shape[2:])
            if noise is not None:
                t = layer.noise_injector(t, noise[:, :, a : a + t.shape[2]], gain)
            return F.leaky_relu_(t, LRELU_SLOPE)

        def rows(a: int, b: int) -> Tensor:
            a1, b1 = max(a - 1, 0), min(b + 1, res)
            u = conv_transpose_blur_rows(x, w_up, taps, b_up, n, a1, b1)
            u = activate(up, u, noise_up, a1).reshape(1, -1, b1 - a1, res)
            return activate(conv, conv_rows(u, a1, a, b, res, w_cv, b_cv, groups=n), noise_cv, a)

        return rows

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode = "const") -> Tensor:
        """``ws: [N, L, S]`` (w+ latents) -> image ``[N, img_channels, R, R]`` in about [-1, 1]."""
        self._require_full("synthesis")
        expected = (self.config.num_latents, self.config.style_channels)
        if ws.ndim != 3 or tuple(ws.shape[1:]) != expected:
            raise ValueError(f"ws must be [N, {expected[0]}, {expected[1]}], got {list(ws.shape)}")
        x = self.constant_input(ws.shape[0])
        x = self.conv1(x, ws[:, 0], self.noise(0, x, noise_mode))
        img = self.to_rgb1(x, ws[:, 1])
        for res in self.config.resolutions:
            x = self.style_block(res, x, ws, noise_mode)
            img = self.block(res)[2](x, ws[:, self.first_layer(res) + 2], img)
        return img

    def generate(
        self,
        z: Tensor | None = None,
        *,
        w: Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "const",
        w_avg: Tensor | None = None,
    ) -> Tensor:
        """Sample images from ``z: [N, S]`` or from ``w: [N, S]`` / ``[N, L, S]``.

        ``noise_mode='const'`` uses the stored noise maps (deterministic); ``'random'`` draws new
        noise; ``'none'`` disables noise. Truncation (``truncation_psi < 1``) pulls towards
        ``w_avg``, by default the file's own (:meth:`set_w_avg`) or else an estimated mean.
        Returns ``[N, img_channels, R, R]``, RGB in about [-1, 1].
        """
        if (z is None) == (w is None):
            raise ValueError("pass exactly one of z or w")
        if z is not None:
            if z.ndim != 2 or z.shape[1] != self.config.style_channels:
                raise ValueError(
                    f"z must be [N, {self.config.style_channels}], got {list(z.shape)}"
                )
            w = self.mapping(z, truncation_psi, w_avg)
        elif truncation_psi != 1.0:
            w = self._truncate(w, truncation_psi, w_avg)
        assert w is not None
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.config.num_latents, -1)
        return self.synthesis(w, noise_mode)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const"):
        return self.generate(z, truncation_psi=truncation_psi, noise_mode=noise_mode)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"resolution={c.resolution}, style_channels={c.style_channels}, "
            f"num_mlps={c.num_mlps}, channel_multiplier={c.channel_multiplier}"
        )
