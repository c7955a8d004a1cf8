"""What every bank-based restorer (GLEAN, LightGLEAN) shares: the frozen bank, the input contract,
per-part parameter groups and saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .ops import (
    RowFunction,
    conv_of_rows,
    fast_paths_enabled,
    pixel_shuffle_cat,
    relayout_,
    shuffle_cat_head,
    shuffle_cat_rows,
)
from .stylegan2 import ModulatedConv2d, StyleGAN2Generator


class BankRestorer(nn.Module):
    """An encoder-bank-decoder restorer around a frozen StyleGAN2 ``generator``.

    Subclasses set ``self.config`` and ``self.generator`` and implement ``forward`` and
    :meth:`parts`. The bank never trains: its parameters have ``requires_grad=False`` and it stays
    in eval mode whatever mode the parent is put in.
    """

    config: Any
    generator: StyleGAN2Generator
    #: run the convolutions on channels-last (NHWC) activations: oneDNN's and cuDNN's fast layout
    #: (1.3-2x faster on CPU at 256-1024 px). Inputs and outputs stay ordinary NCHW tensors.
    channels_last: bool = True

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

    def per_sample(self, lq: Tensor) -> Tensor | None:
        """On the CPU, in inference, run a batch one image at a time (``None`` otherwise).

        The convolutions at 256-1024 px are large enough to keep the CPU busy one image at a
        time, so batching gains nothing there, while the banded, memory-lean paths work on one
        image: per image, a batch then costs what a single image costs (and gives the same
        bits). On GPUs and in training, batches run whole.
        """
        if lq.shape[0] > 1 and lq.device.type == "cpu" and fast_paths_enabled(lq):
            return torch.cat([self(lq[i : i + 1]) for i in range(lq.shape[0])])
        return None

    def band_last_block(self, lq: Tensor) -> bool:
        """Whether the bank's largest block is handed to the decoder as row bands
        (:meth:`StyleGAN2Generator.block_rows`) rather than computed whole: in inference, one
        image at a time, when the output is taller than one band."""
        return lq.shape[0] == 1 and self.out_size > 128 and fast_paths_enabled(lq)

    def to_internal_format(self, lq: Tensor) -> Tensor:
        """``lq`` in the memory format the network computes in (see ``channels_last``)."""
        if self.channels_last:
            return lq.contiguous(memory_format=torch.channels_last)
        return lq

    def run_decoder(self, hr: Tensor, bank_feats: dict[int, Tensor | RowFunction]) -> Tensor:
        """The decoder (CVPR Eq. 4 / ``self.decoder``): at each resolution a pixel-shuffle stage
        whose output is concatenated with the bank feature of the next resolution, then the
        two-convolution head at ``out_size``.

        Written for memory: each stage's input is released as soon as its convolution has
        consumed it, shuffle and concatenation share one buffer, and the last stage runs with
        the head in row bands (``shuffle_cat_head``), so its wide tensors never exist whole.
        When the bank's feature at ``out_size`` comes as a row function
        (:meth:`band_last_block`), the stage before the last joins the bands too: its
        concatenated input and its convolution's output (2 x 134 MB at 512 px for GLEAN) are
        made band by band (:func:`~glean_sr.models.ops.shuffle_cat_rows`,
        :func:`~glean_sr.models.ops.conv_of_rows`), one row of overlap recomputed per side.
        """
        out_size = self.config.out_size
        resolutions = self.config.decoder_resolutions
        stream = callable(bank_feats.get(out_size)) and len(resolutions) > 2
        penultimate = resolutions[-2]
        stages = zip(self.decoder[:-1], resolutions[1:], strict=True)
        conv1, act, conv2 = self.decoder[-1]
        hr_rows: RowFunction | None = None  # the streamed stage's input
        for block, res in stages:
            if res == out_size:  # the last stage runs fused with the head
                y: Tensor | RowFunction
                if hr_rows is not None:
                    y = conv_of_rows(hr_rows, res // block.scale, block.upsample_conv)
                else:
                    y = block.upsample_conv(hr)
                extra = bank_feats.pop(res)
                slope = act.negative_slope
                return shuffle_cat_head(y, extra, block.scale, conv1, slope, conv2, height=res)
            hr = block.upsample_conv(hr)
            if stream and res == penultimate:
                hr_rows = shuffle_cat_rows(hr, bank_feats.pop(res), block.scale)
            else:
                hr = pixel_shuffle_cat(hr, bank_feats.pop(res), block.scale)  # [N, C + C_res, ..]
        raise AssertionError("the decoder ends with a pixel-shuffle stage at out_size")

    def store_weights_channels_last(self) -> BankRestorer:
        """Store every convolution weight in the memory layout the channels-last convolutions
        read (values, shapes and keys unchanged; saving writes them contiguous as ever).

        For inference on the CPU: oneDNN wants a channels-last weight beside channels-last
        activations and otherwise copies it at every call (about 27 ms per image for GLEAN
        64 -> 1024: some 340 MB of weights copied). ``Upscaler.from_pretrained`` calls this for
        the models it loads (:func:`glean_sr.inference.upscaler.load_for_inference`)."""
        for module in self.modules():
            if isinstance(module, ModulatedConv2d):
                module.store_channels_last()
            elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and module.weight.ndim == 4:
                module.weight.data = relayout_(module.weight.data, (0, 2, 3, 1))
        return self

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

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (atomically)."""
        from ..weights.pretrained import save_pretrained

        return save_pretrained(self, directory)
