"""Residual-in-Residual Dense Blocks (ESRGAN, Wang et al. 2018, Sec. 3.1) and the pixel-shuffle
up-sampler, with the reference key layout (``conv_first``, ``body.{k}.rdb{1,2,3}.conv{1..5}``,
``conv_body``; ``upsample_conv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def esrgan_init_(module: nn.Module, scale: float) -> None:
    """Kaiming-normal (fan_in, ReLU gain) scaled by ``scale``, zero bias, for every conv/linear."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; returns ``x + 0.2 * conv5(...)``."""

    def __init__(self, channels: int = 64, growth_channels: int = 32):
        super().__init__()
        g = growth_channels
        self.conv1 = nn.Conv2d(channels, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(channels + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(channels + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(channels + 4 * g, channels, 3, 1, 1)
        # ESRGAN initialisation: small residual branches make deep RRDB stacks trainable.
        esrgan_init_(self, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C, H, W]`` -> ``[N, C, H, W]``."""
        x1 = F.leaky_relu(self.conv1(x), 0.2)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks inside one more residual connection (scale 0.2)."""

    def __init__(self, channels: int = 64, growth_channels: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth_channels)
        self.rdb2 = ResidualDenseBlock(channels, growth_channels)
        self.rdb3 = ResidualDenseBlock(channels, growth_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.rdb3(self.rdb2(self.rdb1(x)))
        return y * 0.2 + x


class RRDBFeatureExtractor(nn.Module):
    """ESRGAN's trunk without its up-sampler: ``feat + conv_body(body(feat))``."""

    def __init__(
        self, in_channels: int = 3, channels: int = 64, num_blocks: int = 23, growth: int = 32
    ):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, channels, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(channels, growth) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, in_channels, H, W]`` -> ``[N, channels, H, W]``."""
        feat = self.conv_first(x)
        return feat + self.conv_body(self.body(feat))


class PixelShufflePack(nn.Module):
    """3x3 conv to ``out * scale ** 2`` channels, then pixel shuffle; no activation."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3):
        super().__init__()
        self.scale = scale
        self.upsample_conv = nn.Conv2d(
            in_channels, out_channels * scale * scale, kernel_size, padding=(kernel_size - 1) // 2
        )
        esrgan_init_(self, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, in, H, W]`` -> ``[N, out, H * scale, W * scale]``."""
        return F.pixel_shuffle(self.upsample_conv(x), self.scale)
