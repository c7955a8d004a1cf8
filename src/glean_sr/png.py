"""A PNG encoder that takes its rows a band at a time, so that a photo of any size is written
without ever being whole in memory (``glean-sr upscale --tile``), and 16-bit colour, which
Pillow cannot write.

Every PNG glean-sr writes goes through :class:`PngWriter` (:func:`glean_sr.io.write_image`),
so a result has the same bytes whether it was streamed or encoded at once. It writes what the
PNG specification (ISO/IEC 15948) calls a non-interlaced image of 8- or 16-bit samples: gray,
gray + alpha, RGB or RGBA, with an optional ``iCCP`` profile. Each row is filtered with the
filter (None, Sub, Up, Average, Paeth) whose output has the smallest sum of absolute values as
signed bytes: the heuristic of libpng and Pillow (PNG spec, 12.8). Encoding filters only look at
the unfiltered bytes of the row and the row above, so a band of rows is filtered at once with
NumPy; the filtered rows go through one zlib stream, cut into ``IDAT`` chunks as it fills.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, GA, RGB, RGBA)
_IDAT_BYTES = 1 << 20  # compressed bytes per IDAT chunk
_FILTER_BYTES = 1 << 16  # row bytes filtered at once (about 20 times that in temporaries)


def chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def filter_rows(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Filter ``rows: uint8 [n, stride]`` (the row before the first is ``above: uint8
    [stride]``, zeros for an image's first row) for ``bpp`` bytes per pixel; returns
    ``uint8 [n, 1 + stride]``: each row's filter type byte, then its filtered bytes."""
    n, stride = rows.shape
    # uint8 arithmetic wraps modulo 256, which is what the filters' differences are
    b = np.vstack([above[None], rows[:-1]])  # the byte above
    a = np.zeros_like(rows)  # the byte to the left (bpp bytes back)
    a[:, bpp:] = rows[:, :-bpp]
    c = np.zeros_like(rows)  # above and to the left
    c[:, bpp:] = b[:, :-bpp]

    def average() -> np.ndarray:  # floor((a + b) / 2) without leaving uint8
        return (a >> 1) + (b >> 1) + (a & b & 1)

    def paeth() -> np.ndarray:
        a16, b16, c16 = (v.astype(np.int16) for v in (a, b, c))
        p = a16 + b16 - c16
        pa, pb, pc = np.abs(p - a16), np.abs(p - b16), np.abs(p - c16)
        return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))

    out = np.empty((n, 1 + stride), np.uint8)
    best = np.full(n, np.iinfo(np.int64).max)
    predictors = (lambda: np.uint8(0), lambda: a, lambda: b, average, paeth)
    for kind, predict in enumerate(predictors):  # None, Sub, Up, Average, Paeth
        filtered = rows - predict()
        cost = np.abs(filtered.view(np.int8).astype(np.int16)).sum(axis=1, dtype=np.int64)
        better = cost < best  # ties keep the lower type, as libpng
        out[better, 0] = kind
        out[better, 1:] = filtered[better]
        best = np.minimum(best, cost)
    return out


class PngWriter:
    """Write a PNG to ``file`` band by band: :meth:`write` ``uint8`` or ``uint16`` samples
    ``[n, width, channels]`` until ``height`` rows are written, then :meth:`close`.

    Args:
        file: a binary file open for writing (nothing else is written to it meanwhile).
        width, height: the image's size in pixels.
        channels: 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
        bit_depth: 8 or 16; the samples' dtype must match (uint8 or uint16).
        icc_profile: an ICC profile to embed (``iCCP``), or ``None``.
        level: zlib compression level.
    """

    def __init__(
        self,
        file: BinaryIO,
        width: int,
        height: int,
        channels: int,
        bit_depth: int,
        *,
        icc_profile: bytes | None = None,
        level: int = 6,
    ):
        if channels not in _COLOR_TYPES:
            raise ValueError(f"channels must be 1, 2, 3 or 4, got {channels}")
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
        if not (0 < width < 2**31 and 0 < height < 2**31):
            raise ValueError(f"a PNG is 1 to 2**31 - 1 pixels a side, got {width}x{height}")
        self.file, self.width, self.height = file, width, height
        self.channels, self.bit_depth = channels, bit_depth
        self.dtype = np.dtype(np.uint8 if bit_depth == 8 else ">u2")
        self.bpp = channels * bit_depth // 8
        self.rows_written = 0
        self._above = np.zeros(width * self.bpp, np.uint8)
        # Z_FILTERED: the strategy libpng and Pillow use for filtered rows (about 5 % smaller)
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        header = struct.pack(">IIBBBBB", width, height, bit_depth, _COLOR_TYPES[channels], 0, 0, 0)
        file.write(SIGNATURE + chunk(b"IHDR", header))
        if icc_profile:
            file.write(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))

    def write(self, samples: np.ndarray) -> None:
        """Append the rows of ``samples: [n, width, channels]`` (uint8 for 8 bits, uint16 for
        16) to the image."""
        expected = np.uint8 if self.bit_depth == 8 else np.uint16
        if samples.dtype != expected or samples.shape[1:] != (self.width, self.channels):
            raise ValueError(
                f"expected {np.dtype(expected).name} [n, {self.width}, {self.channels}], got "
                f"{samples.dtype} {list(samples.shape)}"
            )
        n = samples.shape[0]
        if self.rows_written + n > self.height:
            raise ValueError(f"{self.rows_written + n} rows for an image of {self.height}")
        raw = np.ascontiguousarray(samples, self.dtype).reshape(n, -1).view(np.uint8)
        step = max(1, _FILTER_BYTES // raw.shape[1])  # the filters' temporaries stay small
        for start in range(0, n, step):
            block = raw[start : start + step]
            self._add(self._zlib.compress(filter_rows(block, self._above, self.bpp).tobytes()))
            self._above = block[-1].copy()
        self.rows_written += n

    def close(self) -> None:
        """Finish the image (all ``height`` rows must have been written)."""
        if self.rows_written != self.height:
            raise ValueError(f"{self.rows_written} of {self.height} rows were written")
        self._add(self._zlib.flush(), last=True)
        self.file.write(chunk(b"IEND", b""))

    def _add(self, data: bytes, last: bool = False) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= _IDAT_BYTES or (last and self._pending_bytes):
            self.file.write(chunk(b"IDAT", b"".join(self._pending)))
            self._pending, self._pending_bytes = [], 0


__all__ = ["SIGNATURE", "PngWriter", "chunk", "filter_rows"]
