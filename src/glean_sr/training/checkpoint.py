"""Training checkpoints: written atomically, read without executing code, complete enough that a
run resumed after a kill continues exactly as if it had not stopped.

A checkpoint is a dict of plain data and tensors (``torch.save``; loaded with
``weights_only=True``)::

    format, version, glean_sr_version
    recipe            the run's recipe (nested dict)
    step              optimiser steps done
    model             the restorer's full state_dict, bank included (checked against its file)
    discriminator     the discriminator's state_dict (absent without a GAN loss)
    optim_g, optim_d, sched_g, sched_d, scaler_g, scaler_d, ema
    best              {"psnr", "ssim", "step"} of the best validation so far
    sampler           position of the data stream ({"epoch", "offset", "samples"})
    rng               per process: Python, NumPy, torch (and CUDA) generator states
    fingerprints      per process: SHA-256 of the bank and of the trainable weights
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..atomic import remove_interrupted_writes
from ..errors import GleanError

FORMAT = "glean-sr-training-checkpoint"
VERSION = 1


class CheckpointError(GleanError):
    """A training checkpoint is missing, unreadable or belongs to another run."""


#: checkpoints a run keeps: ``last.pt`` and the ``keep - 1`` before it (``last.1.pt``, ...)
KEEP = 2


def history(path: str | os.PathLike, keep: int = KEEP) -> list[Path]:
    """``last.pt``, ``last.1.pt``, ... ``last.{keep-1}.pt``: newest first."""
    target = Path(path)
    return [target] + [
        target.with_name(f"{target.stem}.{i}{target.suffix}") for i in range(1, keep)
    ]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, *, keep: int = KEEP) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over the old checkpoint, so a kill at any moment leaves either the old or
    the new checkpoint intact, never a torn one. The ``keep - 1`` previous checkpoints move down
    one place (``last.pt`` -> ``last.1.pt`` ...) first, each by an atomic rename of a hard link,
    so ``path`` itself exists at every moment and a damaged newest file never loses the run."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        names = history(target, keep)
        for older, newer in zip(names[:0:-1], names[-2::-1], strict=True):
            if newer.exists():
                _link_over(newer, older)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def _link_over(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (a hard link renamed into place; a copy where
    the file system has no hard links); ``src`` stays."""
    tmp = src.with_name(f"{src.name}.{os.getpid()}.link.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    from ..errors import WeightsError
    from ..weights.declared_sizes import check_declared_sizes

    try:  # what the file declares, before torch inflates or allocates any of it
        check_declared_sizes(p)
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for torn or foreign files
        text = str(exc).strip()
        if "Unsupported global" in text:  # the file names Python code to run
            raise CheckpointError(
                f"{p}: holds Python objects besides tensors and plain data; glean-sr never "
                f"unpickles code, so it reads only checkpoints that glean-sr train and train-bank "
                f"write"
            ) from None
        # torch's own first line would advise loading with weights_only=False: never relay it
        detail = text.partition("WeightsUnpickler error:")[2].strip() or text
        first = detail.splitlines()[0][:200] if detail else type(exc).__name__
        raise CheckpointError(
            f"{p}: not a readable training checkpoint, damaged or another kind of file ({first})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a glean-sr training checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {state.get('version')} is not supported "
            f"(this glean-sr writes version {VERSION})"
        )
    return state


def load_newest_checkpoint(
    path: str | os.PathLike, *, keep: int = KEEP, set_aside: bool = False
) -> tuple[dict[str, Any], Path, list[str]]:
    """The newest of ``path``'s kept checkpoints that loads: ``(state, its path, notes)``, the
    notes naming each newer one skipped and why. With ``set_aside`` (the process that writes
    the run's checkpoints), a skipped file is renamed to ``NAME.damaged``: kept for a look, and
    out of the history the next checkpoint shifts. Raises the newest file's error when none
    loads."""
    notes: list[str] = []
    skipped: list[Path] = []
    first_error: CheckpointError | None = None
    for candidate in history(path, keep):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
        except CheckpointError as exc:
            first_error = first_error or exc
            notes.append(f"skipped {exc}")
            skipped.append(candidate)
            continue
        for bad in skipped if set_aside else []:
            aside = bad.with_name(bad.name + ".damaged")
            os.replace(bad, aside)
            notes.append(f"kept the skipped {bad.name} as {aside.name}")
        return state, candidate, notes
    raise first_error or CheckpointError(f"no checkpoint at {Path(path)}")


def has_checkpoint(path: str | os.PathLike, *, keep: int = KEEP) -> bool:
    """Whether a run left any of ``path``'s kept checkpoints."""
    return any(p.exists() for p in history(path, keep))


# -- random generator states ---------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random generator of this process, as loadable plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- fingerprints ---------------------------------------------------------------------------------


def fingerprint(named_tensors: Iterable[tuple[str, Tensor]]) -> str:
    """SHA-256 over names, shapes, dtypes and bytes (sorted by name): equal iff bitwise equal."""
    h = hashlib.sha256()
    for name, t in sorted(named_tensors, key=lambda item: item[0]):
        data = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(data.shape)}:{data.dtype};".encode())
        h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_run_or_recipe(
    source: str | os.PathLike, *, run: bool, read_recipe: Any = None
) -> dict[str, Any]:
    """The raw recipe dict ``source`` names. With ``run`` (resuming or exporting), a run folder
    holding ``last.pt`` gives the recipe saved in that checkpoint, its ``out_dir`` set to the
    folder; anything else is read by ``read_recipe`` (default: a restorer recipe file or a
    shipped recipe's name, :func:`~glean_sr.training.recipe.read_recipe_dict`)."""
    from .recipe import read_recipe_dict

    read_recipe = read_recipe or read_recipe_dict
    path = Path(source).expanduser()
    if run and path.is_dir() and has_checkpoint(path / "last.pt"):
        data = load_newest_checkpoint(path / "last.pt")[0]["recipe"]
        data["out_dir"] = str(path)
        return data
    return read_recipe(source)


__all__ = [
    "FORMAT",
    "KEEP",
    "VERSION",
    "CheckpointError",
    "capture_rng_state",
    "fingerprint",
    "has_checkpoint",
    "history",
    "load_checkpoint",
    "load_newest_checkpoint",
    "read_run_or_recipe",
    "remove_interrupted_writes",
    "restore_rng_state",
    "save_checkpoint",
]
