"""Fixed-step validation with the released README's metrics: PSNR and SSIM on the RGB channels,
no border crop, on 8-bit images (mmediting 0.x ``tensor2img``: ``(x + 1) / 2``, clamp to
[0, 1], x255, round).

The metric functions are small internal versions until ``glean_sr.evaluation.metrics`` exists;
they follow the BasicSR/mmediting definitions (cross-checked with scikit-image in the tests).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributed import DistInfo, all_reduce_sum


def to_uint8_rgb(img: Tensor) -> Tensor:
    """``[3, H, W]`` in [-1, 1] -> ``[3, H, W]`` float64 holding integers 0..255."""
    return (((img.double() + 1) / 2).clamp(0, 1) * 255).round()


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two 8-bit images (``[C, H, W]``, values 0..255), over all channels; ``inf``
    for identical images."""
    mse = (a.double() - b.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: Tensor, b: Tensor) -> float:
    """SSIM (Wang et al., 2004) of two 8-bit images ``[C, H, W]`` (0..255): 11x11 Gaussian window
    with sigma 1.5, statistics over the 'valid' region, per channel, then the channel mean.
    Images must be at least 11 pixels on each side."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = a.double()[:, None]  # [C, 1, H, W]: each channel on its own
    y = b.double()[:, None]
    w = _gaussian_window().to(x.device)[None, None]

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, w)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3)).mean().item()


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
            value = psnr(out, gt)
            totals += torch.tensor([value if math.isfinite(value) else 100.0, ssim(out, gt), 1.0])
    finally:
        model.train(was_training)
    if info.enabled:
        totals = all_reduce_sum(totals.to(device), info).cpu()
    n = max(totals[2].item(), 1.0)
    return {"psnr": totals[0].item() / n, "ssim": totals[1].item() / n, "images": int(totals[2])}


__all__ = ["psnr", "ssim", "to_uint8_rgb", "validate"]
