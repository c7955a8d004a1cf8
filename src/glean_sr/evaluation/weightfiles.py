"""Reading the weight files of the metric networks (LPIPS, FID Inception, ArcFace) strictly.

glean-sr ships no weights for these networks: the user passes the files by path. A missing file
is an error naming the option and where the file comes from, never a silently skipped metric.
Files are read without executing code (:func:`glean_sr.weights.safe_load.read_weights_file`)
and loaded strictly: every key the network has must be present with its shape, and only keys on
an explicit allow-list (classifier heads the metric does not use) may be extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..weights.glean_format import compare_state_dict
from ..weights.safe_load import read_weights_file

_CONTAINER_KEYS = ("state_dict", "model", "params", "net")


def read_state_dict(
    path: str | os.PathLike | None, *, what: str, flag: str, origin: str
) -> dict[str, Tensor]:
    """The tensors of ``path`` as float32, unwrapped from ``{"state_dict": ...}``-style
    containers and DataParallel's ``module.`` prefix.

    Args:
        path: the file, or None when the user gave none (an error naming ``flag``).
        what: the metric, for messages (``"LPIPS"``).
        flag: the command-line option that takes the file (``"--lpips-weights"``).
        origin: where the file comes from, for messages.
    """
    if path is None:
        raise WeightsError(f"{what} needs its network weights: pass {flag} FILE ({origin})")
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"{flag} {p}: no such file ({what} needs {origin})")
    obj = read_weights_file(p)
    for _ in range(2):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{flag} {p}: holds no tensors ({what} needs {origin})")
    sd = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            continue
        key = key.removeprefix("module.")
        sd[key] = value.float() if torch.is_floating_point(value) else value
    if not sd:
        raise WeightsError(f"{flag} {p}: holds no tensors ({what} needs {origin})")
    return sd


def load_strict(
    module: nn.Module,
    sd: dict[str, Tensor],
    *,
    name: str,
    allowed_extra: Iterable[str] = (),
) -> None:
    """Load ``sd`` into ``module``; every key must fit, extras only if they match
    ``allowed_extra`` (fnmatch patterns). Raises :class:`WeightsError` listing the mismatch."""
    expected = module.state_dict()
    allowed = tuple(allowed_extra)
    kept = {k: v for k, v in sd.items() if k in expected}
    for key, value in expected.items():  # a counter only used in training; older files lack it
        if key.endswith("num_batches_tracked"):
            kept.setdefault(key, value)
    extra = [k for k in sd if k not in expected and not any(fnmatch(k, pat) for pat in allowed)]
    mismatch = compare_state_dict(expected, kept, extra)
    if mismatch:
        raise WeightsError(f"{name}: does not fit {type(module).__name__}: {mismatch.describe()}")
    module.load_state_dict(kept, strict=True)
