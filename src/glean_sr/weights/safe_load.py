"""Reading weight files without ever executing code from them.

* safetensors files are read with the safetensors library (pure data by design).
* PyTorch files (zip or legacy format) are read with ``torch.load(weights_only=True)``: the
  unpickler only rebuilds tensors and plain containers and refuses any other global.
* Files whose pickle names other globals (NVIDIA snapshots, rosinality and mmagic 1.x training
  checkpoints) go to the inert unpickler in :mod:`glean_sr.weights.inert_pickle` when it is
  available; it maps known names to data and never imports anything.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError

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

    Raises :class:`WeightsError` with one line when the file is truncated, corrupt, or would need
    code to be executed to load it.
    """
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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(
                f"{path}: not a readable safetensors file ({_short_reason(exc)}); it may be "
                f"truncated or corrupt"
            ) from None
    if fmt in ("torch-zip", "pickle"):
        return read_torch_file(path)
    raise WeightsError(
        f"{path}: not a weight file (expected a PyTorch .pth/.pt/.pkl or a .safetensors file)"
    )
