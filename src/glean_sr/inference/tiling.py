"""Tiled inference for fully convolutional models (Real-ESRGAN's RRDBNet): a photo of any size
in a bounded amount of device memory, with no seam.

The photo stays on the CPU as float32 pixels; the model sees one batch of windows of one row of
tiles at a time, each cut from the photo, and the results are blended into a band of output
rows on the CPU, which leaves as soon as no later tile touches it (:meth:`TiledRun.bands`;
``glean-sr upscale`` writes it into the PNG at once). So the device holds ``batch_size``
windows and their activations whatever the photo's size, and the CPU holds the photo and one
band: ``(tile + 2 * (tile_pad // 2)) * scale`` output rows (12 bytes per RGB pixel), never the
enlargement.

The layout, along each axis (input pixels; ``T`` = ``tile``, ``P`` = ``tile_pad``):

* the *cores* ``[0, T), [T, 2T), ...`` partition the axis (the last one may be shorter);
* each core is seen by the model inside a *window* of ``T + 2P`` pixels that extends ``P``
  beyond it on both sides. At the photo's edges the window is shifted inwards instead of
  clipped, so every window has the same size (one batch can hold several) and its edge is the
  photo's own edge, where the model pads exactly as it does on the whole photo;
* neighbouring tiles *cross-fade* over ``2 B`` pixels centred on the core boundary,
  ``B = min(P, T) // 2``: one tile's weight falls as ``cos^2`` while the other's rises as ``sin^2``
  (they sum to one), so there is no step anywhere. The cross-fade stays ``P - B`` pixels inside
  both windows, away from the windows' own borders, where a model's output is least like the
  output it gives on the whole photo.

Where the model's receptive field is at most ``P - B`` input pixels, every tile computes exactly
what the untiled model computes over the region it contributes to, and the blend of equal values
is that value: the tiled output equals the untiled one up to float rounding (tested to 1e-4 for
RRDBNet). Real-ESRGAN's receptive field is far larger (23 RRDBs: about 350 pixels) than the
usual ``P = 10``, so its tiles differ slightly near their boundaries; the cross-fade blends that
difference in gradually instead of leaving a step.

Models whose input must be a multiple of ``m`` (pixel-unshuffle: x2 needs 2, x1 needs 4) get
the photo mirrored out at the bottom and right to a multiple of ``m``, tiles and windows on
multiples of ``m`` (so each window unshuffles exactly as the whole photo would), and the
padding cut off the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..io import pixels_to_tensor, tensor_to_pixels


@dataclass(frozen=True)
class Span:
    """One tile along one axis, in input pixels.

    Attributes:
        start, stop: the core ``[start, stop)``; the cores partition the axis.
        window_start, window_stop: what the model sees, ``[window_start, window_stop)``.
        blend_before, blend_after: half-widths of the cross-fades centred on ``start`` and
            ``stop`` (0 at the photo's edges).
    """

    start: int
    stop: int
    window_start: int
    window_stop: int
    blend_before: int = 0
    blend_after: int = 0

    def output_weights(self, scale: int, limit: int) -> tuple[int, int, np.ndarray]:
        """``(first, stop, weights)``: the output pixels ``[first, stop)`` this tile contributes
        to (clipped to ``[0, limit)``) and its float32 weight at each, 1 outside the cross-fades.
        """
        first = max((self.start - self.blend_before) * scale, 0)
        stop = min((self.stop + self.blend_after) * scale, limit)
        centres = np.arange(first, stop, dtype=np.float64) + 0.5
        weights = np.ones(stop - first, np.float64)
        if self.blend_before:
            ramp = _ramp(
                centres, (self.start - self.blend_before) * scale, self.blend_before * scale
            )
            weights = np.where(ramp < 1, ramp, weights)
        if self.blend_after:
            ramp = _ramp(centres, (self.stop - self.blend_after) * scale, self.blend_after * scale)
            weights = np.where(ramp > 0, 1 - ramp, weights)
        return first, stop, weights.astype(np.float32)


def _ramp(x: np.ndarray, begin: float, half_width: float) -> np.ndarray:
    """``sin^2`` rising from 0 at ``begin`` to 1 at ``begin + 2 half_width``, clipped."""
    t = np.clip((x - begin) / (2 * half_width), 0, 1)
    return np.sin(np.pi * t / 2) ** 2


def spans(length: int, tile: int | None, pad: int, multiple: int = 1) -> list[Span]:
    """The tiles along an axis of ``length`` pixels (a multiple of ``multiple``): one span over
    the whole axis when ``tile`` is ``None`` or covers it, else cores of ``tile`` pixels with
    windows ``pad`` pixels wider on each side (see the module docstring).

    Raises:
        ValueError: ``length``, ``tile`` or ``pad`` is not a multiple of ``multiple``.
    """
    for name, value in (("length", length), ("tile", tile or 0), ("tile_pad", pad)):
        if value % multiple:
            raise ValueError(f"{name} must be a multiple of {multiple}, got {value}")
    if tile is None or length <= tile:
        return [Span(0, length, 0, length)]
    window = min(tile + 2 * pad, length)
    blend = min(pad, tile) // 2  # cross-fades of neighbouring boundaries never overlap
    starts = list(range(0, length, tile))
    out = []
    for i, start in enumerate(starts):
        stop = min(start + tile, length)
        window_start = min(max(start - pad, 0), length - window)
        out.append(
            Span(
                start,
                stop,
                window_start,
                window_start + window,
                blend if i > 0 else 0,
                blend if i < len(starts) - 1 else 0,
            )
        )
    return out


@dataclass(frozen=True)
class TiledOutput:
    """The result of :func:`run_tiled`: ``pixels`` float32 ``[scale H, scale W, C]`` in
    ``[0, 1]``, the number of ``tiles`` as ``(rows, columns)`` and the ``window`` size
    ``(height, width)`` the model saw."""

    pixels: np.ndarray
    grid: tuple[int, int]
    window: tuple[int, int]

    @property
    def tiles(self) -> int:
        return self.grid[0] * self.grid[1]


class TiledRun:
    """Enlarge ``pixels`` (float32 ``[H, W, C]`` in ``[0, 1]``, C = 1 or 3) ``scale`` times with
    ``forward`` (``[N, model_channels, h, w]`` in ``[-1, 1]`` -> ``[N, model_channels, scale h,
    scale w]``), ``batch_size`` windows per call; ``tile=None`` runs the whole photo at once.

    :meth:`bands` gives the output a band of rows at a time, so it is never whole in memory:
    one row of tiles is run and blended into a band as wide as the output and as tall as that
    row's tiles plus the next row's cross-fade, and the rows no later tile touches leave. The
    output has the input's channels (a grey photo comes back as the luma of the model's RGB
    output, :func:`glean_sr.io.tensor_to_pixels`).
    """

    def __init__(
        self,
        pixels: np.ndarray,
        forward: Callable[[Tensor], Tensor],
        *,
        scale: int,
        model_channels: int,
        tile: int | None,
        tile_pad: int,
        batch_size: int = 1,
        multiple: int = 1,
    ):
        if pixels.ndim != 3 or pixels.dtype != np.float32:
            raise ValueError(f"pixels must be float32 [H, W, C], got {pixels.dtype} {pixels.shape}")
        h, w, self.channels = pixels.shape
        hp, wp = (math.ceil(n / multiple) * multiple for n in (h, w))
        if (hp, wp) != (h, w):  # mirrored out at the bottom and right, cut off the output again
            pixels = np.pad(pixels, ((0, hp - h), (0, wp - w), (0, 0)), mode="symmetric")
        self.pixels, self.forward, self.scale = pixels, forward, scale
        self.model_channels, self.batch_size = model_channels, batch_size
        self.rows = spans(hp, tile, tile_pad, multiple)
        self.cols = spans(wp, tile, tile_pad, multiple)
        self.out_hw = (h * scale, w * scale)
        self.grid = (len(self.rows), len(self.cols))
        self.window = (
            self.rows[0].window_stop - self.rows[0].window_start,
            self.cols[0].window_stop - self.cols[0].window_start,
        )

    @property
    def tiles(self) -> int:
        return self.grid[0] * self.grid[1]

    def bands(self) -> Iterator[np.ndarray]:
        """The output, float32 ``[n, scale W, C]`` in ``[0, 1]``, top to bottom, ``scale H``
        rows in all. A band is a view of the run's one buffer: use it (or copy it) before
        asking for the next."""
        out_h, out_w = self.out_hw
        if self.tiles == 1:
            sr = self.forward(pixels_to_tensor(self.pixels, channels=self.model_channels))
            yield np.ascontiguousarray(tensor_to_pixels(sr, self.channels)[0][:out_h, :out_w])
            return
        col_weights = [c.output_weights(self.scale, out_w) for c in self.cols]
        row_weights = [r.output_weights(self.scale, out_h) for r in self.rows]
        # one buffer for every band: a row of tiles and the cross-fade that the next row adds to
        band = np.zeros((max(y1 - y0 for y0, y1, _ in row_weights), out_w, self.channels),
                        np.float32)  # fmt: skip
        top = 0  # output row of band[0]
        for i, (r, weights) in enumerate(zip(self.rows, row_weights, strict=True)):
            self._blend_row(r, band, top, weights, col_weights)
            if i + 1 < len(self.rows):
                nxt = self.rows[i + 1]
                done = (nxt.start - nxt.blend_before) * self.scale  # the next row starts here
            else:
                done = out_h
            finished = band[: done - top]
            yield np.clip(finished, 0, 1, out=finished)
            carried = weights[1] - done  # rows of the cross-fade, half summed
            band[:carried] = band[done - top : done - top + carried].copy()
            band[carried:] = 0
            top = done

    def _blend_row(
        self,
        r: Span,
        band: np.ndarray,
        top: int,
        row_weights: tuple[int, int, np.ndarray],
        col_weights: list[tuple[int, int, np.ndarray]],
    ) -> None:
        """Run the tiles of row ``r``, ``batch_size`` per call, and add each into ``band``
        (whose first row is output row ``top``) with its cross-fade weights."""
        y0, y1, wy = row_weights
        for first in range(0, len(self.cols), self.batch_size):
            chunk = list(range(first, min(first + self.batch_size, len(self.cols))))
            crops = [
                self.pixels[
                    r.window_start : r.window_stop,
                    self.cols[j].window_start : self.cols[j].window_stop,
                ]
                for j in chunk
            ]
            sr = self.forward(pixels_to_tensor(crops, channels=self.model_channels))
            pieces = tensor_to_pixels(sr, self.channels)  # [s h, s w, C] each
            del sr
            for j, piece in zip(chunk, pieces, strict=True):
                x0, x1, wx = col_weights[j]
                oy, ox = r.window_start * self.scale, self.cols[j].window_start * self.scale
                part = piece[y0 - oy : y1 - oy, x0 - ox : x1 - ox]  # [rows, cols, C]
                band[y0 - top : y1 - top, x0:x1] += part * (wy[:, None, None] * wx[None, :, None])


def run_tiled(
    pixels: np.ndarray,
    forward: Callable[[Tensor], Tensor],
    *,
    scale: int,
    model_channels: int,
    tile: int | None,
    tile_pad: int,
    batch_size: int = 1,
    multiple: int = 1,
) -> TiledOutput:
    """The whole output of a :class:`TiledRun` (same arguments) in memory."""
    run = TiledRun(
        pixels,
        forward,
        scale=scale,
        model_channels=model_channels,
        tile=tile,
        tile_pad=tile_pad,
        batch_size=batch_size,
        multiple=multiple,
    )
    out = np.empty((*run.out_hw, run.channels), np.float32)
    y = 0
    for band in run.bands():
        out[y : y + band.shape[0]] = band
        y += band.shape[0]
    return TiledOutput(out, run.grid, run.window)
