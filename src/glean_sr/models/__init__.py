"""Networks: the StyleGAN2 bank, GLEAN, and their building blocks."""

from .discriminator import StyleGAN2Discriminator
from .glean import GLEAN
from .stylegan2 import StyleGAN2Generator

__all__ = ["GLEAN", "StyleGAN2Discriminator", "StyleGAN2Generator"]
