"""The inert unpickler: reads torch zip, legacy torch.save and plain pickles as data; refuses
everything off its allow-list before anything runs."""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import sys

import numpy as np
import pytest
import torch

import sg2_files as files
from glean_sr.errors import WeightsError
from glean_sr.weights import inert_pickle
from glean_sr.weights.inert_pickle import PickledObject


def _sample() -> dict:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "view": base[:, 1:3],  # a strided view of a shared storage
        "base": base,
        "param": torch.nn.Parameter(torch.ones(2)),
        "half": torch.full((2,), 0.5, dtype=torch.float16),
        "long": torch.tensor([1, 2], dtype=torch.int64),
        "scalar": torch.tensor(3.0),
        "empty": torch.zeros(0, 5),
        "od": collections.OrderedDict(a=1, b=[1, 2]),
        "np": np.arange(6, dtype=np.float32).reshape(2, 3),
        "npf": np.float64(0.25),
        "set": {1, 2},
        "size": torch.Size([2, 3]),
        "args": argparse.Namespace(lr=0.002, size=256),
    }


def _check_sample(out: dict) -> None:
    ref = _sample()
    for key in ("view", "base", "param", "half", "long", "scalar", "empty"):
        assert out[key].dtype == ref[key].dtype and torch.equal(out[key], ref[key]), key
    assert out["od"] == ref["od"] and out["set"] == {1, 2} and out["size"] == (2, 3)
    assert isinstance(out["np"], np.ndarray) and np.array_equal(out["np"], ref["np"])
    assert out["npf"] == 0.25
    assert isinstance(out["args"], PickledObject)
    assert out["args"].type_name == "argparse.Namespace"
    assert out["args"].state == {"lr": 0.002, "size": 256}


@pytest.mark.parametrize("container", ["zip", "legacy", "pickle-2", "pickle-3", "pickle-5"])
def test_reads_every_container_as_data(tmp_path, container):
    path = tmp_path / "f.bin"
    if container == "zip":
        torch.save(_sample(), path)
    elif container == "legacy":
        torch.save(_sample(), path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(_sample(), protocol=int(container[-1])))
    _check_sample(inert_pickle.load(path))


def test_history_buffers_and_getattr_are_data(tmp_path):
    """mmengine's message hub: ``HistoryBuffer`` objects with numpy arrays, and protocol-2
    ``getattr(Class, 'name')`` references, which stay names and are never looked up."""

    class HistoryBuffer(files.HistoryBuffer):
        @staticmethod
        def mean():  # pragma: no cover - never called
            raise AssertionError

    HistoryBuffer.__qualname__ = "HistoryBuffer"
    modules = {
        "mmengine": {},
        "mmengine.logging": {},
        "mmengine.logging.history_buffer": {"HistoryBuffer": HistoryBuffer},
    }
    with files.stand_in_modules(modules):
        HistoryBuffer.mean.__qualname__ = "HistoryBuffer.mean"
        HistoryBuffer.mean.__module__ = "mmengine.logging.history_buffer"
        data = {"buf": HistoryBuffer([0.5, 0.25]), "method": HistoryBuffer.mean}
        path = tmp_path / "hub.pth"
        torch.save(data, path)  # pickle protocol 2, like mmengine
    out = inert_pickle.load(path)
    buf = out["buf"]
    assert buf.type_name == "mmengine.logging.history_buffer.HistoryBuffer"
    assert np.array_equal(buf.state["_log_history"], [0.5, 0.25])
    assert buf.state["_count_history"].dtype == np.int64
    assert isinstance(out["method"], PickledObject)
    assert out["method"].type_name.endswith("HistoryBuffer.mean")
    with pytest.raises(pickle.UnpicklingError):
        out["method"]()


# -- refusals --------------------------------------------------------------------------------------


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _refused(path, match="refused"):
    with pytest.raises(WeightsError, match=match) as info:
        inert_pickle.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_call_of_os_system_is_refused_and_does_not_run(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"state_dict": [_System(marker)]}, protocol=protocol))
    msg = _refused(path)
    assert "system" in msg
    assert not marker.exists()


def test_inst_opcode_and_builtins_are_refused(tmp_path):
    marker = tmp_path / "ran"
    payloads = {
        "inst": f"(S'touch {marker}'\nios\nsystem\n.".encode(),
        "eval": f"c__builtin__\neval\n(S'open({str(marker)!r}, \"w\")'\ntR.".encode(),
        "import": b"cbuiltins\n__import__\n(S'os'\ntR.",
        "subclasses": b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR)R.",
        "codecs": b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",
    }
    for name, data in payloads.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        _refused(path)
    assert not marker.exists()


def test_code_inside_a_nested_torch_save_blob_is_refused(tmp_path):
    """NVIDIA pickles carry storages as nested legacy torch.save blobs; those are unpickled by
    the same inert rules."""
    marker = tmp_path / "ran"
    blob = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, _System(marker), [])
    )

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob,))

    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps({"w": Storage()}, protocol=3))
    _refused(path, "system")
    assert not marker.exists()


