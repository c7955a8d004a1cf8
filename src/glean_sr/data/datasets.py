"""Training and validation data: GT folders, paired or synthesised LQ images, meta-info lists.

Layouts (those of the GLEAN releases, mmediting 0.x ``SRAnnotationDataset`` / ``SRFolderDataset``):

* paired folders: ``GT/00001.png`` (``out_size`` square) and ``LQ/00001.png`` (``in_size`` square,
  the same file name), e.g. ``data/FFHQ/GT`` and ``data/FFHQ/BIx16_down``;
* GT only: the LQ image is made from the GT on the fly, by the MATLAB-compatible bicubic (exactly
  what ``glean-sr prepare`` writes) or by the blind degradation pipeline;
* an optional meta-info file selects and orders the GT images: one name per line, optionally
  followed by the shape, as in ``ckkelvinchan/GLEAN``'s lists (``00001.png (1024,1024,3)``).

Samples are ``lq [3, in_size, in_size]`` and ``gt [3, out_size, out_size]``, float32 RGB in
[-1, 1]. Randomness (flip, degradation) comes from a generator seeded by ``(seed, epoch, index)``,
so a sample does not depend on the worker that loads it or on when it is loaded: this is what
makes a resumed run see exactly the data an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ConfigError, ImageError
from ..io import IMAGE_SUFFIXES, list_images, read_rgb
from .degradations import BlindDegradation

#: the optional shape after a name in a meta-info line: " (1024,1024,3)"
_SHAPE = re.compile(r"\s+\(\s*\d+(\s*,\s*\d+)*\s*\)$")

# stream tags that keep the permutation and augmentation random streams apart
_PERMUTATION, _AUGMENT = 1, 2


def read_meta_file(path: str | os.PathLike) -> list[str]:
    """Image names listed in a GLEAN meta-info file (``name`` or ``name (H,W,C)`` per line)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"meta-info file {p} does not exist")
    names = []
    for number, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = _SHAPE.sub("", line)  # drop the "(H,W,C)" shape
        if not line:
            raise ConfigError(f"{p}, line {number}: no file name in {raw!r}")
        names.append(line)
    if not names:
        raise ConfigError(f"meta-info file {p} lists no images")
    return names


def image_names(folder: str | os.PathLike, meta_file: str | os.PathLike = "") -> list[str]:
    """The images of a data set: the names ``meta_file`` lists (:func:`read_meta_file`), or
    without one the names of the image files directly inside ``folder``
    (:func:`glean_sr.io.list_images`), sorted."""
    if meta_file:
        return read_meta_file(meta_file)
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise ConfigError(f"image folder {d} does not exist")
    names = [p.name for p in list_images(d)]
    if not names:
        raise ConfigError(
            f"image folder {d} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return names


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 or [0, 1] float -> ``[3, H, W]`` float32 in [-1, 1] (the reference's
    ``(x / 255 - 0.5) / 0.5``)."""
    x = to_unit_float(img)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))) * 2 - 1


def to_unit_float(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; float images unchanged."""
    return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)


def bicubic_lq(gt: np.ndarray, in_size: int) -> np.ndarray:
    """The released LQ images: MATLAB ``imresize(gt, [in in], 'bicubic')`` as uint8."""
    from .imresize import imresize

    return imresize(gt, size=(in_size, in_size))  # type: ignore[return-value]


