"""What every bank-based restorer (GLEAN, LightGLEAN) shares: the frozen bank, the input contract,
the decoder, per-part parameter groups and saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..serialization import save_pretrained
from .stylegan2 import StyleGAN2Generator


class BankRestorer(nn.Module):
    """An encoder-bank-decoder restorer around a frozen StyleGAN2 ``generator``.

    Subclasses set ``self.config``, ``self.generator`` and ``self.decoder`` (pixel-shuffle stages,
    then a two-convolution head) and implement ``forward`` and :meth:`parts`. The bank never
    trains: its parameters have ``requires_grad=False`` and it stays in eval mode whatever mode
    the parent is put in.
    """

    config: Any
    generator: StyleGAN2Generator
    decoder: nn.ModuleList

    def freeze_bank(self) -> None:
        self.generator.requires_grad_(False)
        self.generator.eval()

    def train(self, mode: bool = True) -> BankRestorer:
        super().train(mode)
        self.generator.eval()
        return self

    @property
    def in_size(self) -> int:
        return self.config.in_size

    @property
    def out_size(self) -> int:
        return self.config.out_size

    @property
    def img_channels(self) -> int:
        return self.config.img_channels

    @property
    def scale(self) -> int:
        return self.config.out_size // self.config.in_size

    def check_input(self, lq: Tensor) -> None:
        """Raise ``ValueError`` unless ``lq`` is ``[N, img_channels, in_size, in_size]``."""
        expected = (self.img_channels, self.in_size, self.in_size)
        if lq.ndim != 4 or tuple(lq.shape[1:]) != expected:
            raise ValueError(
                f"input must be [N, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(RGB in [-1, 1]), got {list(lq.shape)}"
            )

    def decode(self, feat: Tensor, bank_feats: dict[int, Tensor]) -> Tensor:
        """The decoder (CVPR Eq. 4): from the encoder feature at ``in_size``, at each resolution
        ``res`` above it a pixel-shuffle stage whose output is concatenated with the bank's
        feature ``bank_feats[res]``, then the two-convolution head at ``out_size``.

        ``feat: [N, C_in, in, in]``, ``bank_feats[res]: [N, C_res, res, res]`` ->
        ``[N, img_channels, out_size, out_size]``.
        """
        stages = zip(self.decoder[:-1], self.config.decoder_resolutions[1:], strict=True)
        hr = feat
        for block, res in stages:
            hr = torch.cat((block(hr), bank_feats[res]), 1)  # [N, C + C_res, res, res]
        return self.decoder[-1](hr)

    def parts(self) -> dict[str, list[nn.Module]]:
        """Modules per reported part: ``encoder`` (with fusion), ``bank``, ``decoder``."""
        raise NotImplementedError

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part plus ``total`` (buffers such as noise maps are not counted)."""
        counts = {
            name: sum(p.numel() for m in modules for p in m.parameters())
            for name, modules in self.parts().items()
        }
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimiser may update: everything except the bank."""
        bank = {id(p) for p in self.generator.parameters()}
        return [p for p in self.parameters() if id(p) not in bank]

    def save_pretrained(
        self,
        directory: str | Path,
        *,
        dtype: torch.dtype | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (atomically);
        ``dtype=torch.float16`` stores the weights in half precision; ``metadata`` goes into the
        safetensors header (where the weights came from)."""
        return save_pretrained(self, directory, dtype=dtype, metadata=metadata)
