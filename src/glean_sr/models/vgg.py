"""VGG16 ``features`` (Simonyan & Zisserman, ICLR 2015, configuration D), for the perceptual loss.

Written here so glean-sr does not depend on torchvision; the module indices are torchvision's, so
its ImageNet file ``vgg16-397923af.pth`` loads key for key (``features.{0,2,5,...,28}``):

    index  0  2     5   7      10  12  14      17  19  21      24  26  28
    conv   64 64 M  128 128 M  256 256 256 M  512 512 512 M   512 512 512 M
    name   1_1 1_2  2_1 2_2    3_1 3_2 3_3    4_1 4_2 4_3     5_1 5_2 5_3

(odd indices after a conv are ReLUs, ``M`` a 2x2 max-pool). GLEAN's perceptual loss reads
``features[21]`` = conv4_3 *before* its ReLU, so only ``features[:22]`` is built by default.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor, nn

from ..errors import WeightsError

#: torchvision's VGG16 ``features``: output channels per conv, "M" for max-pooling.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip

#: ``features`` index of conv4_3 (GLEAN's perceptual layer, read before its ReLU)
CONV4_3 = 21

#: ImageNet statistics the VGG weights were trained with (RGB, images in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _build_features(num_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(item)
    return nn.Sequential(*layers[:num_layers])


class VGG16Features(nn.Module):
    """The first ``num_layers`` modules of VGG16 ``features`` (torchvision indices and keys).

    ``forward(x: [N, 3, H, W])`` returns the output of the last built module, e.g. conv4_3 before
    its ReLU ``[N, 512, H/8, W/8]`` for the default ``num_layers = 22``. The input is used as
    given: normalisation is the caller's business (see :class:`glean_sr.training.losses`).
    """

    def __init__(self, num_layers: int = CONV4_3 + 1):
        super().__init__()
        total = 2 * sum(1 for v in VGG16_LAYOUT if v != "M") + VGG16_LAYOUT.count("M")
        if not 1 <= num_layers <= total:
            raise ValueError(f"num_layers must be in [1, {total}], got {num_layers}")
        self.features = _build_features(num_layers)

    @property
    def num_layers(self) -> int:
        return len(self.features)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16 input must be [N, 3, H, W], got {list(x.shape)}")
        return self.features(x)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"


# -- weights --------------------------------------------------------------------------------------

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
    from ..weights import hub
    from ..weights.safe_load import read_weights_file

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


__all__ = [
    "CONV4_3",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_LAYOUT",
    "VGG16Features",
    "load_vgg16_features",
    "vgg16_state_dict",
]
