"""Super-resolution pairs from a folder of photos of any size: ImageNet's layout as it is.

GLEAN's multi-class models (TPAMI 2023, Sec. 5.3) train on ImageNet-train and test on
ImageNet-val, resized to the bank's output size (Sec. 5: BigGAN makes images of a fixed size).
Here each photo, found recursively (``train/<wnid>/*.JPEG``) or listed in a meta-info file, is
resized so that its shorter side is ``out_size`` and cut to an ``out_size`` square (random in
training, centred for validation, mirrored with probability 1/2 when ``flip``), exactly as
:class:`glean_sr.data.colorization.ColorizationDataset` cuts it. The square is stored as 8-bit,
as a prepared GT image would be, and its LQ is the MATLAB bicubic of it (the ``BIxN_down``
images of the released recipes).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from ..io import quantize
from .colorization import ColorizationDataset
from .datasets import bicubic_lq, to_tensor

_AUGMENT = 2  # the stream tag SRDataset uses for its per-sample randomness


class PhotoSRDataset(Dataset):
    """``(lq, gt)`` squares of ``in_size`` / ``out_size`` pixels from a folder of photos (see the
    module docstring). Index with ``(index, epoch)`` for the seeded random crops and flips of
    training, or with a plain ``index`` for the deterministic centre crop of validation."""

    def __init__(
        self,
        *,
        gt_dir: str,
        in_size: int,
        out_size: int,
        meta_file: str = "",
        crop: Literal["random", "centre"] = "random",
        flip: bool = False,
        seed: int = 0,
    ):
        self.photos = ColorizationDataset(
            gt_dir=gt_dir, size=out_size, meta_file=meta_file, crop=crop, flip=flip, seed=seed
        )
        self.in_size, self.seed = in_size, seed
        self.names = self.photos.names

    def __len__(self) -> int:
        return len(self.photos)

    def load(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """``(lq, gt)`` as uint8 ``[H, W, 3]`` arrays."""
        gt = quantize(self.photos.load(index, rng), 8)  # [S, S, 3] uint8
        return bicubic_lq(gt, self.in_size), gt

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = key
            rng = np.random.default_rng([self.seed, _AUGMENT, epoch, index])
        else:
            index, rng = key, None
        lq, gt = self.load(index, rng)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "index": index}


__all__ = ["PhotoSRDataset"]
