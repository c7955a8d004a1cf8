"""An unpickler that executes nothing and imports nothing.

Pickle is a small program: its ``GLOBAL`` instruction names any importable callable and ``REDUCE``
calls it. Training checkpoints in the wild name more than ``torch.load(weights_only=True)``
accepts: NVIDIA's ``network-snapshot-*.pkl`` embed their network classes' source code
(``torch_utils.persistence._reconstruct_persistent_obj`` would ``exec`` it), rosinality's
``train.py`` saves an ``argparse.Namespace``, mmengine saves ``HistoryBuffer`` objects and numpy
arrays. This module reads all of them as data:

* every name a pickle refers to is looked up in :data:`ALLOWED`, an explicit table that maps it
  to an inert reconstruction written here (tensor rebuilds, containers, numpy scalars and arrays
  rebuilt from their bytes, and :class:`PickledObject` records for foreign classes). A name that
  is not in the table is refused with :class:`~glean_sr.errors.WeightsError`; nothing is
  imported, and only the table's own reconstructions ever run;
* the three containers are understood: the zip format of ``torch.save``, the legacy
  ``torch.save`` stream (also nested inside NVIDIA pickles as ``torch.storage._load_from_bytes``
  blobs), and plain pickles.

The result holds tensors, Python containers and scalars, numpy arrays, and
:class:`PickledObject` records (type name + the ``__dict__`` the object was pickled with).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import types
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import WeightsError
from .declared_sizes import check_declared_sizes

#: First object of a legacy ``torch.save`` stream, and its format version.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
#: Nested ``_load_from_bytes`` blobs inside nested blobs are not legitimate; stop early.
_MAX_NESTING = 2


class Refused(pickle.UnpicklingError):
    """The pickle names or calls something that is not on the allow-list."""


# -- records ---------------------------------------------------------------------------------------


class PickledObject:
    """An object of a class glean-sr does not import, kept as data.

    ``type_name`` is the class's qualified name (for NVIDIA persistent classes
    ``torch_utils.persistence:<ClassName>``), ``args`` what it was constructed with, ``state``
    what the pickle set on it (usually the object's ``__dict__``).
    """

    type_name = "object"
    args: tuple[Any, ...] = ()  # NEWOBJ creates instances without calling __init__
    state: Any = None

    def __init__(self, *args: Any):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:  # BUILD: store, never interpret
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Refused(f"it calls {self.type_name}")

    def __repr__(self) -> str:
        return f"PickledObject({self.type_name})"


def _record_class(type_name: str) -> type[PickledObject]:
    cls_name = type_name.replace(":", ".").rsplit(".", 1)[-1]
    return type(cls_name, (PickledObject,), {"type_name": type_name})


class AttrDict(dict):
    """``dnnlib.util.EasyDict``: a dict (whose keys NVIDIA code reads as attributes)."""

    def __setstate__(self, state: Any) -> None:
        pass  # EasyDict keeps everything in its items; an instance __dict__ carries nothing


class _Opaque(PickledObject):
    """A name obtained through ``getattr`` in the pickle: data, never callable."""

    def __init__(self, type_name: str):
        super().__init__()
        self.type_name = type_name


class _Shared:
    """Base of the objects :data:`ALLOWED` hands out: shared by every load, so a pickle's BUILD
    instruction must not change them (``__slots__``: no ``__dict__``; ``__setstate__``
    refuses)."""

    __slots__ = ("name",)

    def __setstate__(self, state: Any) -> None:
        raise Refused(f"it modifies {self.name}")

    def __call__(self, *args: Any) -> Any:
        raise Refused(f"it calls {self.name}")


class _Inert(_Shared):
    """One of the reconstruction functions below, as the table hands it out."""

    __slots__ = ("fn",)

    def __init__(self, name: str, fn: Any):
        self.name = name
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


class _StorageType(_Shared):
    __slots__ = ("dtype",)

    def __init__(self, name: str, dtype: torch.dtype):
        self.name = name
        self.dtype = dtype


class _Storage:
    """Bytes of one tensor storage: an untyped storage plus the dtype it was saved as."""

    def __init__(self, untyped: torch.UntypedStorage, dtype: torch.dtype, byte_offset: int = 0):
        self.untyped = untyped
        self.dtype = dtype
        self.byte_offset = byte_offset


class _NumpyDtype:
    """``numpy.dtype(code, align, copy)`` as data; BUILD adds the byte order."""

    _CODE = re.compile(r"(b1|[iufc]\d{1,2}|[US]\d{1,6}|\?)")

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        if not isinstance(code, str) or not self._CODE.fullmatch(code):
            raise Refused(f"numpy dtype {code!r} (only numbers and strings are read)")
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        order = "=" if self.byteorder == "|" else self.byteorder
        return np.dtype(self.code).newbyteorder(order)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Refused("it calls numpy.dtype")


class _NumpyArray:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)``; BUILD supplies shape, dtype, bytes."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise Refused("a numpy array with an unknown state layout")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _NumpyDtype):
            raise Refused("a numpy array without a plain dtype")
        if not isinstance(raw, (bytes, bytearray)):
            raise Refused("a numpy object array (its items would be Python objects)")
        flat = np.frombuffer(bytes(raw), dtype=dtype.to_numpy())
        self.array = flat.reshape(tuple(shape), order="F" if fortran else "C").copy()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Refused("it calls a numpy array")


class _Marker(_Shared):
    """A class name that only serves as an argument (``numpy.ndarray``, ``torch.Tensor``)."""

    __slots__ = ()

    def __init__(self, name: str):
        self.name = name


# -- inert reconstructions -------------------------------------------------------------------------


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, _Storage):
        raise Refused("a tensor whose storage is not raw bytes")
    itemsize = torch.empty((), dtype=storage.dtype).element_size()
    if storage.byte_offset % itemsize:
        raise Refused("a misaligned storage view")
    offset = int(storage_offset) + storage.byte_offset // itemsize
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or min((offset, *size, *stride)) < 0:
        raise Refused("a tensor view with a negative size, stride or offset")
    if all(n > 0 for n in size):  # the last element a view reaches must lie in the storage
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.untyped.nbytes() // itemsize:
            raise Refused("a tensor larger than its storage")
    return torch.empty((0,), dtype=storage.dtype).set_(storage.untyped, offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: int,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    if not isinstance(data, torch.Tensor):
        raise Refused("a parameter that is not a tensor")
    return data  # parameters are returned as plain tensors


def _rebuild_parameter_with_state(data: Any, requires_grad: Any, hooks: Any, state: Any) -> Any:
    return _rebuild_parameter(data)


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_parameter)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if not (isinstance(func, _Inert) and func.fn in _REBUILDERS) or not isinstance(args, tuple):
        raise Refused("a tensor subclass rebuilt by an unknown function")
    return func(*args)


def _torch_size(*args: Any) -> torch.Size:
    return torch.Size(*args)


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """Protocol-2 pickles spell ``bytes`` as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("_codecs.encode with anything but a latin1 string")
    return text.encode("latin1")


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, (bytes, bytearray)):
        raise Refused("a numpy scalar that is not a plain number")
    return np.frombuffer(bytes(data), dtype=dtype.to_numpy())[0].item()


