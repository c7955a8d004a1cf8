"""Networks: the StyleGAN2 bank, GLEAN, Real-ESRGAN's RRDBNet, and their building blocks."""

from .discriminator import StyleGAN2Discriminator
from .glean import GLEAN
from .light_glean import LightGLEAN
from .realesrgan import RRDBNet
from .stylegan2 import StyleGAN2Generator

__all__ = ["GLEAN", "LightGLEAN", "RRDBNet", "StyleGAN2Discriminator", "StyleGAN2Generator"]
