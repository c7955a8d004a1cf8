"""BigGAN-PyTorch's discriminator (``BigGAN.py`` ``Discriminator``, wide), the adversary GLEAN
trains a BigGAN-bank restorer against (TPAMI 2023, Sec. 3.4: "the StyleGAN or BigGAN
discriminator"). BigGAN files carry no discriminator, so it starts from scratch.

It is the discriminator BigGAN-PyTorch's launch scripts pair with a generator: ``D_ch = G_ch``
and attention at ``G_attn``, at the generator's resolution (its ``D_arch`` table), with the same
spectral norm (:class:`~glean_sr.models.biggan_layers.BrockSN`: one power iteration per
forward, written back in training mode) and orthogonal initialisation. A restorer's output
comes without a class label, so the class-projection term of the original is left out: the
output is ``linear(sum(relu(h)))``, one logit per image.

Its spectral norm is always BigGAN-PyTorch's ``layers.SN``, which writes its power iteration
back in training mode (a bank converted from TF Hub computes with another variant, which never
does). For a BigGAN-deep bank, :func:`discriminator_config` describes the discriminator of the
same size in BigGAN-PyTorch's ``BigGAN.py`` terms (``D_ch`` = ``channel_width``, attention
at the resolution of the bank's attention layer).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import BIGGAN_ARCH, BigGANConfig, BigGANDeepConfig
from ..errors import ConfigError
from .biggan import Attention
from .biggan_layers import BrockSN, BrockSNConv2d, BrockSNLinear

#: ``D_arch``: per resolution, (width multipliers of the blocks' outputs, whether each block
#: down-samples, the resolution its attention is keyed by); inputs are 3 then the outputs.
D_ARCH: dict[int, tuple[tuple[int, ...], tuple[bool, ...], tuple[int, ...]]] = {
    32: ((4, 4, 4, 4), (True, True, False, False), (16, 16, 16, 16)),
    64: ((1, 2, 4, 8, 16), (True,) * 4 + (False,), (32, 16, 8, 4, 4)),
    128: ((1, 2, 4, 8, 16, 16), (True,) * 5 + (False,), (64, 32, 16, 8, 4, 4)),
    256: ((1, 2, 4, 8, 8, 16, 16), (True,) * 6 + (False,), (128, 64, 32, 16, 8, 4, 4)),
    512: ((1, 1, 2, 4, 8, 8, 16, 16), (True,) * 7 + (False,), (256, 128, 64, 32, 16, 8, 4, 4)),
}


class DBlock(nn.Module):
    """``layers.DBlock`` (wide): [ReLU] conv3x3 - ReLU - conv3x3 [- avg-pool], plus a shortcut
    (1x1 conv and pool; conv first after a pre-activation, as the code orders them)."""

    def __init__(self, c_in: int, c_out: int, *, preactivation: bool, downsample: bool, sn: dict):
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1 = BrockSNConv2d(c_in, c_out, 3, **sn)
        self.conv2 = BrockSNConv2d(c_out, c_out, 3, **sn)
        self.learnable_sc = c_in != c_out or downsample
        if self.learnable_sc:
            self.conv_sc = BrockSNConv2d(c_in, c_out, 1, **sn)

    def shortcut(self, x: Tensor) -> Tensor:
        if self.preactivation:
            x = self.conv_sc(x) if self.learnable_sc else x
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.conv_sc(x) if self.learnable_sc else x

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self.shortcut(x)


class BigGANDiscriminator(nn.Module):
    """``[N, 3, R, R]`` images in [-1, 1] -> ``[N, 1]`` logits (real > 0). ``config`` is the
    generator's (:class:`BigGANConfig`): resolution, ``ch`` and ``attention`` are taken from it.
    """

    def __init__(self, config: BigGANConfig):
        super().__init__()
        self.config = config
        mults, downs, keys = D_ARCH[config.resolution]
        outs = [config.ch * m for m in mults]
        ins = [3, *outs[:-1]]
        sn = {"num_svs": config.num_svs, "num_itrs": config.num_itrs, "eps": config.sn_eps}
        if config.sn_variant != "biggan_pytorch":
            raise ValueError(
                f"the discriminator uses BigGAN-PyTorch's spectral norm; got sn_variant "
                f"{config.sn_variant!r} (build it from discriminator_config(bank_config))"
            )
        self.blocks = nn.ModuleList()
        for i, (c_in, c_out, down, key) in enumerate(zip(ins, outs, downs, keys, strict=True)):
            stage = [DBlock(c_in, c_out, preactivation=i > 0, downsample=down, sn=sn)]
            if key in config.attention:
                stage.append(Attention(c_out, config))
            self.blocks.append(nn.ModuleList(stage))
        self.linear = BrockSNLinear(outs[-1], 1, **sn)
        with torch.no_grad():  # D_init = 'ortho'
            for module in self.modules():
                if isinstance(module, BrockSN):
                    nn.init.orthogonal_(module.weight)

    def forward(self, img: Tensor) -> Tensor:
        """``img: [N, 3, R, R]`` -> ``[N, 1]``."""
        h = img
        for stage in self.blocks:
            for layer in stage:
                h = layer(h)
        return self.linear(torch.sum(F.relu(h), [2, 3]))  # global sum pooling, as SN-GAN

    def extra_repr(self) -> str:
        c = self.config
        return f"resolution={c.resolution}, ch={c.ch}, attention={list(c.attention)}"


def discriminator_config(bank: BigGANConfig | BigGANDeepConfig) -> BigGANConfig:
    """The :class:`BigGANConfig` whose discriminator a restorer around ``bank`` trains against:
    the bank's own for a BigGAN-PyTorch bank (its spectral norm BigGAN-PyTorch's, with that
    code's default epsilon where the bank came from TF Hub); for BigGAN-deep, ``D_ch`` =
    ``channel_width`` and attention where the bank's is. Raises ``ConfigError`` for a
    resolution BigGAN-PyTorch has no discriminator for."""
    if isinstance(bank, BigGANConfig):
        if bank.sn_variant == "biggan_pytorch":
            return bank
        default_eps = BigGANConfig.__dataclass_fields__["sn_eps"].default
        return dataclasses.replace(bank, sn_variant="biggan_pytorch", sn_eps=default_eps)
    if bank.resolution not in BIGGAN_ARCH:
        raise ConfigError(
            f"BigGAN-PyTorch has discriminators for {sorted(BIGGAN_ARCH)} px, not for this "
            f"{bank.resolution} px BigGAN-deep bank; set loss.gan_weight=0"
        )
    up, _, _ = bank.layers[bank.attention_layer_position]
    attention = bank.block_resolutions[bank.attention_layer_position] // (2 if up else 1)
    return BigGANConfig(
        resolution=bank.resolution,
        ch=bank.channel_width,
        num_classes=bank.num_classes,
        attention=(attention,) if attention >= 8 else (),
        hier=False,
    )


__all__ = ["D_ARCH", "BigGANDiscriminator", "discriminator_config"]