def _numpy_reconstruct(cls: Any, shape: Any = (0,), dtype: Any = b"b") -> _NumpyArray:
    if cls is not _NDARRAY:
        raise Refused("numpy _reconstruct of something other than ndarray")
    return _NumpyArray()


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    """Protocol 5 pickles numpy arrays as ``numpy.core.numeric._frombuffer(bytes, dtype, ...)``."""
    if not isinstance(dtype, _NumpyDtype) or not isinstance(buffer, (bytes, bytearray)):
        raise Refused("a numpy array that is not plain numbers")
    flat = np.frombuffer(bytes(buffer), dtype=dtype.to_numpy())
    return flat.reshape(tuple(shape), order="F" if order == "F" else "C").copy()


def _getattr_as_data(obj: Any, name: Any, *default: Any) -> _Opaque:
    """``getattr(x, 'name')``, used by protocol-2 pickles for nested names: kept as a name only."""
    if not isinstance(name, str):
        raise Refused("getattr with a name that is not a string")
    owner = getattr(obj, "type_name", None) or getattr(obj, "name", None) or type(obj).__name__
    return _Opaque(f"{owner}.{name}")


def _reconstruct_persistent_obj(meta: Any) -> PickledObject:
    """NVIDIA ``torch_utils.persistence``: ``meta`` carries the class's source code (never run),
    its name and the instance ``__dict__``; we keep the name and the dict."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise Refused("a torch_utils.persistence object of an unknown kind")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise Refused("a torch_utils.persistence object without class name or state")
    obj = _record_class(f"torch_utils.persistence:{class_name}")()
    obj.state = state
    return obj


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Protocol 0/1 instances: allowed only for the record classes above."""
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)) or base is not object:
        raise Refused("copyreg._reconstructor of a class that is not plain data")
    return cls()


_NDARRAY = _Marker("numpy.ndarray")

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}
_TORCH_DTYPES = [
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
]

