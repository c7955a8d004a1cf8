"""LightGLEAN with a BigGAN latent bank (TPAMI 2023, Sec. 4 with Sec. 5.3's bank; Table 6 reports
it on ImageNet 4x and 8x): one light restorer for every class the bank knows.

It is :class:`~glean_sr.models.light_glean.LightGLEAN` with the bank's blocks in place of
StyleGAN2's style blocks::

    encoder.*        RRDB trunk + 3x3 conv + LReLU: f0 at the input resolution (E0 only)
    bank_input.*     three 3x3 convs (the first with stride 2): f0 to the bank's grid at in / 2
    latent_codes.*   ``conditions [B, cond_dim]``: one learnable vector per kept bank block
    generator.*      the bank's blocks from in_size up (frozen; the full generator's keys)
    decoder.*        LightGLEAN's narrow decoder (``decoder_reduction``, ``head_channels``)

What the paper fixes, and how it reads for BigGAN:

1. Only E0 is kept and the bank's coarse blocks are bypassed (Eq. 10). The bank keeps the
   blocks that produce ``in_size`` and above; f0 enters the first of them, the block that
   up-samples ``in / 2`` to ``in``, through the same stride-2 stage LightGLEAN uses for StyleGAN2
   (so each bank keeps the same share of itself). The class embedding, the first (linear)
   layer and the output layer of the bank are not needed and not kept. A BigGAN-deep bank keeps
   its attention layer when it stands before a kept block.
2. The latent codes are learnable and shared by every input (Sec. 4, item 2). A BigGAN block
   is conditioned on one vector: ``[class embedding, z chunk]`` (BigGAN-PyTorch with a
   hierarchical ``z``; the embedding alone without), ``[z, class embedding]`` (BigGAN-deep).
   Each kept block gets its own learnable vector of that width, class part included, as
   GLEAN-BigGAN's latent head predicts the whole vector (see
   :mod:`glean_sr.models.glean_biggan`): codes shared by every input cannot follow each photo's
   class, which a photo to restore does not come with anyway, and a learned vector can sit
   between the bank's classes. BigGAN has no mapping network, so unlike StyleGAN2's LightGLEAN
   the codes are the conditioning vectors themselves. They start from N(0, 1): the prior of
   ``z`` and the initialisation of BigGAN-PyTorch's class embedding.

A BigGAN-deep bank computes with the batch-norm statistics of ``config.truncation``, as in
GLEAN-BigGAN. The decoder is LightGLEAN's at the bank's widths (Eq. 4 with every width divided
by ``decoder_reduction``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import LightGLEANBigGANConfig, LightGLEANBigGANDeepConfig
from .base import BankRestorer
from .glean_biggan import BANK_CLASSES, BigGANBank
from .light_glean import light_decoder
from .rrdb import RRDBFeatureExtractor

LightBigGANConfig = LightGLEANBigGANConfig | LightGLEANBigGANDeepConfig


class LearnedConditions(nn.Module):
    """Learnable conditioning vectors, one per kept bank block, shared by every input (key
    ``conditions [B, cond_dim]``)."""

    def __init__(self, num_blocks: int, cond_dim: int):
        super().__init__()
        self.conditions = nn.Parameter(torch.randn(num_blocks, cond_dim))

    def forward(self, batch: int) -> Tensor:
        """The vectors for a batch: ``[batch, B, cond_dim]``, a copy (a view of the parameter
        made under ``torch.no_grad`` would still ask for gradients without having a graph,
        which module hooks such as the MAC counter's cannot take)."""
        return self.conditions[None].repeat(batch, 1, 1)

    def extra_repr(self) -> str:
        return f"blocks={self.conditions.shape[0]}, cond_dim={self.conditions.shape[1]}"


class LightGLEANBigGAN(BankRestorer):
    """LightGLEAN around the blocks of a frozen BigGAN generator from ``in_size`` up. Maps
    ``[N, C, in, in]`` RGB in [-1, 1] to ``[N, C, out, out]``.

    ``bank`` may be the whole generator of ``config.bank`` (its kept blocks are copied; how
    training starts) or one that already keeps only them; otherwise a random one is built.
    """

    generator: BigGANBank  # type: ignore[assignment]

    def __init__(self, config: LightBigGANConfig, bank: BigGANBank | None = None):
        super().__init__()
        self.config = config
        if bank is None:
            bank_cls = BANK_CLASSES[config.bank.model_type]
            bank = bank_cls(config.bank, first_resolution=config.in_size)
        self.generator = self._bank_from(bank, config)
        self.freeze_bank()

        ch = config.channels
        c_in, c_half = ch[config.in_size], ch[config.in_size // 2]
        self.encoder = nn.Sequential(
            RRDBFeatureExtractor(config.img_channels, config.rrdb_channels, config.num_rrdbs),
            nn.Conv2d(config.rrdb_channels, c_in, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.bank_input = nn.Sequential(
            nn.Conv2d(c_in, c_half, 3, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c_half, c_half, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c_half, c_half, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.latent_codes = LearnedConditions(len(config.bank_blocks), config.bank.cond_dim)
        self.decoder = light_decoder(config)

    @staticmethod
    def _bank_from(bank: BigGANBank, config: LightBigGANConfig) -> BigGANBank:
        """The bank LightGLEAN keeps: ``bank`` itself if it keeps the blocks from ``in_size``
        up only, else a copy of those blocks of a whole generator."""
        if bank.config != config.bank or bank.first_resolution not in (None, config.in_size):
            raise ValueError(
                f"bank does not fit this LightGLEAN config: it needs {config.bank} (from "
                f"{config.in_size} px), got {bank.config} (from {bank.first_resolution})"
            )
        if bank.first_resolution == config.in_size:
            return bank
        whole = bank.state_dict()
        with torch.device(next(bank.parameters()).device):
            kept = type(bank)(config.bank, first_resolution=config.in_size)
        kept.load_state_dict({k: whole[k] for k in kept.state_dict()}, strict=True)
        return kept

    def parts(self) -> dict[str, list[nn.Module]]:
        return {
            "encoder": [self.encoder, self.bank_input, self.latent_codes],
            "bank": [self.generator],
            "decoder": [self.decoder],
        }

    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, img_channels, in_size, in_size]``, RGB in [-1, 1] ->
        ``sr: [N, img_channels, out_size, out_size]``, RGB, nominally [-1, 1], not clamped."""
        self.check_input(lq)
        bank, c = self.generator, self.config
        f0 = self.encoder(lq)  # [N, C_in, in, in]
        x = self.bank_input(f0)  # [N, C_in/2, in/2, in/2]
        conds = self.latent_codes(lq.shape[0])  # [N, B, cond_dim]
        resolutions = bank.config.block_resolutions
        feats: dict[int, Tensor] = {}
        for k, index in enumerate(c.bank_blocks):  # Eq. 10: the first takes f0, then g_{i-1}
            x = bank.run_block(index, x, conds[:, k], c.truncation)
            if resolutions[index] > c.in_size:
                feats[resolutions[index]] = x  # a later block at the same size replaces it
        return self.decode(f0, feats)

    def extra_repr(self) -> str:
        c = self.config
        return f"in_size={c.in_size}, out_size={c.out_size}, num_rrdbs={c.num_rrdbs}"


__all__ = ["LearnedConditions", "LightGLEANBigGAN"]
