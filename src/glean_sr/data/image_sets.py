"""Unconditional image sets for training a latent bank: a folder of image files or an array.

* an array file: ``.npy`` holding uint8 ``[N, R, R]`` (grey) or ``[N, R, R, C]``, or ``.npz``
  with such an ``images`` array (what ``glean-sr build-glyphs`` writes);
* a folder of image files (``glean_sr.io.IMAGE_SUFFIXES``), read one by one when needed;
  square images larger than ``R`` are reduced with area averaging, smaller ones are refused.

Items are ``[C, R, R]`` float tensors in ``[-1, 1]`` (StyleGAN2's range); grey images are
repeated to the bank's channels. With ``mirror`` the set has ``2N`` items, the second half
flipped left-right.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ..io import list_images, quantize, read_rgb


class ImageSet(Dataset):
    """Training images of one resolution; see the module docstring."""

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        resolution: int,
        channels: int = 3,
        mirror: bool = False,
    ):
        self.source = Path(source).expanduser()
        self.resolution = resolution
        self.channels = channels
        self.mirror = mirror
        self.array: np.ndarray | None = None
        self.files: list[Path] = []
        if self.source.is_dir():
            self.files = list_images(self.source)
            if not self.files:
                raise DataError(f"{self.source} holds no image files")
            _check_sizes(self.files, resolution)
        elif self.source.is_file():
            self.array = _read_array(self.source, resolution, channels)
        else:
            raise DataError(
                f"training images not found: {self.source} (a folder of images or a .npy/.npz "
                f"array file)"
            )

    @property
    def num_images(self) -> int:
        return len(self.array) if self.array is not None else len(self.files)

    def __len__(self) -> int:
        return self.num_images * (2 if self.mirror else 1)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` (before mirroring) as uint8 ``[R, R, C]``."""
        if self.array is not None:
            return self.array[index]
        return _read_file(self.files[index], self.resolution, self.channels)

    def __getitem__(self, key: int | tuple[int, int]) -> Tensor:
        index = key[0] if isinstance(key, tuple) else key
        flip = index >= self.num_images
        img = self.read(index % self.num_images)
        if flip:
            img = img[:, ::-1]
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
        return t / 127.5 - 1.0  # [C, R, R] in [-1, 1]

    def uint8_batch(self, indices: np.ndarray) -> np.ndarray:
        """Images ``indices`` as uint8 ``[n, R, R, C]`` (no mirroring)."""
        return np.stack([self.read(int(i)) for i in indices])


def _to_channels(img: np.ndarray, channels: int, what: str) -> np.ndarray:
    """``[R, R]`` or ``[R, R, c]`` uint8 -> ``[R, R, channels]``: grey is repeated."""
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c == channels:
        return img
    if c == 1:
        return np.repeat(img, channels, axis=2)
    if c == 4 and channels == 3:
        return img[:, :, :3]
    if c == 3 and channels == 1:  # ITU-R BT.601 luma
        luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return quantize(luma / 255.0, 8)[:, :, None]
    raise DataError(f"{what}: {c} channels, the bank makes {channels}")


def _check_sizes(files: list[Path], resolution: int) -> None:
    """Refuse before training starts (not hours into it) when a file is unreadable or of a size
    the bank cannot use; reads only the headers."""
    from ..errors import ImageError
    from ..io import read_image_size

    bad = []
    for path in files:
        try:  # the header only, and its pixel count within the limit before anything is decoded
            w, h = read_image_size(path)
        except ImageError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            bad.append(f"{path.name} ({reason if 'pixels' in reason else 'unreadable'})")
            continue
        if w != h or w < resolution or w % resolution:
            bad.append(f"{path.name} ({w}x{h})")
    if bad:
        raise DataError(
            f"{len(bad)} of {len(files)} training images cannot be used (first: {bad[0]}); "
            f"images must be readable squares of {resolution} px or a multiple of it"
        )


def _read_array(path: Path, resolution: int, channels: int) -> np.ndarray:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "images" not in data:
                    raise DataError(f"{path}: an .npz training file needs an 'images' array")
                images = data["images"]
        elif path.suffix == ".npy":
            images = np.load(path, allow_pickle=False)
        else:
            raise DataError(f"{path}: training images must be a folder, .npy or .npz")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable array file ({exc})") from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(
            f"{path}: images must be uint8 [N, R, R] or [N, R, R, C], got {images.dtype} "
            f"{list(images.shape)}"
        )
    if images.shape[1:3] != (resolution, resolution):
        raise DataError(
            f"{path}: images are {images.shape[2]}x{images.shape[1]}, the bank makes "
            f"{resolution}x{resolution} (set generator.resolution or rebuild the data)"
        )
    if len(images) == 0:
        raise DataError(f"{path}: holds no images")
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.shape[3] != channels:
        images = np.stack([_to_channels(im, channels, str(path)) for im in images])
    return np.ascontiguousarray(images)


def _read_file(path: Path, resolution: int, channels: int) -> np.ndarray:
    img = read_rgb(path, keep_uint8=True)
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        img = quantize(np.asarray(img, dtype=np.float32), 8)
    h, w = img.shape[:2]
    if h != w or h < resolution or h % resolution:
        raise DataError(
            f"{path}: {w}x{h}; bank training images must be squares of {resolution} px or a "
            f"multiple of it"
        )
    if h > resolution:  # area averaging over f x f blocks
        f = h // resolution
        img = img.reshape(resolution, f, resolution, f, -1).mean(axis=(1, 3))
        img = quantize(img / 255.0, 8)
    return _to_channels(img, channels, str(path))


__all__ = ["ImageSet"]
