"""Training and validation data for a colorizer: colour photos in, ``(L*, photo)`` pairs out.

Any folder of colour photos works, searched recursively, so ImageNet's layout
(``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) is read as it is; a meta-info file (one path
relative to the folder per line, as :func:`glean_sr.data.datasets.read_meta_file` reads it)
selects and orders the photos instead.

Each photo is resized so that its shorter side is ``size`` (MATLAB-compatible bicubic, with
antialiasing when shrinking; a photo of that size is left as it is) and cut to a ``size x size``
square: at a random place in training, in the centre for validation (ImageNet's usual
evaluation crop). Training samples are mirrored with probability 1/2 when ``flip``.

Samples are ``lq [1, size, size]``, CIE L* / 50 - 1 in [-1, 1] (the colorizer's input,
:func:`glean_sr.models.colorizer.lightness_to_input`), and ``gt [3, size, size]``, the photo as
RGB in [-1, 1]. Randomness comes from a generator seeded by ``(seed, epoch, index)``, as in
:class:`glean_sr.data.datasets.SRDataset`, so a resumed run sees the same samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..colorspace import rgb_to_lightness
from ..errors import ConfigError
from ..io import IMAGE_SUFFIXES, list_images, read_rgb
from .datasets import read_meta_file, to_tensor
from .imresize import imresize

_AUGMENT = 2  # the stream tag SRDataset uses for its per-sample randomness


def photo_names(folder: str | Path, meta_file: str = "") -> list[str]:
    """The photos of a colorization data set, as paths relative to ``folder``: those
    ``meta_file`` lists, or every image file in ``folder`` and below, sorted."""
    if meta_file:
        return read_meta_file(meta_file)
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise ConfigError(f"photo folder {d} does not exist")
    names = [p.relative_to(d).as_posix() for p in list_images(d, recursive=True)]
    if not names:
        raise ConfigError(
            f"photo folder {d} (and its sub-folders) contains no images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return names


def shorter_side_to(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb [H, W, 3]`` float in [0, 1] resized (MATLAB bicubic) so that ``min(H, W) == size``,
    clipped to [0, 1]; unchanged when it already is."""
    h, w = rgb.shape[:2]
    if min(h, w) == size:
        return rgb
    scale = size / min(h, w)
    out_hw = (size, max(size, round(w * scale))) if h <= w else (max(size, round(h * scale)), size)
    return np.clip(imresize(rgb, size=out_hw), 0, 1).astype(np.float32)


class ColorizationDataset(Dataset):
    """``(L*, photo)`` squares of ``size`` pixels from a folder of colour photos (see the
    module docstring). Index with ``(index, epoch)`` for the seeded random crops and flips of
    training, or with a plain ``index`` for the deterministic centre crop of validation."""

    def __init__(
        self,
        *,
        gt_dir: str,
        size: int,
        meta_file: str = "",
        crop: Literal["random", "centre"] = "random",
        flip: bool = False,
        seed: int = 0,
    ):
        if crop not in ("random", "centre"):
            raise ConfigError(f"crop must be 'random' or 'centre', got {crop!r}")
        self.gt_dir = Path(gt_dir).expanduser()
        self.size = size
        self.crop = crop
        self.flip = flip
        self.seed = seed
        self.names = photo_names(self.gt_dir, meta_file)
        missing = [n for n in self.names if not (self.gt_dir / n).is_file()]
        if missing:
            raise ConfigError(
                f"photo folder {self.gt_dir} lacks {len(missing)} of the {len(self.names)} "
                f"listed photos (first: {missing[0]})"
            )

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """The photo's ``[size, size, 3]`` float32 square in [0, 1]."""
        rgb = shorter_side_to(read_rgb(self.gt_dir / self.names[index]), self.size)
        h, w, s = rgb.shape[0], rgb.shape[1], self.size
        if rng is not None and self.crop == "random":
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        else:
            top, left = (h - s) // 2, (w - s) // 2
        rgb = rgb[top : top + s, left : left + s]
        if self.flip and rng is not None and rng.random() < 0.5:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = key
            rng = np.random.default_rng([self.seed, _AUGMENT, epoch, index])
        else:
            index, rng = key, None
        gt = to_tensor(self.load(index, rng))  # [3, S, S] in [-1, 1]
        with torch.no_grad():
            lightness = rgb_to_lightness((gt + 1) / 2)  # [1, S, S] in [0, 100]
        return {"lq": lightness / 50 - 1, "gt": gt, "index": index}


__all__ = ["ColorizationDataset", "photo_names", "shorter_side_to"]
