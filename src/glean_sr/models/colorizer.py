"""GLEAN as a colorizer (TPAMI 2023, Sec. 5.4 and Appendix A).

The paper's two changes to GLEAN, for an input at the output's resolution:

1. the input is the L channel of CIE Lab, so the encoder's first convolution takes 1 channel;
2. the decoder is four convolutions whose last has 2 output channels (ab); the prediction is
   concatenated with the input L and the Lab image turned into RGB.

Everything else is GLEAN's (:mod:`glean_sr.models.glean`): an RRDB trunk at the input
resolution, stride-2 blocks down to 4 x 4, a latent head predicting the bank's latents, and the
encoder features fused into the frozen bank before each of its blocks (CVPR 2021, Eq. 3). With
no enlargement there is no pixel-shuffle stage: the decoder takes what GLEAN's decoder takes at
its last resolution, the encoder feature and the bank feature at ``out_size`` concatenated.
The paper does not state the decoder's widths; ``decoder_channels`` (64, the width of GLEAN's
own two-convolution head) is the hidden width, with a leaky ReLU (0.2) after each hidden
convolution. The last convolution starts at zero, so an untrained colorizer returns its input
in grey and training starts from the zero-chroma prediction.

The output is RGB in [-1, 1], the contract of every restorer here, so the SR recipe's losses
(pixel MSE, perceptual, GAN) apply to it unchanged (TPAMI Sec. 5.4: "the training scheme
remains the same"). ``ab`` is scaled by :data:`AB_SCALE`: the sRGB gamut spans about
``a in [-86, 98]``, ``b in [-108, 95]``.

The bank. The paper's colorizer uses a BigGAN bank; this module takes the StyleGAN2 bank and
any other bank with the same feature interface: a module with ``config`` (``channels``
``{res: C}``, ``resolution``) and ``fused_features(latents, fuse) -> [N, C_R, R, R]``, which
runs the synthesis from ``latents [N, L, S]`` and lets ``fuse(res, x)`` replace its feature at
each resolution 4 .. R/2 before the block that doubles it. :class:`StyleGAN2Generator` is run
by :func:`stylegan2_fused_features`, which is that interface written for it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..colorspace import lab_to_rgb
from ..config import GLEANColorizerConfig
from .base import BankRestorer
from .rrdb import RRDBFeatureExtractor
from .stylegan2 import StyleGAN2Generator

#: ab = AB_SCALE x the decoder's output
AB_SCALE = 110.0

#: ``fuse(res, x) -> x``: what the encoder does to the bank's feature at ``res``
Fuse = Callable[[int, Tensor], Tensor]


def stylegan2_fused_features(bank: StyleGAN2Generator, latents: Tensor, fuse: Fuse) -> Tensor:
    """The StyleGAN2 synthesis from ``latents [N, L, S]`` with ``fuse(res, x)`` applied to the
    feature at each resolution 4 .. R/2 before the block that doubles it (the stored noise
    maps, as GLEAN runs its bank). Returns the feature at the bank's resolution
    ``[N, C_R, R, R]``; the bank's RGB branch is not run."""
    x = bank.constant_input(latents.shape[0])
    x = bank.conv1(x, latents[:, 0], bank.noise(0, x, "const"))  # [N, C_4, 4, 4]
    for res in bank.config.resolutions:
        x = bank.style_block(res, fuse(res // 2, x), latents)  # [N, C_res, res, res]
    return x


def lightness_to_input(lightness: Tensor) -> Tensor:
    """CIE L* in [0, 100] -> the colorizer's input in [-1, 1] (``L / 50 - 1``)."""
    return lightness / 50 - 1


class GLEANColorizer(BankRestorer):
    """Maps ``lq: [N, 1, S, S]`` (L* / 50 - 1, in [-1, 1]) to RGB ``[N, 3, S, S]`` in [-1, 1],
    ``S = out_size``; :meth:`predict_ab` gives the chroma alone.

    ``bank`` may be a loaded :class:`StyleGAN2Generator` whose config is ``config.bank``, or
    another bank with the feature interface (see the module docstring); otherwise a randomly
    initialised StyleGAN2 is built.
    """

    def __init__(self, config: GLEANColorizerConfig, bank: nn.Module | None = None):
        super().__init__()
        self.config = config
        if isinstance(bank, StyleGAN2Generator) and bank.config != config.bank:
            raise ValueError(
                f"bank does not fit this colorizer config: bank is {bank.config}, "
                f"config needs {config.bank}"
            )
        other = bank is not None and not isinstance(bank, StyleGAN2Generator)
        if other and not hasattr(bank, "fused_features"):
            raise ValueError(
                f"bank must be a StyleGAN2Generator or have fused_features(latents, fuse), "
                f"got {type(bank).__name__}"
            )
        self.generator = bank if bank is not None else StyleGAN2Generator(config.bank)
        self.freeze_bank()

        ch, s = config.channels, config.out_size
        self.encoder = nn.ModuleList(
            [
                nn.Sequential(
                    RRDBFeatureExtractor(1, config.rrdb_channels, config.num_rrdbs),
                    nn.Conv2d(config.rrdb_channels, ch[s], 3, 1, 1),
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
                    nn.Linear(16 * ch[4], config.num_latents * config.style_channels),
                )
            self.encoder.append(block)
        self.fusion = nn.ModuleList(
            nn.Conv2d(2 * ch[res], ch[res], 3, 1, 1) for res in config.fusion_resolutions
        )
        d = config.decoder_channels
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * ch[s], d, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(d, d, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(d, d, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(d, 2, 3, 1, 1),
        )
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def parts(self) -> dict[str, list[nn.Module]]:
        return {
            "encoder": [self.encoder, self.fusion],
            "bank": [self.generator],
            "decoder": [self.decoder],
        }

    def check_input(self, lq: Tensor) -> None:
        """Raise ``ValueError`` unless ``lq`` is ``[N, 1, out_size, out_size]``."""
        s = self.config.out_size
        if lq.ndim != 4 or tuple(lq.shape[1:]) != (1, s, s):
            raise ValueError(
                f"input must be [N, 1, {s}, {s}] (CIE L* / 50 - 1, in [-1, 1]), "
                f"got {list(lq.shape)}"
            )

    def encode(self, lq: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """``lq: [N, 1, S, S]`` -> ``(latents [N, L, style_channels], feats {res: [N, C_res,
        res, res]})`` for res = S .. 4."""
        feats: dict[int, Tensor] = {}
        x = lq
        for block, res in zip(self.encoder[:-1], self.config.encoder_resolutions, strict=True):
            x = block(x)
            feats[res] = x
        latents = self.encoder[-1](x)
        latents = latents.view(lq.shape[0], self.config.num_latents, self.config.style_channels)
        return latents, feats

    def bank_feature(self, latents: Tensor, feats: dict[int, Tensor]) -> Tensor:
        """The bank's feature at ``out_size`` ``[N, C_S, S, S]``, with ``feats[res]`` fused into
        it at every resolution 4 .. S/2 (CVPR Eq. 3: concatenation, then a 3x3 convolution)."""
        fusion = dict(zip(self.config.fusion_resolutions, self.fusion, strict=True))

        def fuse(res: int, x: Tensor) -> Tensor:
            return fusion[res](torch.cat((x, feats[res]), 1))  # [N, C_res, res, res]

        run = getattr(self.generator, "fused_features", None)
        if run is not None:
            return run(latents, fuse)
        return stylegan2_fused_features(self.generator, latents, fuse)

    def decode(self, feat: Tensor, bank_feats: dict[int, Tensor]) -> Tensor:
        """``feat: [N, C_S, S, S]`` (the encoder's) and ``bank_feats[S]`` -> ``ab [N, 2, S, S]``
        in Lab units (float32)."""
        s = self.config.out_size
        out = self.decoder(torch.cat((feat, bank_feats[s]), 1))  # [N, 2, S, S]
        return AB_SCALE * out.float()

    def predict_ab(self, lq: Tensor) -> Tensor:
        """``lq: [N, 1, S, S]`` (L* / 50 - 1) -> ``ab: [N, 2, S, S]``, CIE a* and b* (float32)."""
        self.check_input(lq)
        latents, feats = self.encode(lq)
        s = self.config.out_size
        return self.decode(feats[s], {s: self.bank_feature(latents, feats)})

    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, 1, S, S]``, CIE L* / 50 - 1 in [-1, 1] -> ``sr: [N, 3, S, S]``, RGB,
        nominally [-1, 1], not clamped (colours outside sRGB's gamut go beyond it)."""
        ab = self.predict_ab(lq)
        lab = torch.cat(((lq.float() + 1) * 50, ab), 1)  # [N, 3, S, S]
        return lab_to_rgb(lab) * 2 - 1

    def extra_repr(self) -> str:
        c = self.config
        return f"size={c.out_size}, num_rrdbs={c.num_rrdbs}, decoder_channels={c.decoder_channels}"


__all__ = ["AB_SCALE", "GLEANColorizer", "lightness_to_input", "stylegan2_fused_features"]
