"""Feature networks for a domain FID that need no download.

FID's InceptionV3 features (:mod:`glean_sr.evaluation.fid`) describe ImageNet photographs and
must be downloaded. For the domains a bank is trained on here two offline alternatives exist:

* ``"random"``: a fixed convolutional network with seeded random weights (He initialisation,
  ReLU, average pooling; 4 stages, 512 features). Random embeddings separate image
  distributions well enough to rank models of one domain (Naeem et al., ICML 2020,
  "Reliable Fidelity and Diversity Metrics for Generative Models", Sec. 5), though their values
  are not comparable with Inception FIDs or across domains. Every glean-sr version builds the
  same weights from the same seed.
* a directory holding a trained domain classifier (``glean-sr train-glyph-classifier`` writes
  one for glyphs): its penultimate features encode what tells the domain's classes apart,
  which is what a restorer must preserve, so its FID measures fidelity in the domain's own
  terms.

``load_feature_network(spec)`` returns a module mapping ``[N, C, H, W]`` images in ``[0, 1]`` to
``[N, D]`` features; ``name`` says which network it is.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

RANDOM_SEED = 20240611


class RandomFeatures(nn.Module):
    """A seeded random conv net: ``[N, C, H, W]`` in ``[0, 1]`` -> ``[N, 512]`` features.

    Inputs are resized to 64x64 (bilinear, antialiased when shrinking) and grey inputs are
    repeated to 3 channels, so images of any size and either channel count are comparable.
    """

    name = "random-conv-512"

    def __init__(self, seed: int = RANDOM_SEED):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        widths = [3, 64, 128, 256, 512]
        self.convs = nn.ModuleList()
        for cin, cout in itertools.pairwise(widths):
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=g) * (2 / (cin * 9)) ** 0.5
                )
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)
        self.eval()

    def forward(self, img: Tensor) -> Tensor:
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        x = F.interpolate(img.float(), size=(64, 64), mode="bilinear", antialias=True)
        x = (x - 0.5) / 0.5
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i < len(self.convs) - 1:
                x = F.avg_pool2d(x, 2)
        return x.mean(dim=(2, 3))  # [N, 512]


def load_feature_network(spec: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """``"random"`` or a domain classifier directory -> a feature module (eval mode, on
    ``device``) with a ``name`` attribute."""
    if str(spec) == "random":
        return RandomFeatures().to(device)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"FID feature network '{spec}': not 'random' and not a classifier directory "
            f"(glean-sr train-glyph-classifier writes one)"
        )
    from .glyph_classifier import GlyphClassifier

    model = GlyphClassifier.from_pretrained(path).to(device).eval()
    model.requires_grad_(False)
    return model.feature_extractor()


__all__ = ["RANDOM_SEED", "RandomFeatures", "load_feature_network"]
