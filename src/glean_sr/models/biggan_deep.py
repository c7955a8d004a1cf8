"""BigGAN-deep (Brock et al., ICLR 2019, Appendix B) as Hugging Face's pytorch-pretrained-biggan
defines it: the TF Hub ``biggan-deep-{128,256,512}`` generators in PyTorch.

The module tree and state_dict keys are that package's ``BigGAN``, so its ``pytorch_model.bin``
loads unrenamed::

    embeddings.weight                        [z_dim, num_classes]: Linear of a one-hot class
    generator.gen_z.*                        [z, embedding] -> 4 x 4 x 16 ch, in TF's NHWC order
    generator.layers.{i}.bn_{0..3}.*         conditional batch norms: scale / offset linear maps,
                                             running_means / running_vars [n_stats, C]
    generator.layers.{i}.conv_{0..3}.*       1x1 down, 3x3, 3x3, 1x1 up (the bottleneck)
    generator.layers.{a}.snconv1x1_*, gamma  self-attention, at index attention_layer_position
    generator.bn.*, generator.conv_to_rgb.*  output batch norm, 3x3 conv (ch -> ch; first 3 kept)

Numerics are that code's: spectral norm as ``torch.nn.utils.spectral_norm`` (the stored vectors
in eval mode), batch-norm statistics chosen by the truncation (TF Hub stored them for 51
truncations; between two, the package's ``math.modf`` interpolation, which weights the lower
entry by the fractional part), the first layer's output read as ``[N, 4, 4, C]`` and permuted.

Built with ``first_resolution``, the generator keeps only the blocks producing that resolution
and above (and the attention layer if it stands before one of them), under their
full-generator keys (LightGLEAN's bank, TPAMI Sec. 4); it has no class embedding, first layer
or output layers and cannot sample images itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import BigGANDeepConfig
from .biggan import check_generate_inputs
from .biggan_layers import TorchSNConv2d, TorchSNLinear, self_attention


class TruncationBN(nn.Module):
    """``BigGANBatchNorm``: statistics for ``n_stats`` truncations; conditional (``scale`` and
    ``offset`` linear maps of the conditioning vector) or with learnt ``weight`` / ``bias``."""

    def __init__(self, channels: int, cond_dim: int | None, config: BigGANDeepConfig):
        super().__init__()
        self.eps = config.eps
        self.register_buffer("running_means", torch.zeros(config.n_stats, channels))
        self.register_buffer("running_vars", torch.ones(config.n_stats, channels))
        self.step_size = 1.0 / (config.n_stats - 1)
        self.conditional = cond_dim is not None
        if cond_dim is not None:
            self.scale = TorchSNLinear(cond_dim, channels, bias=False, eps=config.eps)
            self.offset = TorchSNLinear(cond_dim, channels, bias=False, eps=config.eps)
        else:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def statistics(self, truncation: float) -> tuple[Tensor, Tensor]:
        coef, start = math.modf(truncation / self.step_size)
        start = int(start)
        if coef != 0.0:
            mean = self.running_means[start] * coef + self.running_means[start + 1] * (1 - coef)
            var = self.running_vars[start] * coef + self.running_vars[start + 1] * (1 - coef)
            return mean, var
        return self.running_means[start], self.running_vars[start]

    def forward(self, x: Tensor, truncation: float, cond: Tensor | None = None) -> Tensor:
        mean, var = self.statistics(truncation)
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        assert cond is not None
        mean, var = mean[None, :, None, None], var[None, :, None, None]  # [1, C, 1, 1]
        weight = 1 + self.scale(cond)[:, :, None, None]  # [N, C, 1, 1]
        bias = self.offset(cond)[:, :, None, None]
        return (x - mean) / torch.sqrt(var + self.eps) * weight + bias


class GenBlock(nn.Module):
    """BigGAN-deep's residual bottleneck block; the skip keeps the first half of the channels
    when the block halves the width and is up-sampled (nearest) with the main path."""

    def __init__(self, c_in: int, c_out: int, up: bool, config: BigGANDeepConfig):
        super().__init__()
        self.up_sample = up
        self.drop_channels = c_in != c_out
        mid, cond, eps = c_in // 4, config.cond_dim, config.eps
        self.bn_0 = TruncationBN(c_in, cond, config)
        self.conv_0 = TorchSNConv2d(c_in, mid, 1, eps=eps)
        self.bn_1 = TruncationBN(mid, cond, config)
        self.conv_1 = TorchSNConv2d(mid, mid, 3, eps=eps)
        self.bn_2 = TruncationBN(mid, cond, config)
        self.conv_2 = TorchSNConv2d(mid, mid, 3, eps=eps)
        self.bn_3 = TruncationBN(mid, cond, config)
        self.conv_3 = TorchSNConv2d(mid, c_out, 1, eps=eps)

    def forward(self, x: Tensor, cond: Tensor, truncation: float) -> Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        h = F.relu(self.bn_1(h, truncation, cond))
        if self.up_sample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, truncation, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, truncation, cond)))
        if self.drop_channels:
            x = x[:, : x.shape[1] // 2]
        if self.up_sample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return h + x


class SelfAttn(nn.Module):
    """Keys ``snconv1x1_{theta, phi, g, o_conv}`` (1x1, no bias) and ``gamma [1]``."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.snconv1x1_theta = TorchSNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_phi = TorchSNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_g = TorchSNConv2d(channels, channels // 2, 1, bias=False, eps=eps)
        self.snconv1x1_o_conv = TorchSNConv2d(channels // 2, channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self_attention(
            x,
            self.snconv1x1_theta,
            self.snconv1x1_phi,
            self.snconv1x1_g,
            self.snconv1x1_o_conv,
            self.gamma,
        )