def test_code_in_a_legacy_torch_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save(
        {"w": torch.zeros(2), "x": _System(marker)}, path, _use_new_zipfile_serialization=False
    )
    _refused(path, "system")
    assert not marker.exists()


@pytest.mark.parametrize(
    "view",
    [(0, (4,), (-1,)), (-2, (2,), (1,)), (0, (3,), (2,)), (3, (2,), (1,)), (0, (-1,), (1,))],
)
def test_tensor_views_outside_their_storage_are_refused(tmp_path, view):
    """A crafted (offset, size, stride) must not make a tensor read memory beyond its bytes."""
    offset, size, stride = view

    class Crafted:
        def __reduce__(self):
            storage = torch.zeros(4).untyped_storage()
            typed = torch.storage.TypedStorage(
                wrap_storage=storage, dtype=torch.float32, _internal=True
            )
            return (torch._utils._rebuild_tensor_v2, (typed, offset, size, stride, False, {}))

    path = tmp_path / "view.pth"
    torch.save({"w": Crafted()}, path)
    _refused(path, "refused to load: a tensor")


def test_declared_storages_cannot_exceed_the_file(tmp_path):
    """Each legacy storage is allocated before its bytes are read: a file declaring many
    storages, each smaller than the file but together far larger, is refused before they are
    allocated (here 100 x 400 kB in a 400 kB file)."""
    blob = [pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {})]

    class Big:
        def __init__(self, key):
            self.key = key

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Big):  # 1e5 floats (400 kB) each, never written
                return ("storage", torch.FloatStorage, obj.key, "cpu", 100_000, None)
            return None

    main = io.BytesIO()
    Pickler(main, protocol=2).dump([Big(str(i)) for i in range(100)])
    path = tmp_path / "big.pth"
    padding = bytes(400_000)
    path.write_bytes(b"".join(blob) + main.getvalue() + pickle.dumps([], protocol=2) + padding)
    _refused(path, "larger than the file")


def test_numpy_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    _refused(path, "numpy dtype")


@pytest.mark.parametrize("cut", [0.3, 0.97])
def test_truncated_files_are_one_line_errors(tmp_path, cut):
    path = tmp_path / "t.pth"
    torch.save(_sample(), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(WeightsError, match="truncated or corrupt") as info:
        inert_pickle.load(path)
    assert "\n" not in str(info.value)


def test_nothing_is_imported(tmp_path):
    """Every allow-listed name maps to an object glean_sr already holds: loading a file that
    names modules which are not installed imports none of them."""
    path = tmp_path / "snap.pkl"
    g = files.nvidia_generator_tensors(8, 8, 1, seed=0)
    files.write_nvidia_snapshot(path, {"G_ema": files.nvidia_generator_object(g, 8, 8, 1, 2, "")})
    before = set(sys.modules)
    out = inert_pickle.load(path)
    assert set(sys.modules) == before
    assert out["G_ema"].type_name == "torch_utils.persistence:Generator"
    assert isinstance(out["G_ema"].state["_init_kwargs"]["mapping_kwargs"], dict)
    fc = out["G_ema"].state["_modules"]["mapping"].state["_modules"]["fc0"].state
    assert fc["weight_gain"] == pytest.approx(0.01 / np.sqrt(8)) and isinstance(
        fc["weight_gain"], float
    )
    assert torch.equal(fc["_parameters"]["weight"], g["mapping.fc0.weight"])
    assert all(not name.startswith(("torch_utils", "dnnlib")) for name in sys.modules)


def test_allow_list_holds_no_import_machinery():
    dangerous = {eval, exec, __import__, getattr, setattr, open, os.system, io.open}
    assert not [name for name, value in inert_pickle.ALLOWED.items() if value in dangerous]


def _attributes(value) -> dict:
    out = {a: getattr(value, a) for a in ("name", "dtype", "fn", "__doc__") if hasattr(value, a)}
    out["dict"] = dict(getattr(value, "__dict__", {}))
    return out


@pytest.mark.parametrize("name", sorted(inert_pickle.ALLOWED))
def test_no_allow_list_entry_can_be_modified_by_a_file(tmp_path, name):
    """BUILD on a table entry (``obj.__dict__.update`` / ``setattr``) would change it for every
    later load in the process, e.g. FloatStorage's dtype: refused, and nothing changes."""
    value = inert_pickle.ALLOWED[name]
    module, _, attr = name.rpartition(".")
    before = _attributes(value)
    path = tmp_path / "tamper.pkl"
    state = pickle.dumps(({"dtype": torch.float64, "name": "x"}, {"__doc__": "x"}), protocol=2)
    # GLOBAL entry; <state tuple>; BUILD; STOP
    path.write_bytes(
        b"\x80\x02c" + f"{module}\n{attr}\n".encode() + state[2:-1] + pickle.BUILD + pickle.STOP
    )
    with pytest.raises(WeightsError):
        inert_pickle.load(path)
    assert _attributes(value) == before