#: Every name a pickle may refer to, and what it becomes. Nothing outside this table is reachable.
#: Functions are handed out wrapped in :class:`_Inert` (see :func:`_freeze`).
ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.object": object,
    "builtins.getattr": _getattr_as_data,
    "copyreg._reconstructor": _copyreg_reconstructor,
    "_codecs.encode": _codecs_encode,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Tensor": _Marker("torch.Tensor"),
    "torch.nn.parameter.Parameter": _Marker("torch.nn.Parameter"),
    "torch.Size": _torch_size,
    "torch.storage._load_from_bytes": None,  # bound per load (it needs the nesting depth)
    **{f"torch.{name}": _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()},
    **{f"torch.{name}": getattr(torch, name) for name in _TORCH_DTYPES},
    "numpy.dtype": _NumpyDtype,
    "numpy.ndarray": _NDARRAY,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy.core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy.core.numeric._frombuffer": _numpy_frombuffer,
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "dnnlib.util.EasyDict": AttrDict,
    "argparse.Namespace": _record_class("argparse.Namespace"),
    "mmengine.logging.history_buffer.HistoryBuffer": _record_class(
        "mmengine.logging.history_buffer.HistoryBuffer"
    ),
}


def _freeze(table: dict[str, Any]) -> dict[str, Any]:
    """Wrap plain functions so that no entry can be modified by a pickle's BUILD instruction.
    Classes stay classes (pickle instantiates them); theirs, and builtin types', ``__setstate__``
    or immutability keep them unchanged."""
    return {
        name: _Inert(name, value) if isinstance(value, types.FunctionType) else value
        for name, value in table.items()
    }


ALLOWED = _freeze(ALLOWED)

#: Module names that old pickles or newer libraries spell differently.
_MODULE_ALIASES = {
    "__builtin__": "builtins",
    "copy_reg": "copyreg",
    "numpy._core.multiarray": "numpy.core.multiarray",
    "numpy._core.numeric": "numpy.core.numeric",
    "torch.tensor": "torch._tensor",
}


# -- unpickling ------------------------------------------------------------------------------------


class _InertUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, persistent_load: Any = None, depth: int = 0):
        super().__init__(file, encoding="latin1")
        self._persistent = persistent_load
        self._depth = depth

    def find_class(self, module: str, name: str) -> Any:
        module = _MODULE_ALIASES.get(module, module)
        full = f"{module}.{name}"
        if full == "torch.storage._load_from_bytes":
            return self._load_from_bytes
        if full not in ALLOWED:
            raise Refused(f"it refers to Python code ({full})")
        return ALLOWED[full]

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise Refused("an external object reference outside a torch.save file")
        return self._persistent(pid)

    def _load_from_bytes(self, data: Any) -> Any:
        """NVIDIA pickles store each storage as a nested legacy ``torch.save`` blob."""
        if not isinstance(data, (bytes, bytearray)):
            raise Refused("torch.storage._load_from_bytes without bytes")
        if self._depth >= _MAX_NESTING:
            raise Refused("nested torch.save blobs deeper than any real file has")
        stream = io.BytesIO(bytes(data))
        first = _InertUnpickler(stream, depth=self._depth + 1).load()
        if first != _LEGACY_MAGIC:
            raise Refused("torch.storage._load_from_bytes without a torch.save blob")
        return _load_legacy_rest(stream, len(data), self._depth + 1)