class _Synthesis(nn.Module):
    """The package's ``Generator``: everything after the class embedding. ``layers`` holds the
    blocks with the attention layer before block ``attention_layer_position``; with
    ``first_resolution`` the layers not kept are parameter-free placeholders."""

    def __init__(self, config: BigGANDeepConfig, first_resolution: int | None):
        super().__init__()
        cw, eps = config.channel_width, config.eps
        if first_resolution is None:
            self.gen_z = TorchSNLinear(config.cond_dim, 4 * 4 * 16 * cw, eps=eps)
        self.layers = nn.ModuleList()
        blocks = zip(config.layers, config.block_resolutions, strict=True)
        for i, ((up, m_in, m_out), res) in enumerate(blocks):
            kept = first_resolution is None or res >= first_resolution
            if i == config.attention_layer_position:
                self.layers.append(SelfAttn(cw * m_in, eps) if kept else nn.Identity())
            self.layers.append(
                GenBlock(cw * m_in, cw * m_out, up, config) if kept else nn.Identity()
            )
        if first_resolution is None:
            self.bn = TruncationBN(cw, None, config)
            self.conv_to_rgb = TorchSNConv2d(cw, cw, 3, eps=eps)


class BigGANDeepGenerator(nn.Module):
    """pytorch-pretrained-biggan's ``BigGAN`` (``embeddings`` + ``generator``).

    GLEAN drives it piece by piece: :meth:`stem`, then :meth:`run_block` for each block.
    """

    def __init__(self, config: BigGANDeepConfig, *, first_resolution: int | None = None):
        super().__init__()
        resolutions = sorted(set(config.block_resolutions))
        if first_resolution is not None and first_resolution not in resolutions:
            raise ValueError(
                f"first_resolution must be one of {resolutions}, got {first_resolution}"
            )
        self.config = config
        self.first_resolution = first_resolution
        if first_resolution is None:
            self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = _Synthesis(config, first_resolution)

    # -- the pieces GLEAN drives one by one ------------------------------------------------------

    def conditions(self, z: Tensor, class_labels: Tensor) -> list[Tensor]:
        """The conditioning vectors the package derives from ``z: [N, z_dim]`` and
        ``class_labels: [N]`` int64 (one-hot): ``[z, embedding]`` for the first layer and for
        every block (sizes ``config.condition_sizes``)."""
        self.check_complete()
        one_hot = F.one_hot(class_labels, self.config.num_classes).to(z.dtype)
        cond = torch.cat((z, self.embeddings(one_hot)), dim=1)  # [N, 2 z_dim]
        return [cond] * len(self.config.condition_sizes)

    def stem(self, c0: Tensor) -> Tensor:
        """``c0: [N, cond_dim]`` -> the 4x4 feature ``[N, channels[4], 4, 4]`` (the first
        layer's output is laid out as TF's ``[N, 4, 4, C]``)."""
        width = 16 * self.config.channel_width
        x = self.generator.gen_z(c0).view(-1, 4, 4, width)  # [N, 4, 4, C]
        return x.permute(0, 3, 1, 2).contiguous()  # [N, C, 4, 4]

    def run_block(self, index: int, x: Tensor, cond: Tensor, truncation: float = 1.0) -> Tensor:
        """Block ``index`` (preceded by the attention layer when it stands before it) on
        ``x: [N, C, H, W]``, conditioned on ``cond: [N, cond_dim]``, with the batch-norm
        statistics of ``truncation``; the output is at ``block_resolutions[index]``."""
        position = self.config.attention_layer_position
        if index == position:
            x = self.generator.layers[index](x)
        after_attention = 1 if index >= position else 0  # layers holds the attention too
        return self.generator.layers[index + after_attention](x, cond, truncation)

    def to_rgb(self, x: Tensor, truncation: float = 1.0) -> Tensor:
        """``[N, channel_width, R, R]`` -> image ``[N, 3, R, R]`` in [-1, 1]: batch norm with
        the statistics of ``truncation``, ReLU, 3x3 conv (its first 3 channels), tanh."""
        g = self.generator
        return torch.tanh(g.conv_to_rgb(F.relu(g.bn(x, truncation)))[:, :3])

    # -- sampling ----------------------------------------------------------------------------------

    def forward(self, z: Tensor, class_vector: Tensor, truncation: float) -> Tensor:
        """The package's ``model(z, class_vector, truncation)``: ``z: [N, z_dim]``,
        ``class_vector: [N, num_classes]`` (one-hot or a mixture) -> ``[N, 3, R, R]``."""
        self.check_complete()
        cond = torch.cat((z, self.embeddings(class_vector)), dim=1)  # [N, 2 z_dim]
        x = self.stem(cond)
        for index in range(len(self.config.layers)):
            x = self.run_block(index, x, cond, truncation)
        return self.to_rgb(x, truncation)

    def check_complete(self) -> None:
        """Raise ``ValueError`` if this generator keeps only some blocks (LightGLEAN's bank)."""
        if self.first_resolution is not None:
            raise ValueError(
                f"this BigGAN-deep keeps only its blocks from {self.first_resolution} px up "
                f"(LightGLEAN's bank) and cannot sample images"
            )

    def generate(self, z: Tensor, class_labels: Tensor, truncation: float = 1.0) -> Tensor:
        """Images of classes ``class_labels: [N]`` (int64, one-hot encoded as the package's
        ``one_hot_from_*`` helpers do) from ``z: [N, z_dim]`` as the package takes it (its
        ``truncated_noise_sample`` draws ``truncation * truncnorm(-2, 2)``), with the batch-norm
        statistics of ``truncation`` in (0, 1]. Returns ``[N, 3, R, R]`` RGB in [-1, 1]."""
        self.check_complete()
        check_generate_inputs(z, class_labels, truncation, self.config.z_dim, self.config)
        one_hot = F.one_hot(class_labels, self.config.num_classes).to(z.dtype)
        return self(z, one_hot, truncation)

    def extra_repr(self) -> str:
        c = self.config
        kept = "" if self.first_resolution is None else f", from {self.first_resolution} px"
        return (
            f"resolution={c.resolution}, channel_width={c.channel_width}, z_dim={c.z_dim}, "
            f"blocks={len(c.layers)}, attention before block {c.attention_layer_position}{kept}"
        )


__all__ = ["BigGANDeepGenerator"]
