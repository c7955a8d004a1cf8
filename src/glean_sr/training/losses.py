"""GLEAN's training objective (CVPR 2021, appendix A, Eq. 5-9; TPAMI 2023, Sec. 3.4).

    L_g = L_mse + a_percep * L_percep + a_gen * L_gen          a_percep = a_gen = 1e-2
    L_d = -log D(y) - log(1 - D(y_hat))                        (unweighted)

with ``D`` returning logits, so both GAN terms are binary cross-entropy with logits (mmediting's
``GANLoss(gan_type='vanilla')``): real target 1, fake target 0, and the generator's term asks the
discriminator to call its output real (the non-saturating form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG16Features


def pixel_loss(sr: Tensor, gt: Tensor) -> Tensor:
    """Eq. 5: mean squared error over all pixels and channels."""
    return F.mse_loss(sr, gt)


def generator_gan_loss(fake_logits: Tensor) -> Tensor:
    """Eq. 7 in its non-saturating form: ``BCE(D(sr), 1) = mean(softplus(-logits))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_real_loss(real_logits: Tensor) -> Tensor:
    """The real half of Eq. 9: ``BCE(D(gt), 1)``."""
    return F.softplus(-real_logits).mean()


def discriminator_fake_loss(fake_logits: Tensor) -> Tensor:
    """The fake half of Eq. 9: ``BCE(D(sr), 0)``."""
    return F.softplus(fake_logits).mean()


class PerceptualLoss(nn.Module):
    """Eq. 6: MSE between VGG16 conv4_3 features (before ReLU) of ``sr`` and ``gt``.

    Inputs are ``[N, 3, H, W]`` RGB in [-1, 1]. The ImageNet mean/std normalisation is always
    applied; ``norm_img=True`` first maps the images to [0, 1] as that normalisation expects.
    The reference used ``norm_img=False`` for its three bicubic models, feeding [-1, 1] images
    to the [0, 1] statistics; the released weights were trained that way, so the recipes keep it.
    """

    def __init__(self, vgg: VGG16Features, *, norm_img: bool):
        super().__init__()
        self.vgg = vgg.requires_grad_(False).eval()
        self.norm_img = norm_img
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.vgg.eval()  # a fixed feature extractor
        return self

    def features(self, img: Tensor) -> Tensor:
        if self.norm_img:
            img = (img + 1) * 0.5
        return self.vgg((img - self.mean) / self.std)

    def forward(self, sr: Tensor, gt: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.features(gt)
        return F.mse_loss(self.features(sr), target)

    def extra_repr(self) -> str:
        return f"norm_img={self.norm_img}"


__all__ = [
    "PerceptualLoss",
    "discriminator_fake_loss",
    "discriminator_real_loss",
    "generator_gan_loss",
    "pixel_loss",
]
