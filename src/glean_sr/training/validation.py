"""Fixed-step validation with the released README's metrics: PSNR and SSIM on the RGB channels,
no border crop, on 8-bit images (mmediting 0.x ``tensor2img``: ``(x + 1) / 2``, clamp to
[0, 1], x255, round half to even; :func:`glean_sr.io.tensor_to_pixels` and
:func:`glean_sr.io.quantize`), computed by :mod:`glean_sr.evaluation.metrics`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..evaluation.metrics import psnr, ssim
from ..io import quantize, tensor_to_pixels
from .distributed import DistInfo, all_reduce_sum


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset,
    *,
    device: torch.device,
    info: DistInfo,
    max_images: int = 0,
) -> dict[str, float]:
    """Mean PSNR/SSIM of ``model`` over ``dataset`` (the first ``max_images`` when > 0).

    Each process evaluates every ``world_size``-th image in float32; the sums are combined, so
    the result is the same for any number of processes.
    """
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    totals = torch.zeros(3, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for index in range(info.rank, count, info.world_size):
            sample = dataset[index]
            sr = model(sample["lq"][None].to(device))  # [1, 3, H, W], RGB about [-1, 1]
            out = quantize(tensor_to_pixels(sr)[0], 8)
            gt = quantize(tensor_to_pixels(sample["gt"][None])[0], 8)
            value = psnr(out, gt, data_range=255)
            value = value if math.isfinite(value) else 100.0  # a perfect image: cap, not inf
            totals += torch.tensor([value, ssim(out, gt, data_range=255), 1.0])
    finally:
        model.train(was_training)
    if info.enabled:
        totals = all_reduce_sum(totals.to(device), info).cpu()
    n = max(totals[2].item(), 1.0)
    return {"psnr": totals[0].item() / n, "ssim": totals[1].item() / n, "images": int(totals[2])}


__all__ = ["validate"]
