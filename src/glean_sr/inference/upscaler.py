"""``Upscaler``: any image in, the restored image out, with a record of what was done to it.

The input contract. A GLEAN model takes exactly ``in_size x in_size`` pixels and returns
``out_size x out_size`` (``scale = out_size / in_size``). Real images rarely fit, so every change
is asked for, never guessed, and recorded:

* ``fit`` (``None``, ``"crop"``, ``"pad"``) makes a non-square image square. ``"crop"`` keeps the
  centred square of side ``min(H, W)``; ``"pad"`` mirrors the image out to a square of side
  ``max(H, W)``, and that padding is cut off the output again (scaled by the output/input ratio),
  so the output has the input's aspect ratio. ``None`` refuses non-square images.
* ``resize`` (``"error"``, ``"bicubic"``, ``"area"``) brings the square to ``in_size``.
  ``"bicubic"`` is :func:`glean_sr.imresize`, MATLAB's ``imresize(..., 'bicubic')`` with
  antialiasing: GLEAN is trained "on the bicubic kernel" (CVPR 2021, Sec. 4), and the released
  models' training and test inputs were made with exactly this resize (mmediting's
  ``MATLABLikeResize``), so it is the one that matches them. 8-bit images are resized as uint8
  and rounded back to 8 bits, as MATLAB made the released low-resolution PNGs. ``"area"``
  averages (box filter), for inputs that were reduced that way. ``"error"`` refuses an image of
  the wrong size, with a message naming the options.
* Alpha is not restored by the model: it goes from the squared input straight to the output size
  with the same bicubic resize, then the same padding is cut off, and it is reattached.
* Grayscale goes through the RGB model as three equal channels and comes back as BT.601 luma.

Models that take any size (Real-ESRGAN's RRDBNet, :mod:`glean_sr.models.realesrgan`) need none
of this: the image goes in as it is (``fit`` and ``resize`` do not apply and are refused) and
comes out ``scale`` times larger (its alpha enlarged with Lanczos). ``tile`` runs them in tiles
of ``tile x tile`` input pixels with ``tile_pad`` pixels of context, ``batch_size`` tiles per
forward pass, blended without seams (:mod:`glean_sr.inference.tiling`): the memory the model
needs no longer grows with the image. Without ``tile`` the whole image goes through the model
at once.

``outscale`` (any model) resizes the result to ``outscale`` times the size of the input image
(of the centred square with ``fit="crop"``), rounded, with Pillow's Lanczos filter
(:func:`glean_sr.data.imresize.lanczos_resize`); an exact enlargement needs no resize and gets
none.

Precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` by ``torch.autocast``. The weights stay
float32; convolutions run in half precision while the weight demodulation and other reductions
stay in float32, and one loaded model serves every precision. ``fp16`` works on the CPU but uses
PyTorch's slow reference convolutions there (glean_cat_8x: 18 s against 1.2 s in fp32 and
0.6 s in bf16 on a 2-core CPU, torch 2.13); ``Upscaler.notes`` says so. Both stay within 45 dB
PSNR of fp32 (tests/test_fast_paths.py; measured 55 dB for bf16 and 73 dB for fp16).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.imresize import LanczosRows, area_resize, imresize, lanczos_resize, lanczos_rows
from ..devices import resolve_device
from ..errors import ConfigError, ImageError
from ..io import (
    ImageData,
    as_image_data,
    image_like,
    pixels_to_tensor,
    quantize,
    tensor_to_pixels,
)
from ..weights.pretrained import load_model
from . import FIT_MODES, PRECISION_NAMES, RESIZE_METHODS
from .cpu_fast import accelerate
from .tiling import TiledRun

PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.bfloat16, torch.float16), strict=True))


def _wxh(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


@dataclass
class UpscaleRecord:
    """What was done to one image, in order. Sizes are ``(height, width)``.

    Attributes:
        source: the input file, if any.
        input_hw: size of the input (after its EXIF orientation was applied).
        crop: ``(top, left, side, side)`` of the centred square kept by ``fit="crop"``.
        pad: ``(top, bottom, left, right)`` pixels mirrored on by ``fit="pad"`` (removed again
            from the output).
        resize: ``"bicubic"`` or ``"area"`` if the square was resized to the model's input.
        model_input_hw, model_output_hw: what went into and came out of the network.
        output_hw: size of the result (the model output less the padding, resized by
            ``outscale``).
        grayscale: the image went through the model as three equal channels.
        alpha: the alpha channel was resized and reattached.
        tiles: ``(rows, columns)`` of tiles a model that takes any size ran in, or ``None``.
        outscale: the final scale the result was resized to, if it was.
        steps: one human-readable line per step, starting with what reading the file did.
    """

    source: str | None
    input_hw: tuple[int, int]
    crop: tuple[int, int, int, int] | None = None
    pad: tuple[int, int, int, int] | None = None
    resize: str | None = None
    model_input_hw: tuple[int, int] = (0, 0)
    model_output_hw: tuple[int, int] = (0, 0)
    output_hw: tuple[int, int] = (0, 0)
    grayscale: bool = False
    alpha: bool = False
    tiles: tuple[int, int] | None = None
    outscale: float | None = None
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The steps as one line, ``"; "``-separated."""
        return "; ".join(self.steps)


