"""BasicSR checkpoints (Real-ESRGAN's released ``.pth`` files): the container and the
architecture of an ``RRDBNet`` state_dict.

BasicSR's ``save_network`` writes ``torch.save({"params": sd})``, ``{"params_ema": sd}`` or both
(the weights and their exponential moving average); Real-ESRGAN's released generators
(``RealESRGAN_x4plus.pth``, ``RealESRGAN_x2plus.pth``) hold ``params_ema``. As Real-ESRGAN's own
inference does, ``params_ema`` is used when present and ``params`` otherwise; anything else in
the container is an unexpected key (strict loading). The files are plain tensors in dicts, read
by ``torch.load(weights_only=True)`` (:mod:`glean_sr.weights.safe_load`).

The architecture is read off the tensor shapes: ``conv_first.weight`` is
``[rrdb_channels, img_channels * u * u, 3, 3]`` with the pixel-unshuffle factor ``u`` (1 for
x4, 2 for x2, 4 for x1), ``conv_last.weight`` ``[img_channels, rrdb_channels, 3, 3]``, the RRDBs
are ``body.{k}.*`` and ``body.0.rdb1.conv1.weight`` is ``[growth_channels, rrdb_channels, 3,
3]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..config import RealESRGANConfig
from ..errors import ConfigError, WeightsError

#: BasicSR's container keys, in the order they are preferred
BASICSR_KEYS = ("params_ema", "params")

#: the pixel-unshuffle factor's square (input channels per image channel) -> scale
_SCALE_OF_FOLD = {1: 4, 4: 2, 16: 1}


def basicsr_state_dict(obj: Any) -> tuple[Mapping[str, Any], str, list[str], int] | None:
    """``(state_dict, format, unexpected keys, ignored entries)`` of a BasicSR container, or
    ``None`` when ``obj`` is not one (a dict with ``params_ema`` or ``params`` holding a dict).

    ``params`` beside ``params_ema`` is the non-averaged copy of the same network: ignored, as
    Real-ESRGAN's inference ignores it.
    """
    if not isinstance(obj, Mapping):
        return None
    found = [k for k in BASICSR_KEYS if isinstance(obj.get(k), Mapping)]
    if not found:
        return None
    key = found[0]
    unexpected = sorted(str(k) for k in obj if k not in BASICSR_KEYS)
    return obj[key], f"BasicSR checkpoint ({key})", unexpected, len(found) - 1


def is_realesrgan_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """The keys are BasicSR's RRDBNet's (``conv_first`` and ``conv_up1`` at the top level)."""
    return "conv_first.weight" in sd and "conv_up1.weight" in sd


def _need(sd: Mapping[str, Tensor], key: str, name: str) -> Tensor:
    if key not in sd:
        raise WeightsError(
            f"{name}: cannot infer the RRDBNet architecture: key '{key}' is missing "
            f"(not a Real-ESRGAN checkpoint, or the file is truncated)"
        )
    return sd[key]


def infer_realesrgan_config(sd: Mapping[str, Tensor], name: str = "weights") -> RealESRGANConfig:
    """Read ``RealESRGANConfig``'s fields off the tensor shapes of a BasicSR RRDBNet state_dict."""
    first = _need(sd, "conv_first.weight", name)
    last = _need(sd, "conv_last.weight", name)
    if first.ndim != 4 or last.ndim != 4:
        raise WeightsError(f"{name}: conv_first / conv_last are not conv weights [out, in, k, k]")
    img_channels, channels = int(last.shape[0]), int(first.shape[0])
    fold, rest = divmod(int(first.shape[1]), max(img_channels, 1))
    if rest or fold not in _SCALE_OF_FOLD:
        raise WeightsError(
            f"{name}: conv_first takes {first.shape[1]} channels for {img_channels}-channel "
            f"images: not a pixel-unshuffle of 1, 2 or 4 (x4, x2, x1)"
        )
    rx = re.compile(r"body\.(\d+)\.")
    blocks = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    num_rrdbs = max(blocks) + 1 if blocks else 0
    growth = 32
    if num_rrdbs:
        growth = int(_need(sd, "body.0.rdb1.conv1.weight", name).shape[0])
    try:
        return RealESRGANConfig(
            scale=_SCALE_OF_FOLD[fold],
            img_channels=img_channels,
            rrdb_channels=channels,
            num_rrdbs=num_rrdbs,
            growth_channels=growth,
        )
    except ConfigError as exc:
        raise WeightsError(f"{name}: the tensors describe no valid RRDBNet ({exc})") from None
