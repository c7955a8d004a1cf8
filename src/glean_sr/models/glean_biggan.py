"""GLEAN with a BigGAN latent bank: one restorer for every class the bank knows (TPAMI 2023,
Sec. 5.3, Table 6: ImageNet 4x and 8x with BigGAN-PyTorch's generator as the bank).

The encoder-bank-decoder is GLEAN's (Sec. 3), with the bank's blocks in place of StyleGAN2's
style blocks::

    encoder.0        RRDB trunk + 3x3 conv + LReLU: E_in at the input resolution
    encoder.1..      stride-2 conv blocks: E_{in/2} ... E_4
    encoder.-1       latent head: conv + LReLU + flatten + linear -> every conditioning vector
    fusion.*         3x3 convs fusing [bank feature, E_res] at res = 4 .. in_size (Eq. 3)
    generator.*      the BigGAN-PyTorch or BigGAN-deep generator (frozen; its own key layout)
    decoder.*        pixel-shuffle stages from in_size to out_size, then two 3x3 convs (Eq. 4)

Conditioning. A BigGAN generator is driven by one vector per stage: a chunk of ``z`` for its
linear layer, and for each block the vector its class-conditional batch norms take
(``[shared(class), z_b]`` with a hierarchical ``z``). The latent head predicts all of them,
the class-embedding part of each block's vector included (Sec. 3.2, modification 1: each block
takes its own latent vector). The alternative is to give the class label at test time, embed it
with the bank's ``shared`` table and predict only the ``z`` chunks. That needs a label for
every input, which a photo to restore does not come with (the paper's ImageNet models take no
label), it ties each output to one of the bank's classes, and a wrong label would steer every
block towards the wrong class; predicting the whole vector lets the encoder place each block's
condition anywhere in the embedding space, between classes too. The bank's ``shared`` table
and its output layer are kept (the bank stays loadable as a generator) but not used.

Fusion (Eq. 3). Before the block that up-samples ``res`` to ``2 res``, for every
``res <= in_size``, the bank's feature and the encoder's ``E_res`` are concatenated and fused
by a 3x3 convolution; the 4x4 feature of the linear layer is fused with ``E_4`` first. The
block outputs above ``in_size`` go to the decoder.

A BigGAN-deep bank (pytorch-pretrained-biggan's, :class:`~glean_sr.config.GLEANBigGANDeepConfig`)
is driven the same way. It has no hierarchical ``z``: the package gives its first layer and
every block the one vector ``[z, class embedding]``. Following modification 1 again, the latent
head predicts a separate ``2 z_dim`` vector for the first layer and for each block, both halves
included, for the reasons above (the bank's class-embedding matrix is kept, unused). Its batch
norms keep statistics per truncation; GLEAN uses those of ``config.truncation`` (1.0 by
default: the predicted vectors are not bounded as truncated samples are) through the bank's own
interpolation, so the bank computes what its ``generate`` would at that truncation. A deep bank
has two blocks per resolution, one that keeps the size and one that up-samples (the attention
layer before one of them): fusion happens once per resolution, when the bank's feature reaches
``res <= in_size`` (after the first layer for 4 px, after the up-sampling block otherwise),
before the blocks and the attention at that size; the decoder takes the output of the last
block at each resolution above ``in_size``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import GLEANBigGANConfig, GLEANBigGANDeepConfig
from .base import BankRestorer
from .biggan import BigGANGenerator
from .biggan_deep import BigGANDeepGenerator
from .rrdb import PixelShufflePack, RRDBFeatureExtractor

BigGANBank = BigGANGenerator | BigGANDeepGenerator

#: the generator class of each BigGAN bank config's ``model_type``
BANK_CLASSES: dict[str, type[BigGANBank]] = {
    "biggan": BigGANGenerator,
    "biggan_deep": BigGANDeepGenerator,
}


def bank_fusion_points(block_resolutions: list[int], in_size: int) -> list[int]:
    """Per bank block, the resolution at which the encoder's feature is fused into the bank's
    before it, or 0: each ``res <= in_size`` once, where the bank's feature first reaches it
    (after the first layer for 4 px, after the block that up-sampled to it otherwise)."""
    inputs = [4, *block_resolutions[:-1]]  # the resolution each block takes
    points = []
    for index, res in enumerate(inputs):
        first_at_res = index == 0 or inputs[index - 1] != res
        points.append(res if first_at_res and res <= in_size else 0)
    return points


class GLEANBigGAN(BankRestorer):
    """GLEAN around a frozen BigGAN generator: BigGAN-PyTorch's (:class:`GLEANBigGANConfig`)
    or BigGAN-deep (:class:`GLEANBigGANDeepConfig`). Maps ``[N, C, in, in]`` RGB in [-1, 1]
    to ``[N, C, out, out]``.

    ``bank`` may be a loaded generator whose config is ``config.bank`` (how training starts);
    otherwise a randomly initialised one is built.
    """

    generator: BigGANBank  # type: ignore[assignment]

    def __init__(
        self, config: GLEANBigGANConfig | GLEANBigGANDeepConfig, bank: BigGANBank | None = None
    ):
        super().__init__()
        self.config = config
        if bank is not None and bank.config != config.bank:
            raise ValueError(
                f"bank does not fit this GLEAN-BigGAN config: bank is {bank.config}, "
                f"config needs {config.bank}"
            )
        if bank is not None and bank.first_resolution is not None:
            raise ValueError("GLEAN-BigGAN needs the whole bank, got one that keeps some blocks")
        self.generator = (
            bank if bank is not None else BANK_CLASSES[config.bank.model_type](config.bank)
        )
        self.freeze_bank()

        ch = config.channels
        self.condition_sizes = config.bank.condition_sizes
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
                    nn.Linear(16 * ch[4], sum(self.condition_sizes)),
                )
            self.encoder.append(block)

        self.fusion = nn.ModuleList(
            nn.Conv2d(2 * ch[res], ch[res], 3, 1, 1) for res in config.fusion_resolutions
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
        # as GLEAN: the fusion convolutions count as part of the encoder (TPAMI Table 1)
        return {
            "encoder": [self.encoder, self.fusion],
            "bank": [self.generator],
            "decoder": [self.decoder],
        }

    def encode(self, lq: Tensor) -> tuple[list[Tensor], dict[int, Tensor]]:
        """``lq: [N, C, in, in]`` -> (conditioning vectors ``[N, size]`` for the bank's linear
        layer and each block, sizes ``config.bank.condition_sizes``; feats ``{res: [N, C_res,
        res, res]}``)."""
        feats: dict[int, Tensor] = {}
        x = lq
        for block, res in zip(self.encoder[:-1], self.config.encoder_resolutions, strict=True):
            x = block(x)
            feats[res] = x
        head = self.encoder[-1](x)  # [N, sum(condition_sizes)]
        return list(torch.split(head, self.condition_sizes, dim=1)), feats

    def bank_features(self, conds: list[Tensor], feats: dict[int, Tensor]) -> dict[int, Tensor]:
        """Run the bank with the encoder features fused in (Eq. 3); returns the output of its
        last block at each resolution above ``in_size``, ``{res: [N, C_res, res, res]}``, for
        the decoder."""
        bank, c = self.generator, self.config
        fusion = dict(zip(c.fusion_resolutions, self.fusion, strict=True))
        resolutions = bank.config.block_resolutions
        points = bank_fusion_points(resolutions, c.in_size)
        x = bank.stem(conds[0])  # [N, C_4, 4, 4]
        out: dict[int, Tensor] = {}
        blocks = zip(resolutions, points, conds[1:], strict=True)
        for index, (res, fuse_at, cond) in enumerate(blocks):
            if fuse_at:
                x = fusion[fuse_at](torch.cat((x, feats[fuse_at]), 1))  # [N, C, r, r]
            x = bank.run_block(index, x, cond, c.truncation)
            if res > c.in_size:
                out[res] = x  # a later block at the same size replaces it
        return out

    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, img_channels, in_size, in_size]``, RGB in [-1, 1] ->
        ``sr: [N, img_channels, out_size, out_size]``, RGB, nominally [-1, 1], not clamped."""
        self.check_input(lq)
        conds, feats = self.encode(lq)
        return self.decode(feats[self.config.in_size], self.bank_features(conds, feats))

    def extra_repr(self) -> str:
        c = self.config
        return f"in_size={c.in_size}, out_size={c.out_size}, num_rrdbs={c.num_rrdbs}"


__all__ = ["BANK_CLASSES", "BigGANBank", "GLEANBigGAN", "bank_fusion_points"]