def _storage_id(pid: Any) -> tuple[_StorageType, str, int]:
    """Check a ``('storage', type, key, location, numel, ...)`` persistent id."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
        raise Refused("an external reference that is not a tensor storage")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
        raise Refused("a storage reference of an unknown kind")
    return storage_type, str(key), numel


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _load_legacy_rest(stream: BinaryIO, total_bytes: int, depth: int) -> Any:
    """Read a legacy ``torch.save`` stream after its magic number: version, system info, the
    object pickle (storages as persistent ids), the storage keys, then each storage's bytes."""
    version = _InertUnpickler(stream, depth=depth).load()
    if version != _LEGACY_PROTOCOL:
        raise Refused(f"legacy torch.save format version {version!r}")
    sys_info = _InertUnpickler(stream, depth=depth).load()
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise Refused("a big-endian torch.save file")
    roots: dict[str, _Storage] = {}
    budget = [total_bytes]  # the storages' bytes follow in the file: together at most its size

    def persistent_load(pid: Any) -> _Storage:
        storage_type, key, numel = _storage_id(pid)
        if key not in roots:
            nbytes = numel * _itemsize(storage_type.dtype)
            budget[0] -= nbytes
            if budget[0] < 0:
                raise Refused("tensor storages larger than the file")
            roots[key] = _Storage(torch.UntypedStorage(nbytes), storage_type.dtype)
        root = roots[key]
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        _, offset, _ = view  # (view key, offset in elements, size in elements)
        return _Storage(root.untyped, storage_type.dtype, int(offset) * _itemsize(root.dtype))

    result = _InertUnpickler(stream, persistent_load, depth).load()
    keys = _InertUnpickler(stream, depth=depth).load()
    if not isinstance(keys, list):
        raise Refused("a legacy torch.save file without its storage list")
    for key in keys:
        root = roots.get(str(key))
        if root is None:
            raise pickle.UnpicklingError(f"storage {key} is listed but never used")
        numel = int.from_bytes(_read_exact(stream, 8), "little")
        nbytes = numel * _itemsize(root.dtype)
        if nbytes != root.untyped.nbytes():
            raise pickle.UnpicklingError(f"storage {key} has {nbytes} bytes, expected more")
        data = bytearray(_read_exact(stream, nbytes))
        if nbytes:
            dst = torch.empty((0,), dtype=torch.uint8).set_(root.untyped)
            dst.copy_(torch.frombuffer(data, dtype=torch.uint8))
    return result


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("the file ends inside a tensor")
    return data


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise Refused("a zip file that is not a torch.save file (TorchScript is not read)")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder") != b"little":
            raise Refused("a big-endian torch.save file")
        if sum(info.file_size for info in zf.infolist()) > path.stat().st_size:
            raise Refused("compressed zip entries larger than the file (torch never compresses)")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            storage_type, key, numel = _storage_id(pid)
            if key not in storages:
                data = bytearray(zf.read(f"{prefix}data/{key}"))
                if len(data) < numel * _itemsize(storage_type.dtype):
                    raise pickle.UnpicklingError(f"storage {key} is shorter than its tensor")
                if data:
                    untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage()
                else:
                    untyped = torch.UntypedStorage(0)
                storages[key] = _Storage(untyped, storage_type.dtype)
            return storages[key]

        return _InertUnpickler(io.BytesIO(zf.read(pickles[0])), persistent_load).load()


def _load_stream(stream: BinaryIO, total_bytes: int) -> Any:
    first = _InertUnpickler(stream).load()
    if isinstance(first, int) and first == _LEGACY_MAGIC:
        return _load_legacy_rest(stream, total_bytes, 0)
    return first  # a plain pickle: the first object is the whole content


# -- resolving records into plain values -----------------------------------------------------------


def _resolve(obj: Any, memo: dict[int, Any]) -> Any:
    """Replace numpy records by arrays and dtypes, in place where containers allow it."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _NumpyArray):
        if obj.array is None:
            raise Refused("a numpy array without data")
        memo[key] = obj.array
        return obj.array
    if isinstance(obj, _NumpyDtype):
        memo[key] = obj.to_numpy()
        return memo[key]
    if isinstance(obj, _Shared):
        memo[key] = obj.name  # a class or function named as data: keep its name
        return obj.name
    if isinstance(obj, _Storage):
        raise Refused("a bare tensor storage outside a tensor")
    memo[key] = obj
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _resolve(obj[k], memo)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = _resolve(v, memo)
    elif isinstance(obj, (tuple, set, frozenset)) and not isinstance(obj, torch.Size):
        memo[key] = type(obj)(_resolve(v, memo) for v in obj)
    elif isinstance(obj, PickledObject):
        obj.args = tuple(_resolve(v, memo) for v in obj.args)
        obj.state = _resolve(obj.state, memo)
    return memo[key]


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    return "zip" if head == b"PK\x03\x04" else "stream"


def load(path: str | os.PathLike) -> Any:
    """Read a torch zip file, a legacy ``torch.save`` file or a plain pickle as inert data.

    Raises :class:`WeightsError` (one line) when the file refers to anything outside
    :data:`ALLOWED`, declares more than the budget (:mod:`glean_sr.weights.declared_sizes`), or
    is truncated or corrupt.
    """
    path = Path(path)
    check_declared_sizes(path)
    try:
        if _sniff(path) == "zip":
            obj = _load_zip(path)
        else:
            with open(path, "rb") as f:
                obj = _load_stream(f, path.stat().st_size)
        return _resolve(obj, {})
    except Refused as exc:
        raise WeightsError(
            f"{path}: refused to load: {exc}, and glean-sr never runs code from weight files; "
            f"convert it with the tool that made it to a plain state_dict or safetensors"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        KeyError,
        IndexError,
        ValueError,
        TypeError,
        AttributeError,
        RuntimeError,
        OverflowError,
        MemoryError,
        RecursionError,
    ) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path}: not a readable PyTorch or pickle file ({reason}); it may be truncated "
            f"or corrupt"
        ) from None


__all__ = ["ALLOWED", "AttrDict", "PickledObject", "load"]
