"""What every kind of bank directory shares: its file names, the check before one is written,
and the grid that sample images are laid out in (StyleGAN2 and BigGAN banks alike)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import GleanError
from ..serialization import CONFIG_NAME, WEIGHTS_NAME

DISC_CONFIG_NAME = "discriminator.json"
DISC_WEIGHTS_NAME = "discriminator.safetensors"


def check_bank_directory(directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Raise unless a bank may be written to ``directory`` (checked before any work is done)."""
    out = Path(directory).expanduser()
    if out.exists() and not out.is_dir():
        raise GleanError(f"{out} exists and is not a directory")
    names = (CONFIG_NAME, WEIGHTS_NAME, DISC_CONFIG_NAME, DISC_WEIGHTS_NAME)
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise GleanError(f"{out} already holds a bank ({', '.join(existing)}); pass --overwrite")
    return out


def tile_images(images: np.ndarray, columns: int) -> np.ndarray:
    """``[N, R, R, C]`` uint8 images -> one ``[rows * R, columns * R, 3]`` picture, row by row
    (grey is repeated to RGB; unused cells stay black)."""
    n, r, c = images.shape[0], images.shape[1], images.shape[3]
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * r, columns * r, c), np.uint8)
    for i, img in enumerate(images):
        y, x = divmod(i, columns)
        grid[y * r : (y + 1) * r, x * r : (x + 1) * r] = img
    return np.repeat(grid, 3, axis=2) if c == 1 else grid


__all__ = ["DISC_CONFIG_NAME", "DISC_WEIGHTS_NAME", "check_bank_directory", "tile_images"]
