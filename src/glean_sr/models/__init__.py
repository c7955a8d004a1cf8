"""Networks: the StyleGAN2 bank, GLEAN, and their building blocks."""

from .discriminator import StyleGAN2Discriminator
from .glean import GLEAN
from .light_glean import LightGLEAN
from .stylegan2 import StyleGAN2Generator

__all__ = ["GLEAN", "LightGLEAN", "StyleGAN2Discriminator", "StyleGAN2Generator"]
