"""The latent bank and the initial discriminator of a training run, loaded strictly from a file.

mmediting 1.x configs loaded the bank with ``strict=False`` under a prefix that matched nothing,
so they trained GLEAN around a *random* StyleGAN2 without a word. Here the bank comes only from
the StyleGAN2 file the recipe names (``glean_sr.load_bank``: mmagic, rosinality or NVIDIA
formats, or a ``BANK_PRESETS`` name), and training refuses to start when the file is missing,
has no discriminator although the GAN loss needs one, or does not fit the recipe's model.
BigGAN files (pytorch-pretrained-biggan, BigGAN-PyTorch ``G.pth``, TF Hub conversions) hold no
discriminator at all: for them BigGAN-PyTorch's discriminator of that generator starts from
scratch (for a BigGAN-deep bank, the one of the same width and attention,
:func:`glean_sr.models.biggan_discriminator.discriminator_config`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch
from torch import nn

from ..config import BigGANDeepConfig
from ..errors import ConfigError, GleanError, WeightsError
from ..weights.biggan_banks import LoadedBigGAN

#: the recipe's [model] key that sets each StyleGAN2Config field of the bank it needs
_MODEL_KEY = {"resolution": "out_size"}


def _setting(field: str, value: Any) -> str:
    """The ``model.*`` override that sets ``field`` to the bank's ``value`` (TOML syntax, no
    spaces: tuples such as a width table become nested arrays)."""
    key = f"model.{_MODEL_KEY.get(field, field)}"
    if value is None:
        return f"no {key}"
    if isinstance(value, tuple):
        return f"{key}={json.dumps(value, separators=(',', ':'))}"
    return f"{key}={value}"


def _mismatch(source: str, have: Any, need: Any, model_config: Any) -> str:
    """One line: which bank fields differ and which ``model.*`` overrides would fit the bank."""
    names = [f.name for f in dataclasses.fields(need)]
    diffs = [n for n in names if getattr(have, n, None) != getattr(need, n)]
    told = ", ".join(
        f"its {n} is {getattr(have, n)}, the model needs {getattr(need, n)}" for n in diffs
    )
    fix = " ".join(_setting(n, getattr(have, n)) for n in diffs)
    return (
        f"the bank '{source}' does not fit the recipe's model ({model_config.in_size} -> "
        f"{model_config.out_size}): {told}; use a bank that fits or set {fix}"
    )


def load_training_bank(
    source: str,
    model_config: Any,
    *,
    need_discriminator: bool,
    channel_order: str = "",
    progress: bool = True,
) -> tuple[nn.Module, nn.Module | None, list[str]]:
    """``(generator, discriminator, notes)`` from ``source``; the discriminator is None when not
    needed; ``notes`` are the loader's remarks (e.g. an assumed channel order).

    Raises a one-line :class:`WeightsError` when the file cannot be loaded or does not fit
    ``model_config`` (whose ``bank`` property is the StyleGAN2 architecture the model needs).
    """
    from .. import load_bank

    try:
        loaded = load_bank(source, channel_order=channel_order or None, progress=progress)
    except GleanError as exc:
        raise WeightsError(f"cannot load the latent bank '{source}': {exc}") from None
    generator = loaded.generator
    need = model_config.bank
    if generator.config != need:
        raise WeightsError(_mismatch(source, generator.config, need, model_config))
    notes = list(getattr(loaded, "notes", []))
    if isinstance(loaded, LoadedBigGAN):
        return generator, _biggan_discriminator(loaded, need_discriminator, notes), notes
    discriminator = loaded.discriminator if need_discriminator else None
    if need_discriminator:
        if discriminator is None:
            raise WeightsError(
                f"the bank file '{source}' holds no discriminator, which the GAN loss starts "
                f"from; use the full StyleGAN2 file (generator + discriminator) or set "
                f"loss.gan_weight=0"
            )
        d_res = discriminator.config.resolution
        if d_res != model_config.out_size:
            raise WeightsError(
                f"the discriminator in '{source}' judges {d_res} px images, the model makes "
                f"{model_config.out_size} px"
            )
    return generator, discriminator, notes


def _biggan_discriminator(loaded: Any, needed: bool, notes: list[str]) -> nn.Module | None:
    """BigGAN files hold no discriminator: BigGAN-PyTorch's for this generator, from scratch
    (seeded, so every process and every fresh run starts from the same one)."""
    if not needed:
        return None
    from ..models.biggan_discriminator import BigGANDiscriminator, discriminator_config

    try:
        config = discriminator_config(loaded.config)
    except ConfigError as exc:
        raise WeightsError(f"no discriminator for the BigGAN bank: {exc}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        discriminator = BigGANDiscriminator(config)
    if isinstance(loaded.config, BigGANDeepConfig):
        what = f"D_ch = channel_width = {config.ch}, attention at {list(config.attention)} px"
    else:
        what = "D_ch = G_ch, attention as G's"
    notes.append(
        f"the BigGAN file holds no discriminator: BigGAN-PyTorch's discriminator for this "
        f"generator ({what}, no class projection) starts from scratch"
    )
    return discriminator


__all__ = ["load_training_bank"]
