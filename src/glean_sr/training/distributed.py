"""Data-parallel training through ``torchrun`` only (nanoGPT's way): one process per device, set
up from the environment torchrun provides (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``). NCCL on CUDA devices, gloo on CPU.

The latent bank must never take part in gradient synchronisation: it is frozen, and DDP would
otherwise broadcast and watch 30 M parameters for nothing. :class:`TrainableView` is the module
DDP wraps: it holds every sub-module of the restorer *except* the bank, so the bank is outside
DDP altogether while the forward pass still runs the whole network.
"""

from __future__ import annotations

import inspect
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world_size == 1`` when not launched by torchrun."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun job if there is one (NCCL for ``cuda``, gloo otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except KeyError as exc:
        raise ConfigError(
            f"WORLD_SIZE is set but {exc.args[0]} is not: start multi-process training with "
            f"torchrun (python -m torch.distributed.run --nproc_per_node N -m glean_sr train ...)"
        ) from None
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """Sum of ``t`` over all processes (in place; returns ``t``)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (pickled through the process group)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class TrainableView(nn.Module):
    """Every child module of ``restorer`` except its bank; calling it runs the whole restorer.

    The children are shared, not copied, so DDP's gradient hooks sit on the very parameters
    the restorer uses. The restorer itself is kept as a plain attribute (not a sub-module), so
    ``parameters()``, ``state_dict()`` and DDP's broadcasts never see the bank.
    """

    def __init__(self, restorer: nn.Module, bank: nn.Module):
        super().__init__()
        for name, child in restorer.named_children():
            if child is not bank:
                self.add_module(name, child)
        object.__setattr__(self, "restorer", restorer)

    def forward(self, lq: Tensor) -> Tensor:
        return self.restorer(lq)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed, else unchanged.

    Buffers are not broadcast (the trainable parts have none that change), and every parameter
    must receive a gradient in every step (parameters that cannot, such as GLEAN's RGB-skip
    fusion, are frozen beforehand by the training loop).
    """
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # no per-forward buffer broadcast (newer torch names the switch forward_sync_buffers)
    params = inspect.signature(DistributedDataParallel).parameters
    sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(module, device_ids=device_ids, **{sync: False})


def no_sync(module: nn.Module, skip: bool):
    """DDP's ``no_sync()`` when ``skip`` (gradient accumulation), else a no-op context."""
    if skip and hasattr(module, "no_sync"):
        return module.no_sync()
    return nullcontext()


__all__ = [
    "DistInfo",
    "TrainableView",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "no_sync",
    "shutdown",
    "wrap_ddp",
]
