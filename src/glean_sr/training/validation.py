"""Fixed-step validation with the released README's metrics: PSNR and SSIM on the RGB channels,
no border crop, on 8-bit images (mmediting 0.x ``tensor2img``: ``(x + 1) / 2``, clamp to
[0, 1], x255, round), computed by :mod:`glean_sr.evaluation.metrics`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from ..evaluation.metrics import psnr, ssim
from .distributed import DistInfo, all_reduce_sum


def to_uint8_rgb(img: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] -> ``[H, W, 3]`` float64 holding the integers 0..255."""
    values = (((img.double() + 1) / 2).clamp(0, 1) * 255).round()
    return values.permute(1, 2, 0).cpu().numpy()


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
            sr = model(sample["lq"][None].to(device))[0].float().cpu()
            out, gt = to_uint8_rgb(sr), to_uint8_rgb(sample["gt"])
            value = psnr(out, gt, data_range=255)
            value = value if math.isfinite(value) else 100.0  # a perfect image: cap, not inf
            totals += torch.tensor([value, ssim(out, gt, data_range=255), 1.0])
    finally:
        model.train(was_training)
    if info.enabled:
        totals = all_reduce_sum(totals.to(device), info).cpu()
    n = max(totals[2].item(), 1.0)
    return {"psnr": totals[0].item() / n, "ssim": totals[1].item() / n, "images": int(totals[2])}


__all__ = ["to_uint8_rgb", "validate"]
