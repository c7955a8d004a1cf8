"""Networks: the StyleGAN2 bank, GLEAN, and their building blocks."""

from .glean import GLEAN
from .stylegan2 import StyleGAN2Generator

__all__ = ["GLEAN", "StyleGAN2Generator"]
