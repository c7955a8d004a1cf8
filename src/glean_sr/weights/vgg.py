"""Torchvision's and mmagic's VGG16 weight files, read strictly into
:class:`glean_sr.models.vgg.VGG16Features`."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from ..errors import WeightsError
from ..models.vgg import CONV4_3, VGG16Features
from . import hub
from .safe_load import read_weights_file

#: key prefixes of the VGG convolutions in the files people have, most specific first
_PREFIXES = ("perceptual_loss.vgg.vgg_layers.", "vgg.vgg_layers.", "vgg_layers.", "features.")


#: keys a VGG16 file may hold that the perceptual loss does not need: torchvision's fully
#: connected head, mmagic's copy of the ImageNet statistics, the rest of a GLEAN checkpoint
_EXTRA_PREFIXES = ("classifier.", "generator.", "discriminator.")
_EXTRA_KEYS = frozenset(
    f"{p}{s}" for p in ("", "vgg.", "perceptual_loss.vgg.") for s in ("mean", "std")
)


def _allowed_extra(key: str) -> bool:
    return key in _EXTRA_KEYS or key.startswith(_EXTRA_PREFIXES)


def vgg16_state_dict(sd: dict[str, Tensor], num_layers: int, name: str) -> dict[str, Tensor]:
    """Map a torchvision or mmagic VGG16 state_dict onto :class:`VGG16Features` keys.

    torchvision: ``features.{i}.{weight,bias}`` (+ ``classifier.*``); mmagic perceptual loss:
    ``[perceptual_loss.]vgg.vgg_layers.{i}.*`` (+ ``mean``/``std``). Convolutions beyond
    ``num_layers`` and the listed extras are ignored; any other key is an error.
    """
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in sd.items():
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            if not _allowed_extra(key):
                unexpected.append(key)
            continue
        index, _, param = key[len(prefix) :].partition(".")
        if not index.isdigit() or param not in ("weight", "bias"):
            unexpected.append(key)
        elif int(index) < num_layers:
            out[f"features.{index}.{param}"] = value
    if unexpected:
        shown = ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else "")
        raise WeightsError(f"{name}: not a VGG16 file: unexpected keys {shown}")
    return out


def load_vgg16_features(
    source: str | os.PathLike, *, sha256: str | None = None, num_layers: int = CONV4_3 + 1
) -> VGG16Features:
    """VGG16 ``features[:num_layers]`` with ImageNet weights from a path or an ``http(s)`` URL.

    A URL is downloaded once into the glean-sr cache and checked against ``sha256`` (a full
    digest or a prefix). Loading is strict: every needed convolution must be in the file with
    the right shape. The network is returned frozen and in eval mode.
    """
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        path = hub.download(text, sha256_prefix=sha256, what="VGG16 ImageNet weights")
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"VGG16 weights file {path} does not exist")
        if sha256 and not hub.sha256_file(path).startswith(sha256):
            raise WeightsError(f"{path}: SHA-256 does not start with {sha256}: not that VGG16 file")
    obj = read_weights_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state_dict, found a {type(obj).__name__}")
    model = VGG16Features(num_layers)
    sd = vgg16_state_dict(obj, num_layers, str(path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd), key=lambda k: int(k.split(".")[1]))
    shapes = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or shapes:
        what = f"missing {', '.join(missing[:4])}" if missing else f"mis-shaped {shapes[0]}"
        raise WeightsError(f"{path}: does not fit VGG16 features[:{num_layers}]: {what}")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.requires_grad_(False).eval()
