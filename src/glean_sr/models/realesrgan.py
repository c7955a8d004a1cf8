"""Real-ESRGAN's generator, BasicSR's ``RRDBNet``: a general (not face- or cat-specific) x4, x2
or x1 upscaler that takes images of any size. glean-sr uses it for whole photos and for the
background behind restored faces.

The network is ESRGAN's (Wang et al. 2018, Sec. 3.1): ``conv_first``, a body of RRDBs (three
residual dense blocks of five 3x3 convs with growth ``growth_channels`` each, see
:mod:`.rrdb`), ``conv_body`` with a long skip, then two nearest-neighbour x2 up-samplings each
followed by a conv and LeakyReLU(0.2), ``conv_hr`` + LeakyReLU and ``conv_last``. Real-ESRGAN
(Wang et al., ICCVW 2021) keeps the trunk at x4 and, for x2 and x1, first folds the input into
channels by pixel-unshuffle (by 2 or 4), which is why those inputs must be multiples of 2 or 4.

The key layout is BasicSR's (``conv_first``, ``body.{k}.rdb{1,2,3}.conv{1..5}``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so the released ``params_ema`` state
dicts load strictly.

Range: BasicSR's network works on RGB in ``[0, 1]``; glean-sr's models all take and return
``[-1, 1]`` (:func:`glean_sr.io.pixels_to_tensor`), so :meth:`RRDBNet.forward` converts at its
boundary (``(lq + 1) / 2`` in, ``2 * out - 1`` out) and computes exactly BasicSR's function in
between. :meth:`RRDBNet.forward_unit` is BasicSR's function itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import RealESRGANConfig
from ..serialization import save_pretrained
from .rrdb import RRDB


class RRDBNet(nn.Module):
    """Real-ESRGAN's RRDBNet for ``config`` (see the module docstring).

    It has no input size: ``in_size`` is not defined, ``scale`` is, and any
    ``[N, img_channels, H, W]`` with ``H`` and ``W`` multiples of :attr:`size_multiple` is
    enlarged to ``[N, img_channels, scale * H, scale * W]``.
    """

    def __init__(self, config: RealESRGANConfig):
        super().__init__()
        if not isinstance(config, RealESRGANConfig):
            raise ValueError(f"expected a RealESRGANConfig, got {type(config).__name__}")
        self.config = config
        ch, growth = config.rrdb_channels, config.growth_channels
        in_channels = config.img_channels * config.unshuffle**2
        self.conv_first = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(ch, growth) for _ in range(config.num_rrdbs)])
        self.conv_body = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv_hr = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv_last = nn.Conv2d(ch, config.img_channels, 3, 1, 1)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def img_channels(self) -> int:
        return self.config.img_channels

    @property
    def size_multiple(self) -> int:
        """Input heights and widths must be multiples of this: 1 (x4), 2 (x2) or 4 (x1)."""
        return self.config.size_multiple

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"x{c.scale}, {c.num_rrdbs} RRDBs of {c.rrdb_channels} channels (growth "
            f"{c.growth_channels}), pixel-unshuffle {c.unshuffle}, any input size"
        )

    def check_input(self, lq: Tensor) -> None:
        """Raise ``ValueError`` unless ``lq`` is ``[N, img_channels, H, W]`` with ``H`` and ``W``
        multiples of :attr:`size_multiple`."""
        m = self.size_multiple
        if lq.ndim != 4 or lq.shape[1] != self.img_channels or lq.shape[2] % m or lq.shape[3] % m:
            size = "H, W" if m == 1 else f"H, W (multiples of {m})"
            raise ValueError(
                f"input must be [N, {self.img_channels}, {size}] (RGB in [-1, 1]), "
                f"got {list(lq.shape)}"
            )

    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, img_channels, H, W]``, RGB in ``[-1, 1]``, ``H`` and ``W`` multiples of
        :attr:`size_multiple` -> ``sr: [N, img_channels, scale * H, scale * W]``, about
        ``[-1, 1]`` (unclamped)."""
        self.check_input(lq)
        return self.forward_unit((lq + 1) / 2) * 2 - 1

    def forward_unit(self, x: Tensor) -> Tensor:
        """BasicSR's ``RRDBNet.forward``: ``x`` RGB in ``[0, 1]`` -> about ``[0, 1]``."""
        if self.config.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.config.unshuffle)  # [N, C * u * u, H / u, W / u]
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")  # [N, C, 2 h, 2 w]
            feat = F.leaky_relu(conv(up), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    def parts(self) -> dict[str, list[nn.Module]]:
        """Modules per reported part: ``trunk`` (conv_first, the RRDBs, conv_body) and
        ``upsampler`` (the two up-sampling convs, conv_hr, conv_last)."""
        return {
            "trunk": [self.conv_first, self.body, self.conv_body],
            "upsampler": [self.conv_up1, self.conv_up2, self.conv_hr, self.conv_last],
        }

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part plus ``total``."""
        counts = {
            name: sum(p.numel() for m in modules for p in m.parameters())
            for name, modules in self.parts().items()
        }
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def save_pretrained(
        self,
        directory: str | Path,
        *,
        dtype: torch.dtype | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (atomically), as for
        GLEAN (:meth:`glean_sr.models.base.BankRestorer.save_pretrained`)."""
        return save_pretrained(self, directory, dtype=dtype, metadata=metadata)
