"""BigGAN-PyTorch's generator (Brock et al., ICLR 2019; ajbrock/BigGAN-PyTorch ``BigGAN.py``), the
latent bank of GLEAN's multi-class restorer (TPAMI 2023, Sec. 5.3).

The module tree and state_dict keys are that code's, so its ``G.pth`` / ``G_ema.pth`` load
unrenamed::

    shared.weight                          [num_classes, shared_dim] class embedding (no SN)
    linear.{weight, bias, u0, sv0}         z chunk 0 -> [16 ch, 4, 4] (NCHW view)
    blocks.{b}.0.conv1/conv2/conv_sc.*     residual block b: up-sample to 8 * 2 ** b
    blocks.{b}.0.bn{1,2}.{gain, bias}.*    class-conditional batch norm: linear maps of the
    blocks.{b}.0.bn{1,2}.stored_{mean,var}   block's conditioning vector, stored statistics
    blocks.{b}.1.{theta, phi, g, o, gamma} self-attention after block b (``attention``)
    output_layer.0.{gain, bias, stored_*}  batch norm -> ReLU -> output_layer.2 (3x3 conv to RGB)

Numerics: ``layers.SN`` (one power iteration on every forward, in eval mode too; see
:mod:`glean_sr.models.biggan_layers`), nearest-neighbour up-sampling, ``F.batch_norm`` with
the stored statistics in eval mode and the batch's in training mode, as that code does. The
output layer's batch norm has epsilon 1e-5 whatever ``bn_eps`` is (the code builds it without
one).

Built with ``first_resolution``, the generator keeps only the blocks producing that resolution
and above, under their full-generator keys (LightGLEAN's bank, TPAMI Sec. 4); it has no class
embedding, linear layer or output layer and cannot sample images itself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import BigGANConfig
from .biggan_layers import BrockSNConv2d, BrockSNLinear, self_attention

#: the epsilon BigGAN-PyTorch's unconditional ``layers.bn`` is built with in ``output_layer``
OUTPUT_BN_EPS = 1e-5


def sn_options(config: BigGANConfig) -> dict[str, Any]:
    """The spectral-norm arguments of every layer of ``config``'s generator."""
    return {
        "num_svs": config.num_svs,
        "num_itrs": config.num_itrs,
        "eps": config.sn_eps,
        "variant": config.sn_variant,
    }


class ClassConditionalBN(nn.Module):
    """``layers.ccbn``: batch norm without affine parameters, then ``* (1 + gain(y)) + bias(y)``
    where ``gain`` and ``bias`` are spectrally normalised linear maps of the block's vector."""

    def __init__(self, channels: int, cond_dim: int, config: BigGANConfig):
        super().__init__()
        sn = sn_options(config)
        self.gain = BrockSNLinear(cond_dim, channels, bias=False, **sn)
        self.bias = BrockSNLinear(cond_dim, channels, bias=False, **sn)
        self.eps = config.bn_eps
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        gain = (1 + self.gain(y)).view(y.shape[0], -1, 1, 1)  # [N, C, 1, 1]
        bias = self.bias(y).view(y.shape[0], -1, 1, 1)
        out = F.batch_norm(
            x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps
        )
        return out * gain + bias


