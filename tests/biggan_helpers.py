"""Tiny restorer configs around both BigGAN banks, and banks with random weights and statistics
as from a file (not a test module)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glean_sr.config import BigGANConfig, BigGANDeepConfig, GLEANBigGANConfig, GLEANBigGANDeepConfig
from glean_sr.models.biggan import BigGANGenerator
from glean_sr.models.biggan_deep import BigGANDeepGenerator

#: 8 -> 32 around a 32 px BigGAN (three blocks, attention at 16 px): two fusions below the input
#: size and one above it, two bank features for the decoder.
TINY = GLEANBigGANConfig(
    in_size=8,
    out_size=32,
    rrdb_channels=8,
    num_rrdbs=1,
    ch=4,
    dim_z=8,
    shared_dim=4,
    num_classes=5,
    attention=(16,),
)

#: pytorch-pretrained-biggan's layer table at 64 px (a block that keeps the size, then one that
#: up-samples, per resolution), channel width 4
DEEP_LAYERS = (
    (False, 16, 16),
    (True, 16, 8),
    (False, 8, 8),
    (True, 8, 4),
    (False, 4, 4),
    (True, 4, 2),
    (False, 2, 2),
    (True, 2, 1),
)

#: 16 -> 64 around a 64 px BigGAN-deep whose attention stands before the block at 32 px that
#: keeps the size; statistics of truncation 0.45 (between two of the five stored)
TINY_DEEP = GLEANBigGANDeepConfig(
    in_size=16,
    out_size=64,
    rrdb_channels=8,
    num_rrdbs=1,
    layers=DEEP_LAYERS,
    z_dim=4,
    channel_width=4,
    num_classes=5,
    attention_layer_position=6,
    n_stats=5,
    truncation=0.45,
)


def random_bank(seed: int = 0, config: BigGANConfig = TINY.bank) -> BigGANGenerator:
    """A BigGAN generator with random weights and batch-norm statistics, as from a file."""
    torch.manual_seed(seed)
    bank = BigGANGenerator(config)
    with torch.no_grad():
        for name, t in bank.named_buffers():
            if name.endswith("stored_mean"):
                t.normal_(0, 0.1)
            elif name.endswith("stored_var"):
                t.uniform_(0.5, 2)
        for block in bank.blocks:
            for layer in block:
                if hasattr(layer, "gamma"):
                    layer.gamma.fill_(0.5)
    return bank.eval()


def random_deep_bank(
    seed: int = 0, config: BigGANDeepConfig = TINY_DEEP.bank
) -> BigGANDeepGenerator:
    """A BigGAN-deep generator with random weights and per-truncation statistics, its
    singular vectors as a conversion leaves them (``u = W v / |W v|``), as from a file."""
    torch.manual_seed(seed)
    bank = BigGANDeepGenerator(config)
    with torch.no_grad():
        for name, t in [*bank.named_parameters(), *bank.named_buffers()]:
            if name.endswith("running_means"):
                t.normal_(0, 0.1)
            elif name.endswith("running_vars"):
                t.uniform_(2, 4)
            elif name.endswith("gamma"):
                t.fill_(0.5)
            elif name.endswith("weight_orig"):
                t.mul_(0.3)
        for module in bank.modules():
            if hasattr(module, "weight_u"):
                mat = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
                module.weight_u.copy_(F.normalize(mat @ module.weight_v, dim=0))
    return bank.eval()
