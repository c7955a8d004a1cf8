"""LightGLEAN: the lightweight GLEAN of the TPAMI 2023 paper (Sec. 4, Eq. 10, Fig. 3, Table 1).

What the paper fixes:

1. Only the RRDB encoder E0 is kept: no stride-2 encoder stages, no latent head, no fusion
   convolutions. Its feature f0 drives the bank directly at the style block of the input
   resolution, i0; the coarser blocks S_1 .. S_{i0-1} are bypassed (Eq. 10):
   ``g_i0 = S_i0(c_i0, f0)``, ``g_i = S_i(c_i, g_{i-1})`` for ``i > i0``.
2. The latent codes are learnable parameters shared by all inputs (Sec. 4, item 2).
3. Table 1 (64 -> 1024): encoder 23.7 M, generator 10.9 M, decoder 1.7 M parameters and 98.24 G
   FLOPs, against GLEAN's 137.3 / 30.4 / 7.9 M and 277.5 G. The 277.5 G is the multiply-accumulates
   of GLEAN's ``nn.Conv2d`` / ``nn.Linear`` modules (glean_sr.analysis, ``macs_modules``).

What the paper leaves open, and how it is decided here (every choice reproduces a Table 1 figure;
``glean-sr info lightglean_ffhq_16x`` prints them):

* Generator 10.9 M. The StyleGAN2 blocks producing in_size .. out_size (64 .. 1024: up-sampling
  conv, conv and ToRGB each) hold 8.85 M parameters, the mapping network 2.10 M: 10.95 M together,
  and no other subset of the bank comes within 2 % (without the mapping 8.85 M, from 128 px up
  5.44 M). So the bank keeps the blocks from the input resolution up, including the *up-sampling*
  conv of block i0: f0 must enter it at in_size / 2. And the mapping network is part of the
  model: the learnable latent codes live in StyleGAN2's Z space and reach the blocks through the
  bank's frozen mapping network, which keeps the styles on the bank's learned W manifold. The
  ToRGB layers are kept (as in GLEAN) but cannot affect the output and are not computed.
* Encoder 23.7 M. E0 (RRDB trunk, 23 blocks of 64 channels, plus the 3x3 convolution to the
  bank's width: 16.88 M) alone is 29 % short. Bringing f0 to the bank's input grid takes a
  stride-2 stage at in_size / 2; three 3x3 convolutions there (the first with stride 2, 7.08 M)
  give 23.96 M (+1.1 %). Cheaper placements do not exist: every 2.36 M convolution at in_size
  would cost 9.7 G MACs, which the FLOPs budget does not have. The learnable codes (L x 512) are
  counted with the encoder, whose latent head they replace.
* Decoder 1.7 M and the FLOPs. E0 alone costs 69.1 G MACs at 64 x 64, leaving about 29 G for
  everything else, while one GLEAN decoder stage at 128 .. 1024 px costs 38.7 G: the decoder has
  to be much narrower. It keeps GLEAN's progressive fusion (Eq. 4: ``d_0 = D_0(f0)``, then
  ``d_i = D_i(d_{i-1}, g_i)`` with pixel-shuffle up-sampling) with every width divided by
  ``decoder_reduction = 4`` and a two-convolution head of ``head_channels = 8``: 1.667 M
  (-1.9 %) and 102.6 G MACs in total (+4.4 %). GLEAN's 64-channel head alone would cost 26 G.

The bank is a :class:`~glean_sr.models.stylegan2.StyleGAN2Generator` built with
``first_resolution=in_size``: its keys are those of the full generator restricted to the kept
blocks, so it is filled from any bank file (:func:`build_lightglean_from_bank`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..config import LightGLEANConfig
from .base import BankRestorer
from .rrdb import PixelShufflePack, RRDBFeatureExtractor
from .stylegan2 import StyleGAN2Generator


def light_decoder(config: Any) -> nn.ModuleList:
    """LightGLEAN's decoder (Eq. 4 at reduced width): from the encoder's ``f0`` at in_size, a
    pixel-shuffle stage per resolution to ``config.decoder_channels(2 res)``, each output
    concatenated with the bank's feature there, then a two-convolution head of
    ``config.head_channels``. ``config`` gives the sizes and the bank's widths (``channels``)."""
    ch = config.channels
    decoder = nn.ModuleList()
    width = ch[config.in_size]
    for res in config.decoder_resolutions[:-1]:
        in_ch = width if res == config.in_size else width + ch[res]
        width = config.decoder_channels(2 * res)
        decoder.append(PixelShufflePack(in_ch, width))
    h = config.head_channels
    decoder.append(
        nn.Sequential(
            nn.Conv2d(width + ch[config.out_size], h, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(h, config.img_channels, 3, 1, 1),
        )
    )
    return decoder


class LatentCodes(nn.Module):
    """Learnable latent codes in Z, one per bank layer, shared by every input (key ``z [L, S]``)."""

    def __init__(self, num_latents: int, style_channels: int):
        super().__init__()
        self.z = nn.Parameter(torch.randn(num_latents, style_channels))

    def forward(self, mapping: nn.Module, batch: int) -> Tensor:
        """Map the codes through the bank's mapping network: ``ws [batch, L, S]``."""
        return mapping(self.z)[None].expand(batch, -1, -1)


class LightGLEAN(BankRestorer):
    """LightGLEAN. Maps ``[N, C, in, in]`` RGB in [-1, 1] to ``[N, C, out, out]``."""

    def __init__(self, config: LightGLEANConfig, bank: StyleGAN2Generator | None = None):
        super().__init__()
        self.config = config
        if bank is not None:
            bank = self._bank_from(bank, config)
        self.generator = (
            bank
            if bank is not None
            else StyleGAN2Generator(config.bank, first_resolution=config.in_size)
        )
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
        self.latent_codes = LatentCodes(config.num_latents, config.style_channels)
        self.decoder = light_decoder(config)

    @staticmethod
    def _bank_from(bank: StyleGAN2Generator, config: LightGLEANConfig) -> StyleGAN2Generator:
        """The bank LightGLEAN keeps: ``bank`` itself if already pruned to ``in_size``, else a
        copy of a full generator's blocks from ``in_size`` up and its mapping network."""
        if bank.config != config.bank or bank.first_resolution not in (None, config.in_size):
            raise ValueError(
                f"bank does not fit this LightGLEAN config: it needs {config.bank} (from "
                f"{config.in_size} px), got {bank.config} (from {bank.first_resolution})"
            )
        if bank.first_resolution == config.in_size:
            return bank
        full = bank.state_dict()
        with torch.device(next(bank.parameters()).device):
            pruned = StyleGAN2Generator(config.bank, first_resolution=config.in_size)
        pruned.load_state_dict({k: full[k] for k in pruned.state_dict()}, strict=True)
        return pruned

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
        bank = self.generator
        f0 = self.encoder(lq)  # [N, C_in, in, in]
        x = self.bank_input(f0)  # [N, C_in/2, in/2, in/2]
        ws = self.latent_codes(bank.style_mapping, lq.shape[0])  # [N, L, S]
        feats: dict[int, Tensor] = {}
        for res in self.config.bank_resolutions:  # Eq. 10: g_i0 = S_i0(c_i0, f0), then S_i
            x = bank.style_block(res, x, ws)
            if res > self.config.in_size:
                feats[res] = x
        return self.decode(f0, feats)

    def extra_repr(self) -> str:
        c = self.config
        return f"in_size={c.in_size}, out_size={c.out_size}, num_rrdbs={c.num_rrdbs}"