@dataclass
class StreamedImage:
    """A result given a band of rows at a time (:meth:`Upscaler.stream`).

    ``bands`` yields float32 ``[n, width, C]`` in ``[0, 1]`` top to bottom, ``height`` rows in
    all, ``C`` the input's channels with its alpha (if any) last; ``bit_depth`` and
    ``icc_profile`` are the input's, for writing; ``record`` says what was done."""

    height: int
    width: int
    bit_depth: int
    icc_profile: bytes | None
    record: UpscaleRecord
    bands: Iterator[np.ndarray]


def _result_bands(
    run: TiledRun, size: tuple[int, int], alpha: np.ndarray | None
) -> Iterator[np.ndarray]:
    """The bands of ``run`` resized to ``size`` (Lanczos) if it differs, with the rows of
    ``alpha`` (``[H, W]`` of the input) resized to ``size`` appended."""
    resizer = LanczosRows(run.out_hw, size) if size != run.out_hw else None
    y = 0
    for band in run.bands():
        for rows in resizer.feed(band) if resizer is not None else [band]:
            if resizer is not None:
                rows = np.clip(rows, 0, 1)
            if alpha is not None:
                a = lanczos_rows(alpha[..., None], 0, alpha.shape, (y, y + rows.shape[0]), size)
                rows = np.concatenate([rows, np.clip(a, 0, 1)], axis=2)
            y += rows.shape[0]
            yield rows


@dataclass
class PreparedImage:
    """An image made to fit the model (the result of :meth:`Upscaler.prepare`).

    ``lq``: float32 ``[in_size, in_size, C]`` in ``[0, 1]`` (``[H, W, C]``, the image itself, for
    a model that takes any size); ``square_alpha``: the alpha of the squared image before
    resizing, ``[side, side]`` (``[H, W]``), or ``None``.
    """

    image: ImageData
    lq: np.ndarray
    record: UpscaleRecord
    square_alpha: np.ndarray | None = None


@dataclass
class UpscaleResult:
    """A restored image. ``image`` is of the kind the caller passed (PIL image, NumPy array of
    the same dtype and layout, or :class:`ImageData`); ``data`` is the full-fidelity
    :class:`ImageData`; ``record`` says what was done. Unpacks as ``image, record``."""

    image: Any
    data: ImageData
    record: UpscaleRecord

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image, self.record))


