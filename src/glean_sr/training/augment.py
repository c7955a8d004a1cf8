"""Differentiable augmentation for discriminator inputs, with ADA's adaptive probability.

Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020):
every image D sees, real or generated, goes through the same random transformations, each
applied with probability ``p``. As long as ``p`` stays below about 0.8 the transformations do not
"leak" into the generated images, and D can no longer memorise a small training set. ``p`` is
tuned on the fly from the overfitting heuristic ``r_t = E[sign(D(real))]`` (Eq. 1, right):
raised when ``r_t`` exceeds the target (0.6), lowered otherwise.

The ops here are a compact subset of ADA's pipeline, each differentiable with respect to the
image (DiffAugment's requirement, Zhao et al. NeurIPS 2020): x-flip, integer translation (up to
1/8 of the size), isotropic scaling (lognormal, std 0.2 log2), rotation (uniform within
+-22.5 degrees: full turns would teach D that a rotated glyph is still real), brightness
(additive, std 0.2), contrast (lognormal, std 0.5 log2) and cutout (a square of half the size).
Geometric ops are composed into one affine map, resampled once with reflection padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_GEOMETRIC = ("xflip", "translation", "scale", "rotation")


class Augment:
    """``augment(img)`` for ``img: [N, C, H, W]`` in ``[-1, 1]``; identity when ``p == 0``.

    Randomness comes from torch's global generator of ``img``'s device, so a checkpoint that
    stores the generator states resumes the same augmentations.
    """

    def __init__(self, ops: Sequence[str], p: float = 0.0):
        self.ops = tuple(ops)
        self.p = float(p)

    def __call__(self, img: Tensor) -> Tensor:
        if self.p <= 0 or not self.ops:
            return img
        n, _, h, w = img.shape
        dev, dtype = img.device, torch.float32

        def chosen() -> Tensor:  # [N] 1 where the op applies to the sample
            return (torch.rand(n, device=dev) < self.p).to(dtype)

        if any(op in self.ops for op in _GEOMETRIC):
            theta = torch.eye(2, 3, device=dev, dtype=dtype).repeat(n, 1, 1)  # [N, 2, 3]
            if "xflip" in self.ops:
                flip = 1 - 2 * chosen() * torch.randint(0, 2, (n,), device=dev).to(dtype)
                theta[:, 0, 0] *= flip
            if "scale" in self.ops:
                s = torch.exp2(torch.randn(n, device=dev) * 0.2 * chosen())
                theta[:, :, :2] /= s[:, None, None]
            if "rotation" in self.ops:
                a = (torch.rand(n, device=dev) * 2 - 1) * (math.pi / 8) * chosen()
                cos, sin = torch.cos(a), torch.sin(a)
                rot = torch.stack([cos, -sin, sin, cos], dim=1).reshape(n, 2, 2)
                theta[:, :, :2] = rot @ theta[:, :, :2]
            if "translation" in self.ops:
                on = chosen()
                for axis, size in ((0, w), (1, h)):  # whole pixels: 2 / size per pixel
                    shift = torch.round((torch.rand(n, device=dev) * 2 - 1) * 0.125 * size)
                    theta[:, axis, 2] = shift * on * 2 / size
            grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False).to(img.dtype)
            img = F.grid_sample(
                img, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
        if "brightness" in self.ops:
            img = (
                img
                + (torch.randn(n, device=dev) * 0.2 * chosen()).to(img.dtype)[:, None, None, None]
            )
        if "contrast" in self.ops:
            c = torch.exp2(torch.randn(n, device=dev) * 0.5 * chosen()).to(img.dtype)
            mean = img.mean(dim=(1, 2, 3), keepdim=True)
            img = (img - mean) * c[:, None, None, None] + mean
        if "cutout" in self.ops:
            on = chosen()
            cy, cx = torch.rand(n, device=dev), torch.rand(n, device=dev)
            ys = (torch.arange(h, device=dev, dtype=dtype) + 0.5) / h  # [H]
            xs = (torch.arange(w, device=dev, dtype=dtype) + 0.5) / w
            inside = ((ys[None, :, None] - cy[:, None, None]).abs() < 0.25) & (
                (xs[None, None, :] - cx[:, None, None]).abs() < 0.25
            )  # [N, H, W]
            keep = 1 - inside.to(dtype) * on[:, None, None]
            img = img * keep[:, None].to(img.dtype)
        return img


class AdaptiveP:
    """ADA's controller of ``p``: accumulate ``sign(D(real))`` and every ``interval`` steps move
    ``p`` by ``sign(r_t - target) * (images in the interval) / (speed_kimg * 1000)``."""

    def __init__(self, *, target: float, speed_kimg: float, max_p: float):
        self.target = target
        self.speed_kimg = speed_kimg
        self.max_p = max_p
        self.sign_sum = 0.0
        self.count = 0
        self.last_rt = float("nan")

    def accumulate(self, logits_real: Tensor) -> None:
        self.sign_sum += float(torch.sign(logits_real.detach().float()).sum())
        self.count += logits_real.numel()

    def adjust(self, p: float, sign_sum: float, count: int, images: int) -> float:
        """The new ``p`` from the (all-process) sums of one interval of ``images`` images."""
        if count == 0:
            return p
        self.last_rt = sign_sum / count
        # sign(r_t - target), 0 on target (NVIDIA's np.sign): copysign would move p up there
        direction = (self.last_rt > self.target) - (self.last_rt < self.target)
        return min(max(p + direction * images / (self.speed_kimg * 1000), 0.0), self.max_p)

    def reset(self) -> None:
        self.sign_sum, self.count = 0.0, 0


__all__ = ["AdaptiveP", "Augment"]
