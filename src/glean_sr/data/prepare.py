"""Write LQ folders from GT folders, the way the training data sets were made.

* ``bicubic``: MATLAB ``imresize`` (``BIx8_down``, ``BIx16_down`` of the releases): exactly the LQ
  image the training loop makes on the fly from the same GT.
* ``blind_face``: the in128out1024 blind degradation, seeded per image by ``(seed, file name)``,
  so a file always gets the same LQ whatever else is in the folder.

LQ files keep the GT's file name and format (paired folders are matched by name; PNG is
lossless, a JPEG data set gets quality-100 JPEGs). Files are written atomically; existing files
are kept unless ``overwrite``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, GleanError
from ..io import from_array, quantize, read_rgb, write_image
from .datasets import bicubic_lq, image_names, to_unit_float
from .degradations import BlindDegradation


@dataclass
class PrepareReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # existed already
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, one-line reason)


def blind_seed(seed: int, name: str) -> np.random.Generator:
    """The generator of the blind degradation of file ``name`` (stable across runs)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def prepare_lq(
    gt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: int | None = None,
    scale: int | None = None,
    degradation: str = "bicubic",
    seed: int = 0,
    meta_file: str = "",
    write_meta: str = "",
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Make the LQ image of every GT image (``size``: LQ side; or ``scale``: GT side / LQ side)."""
    from .imresize import imresize

    gt = Path(gt_dir).expanduser()
    out = Path(out_dir).expanduser()
    if (size is None) == (scale is None):
        raise ConfigError("give exactly one of --size (LQ side in pixels) or --scale (factor)")
    if degradation not in ("bicubic", "blind_face"):
        raise ConfigError(f"degradation must be bicubic or blind_face, got {degradation!r}")
    if degradation == "blind_face" and size is None:
        raise ConfigError("the blind degradation needs --size (128 for the in128out1024 recipe)")
    if out.resolve() == gt.resolve():
        raise ConfigError("the LQ folder must differ from the GT folder (GT files stay untouched)")
    names = image_names(gt, meta_file)
    out.mkdir(parents=True, exist_ok=True)
    blind = BlindDegradation(out_size=size) if degradation == "blind_face" else None
    report = PrepareReport()
    shapes: dict[str, tuple[int, ...]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="prepare", unit="img")
    for name in names:
        target = out / name
        try:
            img = read_rgb(gt / name, keep_uint8=True)
            shapes[name] = img.shape
            if target.exists() and not overwrite:
                report.skipped.append(name)
                continue
            if blind is not None:
                lq = quantize(blind.degrade(to_unit_float(img), blind_seed(seed, name)), 8)
            elif size is not None:
                lq = bicubic_lq(img, size)
            else:
                lq = imresize(img, 1.0 / scale)  # type: ignore[operator]
            if lq.dtype != np.uint8:  # a 16-bit GT: its LQ image is written with 8 bits
                lq = quantize(lq, 8)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(from_array(lq), target, overwrite=overwrite, quality=100)
            report.written.append(name)
        except GleanError as exc:
            report.failed.append((name, str(exc)))
        except (OSError, ValueError, KeyError) as exc:
            report.failed.append((name, f"{gt / name}: {exc}"))
        finally:
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if write_meta:
        lines = [f"{n} ({','.join(str(s) for s in shapes[n])})" for n in names if n in shapes]
        Path(write_meta).expanduser().write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


__all__ = ["PrepareReport", "blind_seed", "prepare_lq"]