class GBlock(nn.Module):
    """``layers.GBlock``: BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, plus a 1x1 conv of the up-sampled
    input."""

    def __init__(self, c_in: int, c_out: int, config: BigGANConfig):
        super().__init__()
        sn = sn_options(config)
        self.conv1 = BrockSNConv2d(c_in, c_out, 3, **sn)
        self.conv2 = BrockSNConv2d(c_out, c_out, 3, **sn)
        self.conv_sc = BrockSNConv2d(c_in, c_out, 1, **sn)
        self.bn1 = ClassConditionalBN(c_in, config.cond_dim, config)
        self.bn2 = ClassConditionalBN(c_out, config.cond_dim, config)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2)  # [N, C_in, 2H, 2W]
        x = F.interpolate(x, scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(x)


class Attention(nn.Module):
    """``layers.Attention``: keys ``theta``, ``phi``, ``g``, ``o`` (1x1, no bias), ``gamma []``."""

    def __init__(self, channels: int, config: BigGANConfig):
        super().__init__()
        sn = sn_options(config)
        self.theta = BrockSNConv2d(channels, channels // 8, 1, bias=False, **sn)
        self.phi = BrockSNConv2d(channels, channels // 8, 1, bias=False, **sn)
        self.g = BrockSNConv2d(channels, channels // 2, 1, bias=False, **sn)
        self.o = BrockSNConv2d(channels // 2, channels, 1, bias=False, **sn)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self_attention(x, self.theta, self.phi, self.g, self.o, self.gamma)


class OutputBN(nn.Module):
    """``layers.bn``: batch norm with learnt ``gain`` / ``bias`` and stored statistics."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x,
            self.stored_mean,
            self.stored_var,
            self.gain,
            self.bias,
            self.training,
            0.1,
            OUTPUT_BN_EPS,
        )


class BigGANGenerator(nn.Module):
    """BigGAN-PyTorch's ``Generator`` with a shared class embedding (``G_shared``).

    GLEAN drives it piece by piece: :meth:`stem`, then :meth:`run_block` for each block.
    """

    def __init__(self, config: BigGANConfig, *, first_resolution: int | None = None):
        super().__init__()
        if first_resolution is not None and first_resolution not in config.resolutions:
            raise ValueError(
                f"first_resolution must be one of {config.resolutions}, got {first_resolution}"
            )
        self.config = config
        self.first_resolution = first_resolution
        ch = config.channels
        sn = sn_options(config)
        if first_resolution is None:
            # nn.Embedding's own N(0, 1) init, drawn by a factory (free on the meta device)
            shared = torch.randn(config.num_classes, config.shared_dim)
            self.shared = nn.Embedding(config.num_classes, config.shared_dim, _weight=shared)
            self.linear = BrockSNLinear(config.z_chunk, 16 * ch[4], **sn)
        self.blocks = nn.ModuleList()
        for res in config.resolutions:
            stage = []
            if first_resolution is None or res >= first_resolution:  # else a placeholder
                stage.append(GBlock(ch[res // 2], ch[res], config))
                if res in config.attention:
                    stage.append(Attention(ch[res], config))
            self.blocks.append(nn.ModuleList(stage))
        if first_resolution is None:
            last = ch[config.resolution]
            self.output_layer = nn.Sequential(
                OutputBN(last), nn.ReLU(), BrockSNConv2d(last, 3, 3, **sn)
            )

    # -- the pieces GLEAN drives one by one ------------------------------------------------------

    def conditions(self, z: Tensor, class_labels: Tensor) -> list[Tensor]:
        """The conditioning vectors the code derives from ``z: [N, dim_z]`` and
        ``class_labels: [N]`` int64: ``[z_0, [y, z_1], ..., [y, z_B]]`` with a hierarchical
        ``z``, else ``[z, y, ..., y]``, where ``y = shared(class_labels)`` (sizes
        ``config.condition_sizes``)."""
        self.check_complete()
        return self.conditions_from_embedding(z, self.shared(class_labels))

    def stem(self, c0: Tensor) -> Tensor:
        """``c0: [N, condition_sizes[0]]`` -> the 4x4 feature ``[N, channels[4], 4, 4]``."""
        return self.linear(c0).view(c0.shape[0], -1, 4, 4)  # [N, 16 ch, 4, 4]

    def run_block(self, index: int, x: Tensor, cond: Tensor, truncation: float = 1.0) -> Tensor:
        """Block ``index``, which up-samples ``x: [N, channels[res / 2], res / 2, res / 2]`` to
        ``[N, channels[res], res, res]`` for ``res = block_resolutions[index]`` (with its
        attention), conditioned on ``cond: [N, cond_dim]``. ``truncation`` is unused (the
        batch norms keep one set of statistics); BigGAN-deep's blocks take it."""
        for layer in self.blocks[index]:
            x = layer(x, cond)
        return x

    def to_rgb(self, x: Tensor) -> Tensor:
        """``[N, channels[resolution], R, R]`` -> image ``[N, 3, R, R]`` in [-1, 1] (tanh)."""
        return torch.tanh(self.output_layer(x))

    # -- sampling ----------------------------------------------------------------------------------

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """The code's ``G(z, y)``: ``z: [N, dim_z]``, ``y = shared(labels): [N, shared_dim]``."""
        self.check_complete()
        conds = self.conditions_from_embedding(z, y)
        x = self.stem(conds[0])
        for index, cond in enumerate(conds[1:]):
            x = self.run_block(index, x, cond)
        return self.to_rgb(x)

    def check_complete(self) -> None:
        """Raise ``ValueError`` if this generator keeps only some blocks (LightGLEAN's bank)."""
        if self.first_resolution is not None:
            raise ValueError(
                f"this BigGAN keeps only its blocks from {self.first_resolution} px up "
                f"(LightGLEAN's bank) and cannot sample images"
            )

    def conditions_from_embedding(self, z: Tensor, y: Tensor) -> list[Tensor]:
        """As :meth:`conditions`, from the embedded classes ``y: [N, shared_dim]``."""
        if not self.config.hier:
            return [z] + [y] * len(self.blocks)
        chunks = torch.split(z, self.config.z_chunk, 1)
        return [chunks[0]] + [torch.cat([y, chunk], 1) for chunk in chunks[1:]]

    def generate(self, z: Tensor, class_labels: Tensor, truncation: float = 1.0) -> Tensor:
        """Images of classes ``class_labels: [N]`` (int64) from ``z: [N, dim_z]`` as the code
        takes it (its samplers draw ``z`` from a normal or truncated normal; the truncation
        lives in ``z``, the network has no truncation input). ``truncation`` is checked to be
        in (0, 1] and otherwise unused. Returns ``[N, 3, R, R]`` RGB in [-1, 1]."""
        self.check_complete()
        check_generate_inputs(z, class_labels, truncation, self.config.dim_z, self.config)
        return self(z, self.shared(class_labels))

    def extra_repr(self) -> str:
        c = self.config
        kept = "" if self.first_resolution is None else f", from {self.first_resolution} px"
        return (
            f"resolution={c.resolution}, ch={c.ch}, dim_z={c.dim_z}, hier={c.hier}, "
            f"attention={list(c.attention)}, num_classes={c.num_classes}{kept}"
        )


def check_generate_inputs(
    z: Tensor, class_labels: Tensor, truncation: float, dim_z: int, config: object
) -> None:
    """Raise ``ValueError`` unless ``z: [N, dim_z]`` float, ``class_labels: [N]`` int64 within
    ``[0, num_classes)`` and ``0 < truncation <= 1``."""
    if z.ndim != 2 or z.shape[1] != dim_z or not z.is_floating_point():
        raise ValueError(f"z must be a float [N, {dim_z}] tensor, got {list(z.shape)} {z.dtype}")
    if class_labels.dtype != torch.int64 or tuple(class_labels.shape) != (z.shape[0],):
        raise ValueError(
            f"class_labels must be int64 [{z.shape[0]}], got {class_labels.dtype} "
            f"{list(class_labels.shape)}"
        )
    n = config.num_classes  # type: ignore[attr-defined]
    if class_labels.numel() and not 0 <= int(class_labels.min()) <= int(class_labels.max()) < n:
        raise ValueError(f"class_labels must be in [0, {n}), got {class_labels.tolist()[:8]}")
    if not 0 < truncation <= 1:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")


__all__ = ["BigGANGenerator", "check_generate_inputs", "sn_options"]
