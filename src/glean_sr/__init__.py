"""glean-sr: large-factor image restoration with generative latent banks (GLEAN), pure PyTorch.

The public API is imported lazily so that ``import glean_sr`` (and ``glean-sr --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GLEAN": "glean_sr.models.glean",
    "LightGLEAN": "glean_sr.models.light_glean",
    "LightGLEANConfig": "glean_sr.config",
    "RRDBNet": "glean_sr.models.realesrgan",
    "RealESRGANConfig": "glean_sr.config",
    "StyleGAN2Generator": "glean_sr.models.stylegan2",
    "StyleGAN2Discriminator": "glean_sr.models.discriminator",
    "GLEANConfig": "glean_sr.config",
    "StyleGAN2Config": "glean_sr.config",
    "StyleGAN2DiscriminatorConfig": "glean_sr.config",
    "PRESETS": "glean_sr.presets",
    "BANK_PRESETS": "glean_sr.presets",
    "build_model": "glean_sr.models.registry",
    "load_model": "glean_sr.weights.pretrained",
    "save_pretrained": "glean_sr.weights.pretrained",
    "load_bank": "glean_sr.weights.banks",
    "LoadedBank": "glean_sr.weights.banks",
    "build_glean_from_bank": "glean_sr.weights.banks",
    "build_lightglean_from_bank": "glean_sr.weights.banks",
    "GLEANBigGAN": "glean_sr.models.glean_biggan",
    "GLEANBigGANConfig": "glean_sr.config",
    "GLEANBigGANDeepConfig": "glean_sr.config",
    "LightGLEANBigGAN": "glean_sr.models.light_glean_biggan",
    "LightGLEANBigGANConfig": "glean_sr.config",
    "LightGLEANBigGANDeepConfig": "glean_sr.config",
    "BigGANConfig": "glean_sr.config",
    "BigGANDeepConfig": "glean_sr.config",
    "LoadedBigGAN": "glean_sr.weights.biggan_banks",
    "build_glean_biggan_from_bank": "glean_sr.weights.biggan_banks",
    "build_lightglean_biggan_from_bank": "glean_sr.weights.biggan_banks",
    "GleanError": "glean_sr.errors",
    "imresize": "glean_sr.data.imresize",
    "Upscaler": "glean_sr.inference.upscaler",
    "FaceRestorer": "glean_sr.inference.faces",
    "Colorizer": "glean_sr.inference.colorize",
    "Retoucher": "glean_sr.inference.retouch",
    "GLEANColorizer": "glean_sr.models.colorizer",
    "GLEANColorizerConfig": "glean_sr.config",
    "read_image": "glean_sr.io",
    "write_image": "glean_sr.io",
    "ImageData": "glean_sr.io",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glean_sr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["__version__", *sorted(_EXPORTS)]
