"""Training checkpoint files: the kept history, the fallback past a damaged newest file, the
removal of interrupted writes, and the refusal of files that would need code to read."""

from __future__ import annotations

import pickle

import pytest
import torch

from glean_sr.training import checkpoint as ckpt


def test_history_keeps_the_newest_checkpoints(tmp_path):
    path = tmp_path / "last.pt"
    for step in range(4):
        ckpt.save_checkpoint({"step": step, "w": torch.full((3,), float(step))}, path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.1.pt", "last.2.pt", "last.pt"]
    steps = [ckpt.load_checkpoint(p)["step"] for p in ckpt.history(path, keep=3)]
    assert steps == [3, 2, 1]
    ckpt.save_checkpoint({"step": 4}, path)  # the default keeps two: the third is left alone
    assert [ckpt.load_checkpoint(p)["step"] for p in ckpt.history(path)] == [4, 3]


def test_newest_loadable_checkpoint_is_used_and_the_skips_are_named(tmp_path):
    path = tmp_path / "last.pt"
    for step in (1, 2):
        ckpt.save_checkpoint({"step": step}, path)
    path.write_bytes(path.read_bytes()[:100])  # torn
    state, used, notes = ckpt.load_newest_checkpoint(path)
    assert state["step"] == 1 and used.name == "last.1.pt"
    assert len(notes) == 1 and "last.pt" in notes[0] and "\n" not in notes[0]
    (tmp_path / "last.1.pt").write_bytes(b"junk")
    with pytest.raises(ckpt.CheckpointError, match="last.pt"):  # the newest file's error
        ckpt.load_newest_checkpoint(path)
    assert ckpt.has_checkpoint(path) and not ckpt.has_checkpoint(tmp_path / "other.pt")


def test_interrupted_writes_of_the_target_are_removed(tmp_path):
    target = tmp_path / "last.pt"
    stale = [tmp_path / "last.pt.abc123.tmp", tmp_path / ".last.pt.x.tmp"]
    other = tmp_path / "model.safetensors.abc.tmp"
    for p in [*stale, other]:
        p.write_bytes(b"partial")
    assert ckpt.remove_interrupted_writes(target) == sorted(stale)
    assert other.exists() and not any(p.exists() for p in stale)
    assert ckpt.remove_interrupted_writes(tmp_path / "missing" / "last.pt") == []


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_checkpoint_that_needs_code_is_refused_without_advice_to_run_it(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "x": _Payload()}, path)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(path)
    msg = str(info.value)
    assert "never unpickles code" in msg and "weights_only=False" not in msg
    assert "\n" not in msg
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ckpt.CheckpointError, match="never unpickles code|not a readable"):
        ckpt.load_checkpoint(raw)