class SRDataset(Dataset):
    """Pairs of (LQ, GT) images for a restorer mapping ``in_size`` to ``out_size`` squares.

    ``degradation`` decides where LQ images come from when ``lq_dir`` is empty: ``"bicubic"``
    (deterministic) or ``"blind_face"`` (:class:`BlindDegradation`, random). ``flip`` mirrors LQ
    and GT together with probability 1/2. Index with ``(index, epoch)`` for the seeded random
    choices of training, or with a plain ``index`` for deterministic validation samples.
    """

    def __init__(
        self,
        *,
        gt_dir: str,
        in_size: int,
        out_size: int,
        lq_dir: str = "",
        meta_file: str = "",
        degradation: str = "bicubic",
        flip: bool = False,
        seed: int = 0,
    ):
        if degradation not in ("bicubic", "blind_face"):
            raise ConfigError(f"degradation must be 'bicubic' or 'blind_face', got {degradation!r}")
        if degradation == "blind_face" and lq_dir:
            raise ConfigError("the blind degradation makes LQ images itself; give no lq_dir")
        self.gt_dir = Path(gt_dir).expanduser()
        self.lq_dir = Path(lq_dir).expanduser() if lq_dir else None
        self.in_size, self.out_size = in_size, out_size
        self.degradation = degradation
        self.flip = flip
        self.seed = seed
        self.blind = BlindDegradation(out_size=in_size)
        self.names = image_names(self.gt_dir, meta_file)
        self._check_files()

    def _check_files(self) -> None:
        """Fail before training starts if a listed image is absent (not hours into the run)."""
        for folder, what in ((self.gt_dir, "GT"), (self.lq_dir, "LQ")):
            if folder is None:
                continue
            if not folder.is_dir():
                raise ConfigError(f"{what} folder {folder} does not exist")
            present = set(os.listdir(folder))
            missing = [
                n
                for n in self.names
                if n not in present and ("/" not in n or not (folder / n).is_file())
            ]
            if missing:
                raise ConfigError(
                    f"{what} folder {folder} lacks {len(missing)} of the {len(self.names)} "
                    f"images (first: {missing[0]}); LQ and GT folders need the same file names"
                )

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, folder: Path, name: str, size: int, what: str) -> np.ndarray:
        img = read_rgb(folder / name, keep_uint8=True)
        if img.shape[:2] != (size, size):
            raise ImageError(
                f"{folder / name}: is {img.shape[1]}x{img.shape[0]}, {what} images must be "
                f"{size}x{size} for this model (resize the data set, e.g. with glean-sr prepare)"
            )
        return img

    def load(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """``(lq, gt)`` as ``[H, W, 3]`` arrays: uint8, or float in [0, 1] for the blind LQ."""
        name = self.names[index]
        gt = self._read(self.gt_dir, name, self.out_size, "GT")
        if self.lq_dir is not None:
            lq = self._read(self.lq_dir, name, self.in_size, "LQ")
        elif self.degradation == "bicubic":
            lq = bicubic_lq(gt, self.in_size)
        else:
            if rng is None:
                raise ValueError("the blind degradation needs a random generator")
            lq = self.blind.degrade(to_unit_float(gt), rng)
        if self.flip and rng is not None and rng.random() < 0.5:
            lq, gt = lq[:, ::-1], gt[:, ::-1]
        return lq, gt

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = key
            rng = np.random.default_rng([self.seed, _AUGMENT, epoch, index])
        else:
            index, rng = key, None
        lq, gt = self.load(index, rng)
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "index": index}


class StepSampler(Sampler):
    """The endless, deterministic stream of training samples, arranged by optimiser step.

    Epoch ``e`` visits the data set in a permutation seeded by ``(seed, e)``; the stream is the
    concatenation of the epochs. Optimiser step ``s`` consumes samples ``[s*B, (s+1)*B)`` of the
    stream (``B`` the global batch), cut into ``world_size * grad_accum`` micro-batches; micro-
    batch ``j`` of process ``rank`` is chunk ``j * world_size + rank``. So one process with
    ``grad_accum = k`` sees the same micro-batches as ``k`` processes without accumulation, and
    a run resumed at step ``s`` continues the stream exactly where it stopped.

    Yields ``(index, epoch)`` keys for :class:`SRDataset`; batch them with ``micro_batch``.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        global_batch: int,
        micro_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
    ):
        if num_samples < 1:
            raise ValueError("the data set is empty")
        if global_batch % (micro_batch * world_size):
            raise ValueError(
                f"global batch {global_batch} is not a multiple of micro batch {micro_batch} "
                f"x {world_size} processes"
            )
        self.n = num_samples
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.rank, self.world_size = rank, world_size
        self.accum = global_batch // (micro_batch * world_size)
        self.seed = seed
        self.start_step = start_step
        self._perm_epoch = -1
        self._perm = np.arange(0)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, _PERMUTATION, epoch])
            self._perm, self._perm_epoch = rng.permutation(self.n), epoch
        return self._perm

    def position(self, step: int) -> dict[str, int]:
        """Where the stream is before step ``step``: ``{"epoch", "offset", "samples"}``."""
        samples = step * self.global_batch
        return {"epoch": samples // self.n, "offset": samples % self.n, "samples": samples}

    def keys_for_step(self, step: int) -> Iterator[tuple[int, int]]:
        for j in range(self.accum):
            chunk = j * self.world_size + self.rank
            start = step * self.global_batch + chunk * self.micro_batch
            for p in range(start, start + self.micro_batch):
                epoch, offset = divmod(p, self.n)
                yield int(self.permutation(epoch)[offset]), epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            yield from self.keys_for_step(step)
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


__all__ = [
    "SRDataset",
    "StepSampler",
    "bicubic_lq",
    "image_names",
    "read_meta_file",
    "to_tensor",
]
