"""The one device resolver: a device name as users write it (``--device``, ``device=``,
``train.device``) to a ``torch.device`` that is there, or a one-line :class:`ConfigError`."""

from __future__ import annotations

import torch

from .errors import ConfigError

#: what ``device`` may name
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(
    device: str | torch.device = "auto", *, local_rank: int | None = None
) -> torch.device:
    """The ``torch.device`` that ``device`` names, checked to be available.

    Args:
        device: ``"auto"`` (CUDA, then Apple MPS, then the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, ``"mps"``, or a ``torch.device``.
        local_rank: the process's GPU under ``torchrun`` (its ``LOCAL_RANK``): ``"auto"`` and a
            bare ``"cuda"`` become ``cuda:<local_rank>``, so each process of a multi-GPU job
            gets its own GPU. ``None`` leaves a bare ``cuda`` to PyTorch's current device.

    Raises:
        ConfigError: an unknown name, or a device that is not available here.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif _mps_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r} (use {DEVICE_HELP})") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {device!r} (use {DEVICE_HELP})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {str(device)!r} requested but CUDA is not available "
                f"(torch {torch.__version__}); use cpu"
            )
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"no {dev}: this machine has {count} CUDA device(s)")
    if dev.type == "mps" and not _mps_available():
        raise ConfigError("device 'mps' requested but Apple MPS is not available; use cpu")
    return dev


__all__ = ["DEVICE_HELP", "resolve_device"]