def _check_precision(precision: str, device: torch.device) -> str | None:
    """Raise for an unusable precision; return a note for a usable but slow one."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    note = None
    if precision == "fp16" and device.type == "cpu":
        note = (
            "fp16 on the CPU runs PyTorch's slow reference convolutions (glean_cat_8x: 18 s "
            "against 1.2 s in fp32 and 0.6 s in bf16 on a 2-core CPU); bf16 is the fast choice"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"this GPU does not support bf16 ({torch.cuda.get_device_name(device)})")
    try:
        with torch.autocast(device_type=device.type, dtype=PRECISIONS[precision]):
            pass
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"precision {precision} is not supported on {device}: {exc}") from None
    return note


class Upscaler:
    """Restore images with a GLEAN model: fit and resize to the model's input, run it (in
    batches), undo the padding, reattach alpha; or with a model that takes any size, in tiles.

    Args:
        model: a loaded restorer: anything with ``in_size``, ``out_size``, ``img_channels`` and
            ``forward(lq: [N, C, in_size, in_size]) -> [N, C, out_size, out_size]``, or a model
            that takes any size, with ``scale``, ``img_channels``, optionally ``size_multiple``
            and ``forward(lq: [N, C, H, W]) -> [N, C, scale H, scale W]`` (RRDBNet).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see the module docstring).
        resize: ``"error"``, ``"bicubic"`` or ``"area"``: how an image of another size than
            ``in_size`` is brought to it (fixed-size models only).
        fit: ``None``, ``"crop"`` or ``"pad"``: how a non-square image is made square
            (fixed-size models only).
        batch_size: images per forward pass; tiles per forward pass with ``tile``.
        tile: run a model that takes any size in tiles of ``tile x tile`` input pixels
            (``None``: the whole image at once).
        tile_pad: pixels of context around each tile, see :mod:`glean_sr.inference.tiling`.
            Both are rounded up to multiples of the model's ``size_multiple`` (2 for x2, 4 for
            x1), where its pixel-unshuffle needs them.
        outscale: resize the result to this multiple of the input's size (Lanczos).
        compile: run the plain model through ``torch.compile`` (inductor): the first batch of
            each shape compiles (minutes for a full-size model on a CPU). Meant for GPUs; on
            CPUs the fast path below is faster and leaner (benchmarks/README.md).
        fast: on a CPU device, run GLEAN and LightGLEAN through
            :class:`glean_sr.inference.cpu_fast.CPUFastPath` (the same outputs to float
            rounding, faster and in a fraction of the peak memory); ``False`` runs the plain
            definition. Other devices and models always run the plain definition.

    Nothing process-wide is changed: no allocator setting, no environment variable.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        resize: str = "error",
        fit: str | None = None,
        batch_size: int = 1,
        compile: bool = False,
        fast: bool = True,
        tile: int | None = None,
        tile_pad: int = 10,
        outscale: float | None = None,
    ):
        if hasattr(model, "predict_ab"):  # L* in, colour out: not an upscaler's contract
            raise ConfigError(
                "this model is a colorizer; glean-sr colorize (glean_sr.Colorizer) runs it"
            )
        fixed = hasattr(model, "in_size") and hasattr(model, "out_size")
        for attr in ("img_channels",) + (("in_size", "out_size") if fixed else ("scale",)):
            if not hasattr(model, attr):
                raise ConfigError(
                    f"the model must be a glean-sr restorer (with .{attr}), "
                    f"got {type(model).__name__}"
                )
        #: the model takes images of any size (fully convolutional) instead of in_size
        self.any_size = not fixed
        self._check_size_options(model, resize, fit, tile, tile_pad, outscale)
        if resize not in RESIZE_METHODS:
            raise ConfigError(f"resize must be one of {', '.join(RESIZE_METHODS)}, got {resize!r}")
        if fit is not None and fit not in FIT_MODES:
            raise ConfigError(f"fit must be None, 'crop' or 'pad', got {fit!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.device = resolve_device(device)
        #: remarks about the chosen settings (e.g. a slow precision), for the caller to show
        self.notes: list[str] = []
        note = _check_precision(precision, self.device)
        if note:
            self.notes.append(note)
        self.precision = precision
        self.resize = resize
        self.fit = fit
        self.batch_size = batch_size
        # on the model's input grid (pixel-unshuffle: x2 needs multiples of 2, x1 of 4)
        multiple = getattr(model, "size_multiple", 1)
        self.tile = None if tile is None else -(-tile // multiple) * multiple
        self.tile_pad = -(-tile_pad // multiple) * multiple
        self.outscale = None if outscale is None else float(outscale)
        self.model = model.to(self.device).eval()
        self.compiled = compile
        self._run: nn.Module = self.model
        if compile:
            self._run = torch.compile(self.model)
        elif fast:
            self._run = accelerate(self.model, self.device)

    def _check_size_options(
        self,
        model: nn.Module,
        resize: str,
        fit: str | None,
        tile: int | None,
        tile_pad: int,
        outscale: float | None,
    ) -> None:
        """Refuse the options that do not apply to this kind of model, and bad values."""
        name = type(model).__name__
        if self.any_size and (resize != "error" or fit is not None):
            raise ConfigError(
                f"{name} takes images of any size: --resize and --fit (resize=, fit=) apply only "
                f"to models of a fixed input size; --outscale sets the output size"
            )
        if not self.any_size and tile is not None:
            raise ConfigError(
                f"--tile (tile=) applies to models that take any size (RRDBNet); {name} takes "
                f"exactly {model.in_size}x{model.in_size} pixels"
            )
        if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 16):
            raise ConfigError(f"tile must be an integer >= 16, got {tile!r}")
        if not isinstance(tile_pad, int) or isinstance(tile_pad, bool) or tile_pad < 0:
            raise ConfigError(f"tile_pad must be an integer >= 0, got {tile_pad!r}")
        if outscale is not None:
            number = isinstance(outscale, (int, float)) and not isinstance(outscale, bool)
            if not (number and 0 < outscale <= 64):
                raise ConfigError(f"outscale must be a number in (0, 64], got {outscale!r}")

    @classmethod
    def from_pretrained(
        cls,
        model_source: str | os.PathLike | nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        resize: str = "error",
        fit: str | None = None,
        batch_size: int = 1,
        compile: bool = False,
        fast: bool = True,
        tile: int | None = None,
        tile_pad: int = 10,
        outscale: float | None = None,
        progress: bool = True,
    ) -> Upscaler:
        """An upscaler for a preset name, model directory, weight file or URL (anything
        :func:`glean_sr.load_model` takes), or for an already built model."""
        dev = resolve_device(device)
        if isinstance(model_source, nn.Module):
            model = model_source
        else:
            model = load_model(model_source, device=dev, progress=progress)
        return cls(
            model,
            device=dev,
            precision=precision,
            resize=resize,
            fit=fit,
            batch_size=batch_size,
            compile=compile,
            fast=fast,
            tile=tile,
            tile_pad=tile_pad,
            outscale=outscale,
        )

    @property
    def in_size(self) -> int | None:
        """The model's input size; ``None`` for a model that takes any size."""
        return getattr(self.model, "in_size", None) if not self.any_size else None

    @property
    def out_size(self) -> int | None:
        return self.model.out_size if not self.any_size else None

    @property
    def scale(self) -> int:
        """How many times the model enlarges (before any ``outscale``)."""
        if self.any_size:
            return self.model.scale
        return self.model.out_size // self.model.in_size

    def describe(self) -> str:
        """The model and how it is run, in words: ``"GLEAN 32 -> 256 (x8)"``,
        ``"RRDBNet x4, any size, tiles of 256 + 10 px"``."""
        name = type(self.model).__name__
        if not self.any_size:
            text = f"{name} {self.in_size} -> {self.out_size} (x{self.scale})"
        else:
            text = f"{name} x{self.scale}, any size"
            if self.tile is not None:
                text += f", tiles of {self.tile} + {self.tile_pad} px"
        if self.outscale is not None and self.outscale != self.scale:
            text += f", output x{self.outscale:g} (Lanczos)"
        return text

    def __repr__(self) -> str:
        return (
            f"Upscaler({self.describe()}, device={self.device}, precision={self.precision}, "
            f"resize={self.resize!r}, fit={self.fit!r}, batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------------------------------
    # the stages

    def prepare(self, image: ImageData) -> PreparedImage:
        """Make ``image`` fit the model: square it (``fit``), resize it (``resize``).

        Raises:
            ImageError: the image does not fit and ``fit`` / ``resize`` do not allow changing
                it; the message names the options by their command-line spelling
                (``--fit crop`` is ``fit="crop"`` here).
        """
        h, w = image.height, image.width
        s = self.in_size
        record = UpscaleRecord(
            source=str(image.source) if image.source is not None else None,
            input_hw=(h, w),
            grayscale=image.is_grayscale and self.model.img_channels == 3,
            alpha=image.alpha is not None,
            steps=list(image.notes),
        )
        if self.any_size:  # the image as it is
            if record.grayscale:
                record.steps.append("grayscale fed as 3 equal channels")
            record.model_input_hw = (h, w)
            lq = np.ascontiguousarray(image.pixels, np.float32)
            return PreparedImage(image, lq, record, image.alpha)
        side = min(h, w) if self.fit == "crop" else max(h, w)
        problems = []
        if h != w and self.fit is None:
            problems.append(
                "--fit crop (keep the centred square) or --fit pad (mirror out to a square that is "
                "cut off the output again)"
            )
        if side != s and self.resize == "error":
            problems.append(
                "--resize bicubic (MATLAB-compatible, how the released models' inputs were made) "
                "or --resize area (averaging)"
            )
        if problems:
            raise ImageError(
                f"{image.label}: {w}x{h}, but the model takes exactly {s}x{s}; pass "
                + ", and ".join(problems)
            )

        pixels, alpha = image.pixels, image.alpha
        if h != w and self.fit == "crop":
            top, left = (h - side) // 2, (w - side) // 2
            pixels = pixels[top : top + side, left : left + side]
            alpha = alpha[top : top + side, left : left + side] if alpha is not None else None
            record.crop = (top, left, side, side)
            record.steps.append(f"centre-cropped {w}x{h} -> {side}x{side} at x={left}, y={top}")
        elif h != w:  # pad
            top, left = (side - h) // 2, (side - w) // 2
            pad = (top, side - h - top, left, side - w - left)
            widths = ((pad[0], pad[1]), (pad[2], pad[3]))
            pixels = np.pad(pixels, (*widths, (0, 0)), mode="symmetric")
            alpha = np.pad(alpha, widths, mode="symmetric") if alpha is not None else None
            record.pad = pad
            record.steps.append(
                f"padded {w}x{h} -> {side}x{side} by mirroring (top {pad[0]}, bottom {pad[1]}, "
                f"left {pad[2]}, right {pad[3]})"
            )
        if side != s:
            resize = imresize if self.resize == "bicubic" else area_resize
            if image.bit_depth == 8:  # on uint8, rounded back: as MATLAB made the released inputs
                lq = resize(quantize(pixels, 8), size=(s, s)).astype(np.float32) / 255
            else:  # float32 in, computed in float64 inside
                lq = np.clip(resize(pixels, size=(s, s)), 0, 1)
            pixels = lq
            record.resize = self.resize
            how = "MATLAB-compatible bicubic" if self.resize == "bicubic" else "area average"
            record.steps.append(f"resized {side}x{side} -> {s}x{s} ({how})")
        if record.grayscale:
            record.steps.append("grayscale fed as 3 equal channels")
        record.model_input_hw = (s, s)
        return PreparedImage(image, np.ascontiguousarray(pixels, np.float32), record, alpha)

    @torch.inference_mode()
    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Run the model: ``lq: [N, C, in_size, in_size]`` in ``[-1, 1]`` ->
        ``[N, C, out_size, out_size]`` float32 (unclamped), at the chosen precision."""
        lq = lq.to(self.device)
        enabled = self.precision != "fp32"
        dtype = PRECISIONS[self.precision]
        # no cast cache: autocast would keep a half-precision copy of every trainable weight
        # for the whole call (+630 MiB peak for glean_in128out1024 in bf16), and in inference
        # each weight is cast once per image anyway
        autocast = torch.autocast(
            device_type=self.device.type, dtype=dtype, enabled=enabled, cache_enabled=False
        )
        with autocast:
            sr = self._run(lq)
        return sr.float()

    def restore(self, prepared: Sequence[PreparedImage]) -> list[tuple[ImageData, UpscaleRecord]]:
        """Run prepared images through the model, ``batch_size`` at a time, and finish each:
        remove the padding, reattach alpha, return to grayscale.

        A model that takes any size runs each image alone, in ``batch_size`` tiles per forward
        pass with ``tile``."""
        if self.any_size:
            return [self._run_any_size(p) for p in prepared]
        results = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            lq = pixels_to_tensor([p.lq for p in chunk], channels=self.model.img_channels)
            sr = self.forward(lq)
            outputs = tensor_to_pixels(sr, channels=[p.image.channels for p in chunk])
            results.extend(self._finish(p, out) for p, out in zip(chunk, outputs, strict=True))
        return results

    def stream(self, prep: PreparedImage) -> StreamedImage:
        """The result of a model that takes any size as bands of rows, for writing a photo
        whose enlargement is never whole in memory (:func:`glean_sr.io.write_image_rows`):
        tiles run a row at a time (:class:`~glean_sr.inference.tiling.TiledRun`), ``outscale``
        resizes band by band, the alpha's rows are resized as they are needed. The record is
        complete before the first band is computed."""
        if not self.any_size:
            raise ValueError("stream() is for models that take any size (RRDBNet)")
        run = TiledRun(
            prep.lq,
            self.forward,
            scale=self.scale,
            model_channels=self.model.img_channels,
            tile=self.tile,
            tile_pad=self.tile_pad,
            batch_size=self.batch_size,
            multiple=getattr(self.model, "size_multiple", 1),
        )
        record = dataclasses.replace(prep.record, steps=list(prep.record.steps))  # prep reusable
        record.model_output_hw = run.out_hw
        how = f"x{self.scale}"
        if run.tiles > 1:
            record.tiles = run.grid
            how += (
                f", {run.tiles} tiles ({run.grid[0]} x {run.grid[1]}) of {self.tile} px in "
                f"{_wxh(run.window)} windows"
            )
        record.steps.append(f"restored {_wxh(record.input_hw)} -> {_wxh(run.out_hw)} ({how})")
        size = run.out_hw
        if self.outscale is not None:
            size = tuple(max(1, round(n * self.outscale)) for n in record.input_hw)
            if size != run.out_hw:
                record.steps.append(
                    f"resized {_wxh(run.out_hw)} -> {_wxh(size)} (Lanczos, outscale "
                    f"{self.outscale:g})"
                )
            record.outscale = self.outscale
        alpha = prep.square_alpha
        if alpha is not None:  # Lanczos: MATLAB bicubic's dense matrices take GBs
            record.steps.append(f"alpha resized {_wxh(record.input_hw)} -> {_wxh(size)} (Lanczos)")
            record.steps.append("alpha reattached")
        if record.grayscale:
            record.steps.append("output returned to grayscale (luma)")
        record.output_hw = size
        src = prep.image
        return StreamedImage(
            height=size[0],
            width=size[1],
            bit_depth=src.bit_depth,
            icc_profile=src.icc_profile,
            record=record,
            bands=_result_bands(run, size, alpha),
        )

    def _run_any_size(self, prep: PreparedImage) -> tuple[ImageData, UpscaleRecord]:
        """One image through a model that takes any size, whole or in tiles: the bands of
        :meth:`stream` put together."""
        streamed = self.stream(prep)
        channels = prep.image.channels + (prep.square_alpha is not None)
        out = np.empty((streamed.height, streamed.width, channels), np.float32)
        y = 0
        for band in streamed.bands:
            out[y : y + band.shape[0]] = band
            y += band.shape[0]
        src = prep.image
        alpha = out[..., -1] if prep.square_alpha is not None else None
        image = ImageData(
            pixels=np.ascontiguousarray(out[..., : src.channels]),
            alpha=None if alpha is None else np.ascontiguousarray(alpha),
            bit_depth=src.bit_depth,
            icc_profile=src.icc_profile,
            source=src.source,
        )
        return image, streamed.record

    def _finish(self, prep: PreparedImage, sr: np.ndarray) -> tuple[ImageData, UpscaleRecord]:
        record = dataclasses.replace(prep.record, steps=list(prep.record.steps))  # prep reusable
        o = sr.shape[0]
        record.model_output_hw = (sr.shape[0], sr.shape[1])
        record.steps.append(
            f"restored {self.in_size}x{self.in_size} -> {_wxh(record.model_output_hw)} "
            f"(x{self.scale})"
        )
        alpha = None
        if prep.square_alpha is not None:
            side = prep.square_alpha.shape[0]
            alpha = np.clip(imresize(prep.square_alpha, size=(o, o)), 0, 1)
            record.steps.append(f"alpha resized {side}x{side} -> {o}x{o} (bicubic)")
        if record.pad is not None:
            side = max(record.input_hw)
            top, bottom, left, right = (round(p * o / side) for p in record.pad)
            sr = sr[top : o - bottom, left : o - right]
            alpha = alpha[top : o - bottom, left : o - right] if alpha is not None else None
            record.steps.append(f"padding removed: {o}x{o} -> {sr.shape[1]}x{sr.shape[0]}")
        return self._output(prep, record, sr, alpha)

    def _output(
        self, prep: PreparedImage, record: UpscaleRecord, sr: np.ndarray, alpha: np.ndarray | None
    ) -> tuple[ImageData, UpscaleRecord]:
        """The result image: resized to ``outscale`` if asked, alpha reattached."""
        if self.outscale is not None:
            region = (record.crop[2], record.crop[3]) if record.crop else record.input_hw
            size = tuple(max(1, round(n * self.outscale)) for n in region)
            if size != sr.shape[:2]:
                before = _wxh(sr.shape[:2])
                sr = np.clip(lanczos_resize(sr, size), 0, 1)
                if alpha is not None:
                    alpha = np.clip(lanczos_resize(alpha, size), 0, 1)
                record.steps.append(
                    f"resized {before} -> {_wxh(size)} (Lanczos, outscale {self.outscale:g})"
                )
            record.outscale = self.outscale
        if alpha is not None:
            record.steps.append("alpha reattached")
        if record.grayscale:
            record.steps.append("output returned to grayscale (luma)")
        record.output_hw = (sr.shape[0], sr.shape[1])
        src = prep.image
        out = ImageData(
            pixels=np.ascontiguousarray(sr),
            alpha=None if alpha is None else np.ascontiguousarray(alpha),
            bit_depth=src.bit_depth,
            icc_profile=src.icc_profile,
            source=src.source,
        )
        return out, record

    # ------------------------------------------------------------------------------------------
    # the one-call API

    def __call__(self, image: Any) -> UpscaleResult:
        """Restore one image: a PIL image, a NumPy array (``[H, W]`` or ``[H, W, 1..4]``, uint8,
        uint16 or float in ``[0, 1]``), an :class:`ImageData` or a file path. The result's
        ``image`` is of the same kind (a path gives :class:`ImageData`)."""
        return self.upscale([image])[0]

    def upscale(self, images: Sequence[Any]) -> list[UpscaleResult]:
        """Restore several images (any of the kinds ``__call__`` takes), ``batch_size`` per
        forward pass. Raises :class:`ImageError` for the first image that does not fit."""
        datas = [as_image_data(img) for img in images]
        prepared = [self.prepare(d) for d in datas]
        restored = self.restore(prepared)
        return [
            UpscaleResult(image_like(original, data), data, record)
            for original, (data, record) in zip(images, restored, strict=True)
        ]
