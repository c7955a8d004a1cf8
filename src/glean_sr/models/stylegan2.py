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
from .layers import BiasAct, EqualLinear, FIRFilter, NoiseInjection, PixelNorm

NoiseMode = Literal["const", "random", "none"]


class ModulatedConv2d(nn.Module):
    """Modulated (and demodulated) convolution, StyleGAN2 Eq. 1-3.

    Keys: ``weight_orig [1, out, in, k, k]``, ``style_modulation.{bias, linear.weight_orig}``,
    ``blur.kernel [4, 4]`` when up-sampling.

    The modulation is applied either to the weights (one kernel per sample, a grouped
    convolution: the reference's form) or to the activations (scale the input channels, one
    shared convolution, scale the output channels: NVIDIA's ``fused_modconv=False``). Both
    compute the same function. ``fused_modconv`` chooses: ``None`` (default) whichever moves
    fewer numbers per sample, ``True`` the weights, ``False`` the activations (one graph for
    every batch size, which ONNX export needs).
    """

    fused_modconv: bool | None = None

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

    def modulation(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(weight [out, in, k, k], styles [N, in], factor [N, out])`` for ``w: [N, S]``.

        The modulated, demodulated weight of sample ``n`` is
        ``weight * styles[n][None, :, None, None] * factor[n][:, None, None, None]``: ``styles``
        carries the equalized-lr scale, ``factor`` the demodulation (Eq. 3; ones without it).
        """
        styles = self.style_modulation(w) * self.scale  # [N, in]
        weight = self.weight_orig[0]  # [out, in, k, k]
        if self.demodulate:
            wsq = weight.square().sum(dim=(2, 3))  # [out, in]
            factor = torch.rsqrt(styles.square() @ wsq.t() + self.eps)  # [N, out]
        else:
            factor = torch.ones_like(styles[:, :1]).expand(-1, self.out_channels)
        return weight, styles, factor

    def modulates_weights(self, h: int, w: int) -> bool:
        """Whether an ``h x w`` input is convolved with per-sample modulated weights (``True``)
        or modulated on its activations: ``fused_modconv`` when set, otherwise whichever moves
        fewer numbers per sample (a modulated weight, or the input and output activations)."""
        if self.fused_modconv is not None:
            return self.fused_modconv
        out_hw = (2 * h) * (2 * w) if self.upsample else h * w
        weight_numbers = self.out_channels * self.in_channels * self.kernel_size**2
        return weight_numbers <= self.in_channels * h * w + self.out_channels * out_hw

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """``x: [N, in, H, W]``, ``w: [N, style_channels]`` -> ``[N, out, H', W']``, with
        ``H' = 2H`` when up-sampling, else ``H``."""
        n, c, h, wd = x.shape
        weight, styles, factor = self.modulation(w)
        if self.modulates_weights(h, wd):  # one kernel per sample, as one grouped convolution
            k = self.kernel_size
            wt = weight[None] * styles[:, None, :, None, None] * factor[:, :, None, None, None]
            wt = wt.to(x.dtype)  # [N, out, in, k, k]
            x = x.reshape(1, n * c, h, wd)  # [1, N*in, H, W]
            if self.upsample:
                wt = wt.transpose(1, 2).reshape(n * c, self.out_channels, k, k)
                x = self.blur(F.conv_transpose2d(x, wt, stride=2, groups=n))
            else:
                wt = wt.reshape(n * self.out_channels, c, k, k)
                x = F.conv2d(x, wt, padding=k // 2, groups=n)
            return x.reshape(n, self.out_channels, *x.shape[-2:])
        x = x * styles[:, :, None, None].to(x.dtype)
        weight = weight.to(x.dtype)
        if self.upsample:  # the FIR filter is linear per channel: scale after it
            x = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        return x * factor[:, :, None, None].to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, k={self.kernel_size}, "
            f"upsample={self.upsample}, demodulate={self.demodulate}"
        )


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
        """``x: [N, in, H, W]``, ``w: [N, S]``, ``noise: [1 or N, 1, H', W']`` or None ->
        ``lrelu(conv + noise + bias) * sqrt(2)``, ``[N, out, H', W']``."""
        x = self.conv(x, w)
        if noise is not None:
            x = self.noise_injector(x, noise)
        return self.activate(x)


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
    ) -> Tensor:
        """Run the two synthesis layers that produce resolution ``res``.

        ``x: [N, C_{res/2}, res/2, res/2]``, ``ws: [N, L, S]`` -> ``[N, C_res, res, res]``.
        """
        up_conv, conv, _ = self.block(res)
        layer = self.first_layer(res)
        x = up_conv(x, ws[:, layer], self.noise(layer, x, noise_mode))
        return conv(x, ws[:, layer + 1], self.noise(layer + 1, x, noise_mode))

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
            f"num_mlps={c.num_mlps}, channels={c.channels}"
        )
