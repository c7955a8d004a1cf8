"""LPIPS v0.1 (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018), written here without torchvision, for user-supplied weight files.

``d(x, y) = sum_l mean_{h,w} w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2`` (Sec. 3, Eq. 1):
``f_l`` are the ReLU outputs of five stages of an ImageNet backbone (VGG16: relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3; AlexNet: relu1..relu5), unit-normalised over channels, and ``w_l`` the
learned non-negative 1x1 "linear" layers. Inputs in ``[-1, 1]`` are first shifted and scaled by
the per-channel constants of v0.1 (``ScalingLayer``).

Weights (key layouts are those of the ``lpips`` package so its files load unchanged):

* the linear layers: ``lpips/weights/v0.1/vgg.pth`` or ``alex.pth`` of the ``lpips`` Python
  package (``lin0.model.1.weight`` ... ``lin4.model.1.weight``, ``[1, C, 1, 1]``);
* the backbone: torchvision's ImageNet file (``vgg16-397923af.pth`` /
  ``alexnet-owt-7be5be79.pth``, keys ``features.N.weight``), or both together in one file as an
  ``lpips.LPIPS`` module's state_dict (``net.sliceK.N.weight`` + ``linK.model.1.weight``).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from .weightfiles import load_strict, read_state_dict

LINEAR_ORIGIN = (
    "the linear layers lpips/weights/v0.1/vgg.pth or alex.pth from the 'lpips' Python package"
)
BACKBONE_ORIGIN = (
    "torchvision's ImageNet backbone: vgg16-397923af.pth or alexnet-owt-7be5be79.pth "
    "from download.pytorch.org/models"
)

#: per backbone: conv layers of torchvision's ``features`` as (index, in, out, kernel, stride,
#: padding), the ``features`` index ranges of the five LPIPS stages, and their channels
BACKBONES = {
    "vgg": {
        "convs": [
            (0, 3, 64, 3, 1, 1),
            (2, 64, 64, 3, 1, 1),
            (5, 64, 128, 3, 1, 1),
            (7, 128, 128, 3, 1, 1),
            (10, 128, 256, 3, 1, 1),
            (12, 256, 256, 3, 1, 1),
            (14, 256, 256, 3, 1, 1),
            (17, 256, 512, 3, 1, 1),
            (19, 512, 512, 3, 1, 1),
            (21, 512, 512, 3, 1, 1),
            (24, 512, 512, 3, 1, 1),
            (26, 512, 512, 3, 1, 1),
            (28, 512, 512, 3, 1, 1),
        ],
        "pools": [4, 9, 16, 23],  # MaxPool2d(2, 2)
        "stages": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
        "channels": [64, 128, 256, 512, 512],
        "pool": (2, 2),
    },
    "alex": {
        "convs": [
            (0, 3, 64, 11, 4, 2),
            (3, 64, 192, 5, 1, 2),
            (6, 192, 384, 3, 1, 1),
            (8, 384, 256, 3, 1, 1),
            (10, 256, 256, 3, 1, 1),
        ],
        "pools": [2, 5],  # MaxPool2d(3, 2)
        "stages": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
        "channels": [64, 192, 384, 256, 256],
        "pool": (3, 2),
    },
}


def _stage_modules(net: str, start: int, stop: int) -> nn.Sequential:
    """torchvision ``features[start:stop]`` with the original indices as module names."""
    spec = BACKBONES[net]
    convs = {c[0]: c for c in spec["convs"]}
    stage = nn.Sequential()
    for i in range(start, stop):
        if i in convs:
            _, cin, cout, k, s, p = convs[i]
            stage.add_module(str(i), nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif i in spec["pools"]:
            stage.add_module(str(i), nn.MaxPool2d(*spec["pool"]))
        else:
            stage.add_module(str(i), nn.ReLU(inplace=False))
    return stage


class Backbone(nn.Module):
    """The five LPIPS stages of VGG16 or AlexNet (``slice1`` ... ``slice5``)."""

    def __init__(self, net: str) -> None:
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"net must be one of {sorted(BACKBONES)}, got {net!r}")
        self.net = net
        for k, (start, stop) in enumerate(BACKBONES[net]["stages"], start=1):
            self.add_module(f"slice{k}", _stage_modules(net, start, stop))

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x: [N, 3, H, W]`` (scaled input) -> five ``[N, C_l, H_l, W_l]`` ReLU outputs."""
        feats = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            feats.append(x)
        return feats


class _Linear(nn.Module):
    """``NetLinLayer``: (dropout, unused at eval) + a bias-free 1x1 conv to one channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. ``forward(x, y)``: ``[N, 3, H, W]`` RGB in ``[-1, 1]`` each ->
    ``[N]`` distances (0 for identical images, lower is more similar)."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.net = Backbone(net)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        for k, ch in enumerate(BACKBONES[net]["channels"]):
            self.add_module(f"lin{k}", _Linear(ch))
        self.requires_grad_(False)
        self.eval()

    def extra_repr(self) -> str:
        return f"net={self.net.net}, version=0.1"

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [N, 3, H, W] tensors, got {x.shape}, {y.shape}")
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit length over channels
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            diff = getattr(self, f"lin{k}").model((a - b) ** 2)  # [N, 1, H_l, W_l]
            total = total + diff.mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_files(
        cls,
        weights: str | os.PathLike | None,
        backbone: str | os.PathLike | None = None,
        *,
        device: str | torch.device = "cpu",
    ) -> LPIPS:
        """Build from the ``lpips`` package's linear-layer file plus torchvision's backbone file,
        or from one file holding both (an ``lpips.LPIPS`` state_dict); the backbone type (VGG16
        or AlexNet) is read from the shapes."""
        sd = read_state_dict(weights, what="LPIPS", flag="--lpips-weights", origin=LINEAR_ORIGIN)
        lin = {}
        for key, value in sd.items():
            if key.startswith("lins."):  # lpips.LPIPS also registers the list as lins.K
                key = "lin" + key[len("lins.") :]
            if key.startswith("lin"):
                lin[key] = value
        if "lin1.model.1.weight" not in lin:
            raise WeightsError(
                f"--lpips-weights {weights}: no LPIPS linear layers (lin0.model.1.weight ...) "
                f"in this file; it should be {LINEAR_ORIGIN}"
            )
        channels = lin["lin1.model.1.weight"].shape[1]
        net = {128: "vgg", 192: "alex"}.get(channels)
        if net is None:
            raise WeightsError(
                f"--lpips-weights {weights}: lin1 has {channels} channels; only the VGG16 (128) "
                f"and AlexNet (192) variants are supported"
            )
        model = cls(net)
        full = {k: v for k, v in sd.items() if k.startswith("net.")}
        if not full:
            bb = read_state_dict(
                backbone, what=f"LPIPS ({net})", flag="--lpips-backbone", origin=BACKBONE_ORIGIN
            )
            for k, (start, stop) in enumerate(BACKBONES[net]["stages"], start=1):
                for i in range(start, stop):
                    for p in ("weight", "bias"):
                        if f"features.{i}.{p}" in bb:
                            full[f"net.slice{k}.{i}.{p}"] = bb.pop(f"features.{i}.{p}")
            leftover = [k for k in bb if k.startswith("features.")]
            if leftover:
                raise WeightsError(
                    f"--lpips-backbone {backbone}: does not fit torchvision's {net} features "
                    f"(unexpected {', '.join(leftover[:4])})"
                )
        state = {**full, **lin, "shift": model.shift, "scale": model.scale}
        load_strict(model, state, name=str(weights if "net.slice1.0.weight" in sd else backbone))
        return model.to(device)
