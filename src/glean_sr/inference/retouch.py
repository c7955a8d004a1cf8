"""``Retoucher``: undo the artefacts of amateur retouching with a super-resolution model.

The CVPR 2021 paper's application (Sec. 6 and Appendix B.2, Figs. 11 and 19): shrink the
retouched image until its artefacts vanish, then restore it at full size with GLEAN, whose
prior fills in what a real photo of the subject looks like. Here:

1. the image is shrunk to the model's input by MATLAB-compatible bicubic (:func:`glean_sr.
   imresize`; 8-bit images as uint8, rounded back as MATLAB does): ``in_size x in_size`` for a
   GLEAN model, which takes square images (an aligned face for the face models), or
   ``1 / scale`` of its size for a model that takes any size;
2. the model restores it (:class:`~glean_sr.inference.upscaler.Upscaler`), and the result is
   resized to the image's own size (MATLAB bicubic) where the model's output differs;
3. the restored image is blended into the original inside the mask, feathered inward: the
   weight rises from 0 at the mask's edge to 1 ``feather`` pixels inside. Outside the mask
   every sample is the input's own, bit for bit; without a mask the whole image is restored.

A mask is an image of the same size: white (grey value above one half) marks what to retouch;
a transparent pixel counts as black. Alpha and the ICC profile of the image are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.imresize import imresize
from ..devices import resolve_device
from ..errors import ConfigError, ImageError
from ..io import LUMA_WEIGHTS, ImageData, as_image_data, image_like, quantize
from ..weights.pretrained import load_model
from .upscaler import Upscaler


def _wxh(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


@dataclass
class RetouchRecord:
    """What was done to one image. Sizes are ``(height, width)``.

    Attributes:
        source: the input file, if any.
        input_hw: size of the input (and of the output).
        model_input_hw: the size the image was shrunk to.
        masked_pixels: pixels inside the mask (all of them without a mask).
        feather: the feathering width in pixels (0 without a mask).
        steps: one human-readable line per step, starting with what reading the file did.
    """

    source: str | None
    input_hw: tuple[int, int]
    model_input_hw: tuple[int, int] = (0, 0)
    masked_pixels: int = 0
    feather: int = 0
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(self.steps)


@dataclass
class RetouchResult:
    """A retouched image: ``image`` of the kind the caller passed, ``data`` the full-fidelity
    :class:`ImageData`, ``record`` what was done. Unpacks as ``image, record``."""

    image: Any
    data: ImageData
    record: RetouchRecord

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image, self.record))


def mask_from_image(mask: Any) -> np.ndarray:
    """A mask image (path, PIL image, array or :class:`ImageData`) -> bool ``[H, W]``: grey
    value (BT.601 luma for colour) times alpha above one half."""
    data = as_image_data(mask)
    pixels = data.pixels  # [H, W, C]
    grey = pixels[..., 0] if data.is_grayscale else pixels @ np.asarray(LUMA_WEIGHTS, np.float32)
    if data.alpha is not None:
        grey = grey * data.alpha
    return grey > 0.5


def _box_blur(values: np.ndarray, radius: int) -> np.ndarray:
    """``values [H, W]`` averaged over ``(2 radius + 1)``-pixel squares (separably, by cumulative
    sums), the edge pixels repeated outside the image."""
    window = 2 * radius + 1
    out = values
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        sums = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)  # n + window entries
        n = out.shape[axis]
        hi = np.take(sums, np.arange(window, window + n), axis=axis)
        lo = np.take(sums, np.arange(n), axis=axis)
        out = (hi - lo) / window
    return out


def feather_mask(mask: np.ndarray, feather: int) -> np.ndarray:
    """Blend weights float32 ``[H, W]`` from a bool mask: exactly 0 outside it, rising from
    about 0 at its edge to 1 at ``feather`` pixels inside (``clip(2 * box_blur - 1, 0, 1)``,
    which is linear across a straight edge); ``feather = 0`` gives the mask itself."""
    inside = mask.astype(np.float64)
    if feather <= 0:
        return inside.astype(np.float32)
    weight = np.clip(2 * _box_blur(inside, feather) - 1, 0, 1) * inside
    return weight.astype(np.float32)


class Retoucher:
    """Retouch images with a super-resolution model; see the module docstring.

    Args:
        model: a loaded restorer that :class:`~glean_sr.inference.upscaler.Upscaler` runs
            (GLEAN, LightGLEAN, or a model that takes any size).
        device, precision: as for :class:`~glean_sr.inference.upscaler.Upscaler`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        fast: bool = True,
    ):
        if hasattr(model, "predict_ab"):
            raise ConfigError(
                "retouch needs a super-resolution model (GLEAN, LightGLEAN, Real-ESRGAN); this "
                "is a colorizer (glean-sr colorize runs it)"
            )
        self.upscaler = Upscaler(model, device=device, precision=precision, fast=fast)
        if self.upscaler.scale < 2:
            raise ConfigError(
                f"retouch shrinks the image by the model's factor and restores it; this model "
                f"enlarges x{self.upscaler.scale}"
            )

    @classmethod
    def from_pretrained(
        cls,
        model_source: str | os.PathLike | nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        fast: bool = True,
        progress: bool = True,
    ) -> Retoucher:
        """A retoucher for a preset, model directory, weight file or URL, or a built model."""
        dev = resolve_device(device)
        if isinstance(model_source, nn.Module):
            model = model_source
        else:
            model = load_model(model_source, device=dev, progress=progress)
        return cls(model, device=dev, precision=precision, fast=fast)

    @property
    def device(self) -> torch.device:
        return self.upscaler.device

    def describe(self) -> str:
        return self.upscaler.describe()

    def model_input_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The size an image of ``hw`` is shrunk to."""
        up = self.upscaler
        if not up.any_size:
            return (up.in_size, up.in_size)
        multiple = getattr(up.model, "size_multiple", 1)
        return tuple(max(multiple, round(n / up.scale / multiple) * multiple) for n in hw)

    def retouch_data(
        self, image: ImageData, mask: np.ndarray | None = None, feather: int | None = None
    ) -> tuple[ImageData, RetouchRecord]:
        """Retouch one :class:`ImageData` inside ``mask`` (bool ``[H, W]``, or ``None`` for the
        whole image), feathered over ``feather`` pixels (default ``min(H, W) / 64``, at least
        1): ``(result, record)``.

        Raises:
            ImageError: a non-square image for a GLEAN model, or a mask of another size.
        """
        h, w = image.height, image.width
        record = RetouchRecord(
            source=str(image.source) if image.source is not None else None,
            input_hw=(h, w),
            steps=list(image.notes),
        )
        up = self.upscaler
        if not up.any_size and h != w:
            raise ImageError(
                f"{image.label}: {w}x{h}; this model restores {up.in_size}x{up.in_size} squares, "
                f"so retouch takes square images (crop the retouched part, e.g. the face, to a "
                f"square)"
            )
        if mask is not None and mask.shape != (h, w):
            raise ImageError(
                f"{image.label}: the mask is {_wxh(mask.shape)}, the image {w}x{h}; they must "
                f"be the same size"
            )
        target = self.model_input_size((h, w))
        record.model_input_hw = target
        if image.bit_depth == 8:  # on uint8, rounded back: as MATLAB shrinks 8-bit images
            small = imresize(quantize(image.pixels, 8), size=target).astype(np.float32) / 255
        else:
            small = np.clip(imresize(image.pixels, size=target), 0, 1).astype(np.float32)
        record.steps.append(f"shrunk {w}x{h} -> {_wxh(target)} (MATLAB bicubic)")
        restored, up_record = up.restore(
            [up.prepare(ImageData(pixels=small, bit_depth=image.bit_depth))]
        )[0]
        record.steps += up_record.steps
        pixels = restored.pixels
        if pixels.shape[:2] != (h, w):
            before = _wxh(pixels.shape[:2])
            pixels = np.clip(imresize(pixels, size=(h, w)), 0, 1).astype(np.float32)
            record.steps.append(f"resized {before} -> {w}x{h} (MATLAB bicubic)")

        if mask is None:
            out = pixels
            record.masked_pixels = h * w
            record.steps.append("the whole image replaced (no mask)")
        else:
            feather = max(1, round(min(h, w) / 64)) if feather is None else feather
            weight = feather_mask(mask, feather)[..., None]  # [H, W, 1]
            blended = image.pixels * (1 - weight) + pixels * weight
            out = np.where(weight > 0, blended, image.pixels).astype(np.float32)
            record.masked_pixels = int(mask.sum())
            record.feather = feather
            record.steps.append(
                f"blended inside the mask ({record.masked_pixels} pixels, feathered over "
                f"{feather} px); the rest untouched"
            )
        result = image.replace(pixels=np.ascontiguousarray(out), notes=())
        return result, record

    def __call__(
        self, image: Any, mask: Any = None, *, feather: int | None = None
    ) -> RetouchResult:
        """Retouch one image (PIL image, NumPy array, :class:`ImageData` or path) inside
        ``mask`` (an image of the same size, see :func:`mask_from_image`; ``None``: the whole
        image). The result's ``image`` is of the kind passed."""
        data = as_image_data(image)
        bool_mask = None if mask is None else mask_from_image(mask)
        result, record = self.retouch_data(data, bool_mask, feather)
        return RetouchResult(image_like(image, result), result, record)


__all__ = [
    "RetouchRecord",
    "RetouchResult",
    "Retoucher",
    "feather_mask",
    "mask_from_image",
]
