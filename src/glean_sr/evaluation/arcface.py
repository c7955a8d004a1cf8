"""ArcFace identity embeddings (Deng et al., CVPR 2019) with insightface's ``iresnet`` backbone,
written here for user-supplied weight files; GLEAN TPAMI Tables 3 and 7 report the cosine
similarity of these embeddings between output and ground truth.

The network is arcface_torch's ``IResNet`` (key layout ``conv1.weight``, ``layer3.12.bn2.
running_var``, ``fc.weight``, ``features.running_mean``, ...), so its released
``backbone.pth`` files (iresnet18/34/50/100/200) load unchanged; the depth is read from the
file. Input: ``[N, 3, 112, 112]`` RGB scaled to ``[-1, 1]``; output 512-d.

How images are fed (a simplification, stated in the report): the whole image is resized to
112x112 with antialiased bilinear interpolation. That matches ArcFace's training crops only for
images that are aligned face crops (FFHQ/CelebA-HQ style), which is what GLEAN's face models
restore.
"""

from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError
from .weightfiles import load_strict, read_state_dict

ARCFACE_ORIGIN = (
    "an insightface arcface_torch iresnet backbone, e.g. the model zoo's "
    "ms1mv3_arcface_r100_fp16/backbone.pth (github.com/deepinsight/insightface)"
)
INPUT_SIZE = 112


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation block: BN, conv3x3, BN, PReLU, conv3x3 (stride here), BN, + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """``forward(x)``: ``[N, 3, 112, 112]`` RGB in ``[-1, 1]`` -> ``[N, 512]`` embeddings."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 13, 30, 3), dim: int = 512):
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {layers}")
        self.layers = tuple(layers)
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for k, (count, cout) in enumerate(zip(layers, (64, 128, 256, 512), strict=True), 1):
            blocks = [IBasicBlock(cin, cout, 2)] + [
                IBasicBlock(cout, cout, 1) for _ in range(count - 1)
            ]
            self.add_module(f"layer{k}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, dim)
        self.features = nn.BatchNorm1d(dim, eps=1e-5)
        self.requires_grad_(False)
        self.eval()

    def extra_repr(self) -> str:
        return f"layers={self.layers} (iresnet{2 * sum(self.layers) + 2})"

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected [N, 3, 112, 112] RGB in [-1, 1], got {list(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)  # layer4: [N, 512, 7, 7]
        x = self.bn2(x).flatten(1)  # [N, 512 * 7 * 7]
        return self.features(self.fc(x))

    def embed(self, images: Tensor) -> Tensor:
        """``images: [N, 3, H, W]`` RGB in ``[0, 1]`` (aligned face crops) -> unit ``[N, 512]``."""
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
        return F.normalize(self(x * 2 - 1), dim=1)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike | None, *, device: str | torch.device = "cpu"
    ) -> IResNet:
        sd = read_state_dict(path, what="ArcFace", flag="--arcface-weights", origin=ARCFACE_ORIGIN)
        counts = []
        for k in range(1, 5):
            idx = {int(m.group(1)) for key in sd if (m := re.match(rf"layer{k}\.(\d+)\.", key))}
            counts.append(max(idx) + 1 if idx else 0)
        if min(counts) == 0 or "fc.weight" not in sd:
            raise WeightsError(
                f"--arcface-weights {path}: not an iresnet backbone (no layer1..layer4/fc keys); "
                f"it should be {ARCFACE_ORIGIN}"
            )
        model = cls(tuple(counts), dim=sd["fc.weight"].shape[0])
        load_strict(model, sd, name=str(path))
        return model.to(device)
