"""``Colorizer``: any photo in, grey or colour, the same photo in colour out.

A colorizer (:class:`glean_sr.models.colorizer.GLEANColorizer`) sees ``S x S`` pixels of L*.
A photo of any size is handled the way colorization tools keep detail:

1. its CIE L* is computed at full resolution (a grey sample ``g`` is the sRGB colour
   ``(g, g, g)``; a colour photo gives its own L*, and its colour is replaced);
2. that L* is resized to ``S x S`` (MATLAB-compatible bicubic, :func:`glean_sr.imresize`; a
   non-square photo is squeezed, as the chroma needs only the layout) and the model predicts
   the chroma ``ab`` there;
3. ``ab`` is resized back to the photo's size with the same bicubic kernel and joined to the
   full-resolution L*, so every edge and texture of the output is the input's own;
4. colours that fall outside sRGB's gamut have their chroma reduced (``a`` and ``b`` scaled
   together towards grey, by bisection) until they fit, so the output's L* stays the input's:
   clipping RGB instead would change it.

The output is RGB with the input's bit depth (8 or 16) and alpha; a colour photo's ICC profile
is kept, a grey one's is dropped (it describes one channel). The work is done in blocks of
rows, so the memory beyond the photo itself stays bounded whatever its size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..colorspace import lab_to_rgb, rgb_to_lightness
from ..data.imresize import imresize, resize_matrix
from ..devices import resolve_device
from ..errors import ConfigError
from ..io import ImageData, as_image_data, image_like
from ..weights.pretrained import load_model
from .upscaler import PRECISIONS

#: rows converted at a time (L*, the ab resize, Lab -> RGB)
BLOCK_ROWS = 128
#: bisection steps of the chroma reduction: the chroma is exact to 2 ** -12 of its value
GAMUT_STEPS = 12


def _wxh(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


@dataclass
class ColorizeRecord:
    """What was done to one photo. Sizes are ``(height, width)``.

    Attributes:
        source: the input file, if any.
        input_hw: size of the input (and of the output).
        model_hw: the size the chroma was predicted at.
        grayscale: the input was grey (else its colour was replaced).
        out_of_gamut: pixels whose chroma was reduced to fit sRGB's gamut.
        steps: one human-readable line per step, starting with what reading the file did.
    """

    source: str | None
    input_hw: tuple[int, int]
    model_hw: tuple[int, int] = (0, 0)
    grayscale: bool = False
    out_of_gamut: int = 0
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(self.steps)


@dataclass
class ColorizeResult:
    """A colorized photo: ``image`` of the kind the caller passed (PIL image, NumPy array of
    the same dtype, or :class:`ImageData`), ``data`` the full-fidelity :class:`ImageData`,
    ``record`` what was done. Unpacks as ``image, record``."""

    image: Any
    data: ImageData
    record: ColorizeRecord

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image, self.record))


def lightness_of(image: ImageData) -> np.ndarray:
    """CIE L* ``[H, W]`` float32 in [0, 100] of ``image``'s pixels, as sRGB (grey samples are
    equal R, G and B)."""
    out = np.empty(image.pixels.shape[:2], np.float32)
    for top in range(0, image.height, BLOCK_ROWS):
        block = torch.from_numpy(image.pixels[top : top + BLOCK_ROWS])  # [h, W, C]
        rgb = block.permute(2, 0, 1).expand(3, -1, -1)  # [3, h, W]
        out[top : top + BLOCK_ROWS] = rgb_to_lightness(rgb)[0].numpy()
    return out


def reduce_chroma_into_gamut(lab: Tensor, steps: int = GAMUT_STEPS) -> tuple[Tensor, int]:
    """``lab [3, ...]`` -> ``(rgb [3, ...] in [0, 1], pixels changed)``: where ``lab`` is outside
    sRGB's gamut, ``a`` and ``b`` are scaled by the largest factor in [0, 1] (found by
    bisection to ``2 ** -steps``) that brings it inside; L* is left as it is. What rounding
    leaves outside [0, 1] is clipped."""
    rgb = lab_to_rgb(lab)
    outside = ((rgb < 0) | (rgb > 1)).any(0)
    count = int(outside.sum())
    if count:
        sub = lab[:, outside]  # [3, P]
        lo = torch.zeros(count, dtype=lab.dtype)
        hi = torch.ones(count, dtype=lab.dtype)
        for _ in range(steps):
            mid = (lo + hi) / 2
            trial = lab_to_rgb(torch.cat([sub[:1], sub[1:] * mid], 0)[..., None])[..., 0]
            fits = ((trial >= 0) & (trial <= 1)).all(0)
            lo, hi = torch.where(fits, mid, lo), torch.where(fits, hi, mid)
        fitted = torch.cat([sub[:1], sub[1:] * lo], 0)[..., None]  # [3, P, 1]
        rgb[:, outside] = lab_to_rgb(fitted)[..., 0]
    return rgb.clamp_(0, 1), count


class Colorizer:
    """Colorize photos with a colorizer model; see the module docstring.

    Args:
        model: a loaded colorizer: anything with ``out_size`` and
            ``predict_ab(lq: [N, 1, S, S]) -> [N, 2, S, S]`` (``lq`` is L* / 50 - 1).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (``torch.autocast``; the weights stay
            float32).
    """

    def __init__(
        self, model: nn.Module, *, device: str | torch.device = "auto", precision: str = "fp32"
    ):
        if not hasattr(model, "predict_ab") or not hasattr(model, "out_size"):
            kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise ConfigError(
                f"colorize needs a colorizer (model type glean_colorizer), got {kind}; "
                f"train one with glean-sr train glean_colorizer_church_256 (or a recipe of yours)"
            )
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.device = resolve_device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()

    @classmethod
    def from_pretrained(
        cls,
        model_source: str | os.PathLike | nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        progress: bool = True,
    ) -> Colorizer:
        """A colorizer for a model directory, preset, weight file or URL (anything
        :func:`glean_sr.load_model` takes), or for an already built model."""
        dev = resolve_device(device)
        if isinstance(model_source, nn.Module):
            model = model_source
        else:
            model = load_model(model_source, device=dev, progress=progress)
        return cls(model, device=dev, precision=precision)

    @property
    def size(self) -> int:
        """The side of the square the chroma is predicted at."""
        return self.model.out_size

    def describe(self) -> str:
        return f"{type(self.model).__name__} {self.size} px"

    @torch.inference_mode()
    def predict_ab(self, lightness: np.ndarray) -> Tensor:
        """``lightness [S, S]`` (L* in [0, 100]) -> ``ab [2, S, S]`` float32 on the CPU."""
        lq = torch.from_numpy(np.ascontiguousarray(lightness, np.float32))[None, None] / 50 - 1
        enabled = self.precision != "fp32"
        autocast = torch.autocast(
            device_type=self.device.type, dtype=PRECISIONS[self.precision], enabled=enabled
        )
        with autocast:
            ab = self.model.predict_ab(lq.to(self.device))
        return ab[0].float().cpu()

    def colorize_data(self, image: ImageData) -> tuple[ImageData, ColorizeRecord]:
        """Colorize one :class:`ImageData`: ``(result, record)``."""
        h, w, s = image.height, image.width, self.size
        record = ColorizeRecord(
            source=str(image.source) if image.source is not None else None,
            input_hw=(h, w),
            model_hw=(s, s),
            grayscale=image.is_grayscale,
            steps=list(image.notes),
        )
        record.steps.append(
            "L* of the grey input"
            if image.is_grayscale
            else "L* of the colour input (its colour replaced)"
        )
        lightness = lightness_of(image)  # [H, W]
        small = lightness
        if (h, w) != (s, s):
            small = np.clip(imresize(lightness, size=(s, s)), 0, 100)
            record.steps.append(f"L* resized {w}x{h} -> {s}x{s} (MATLAB bicubic) for the model")
        ab = self.predict_ab(small)  # [2, S, S]
        record.steps.append(f"ab predicted at {s}x{s}")

        # ab back to H x W with MATLAB's bicubic matrices, one block of rows at a time
        rows = torch.from_numpy(resize_matrix(s, h, h / s)).float()  # [H, S]
        cols = torch.from_numpy(resize_matrix(s, w, w / s)).float()  # [W, S]
        ab_rows = torch.einsum("cij,wj->ciw", ab, cols)  # [2, S, W]
        out = np.empty((h, w, 3), np.float32)
        for top in range(0, h, BLOCK_ROWS):
            block_ab = torch.einsum("hi,ciw->chw", rows[top : top + BLOCK_ROWS], ab_rows)
            block_l = torch.from_numpy(lightness[top : top + BLOCK_ROWS])[None]  # [1, h, W]
            rgb, changed = reduce_chroma_into_gamut(torch.cat([block_l, block_ab], 0))
            out[top : top + BLOCK_ROWS] = rgb.permute(1, 2, 0).numpy()
            record.out_of_gamut += changed
        if (h, w) != (s, s):
            record.steps.append(f"ab resized {s}x{s} -> {w}x{h} (bicubic)")
        record.steps.append(f"joined to the input's {w}x{h} L*")
        if record.out_of_gamut:
            record.steps.append(
                f"chroma reduced into the sRGB gamut at {record.out_of_gamut} pixel(s), L* kept"
            )
        icc = image.icc_profile
        if image.is_grayscale and icc is not None:
            icc = None
            record.steps.append("GRAY ICC profile dropped (the output is RGB)")
        result = ImageData(
            pixels=out,
            alpha=image.alpha,
            bit_depth=image.bit_depth,
            icc_profile=icc,
            source=image.source,
        )
        return result, record

    def __call__(self, image: Any) -> ColorizeResult:
        """Colorize one photo: a PIL image, a NumPy array (``[H, W]`` or ``[H, W, 1..4]``, uint8,
        uint16 or float in [0, 1]), an :class:`ImageData` or a file path. The result's
        ``image`` is of the same kind (a path gives :class:`ImageData`); a grey array comes
        back with 3 channels."""
        data, record = self.colorize_data(as_image_data(image))
        return ColorizeResult(image_like(_colour_like(image), data), data, record)


def _colour_like(original: Any) -> Any:
    """What :func:`image_like` should mimic: a 2-D grey array becomes ``[H, W, 1]`` so that the
    colour result keeps its channels."""
    if isinstance(original, np.ndarray) and original.ndim == 2:
        return original[..., None]
    return original


__all__ = [
    "BLOCK_ROWS",
    "ColorizeRecord",
    "ColorizeResult",
    "Colorizer",
    "lightness_of",
    "reduce_chroma_into_gamut",
]
