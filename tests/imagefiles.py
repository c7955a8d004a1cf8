"""Test helpers that make and check image files without glean-sr's own code.

``png_encode`` writes PNGs of any bit depth with every PNG filter type (so a reader must undo all
five), ``png_decode`` is a literal reading of the PNG specification (slow, for small images), and
``bad_files`` makes the broken files a user may have.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def png_encode(samples: np.ndarray, *, icc: bytes | None = None) -> bytes:
    """PNG bytes of ``samples: uint8 or uint16 [H, W, C]``; row ``y`` uses filter ``y % 5``."""
    h, w, c = samples.shape
    depth = 16 if samples.dtype == np.uint16 else 8
    raw = samples.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = raw.astype(np.int64)  # [H, row bytes]
    bpp = c * depth // 8
    lines = []
    for y in range(h):
        x = raw[y]
        up = raw[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        kind = y % 5
        predictor = [0 * x, left, up, (left + up) // 2, _paeth(left, up, upleft)][kind]
        lines.append(bytes([kind]) + ((x - predictor) % 256).astype(np.uint8).tobytes())
    parts = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, COLOR_TYPES[c], 0, 0, 0)),
    ]
    if icc is not None:
        parts.append(_chunk(b"iCCP", b"profile\x00\x00" + zlib.compress(icc)))
    parts += [_chunk(b"IDAT", zlib.compress(b"".join(lines))), _chunk(b"IEND", b"")]
    return b"".join(parts)


def png_decode(data: bytes) -> tuple[np.ndarray, dict]:
    """``(samples [H, W, C] uint8/uint16, {"depth", "color_type", "icc"})`` of a
    non-interlaced PNG, following the specification step by step."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, info = 8, b"", {"icc": None}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, f"bad CRC in {kind}"
        if kind == b"IHDR":
            w, h, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", payload)
            assert interlace == 0
            info.update(depth=depth, color_type=color_type)
        elif kind == b"IDAT":
            idat += payload
        elif kind == b"iCCP":
            name_end = payload.index(b"\x00")
            info["icc"] = zlib.decompress(payload[name_end + 2 :])
        pos += 12 + length
    c = {v: k for k, v in COLOR_TYPES.items()}[info["color_type"]]
    bpp = c * info["depth"] // 8
    stride = w * bpp
    raw = zlib.decompress(idat)
    out = bytearray()
    prev = bytearray(stride)
    for y in range(h):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) % 256
            elif kind == 2:
                line[i] = (line[i] + b) % 256
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) % 256
            elif kind == 4:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
                line[i] = (line[i] + pred) % 256
        out += line
        prev = line
    dtype = ">u2" if info["depth"] == 16 else np.uint8
    samples = np.frombuffer(bytes(out), dtype=dtype).reshape(h, w, c)
    return samples.astype(np.uint16 if info["depth"] == 16 else np.uint8), info


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` 1-bit pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def bad_files(folder: Path, good_png: bytes) -> dict[str, str]:
    """Write the broken files a user may have; returns ``{file name: what its error says}``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "letter.jpg").write_text("Dear user, this is not a JPEG.\n")
    (folder / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    corrupt = bytearray(good_png)
    start = good_png.index(b"IDAT") + 8
    corrupt[start : start + 40] = bytes(range(200, 240))  # garbage inside the zlib stream
    (folder / "corrupt.png").write_bytes(bytes(corrupt))
    (folder / "bomb.png").write_bytes(bomb_png(10_000, 10_000))  # 100 M pixels > 89 M limit
    (folder / "huge_bomb.png").write_bytes(bomb_png(60_000, 60_000))  # > 2x: Pillow refuses
    return {
        "empty.png": "empty file",
        "letter.jpg": "not an image file",
        "truncated.png": "truncated",
        "corrupt.png": "corrupt",
        "bomb.png": "decompression bomb",
        "huge_bomb.png": "decompression bomb",
    }
