"""Many files over many processes: ``torchrun --nproc-per-node N -m glean_sr upscale|faces|eval``.

A :class:`Shard` is this process's part of a job that ``torchrun`` started (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``; multi-node with torchrun's usual
rendezvous flags), or the whole job when there is no torchrun. Its rules:

* **One device per process**: ``--device auto`` (and a bare ``cuda``) becomes
  ``cuda:LOCAL_RANK`` where there is CUDA; otherwise every process runs on the CPU (or MPS).
* **Rank 0 decides, the others follow**: what depends on the state of the disk (which inputs
  there are, which outputs already exist) is found once, on rank 0, and sent to every process
  (:meth:`Shard.from_main`) before any process writes anything, so every process works from the
  same plan even while the others are already writing.
* **Contiguous parts of the sorted list**: :meth:`Shard.part` gives rank ``r`` of ``W`` the
  ``r``-th of ``W`` equal runs of the list (sizes differ by at most one), so the parts
  concatenated in rank order are the list again.
* **Atomic outputs make a rerun cheap**: outputs are written under a temporary name and renamed
  when complete (:func:`glean_sr.io.write_image`), so an output that exists is complete. When a
  process dies, torchrun stops the others; the rerun's rank 0 counts what exists as done and
  shares out only what is missing (:func:`split_jobs`), and clears the temporaries the killed
  writes left (:func:`remove_interrupted_outputs`).
* **Counts are gathered**: every process reports its own files; rank 0 gathers the counts and
  prints the one summary, which counts every input exactly once.

The processes exchange only a few small Python objects (the plan, the counts, evaluation
statistics), so they talk over gloo, which needs no GPU, whatever device they compute on. A
process that finishes its part early waits for the others up to :data:`TIMEOUT`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..errors import ConfigError
from ..training.distributed import DistInfo, all_gather_objects, broadcast_object
from .batch import Job, Reporter

T = TypeVar("T")

#: how long a process that has finished its part waits at the end for the slowest one
TIMEOUT = timedelta(hours=24)


class _MainFailed:
    """Sent instead of a result when rank 0 failed to make it (rank 0 reports the error)."""


@dataclass(frozen=True)
class Shard:
    """This process's part of a batch job, and its device.

    ``Shard(DistInfo(), device)`` is a whole job in one process: every method then does the work
    itself (nothing is sent anywhere), so one code path serves both.
    """

    info: DistInfo
    device: torch.device

    @classmethod
    def join(cls, device: str | torch.device = "auto") -> Shard:
        """This process's shard: joins the torchrun job when there is one (``WORLD_SIZE > 1``),
        with ``device`` resolved for its ``LOCAL_RANK``.

        Raises:
            ConfigError: an unknown or absent device, or ``WORLD_SIZE`` without torchrun's
                other variables.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(DistInfo(), resolve_device(device))
        try:
            rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        except KeyError as exc:
            raise ConfigError(
                f"WORLD_SIZE is set but {exc.args[0]} is not: start multi-process runs with "
                f"torchrun (torchrun --nproc-per-node N -m glean_sr upscale ...)"
            ) from None
        dev = resolve_device(device, local_rank=local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="gloo", timeout=TIMEOUT)
        return cls(DistInfo(rank=rank, local_rank=local_rank, world_size=world_size), dev)

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    def close(self) -> None:
        """Leave the torchrun job (nothing to do without one)."""
        if self.info.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` run on rank 0 only, its result on every process.

        When ``make`` raises on rank 0, rank 0 raises it (and reports it, once); the other
        processes end with exit status 1 and no message (``SystemExit(1)``).
        """
        if not self.info.enabled:
            return make()
        if self.is_main:
            try:
                value = make()
            except BaseException:
                broadcast_object(_MainFailed(), self.info)
                raise
            return broadcast_object(value, self.info)
        value = broadcast_object(None, self.info)
        if isinstance(value, _MainFailed):
            raise SystemExit(1)
        return value

    def bounds(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` of this process's run of ``n`` items."""
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def part(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous run of ``items`` (all of them in a single process)."""
        start, stop = self.bounds(len(items))
        return list(items[start:stop])

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order, on every process."""
        return all_gather_objects(obj, self.info)

    def sum(self, *counts: int) -> list[int]:
        """Each of ``counts`` summed over all processes, on every process."""
        return [sum(column) for column in zip(*self.gather(counts), strict=True)]

    def where(self, device: torch.device | str) -> str:
        """Where the work runs, for a header line: ``cuda:0``, or ``2 processes (rank 0 on
        cuda:0)``."""
        if not self.info.enabled:
            return str(device)
        return f"{self.world_size} processes (rank 0 on {device})"

    def gather_to_main(self, obj: T) -> list[T] | None:
        """Every process's ``obj`` in rank order on rank 0, ``None`` on the others (for
        objects too large to send to all)."""
        if not self.info.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out


def split_jobs(shard: Shard, jobs: list[Job], *, overwrite: bool) -> list[Job]:
    """This process's jobs, with :func:`~glean_sr.inference.batch.plan_outputs` already run
    on ``jobs`` (the same list on every process); the temporaries that killed writes of the
    outputs to be made left behind are removed first (:func:`remove_interrupted_outputs`).

    In a single process that is ``jobs`` as given. Across processes rank 0 looks, once, which
    outputs already exist; it keeps those jobs (they are reported as skipped, unless
    ``overwrite``) and the ones with a planned problem, and the others, sorted by input path,
    are shared out in contiguous runs (:meth:`Shard.part`). Every job is in exactly one
    process's list.
    """

    def decide() -> tuple[list[int], list[int]]:
        kept, todo = [], []
        for i, job in enumerate(jobs):
            done = job.problem or (job.output.exists() and not overwrite)
            (kept if done else todo).append(i)
        remove_interrupted_outputs([jobs[i] for i in todo])
        return kept, sorted(todo, key=lambda i: str(jobs[i].path))

    kept, todo = shard.from_main(decide)
    if not shard.info.enabled:
        return jobs
    mine = [jobs[i] for i in shard.part(todo)]
    return [jobs[i] for i in kept] + mine if shard.is_main else mine


def add_up(shard: Shard, report: Reporter) -> None:
    """Make ``report``'s counts (done, failed, skipped) those of all processes, on every
    process, for the summary line."""
    report.done, report.failed, report.skipped = shard.sum(
        report.done, report.failed, report.skipped
    )


def remove_interrupted_outputs(jobs: Sequence[Job]) -> list[Path]:
    """Remove the temporaries that writes of these jobs' outputs, killed midway, left next to
    them (``.NAME.*.tmp`` of :func:`glean_sr.atomic.atomic_write_bytes`): one listing per
    output folder, not one per output. Returns what it removed."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        if job.output is not None:
            by_folder.setdefault(job.output.parent, set()).add(job.output.name)
    removed = []
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not there yet: nothing was written
            continue
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            stem = entry.name[1:-4].rpartition(".")[0]  # .NAME.<random>.tmp -> NAME
            if stem in names:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed.append(Path(entry.path))
    return sorted(removed)


__all__ = ["TIMEOUT", "Shard", "add_up", "remove_interrupted_outputs", "split_jobs"]
