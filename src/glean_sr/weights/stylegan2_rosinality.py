"""StyleGAN2 files of rosinality/stylegan2-pytorch.

Containers (``torch.save`` dicts):

* ``train.py`` checkpoints: ``{"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"}``
  (``args`` is an ``argparse.Namespace``: read through the inert unpickler);
* ``convert_weight.py`` output: ``{"g_ema", "latent_avg"[, "g"][, "d"]}``; ``latent_avg`` is the
  TensorFlow network's ``dlatent_avg``, kept as the truncation centre;
* a bare ``Generator.state_dict()``.

Layout differences to glean-sr (= mmagic) are names and shapes only, the numerics are the same
(equalized-lr scales applied at run time in both; the up-sampling taps are stored the same way,
rosinality's ``convert_weight.py`` having flipped TensorFlow's): ``style.{i}.weight`` vs
``style_mapping.{i}.linear.weight_orig``, ``input.input`` vs ``constant_input.input``,
``*.conv.modulation`` vs ``*.conv.style_modulation.linear``, ``*.noise.weight`` vs
``*.noise_injector.weight``, ``noises.noise_{i}`` vs ``injected_noise_{i}``; the discriminator's
``*.weight`` are ``*.conv.weight_orig`` / ``*.linear.weight_orig``. rosinality's minibatch stddev
group size is fixed at 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..errors import WeightsError
from .stylegan2_common import (
    ConvertedBank,
    KeyRule,
    StyledLayout,
    convert_networks,
    expect_fir,
    infer_styled_discriminator,
    infer_styled_generator,
    pick_variant,
)

FORMAT = "rosinality"

LAYOUT = StyledLayout(
    conv="weight", modulation="modulation.weight", mapping="style", d_conv="weight"
)

_LAYER = r"(conv1|convs\.\d+)"
_ANY = r"(conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+)"
_RGB = r"(to_rgb1|to_rgbs\.\d+)"

GENERATOR_RULES = [
    KeyRule(r"style_mapping\.(\d+)\.linear\.weight_orig", "style.{0}.weight"),
    KeyRule(r"style_mapping\.(\d+)\.bias", "style.{0}.bias"),
    KeyRule(r"constant_input\.input", "input.input"),
    KeyRule(_ANY + r"\.conv\.weight_orig", "{0}.conv.weight"),
    KeyRule(_ANY + r"\.conv\.style_modulation\.linear\.weight_orig", "{0}.conv.modulation.weight"),
    KeyRule(_ANY + r"\.conv\.style_modulation\.bias", "{0}.conv.modulation.bias"),
    KeyRule(_LAYER + r"\.noise_injector\.weight", "{0}.noise.weight"),
    KeyRule(_LAYER + r"\.activate\.bias", "{0}.activate.bias"),
    KeyRule(r"(convs\.\d+)\.conv\.blur\.kernel", "{0}.conv.blur.kernel", expect_fir(4, 4)),
    KeyRule(_RGB + r"\.bias", "{0}.bias"),
    KeyRule(r"(to_rgbs\.\d+)\.upsample\.kernel", "{0}.upsample.kernel", expect_fir(4, 4)),
    KeyRule(r"injected_noise_(\d+)", "noises.noise_{0}"),
]
DISCRIMINATOR_RULES = [
    KeyRule(r"(.*)\.conv\.weight_orig", "{0}.weight"),
    KeyRule(r"(.*)\.linear\.weight_orig", "{0}.weight"),
    KeyRule(r"(.*\.bias)", "{0}"),
    KeyRule(r"(.*\.kernel)", "{0}", expect_fir(1, 1)),
]

#: What rosinality's scripts put next to the networks.
_KNOWN_ENTRIES = {"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p", "latent_avg"}


def _is_generator(sd: Any) -> bool:
    return isinstance(sd, Mapping) and "input.input" in sd and "conv1.conv.weight" in sd


def matches(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    return _is_generator(obj) or _is_generator(obj.get("g_ema")) or _is_generator(obj.get("g"))


def convert(obj: Any, name: str, ema: bool | None = None) -> ConvertedBank:
    notes: list[str] = []
    if _is_generator(obj):
        gen, disc, used_ema, w_avg = obj, None, None, None
    else:
        gen, used_ema, notes = pick_variant(
            {True: obj.get("g_ema"), False: obj.get("g")},
            ema,
            name,
            {True: "EMA generator ('g_ema')", False: "raw generator ('g')"},
        )
        disc = obj.get("d")
        w_avg = obj.get("latent_avg")
        if w_avg is not None and not isinstance(w_avg, Tensor):
            raise WeightsError(f"{name}: 'latent_avg' is not a tensor")
        unknown = sorted(str(k) for k in obj if k not in _KNOWN_ENTRIES)
        if unknown:
            notes.append(f"ignored entries besides the networks: {', '.join(unknown)}")
    discriminator = None
    if isinstance(disc, Mapping):
        config = infer_styled_discriminator(disc, name, LAYOUT)
        discriminator = (config, disc, DISCRIMINATOR_RULES, ())
    return convert_networks(
        FORMAT,
        name,
        generator=(infer_styled_generator(gen, name, LAYOUT), gen, GENERATOR_RULES, ()),
        discriminator=discriminator,
        w_avg=w_avg.reshape(-1) if w_avg is not None else None,
        channel_order="RGB",  # rosinality trains on PIL (RGB) images
        ema=used_ema,
        notes=notes,
    )
