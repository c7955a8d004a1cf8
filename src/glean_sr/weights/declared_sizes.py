"""The sizes a PyTorch file declares, checked before anything is decompressed or allocated.

``torch.load`` trusts two kinds of declaration. A zip file's central directory gives each entry's
uncompressed size, and a deflated entry of a few megabytes can inflate to gigabytes (torch.save
itself stores entries uncompressed). A legacy ``torch.save`` file names each tensor storage's
element count in its object pickle, and torch allocates the storage before reading its bytes.
:func:`check_declared_sizes` reads only these declarations (the central directory, or the small
object pickle with every name it refers to replaced by an inert placeholder) and refuses a file
that declares more than :func:`glean_sr.limits.max_weights_bytes`, or that holds an entry
compressed more than :data:`MAX_COMPRESSION_RATIO` to 1.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..limits import format_bytes, max_weights_bytes, over_weights_budget

#: A zip entry inflating more than this (and to more than a megabyte) is refused. Tensors
#: compress little (float weights about 1.1 : 1); a ratio like this one takes data built to
#: inflate, such as long runs of zeros.
MAX_COMPRESSION_RATIO = 100
_RATIO_MIN_BYTES = 1 << 20

#: First object of a legacy ``torch.save`` stream.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Bytes per element of the storage types a legacy file names; an unknown type counts as the
#: largest, so a declaration is never underestimated.
_ITEMSIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "UntypedStorage": 1,
}
_LARGEST_ITEMSIZE = 16


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def check_declared_sizes(path: Path) -> None:
    """Refuse ``path`` (a torch zip, or a legacy ``torch.save`` file; plain pickles carry their
    data inline and pass) when what it declares exceeds the budget, before any of it is read.

    Raises:
        WeightsError: one line naming the file, what it declares and the budget.
    """
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        check_zip(path)
    else:
        check_legacy_storages(path)


def check_zip(path: Path) -> None:
    """The entries' declared uncompressed sizes, from the central directory alone: their sum
    within the budget and each entry's compression ratio at most :data:`MAX_COMPRESSION_RATIO`."""
    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WeightsError(
            f"{path}: not a readable PyTorch file ({_reason(exc)}); it may be truncated or "
            f"corrupt - download it again"
        ) from None
    declared = sum(e.file_size for e in entries)
    if declared > max_weights_bytes():
        raise WeightsError(
            f"{path}: refused: its zip entries declare {over_weights_budget(declared)}"
        )
    for e in entries:
        if e.file_size > _RATIO_MIN_BYTES and e.file_size > MAX_COMPRESSION_RATIO * e.compress_size:
            raise WeightsError(
                f"{path}: refused: zip entry {e.filename!r} inflates {e.compress_size:,} bytes to "
                f"{format_bytes(e.file_size)} (more than {MAX_COMPRESSION_RATIO}:1, a zip bomb?); "
                f"torch.save stores tensors uncompressed: save the weights again with it"
            )


class _Anything:
    """Every object a pickle names while its declared sizes are read: takes any arguments,
    state and items, keeps nothing and calls nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
        return _Anything()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _StorageType(_Anything):
    def __init__(self, itemsize: int):
        self.itemsize = itemsize


class _SizeScan(pickle.Unpickler):
    """Unpickles with a placeholder for every global and records the storages that persistent
    ids declare: ``('storage', type, key, location, numel, view)``, key -> bytes."""

    def __init__(self, file: Any):
        super().__init__(file, encoding="latin1")
        self.storages: dict[str, int] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(_ITEMSIZE.get(name, _LARGEST_ITEMSIZE))
        return _Anything

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            storage_type, key, numel = pid[1], str(pid[2]), pid[4]
            if not isinstance(numel, int) or numel < 0:
                raise pickle.UnpicklingError(f"a storage of {numel!r} elements")
            itemsize = getattr(storage_type, "itemsize", _LARGEST_ITEMSIZE)
            self.storages[key] = max(self.storages.get(key, 0), numel * itemsize)
        return _Anything()


def check_legacy_storages(path: Path) -> None:
    """The storages a legacy ``torch.save`` file declares in its object pickle: together within
    the budget and within the file, whose bytes they are. Other files pass unread."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = io.BytesIO(f.read(64))  # the magic number's pickle is 15 bytes
        try:
            magic = _SizeScan(head).load()
        except Exception:
            return  # not a legacy torch.save file: a plain pickle, its data inline
        if not isinstance(magic, int) or magic != _LEGACY_MAGIC:
            return
        f.seek(head.tell())
        try:
            _SizeScan(f).load()  # format version
            _SizeScan(f).load()  # system info
            scan = _SizeScan(f)
            scan.load()
        except Exception as exc:  # whatever a damaged pickle makes the unpickler raise
            raise WeightsError(
                f"{path}: not a readable PyTorch file ({_reason(exc)}); it may be truncated or "
                f"corrupt - download it again"
            ) from None
    declared = sum(scan.storages.values())
    if declared > max_weights_bytes():
        raise WeightsError(
            f"{path}: refused: its tensor storages declare {over_weights_budget(declared)}"
        )
    if declared > size:
        raise WeightsError(
            f"{path}: its tensor storages declare {format_bytes(declared)}, larger than the "
            f"file ({format_bytes(size)}); it may be truncated or corrupt - download it again"
        )


__all__ = ["MAX_COMPRESSION_RATIO", "check_declared_sizes", "check_legacy_storages", "check_zip"]
