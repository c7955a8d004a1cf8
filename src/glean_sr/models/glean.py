"""GLEAN: encoder - latent bank - decoder (Chan et al., CVPR 2021, Sec. 3, Fig. 3).

Key layout and numerics are those of mmagic's ``GLEANStyleGANv2``, the code that produced every
released checkpoint:

    generator.*      the StyleGAN2 latent bank (frozen)
    encoder.0        RRDB trunk + 3x3 conv + LReLU: feature E_in at the input resolution
    encoder.1..      stride-2 conv blocks: E_{in/2} ... E_4
    encoder.-1       latent head: conv + LReLU + flatten + linear -> latents [N, L, S]
    fusion_out.*     3x3 convs fusing [bank feature, E_res] at res = 4 .. in_size
    fusion_skip.*    fusion of the bank's RGB branch; it cannot affect the output (not computed)
    decoder.*        pixel-shuffle stages from in_size to out_size, then two 3x3 convs
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import GLEANConfig, GLEANNoBankConfig
from .base import BankRestorer
from .rrdb import PixelShufflePack, RRDBFeatureExtractor
from .stylegan2 import StyleGAN2Generator


class GLEAN(BankRestorer):
    """GLEAN with a StyleGAN2 bank. Maps ``[N, C, in, in]`` RGB in [-1, 1] to ``[N, C, out, out]``.

    ``bank`` may be a loaded :class:`StyleGAN2Generator` whose resolution is ``out_size`` (this is
    how training on a new category starts); otherwise a randomly initialised one is built.
    """

    def __init__(self, config: GLEANConfig, bank: StyleGAN2Generator | None = None):
        super().__init__()
        self.config = config
        if bank is not None and bank.config != config.bank:
            raise ValueError(
                f"bank does not fit this GLEAN config: bank is {bank.config}, "
                f"config needs {config.bank}"
            )
        self.generator = bank if bank is not None else StyleGAN2Generator(config.bank)
        self.freeze_bank()

        ch = config.channels
        s = config.style_channels
        self.encoder = nn.ModuleList(
            [
                nn.Sequential(
                    RRDBFeatureExtractor(
                        config.img_channels, config.rrdb_channels, config.num_rrdbs
                    ),
                    nn.Conv2d(config.rrdb_channels, ch[config.in_size], 3, 1, 1),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            ]
        )
        for res in config.encoder_resolutions:
            if res > 4:
                block = nn.Sequential(
                    nn.Conv2d(ch[res], ch[res // 2], 3, 2, 1),
                    nn.LeakyReLU(0.2, inplace=True),
                    nn.Conv2d(ch[res // 2], ch[res // 2], 3, 1, 1),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            else:  # the latent head
                block = nn.Sequential(
                    nn.Conv2d(ch[4], ch[4], 3, 1, 1),
                    nn.LeakyReLU(0.2, inplace=True),
                    nn.Flatten(),
                    nn.Linear(16 * ch[4], config.num_latents * s),
                )
            self.encoder.append(block)

        self.fusion_out = nn.ModuleList(
            nn.Conv2d(2 * ch[res], ch[res], 3, 1, 1) for res in config.fusion_resolutions
        )
        self.fusion_skip = nn.ModuleList(
            nn.Conv2d(ch[res] + 3, 3, 3, 1, 1) for res in config.fusion_resolutions
        )

        self.decoder = nn.ModuleList()
        for res in config.decoder_resolutions:
            in_ch = ch[res] if res == config.in_size else 2 * ch[res]
            if res < config.out_size:
                self.decoder.append(PixelShufflePack(in_ch, ch[2 * res]))
            else:
                self.decoder.append(
                    nn.Sequential(
                        nn.Conv2d(in_ch, 64, 3, 1, 1),
                        nn.LeakyReLU(0.2, inplace=True),
                        nn.Conv2d(64, config.img_channels, 3, 1, 1),
                    )
                )

    def parts(self) -> dict[str, list[nn.Module]]:
        # The paper's Table 1 counts the fusion convolutions as part of the encoder.
        return {
            "encoder": [self.encoder, self.fusion_out, self.fusion_skip],
            "bank": [self.generator],
            "decoder": [self.decoder],
        }

    def encode(self, lq: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """``lq: [N, C, in, in]`` -> ``(latents [N, L, S], feats {res: [N, C_res, res, res]})``."""
        feats: dict[int, Tensor] = {}
        x = lq
        for block, res in zip(self.encoder[:-1], self.config.encoder_resolutions, strict=True):
            x = block(x)
            feats[res] = x
        latents = self.encoder[-1](x)
        latents = latents.view(lq.shape[0], self.config.num_latents, self.config.style_channels)
        return latents, feats

    def bank_features(self, latents: Tensor, feats: dict[int, Tensor]) -> dict[int, Tensor]:
        """Run the bank with the encoder features fused in (CVPR Eq. 3): at each resolution
        ``res <= in_size`` the bank's feature and ``feats[res]`` are concatenated and fused by a
        3x3 convolution before the next style block. Returns the bank's features above
        ``in_size``, ``{res: [N, C_res, res, res]}``, which the decoder takes."""
        bank = self.generator
        fusion = dict(zip(self.config.fusion_resolutions, self.fusion_out, strict=True))
        x = bank.constant_input(latents.shape[0])
        x = bank.conv1(x, latents[:, 0], bank.noise(0, x, "const"))
        out: dict[int, Tensor] = {}
        for res in bank.config.resolutions:
            if res // 2 <= self.config.in_size:
                x = fusion[res // 2](torch.cat((x, feats[res // 2]), 1))
            x = bank.style_block(res, x, latents)
            if res > self.config.in_size:
                out[res] = x
        return out

    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, img_channels, in_size, in_size]``, RGB in [-1, 1] ->
        ``sr: [N, img_channels, out_size, out_size]``, RGB, nominally [-1, 1], not clamped."""
        self.check_input(lq)
        latents, feats = self.encode(lq)
        return self.decode(feats[self.config.in_size], self.bank_features(latents, feats))

    def extra_repr(self) -> str:
        c = self.config
        return f"in_size={c.in_size}, out_size={c.out_size}, num_rrdbs={c.num_rrdbs}"


class GLEANNoBank(GLEAN):
    """GLEAN's encoder-decoder with the latent bank's features discarded (the paper's ablation,
    :class:`~glean_sr.config.GLEANNoBankConfig`): ``sr = decoder(E_in, zeros)``.

    It keeps GLEAN's module tree and keys, so it trains with the same recipe and code; the
    bank, the coarse encoder blocks, the latent head and the fusion convolutions do not reach
    the output and are frozen by the trainer (they stay at their initial values).
    """

    def __init__(self, config: GLEANNoBankConfig, bank: StyleGAN2Generator | None = None):
        super().__init__(config, bank)

    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, img_channels, in_size, in_size]``, RGB in [-1, 1] ->
        ``sr: [N, img_channels, out_size, out_size]``."""
        self.check_input(lq)
        feat = self.encoder[0](lq)  # [N, C_in, in, in]
        n, ch = lq.shape[0], self.config.channels
        zeros = {
            res: feat.new_zeros(n, ch[res], res, res) for res in self.config.decoder_resolutions[1:]
        }
        return self.decode(feat, zeros)
