"""StyleGAN2 discriminator (residual, config-f), in mmagic's key layout.

The discriminator GLEAN trains against (spec §6: ``StyleGAN2Discriminator(in_size=out_size)``,
initialised from the bank's file). Keys, as in the released files' ``discriminator.*``:

    convs.0.{0.conv.weight_orig, 1.bias}                  from-RGB: 1x1 conv + bias + leaky ReLU
    convs.{k}.conv1.{0.conv.weight_orig, 1.bias}          residual block k (k = 1 .. log2(R) - 2)
    convs.{k}.conv2.{0.kernel, 1.conv.weight_orig, 2.bias}   blur + 3x3 conv stride 2
    convs.{k}.skip.{0.kernel, 1.conv.weight_orig}         blur + 1x1 conv stride 2, no bias
    final_conv.{0.conv.weight_orig, 1.bias}               3x3 conv after minibatch stddev
    final_linear.{0,1}.{linear.weight_orig, bias}         dense + leaky ReLU, dense -> 1 logit

Numerics (Karras et al., CVPR 2020, App. B and Fig. 7c): equalized learning rate at run time,
FIR low-pass [1, 3, 3, 1] before every stride-2 convolution, residual sum scaled by 1/sqrt(2),
minibatch standard deviation before the last convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import StyleGAN2DiscriminatorConfig
from .layers import BiasAct, EqualizedWeight, EqualLinear, FIRFilter


class EqualConv2d(nn.Module):
    """Equalized-lr convolution without bias (key ``conv.weight_orig [out, in, k, k]``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1):
        super().__init__()
        k = kernel_size
        self.conv = EqualizedWeight((out_channels, in_channels, k, k), fan_in=in_channels * k * k)
        self.stride = stride
        self.padding = k // 2 if stride == 1 else 0

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.conv(), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.conv.weight_orig.shape
        return f"{in_c} -> {out_c}, k={k}, stride={self.stride}"


def conv_layer(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    down: bool = False,
    activate: bool = True,
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1),
) -> nn.Sequential:
    """[blur (when ``down``)] -> conv (stride 2 when ``down``) -> [bias + leaky ReLU x sqrt(2)].

    The blur pads so that blur and stride-2 convolution together halve the size exactly:
    ``len(taps) - 2 + kernel_size - 1`` samples in total, split as evenly as possible.
    """
    layers: list[nn.Module] = []
    if down:
        p = len(blur_kernel) - 2 + kernel_size - 1
        layers.append(FIRFilter(blur_kernel, pad=((p + 1) // 2, p // 2) * 2, gain=1.0))
    layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2 if down else 1))
    if activate:
        layers.append(BiasAct(out_channels))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """``(conv2(conv1(x)) + skip(x)) / sqrt(2)``; halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: tuple[int, ...]):
        super().__init__()
        self.conv1 = conv_layer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = conv_layer(in_channels, out_channels, 3, down=True, blur_kernel=blur_kernel)
        self.skip = conv_layer(
            in_channels, out_channels, 1, down=True, activate=False, blur_kernel=blur_kernel
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, H, W]`` -> ``[N, C_out, H / 2, W / 2]``."""
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


class MinibatchStd(nn.Module):
    """Append the mean standard deviation over groups of samples as extra feature maps.

    Sample ``n`` belongs to group ``n % (N / G)`` (the reference's reshape to ``[G, -1, ...]``).
    """

    def __init__(self, group_size: int, num_channels: int):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C, H, W]`` -> ``[N, C + num_channels, H, W]``."""
        n, c, h, w = x.shape
        g = min(n, self.group_size)
        if n % g:
            raise ValueError(
                f"the batch size ({n}) must be a multiple of the minibatch-stddev group size "
                f"({self.group_size}) or smaller than it"
            )
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, N/G, F, C/F, H, W]
        y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)  # [N/G, F, C/F, H, W]
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1)  # [N/G, F, 1, 1]
        return torch.cat((x, y.repeat(g, 1, h, w)), dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class StyleGAN2Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image ``[N, C, R, R]`` -> realness logit ``[N, 1]``."""

    def __init__(self, config: StyleGAN2DiscriminatorConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        bk = config.blur_kernel
        convs: list[nn.Module] = [conv_layer(config.img_channels, ch[config.resolution], 1)]
        for res in config.resolutions:
            convs.append(ResBlock(ch[res], ch[res // 2], bk))
        self.convs = nn.Sequential(*convs)
        self.mbstd_layer = MinibatchStd(config.mbstd_group_size, config.mbstd_channels)
        self.final_conv = conv_layer(ch[4] + config.mbstd_channels, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activate=True),
            EqualLinear(ch[4], 1),
        )

    def forward(self, img: Tensor) -> Tensor:
        """``img: [N, img_channels, R, R]``, RGB in [-1, 1] -> logits ``[N, 1]`` (real > 0).

        ``N`` must be a multiple of ``mbstd_group_size`` or smaller than it.
        """
        c = self.config
        if img.ndim != 4 or tuple(img.shape[1:]) != (c.img_channels, c.resolution, c.resolution):
            raise ValueError(
                f"img must be [N, {c.img_channels}, {c.resolution}, {c.resolution}], "
                f"got {list(img.shape)}"
            )
        x = self.convs(img)  # [N, C_4, 4, 4]
        x = self.final_conv(self.mbstd_layer(x))
        return self.final_linear(x.flatten(1))  # [N, 1]

    def extra_repr(self) -> str:
        c = self.config
        return f"resolution={c.resolution}, channels={c.channels}"
