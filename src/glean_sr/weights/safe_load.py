"""Reading weight files without ever executing code from them.

* safetensors files (pure data by design) are read by :func:`read_safetensors`: each tensor's
  bytes go straight from the file into a freshly allocated, aligned tensor, so loading needs no
  second copy of the weights and no memory map that stays resident.
* PyTorch files (zip or legacy format) are read with ``torch.load(weights_only=True)``: the
  unpickler only rebuilds tensors and plain containers and refuses any other global.
* Before anything is decompressed or allocated, what a file declares (safetensors header and
  tensor extents, zip entry sizes, legacy storage sizes; see
  :mod:`glean_sr.weights.declared_sizes`) must fit in the file and in the budget of
  :func:`glean_sr.limits.max_weights_bytes` (``GLEAN_SR_MAX_WEIGHTS_BYTES``).
* Files whose pickle names other globals (NVIDIA snapshots, rosinality and mmagic 1.x training
  checkpoints) go to the inert unpickler in :mod:`glean_sr.weights.inert_pickle` when it is
  available; it maps known names to data and never imports anything.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from ..limits import format_bytes, loads_json, max_weights_bytes, over_weights_budget
from .declared_sizes import check_declared_sizes

_ZIP_MAGIC = b"PK\x03\x04"


def sniff_format(path: Path) -> str:
    """``'safetensors'``, ``'torch-zip'``, ``'pickle'`` (legacy torch.save or a plain pickle)
    or ``'unknown'``, from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if len(head) >= 9 and head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        return "pickle"
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if match:
        return f"it refers to Python code ({match.group(1)})"
    match = re.search(r"Unsupported operand \d+|Unsupported class [\w.]+", text)
    if match:
        return match.group(0)
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:200]


def read_torch_file(path: Path) -> Any:
    """Load a PyTorch ``.pth``/``.pt``/``.pkl`` file as plain data (tensors, dicts, lists, numbers).

    Raises :class:`WeightsError` with one line when the file is truncated, corrupt, declares
    more than the budget, or would need code to be executed to load it.
    """
    check_declared_sizes(path)
    try:
        with warnings.catch_warnings():
            # plain pickles (NVIDIA snapshots) use protocols 3-5; the inert reader handles them
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe_reason = _short_reason(exc)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        raise WeightsError(
            f"{path}: not a readable PyTorch file ({_short_reason(exc)}); it may be truncated "
            f"or corrupt - download it again"
        ) from None
    try:
        from . import inert_pickle
    except ImportError:
        inert_pickle = None
    if inert_pickle is not None:
        return inert_pickle.load(path)
    raise WeightsError(
        f"{path}: refused to load: {unsafe_reason}, and glean-sr never runs code from weight "
        f"files; convert it with the tool that made it to a plain state_dict or safetensors"
    )


def read_weights_file(path: Path) -> Any:
    """Read a safetensors or PyTorch file; returns a dict of tensors or the unpickled object."""
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: the file is empty")
    fmt = sniff_format(path)
    if fmt == "safetensors":
        return read_safetensors(path)
    if fmt in ("torch-zip", "pickle") and path.suffix.lower() == ".safetensors":
        # torch.load would hand it to the safetensors reader by its name
        raise WeightsError(
            f"{path}: named .safetensors but holds a PyTorch file; rename it to .pth to load it "
            f"as one (glean-sr convert then writes a real safetensors file)"
        )
    if fmt in ("torch-zip", "pickle"):
        return read_torch_file(path)
    raise WeightsError(
        f"{path}: not a weight file (expected a PyTorch .pth/.pt/.pkl or a .safetensors file)"
    )


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


#: The safetensors format's own limit on its JSON header.
MAX_SAFETENSORS_HEADER = 100_000_000
#: More dimensions than any weight has; a header listing thousands is refused.
_MAX_NDIM = 16


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (format: 8-byte little-endian header size, a JSON
    header ``{name: {dtype, shape, data_offsets}}``, then the raw little-endian data).

    Every entry is checked before anything is read or allocated: a header of at most 100 MB and
    nesting, known dtypes, offsets inside the data section, sizes equal to the shapes', no two
    entries sharing bytes, and all of them together within the budget of
    :func:`glean_sr.limits.max_weights_bytes`. A damaged or hostile file is one clear error.
    """

    def bad(reason: str) -> WeightsError:
        return WeightsError(
            f"{path}: not a readable safetensors file ({reason}); it may be truncated or corrupt"
        )

    size = path.stat().st_size
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > size - 8:
            raise bad(f"its header declares {header_len:,} bytes, longer than the file")
        if header_len > MAX_SAFETENSORS_HEADER:
            raise bad(
                f"its header declares {header_len:,} bytes, more than the format's limit of "
                f"{MAX_SAFETENSORS_HEADER:,}"
            )
        try:
            header = loads_json(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad(f"its header is not valid JSON: {exc}") from None
        if not isinstance(header, dict):
            raise bad("its header is not a JSON object")
        header.pop("__metadata__", None)
        data_start, data_size = 8 + header_len, size - 8 - header_len
        entries = []  # (begin, end, name, dtype, shape)
        for name, entry in header.items():
            try:
                dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
                shape = [int(d) for d in entry["shape"]]
                begin, end = (int(o) for o in entry["data_offsets"])
            except (KeyError, TypeError, ValueError, OverflowError):
                raise bad(f"entry {name!r} is malformed or has an unsupported dtype") from None
            if len(shape) > _MAX_NDIM or min(shape, default=0) < 0:
                raise bad(f"entry {name!r} has the shape {shape[: _MAX_NDIM + 1]}")
            numel = 1
            for d in shape:
                numel *= d
            nbytes = numel * torch.empty((), dtype=dtype).element_size()
            if not 0 <= begin <= end <= data_size:
                raise bad(
                    f"entry {name!r} declares bytes {begin:,} to {end:,} ({format_bytes(nbytes)} "
                    f"for shape {shape}), outside the {data_size:,} data bytes of the file"
                )
            if end - begin != nbytes:
                raise bad(f"entry {name!r} has {end - begin} bytes for shape {shape}")
            entries.append((begin, end, name, dtype, shape))
        declared = sum(end - begin for begin, end, *_ in entries)
        if declared > max_weights_bytes():
            raise WeightsError(
                f"{path}: refused: its tensors declare {over_weights_budget(declared)}"
            )
        entries.sort(key=lambda e: (e[0], e[1]))
        reached, last = 0, ""
        for begin, end, name, *_ in entries:
            if begin < end:  # an empty tensor shares no bytes
                if begin < reached:
                    raise bad(f"entries {last!r} and {name!r} share bytes")
                reached, last = end, name
        out: dict[str, torch.Tensor] = {}
        for begin, _, name, dtype, shape in entries:
            tensor = torch.empty(shape, dtype=dtype)
            nbytes = tensor.numel() * tensor.element_size()
            if nbytes:
                f.seek(data_start + begin)
                view = memoryview(tensor.view(-1).view(torch.uint8).numpy())
                if f.readinto(view) != nbytes:
                    raise bad(f"entry {name!r} is cut short")
            out[name] = tensor
    if sys.byteorder != "little":
        out = {k: v.view(torch.uint8).view(-1).flip(0).view(v.dtype).flip(0).reshape(v.shape)
               for k, v in out.items()}  # fmt: skip
    return out
