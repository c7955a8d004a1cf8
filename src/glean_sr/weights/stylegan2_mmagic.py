"""StyleGAN2 files of mmagic 1.x, mmgeneration 0.x and OpenMMLab's converted official weights.

Containers (all ``torch.save`` dicts, the weights optionally under ``"state_dict"``):

* mmgeneration 0.x / the released ``stylegan2-*-config-f-official`` files: ``generator.*``,
  ``generator_ema.*``, ``discriminator.*``;
* mmagic 1.x (mmengine runner): ``generator_ema.module.*`` plus ``generator_ema.steps`` (the
  EMA wrapper), the rest as above, next to ``message_hub``/``optimizer`` entries;
* a bare generator state_dict (``style_mapping.*``, ``constant_input.input``, ...).

glean-sr's layout *is* mmagic's, so conversion is identity on keys and values; the rule table
still checks every key, the shapes, and that the stored FIR buffers are [1, 3, 3, 1] ones.
Numerical differences to mmagic's own code: its PixelNorm uses eps 1e-6 (ours 1e-8, as NVIDIA and
rosinality), which moves images by about 1e-5; fp16 runs clamp activations at 256.

The channel order is not in the file: mmagic trains on BGR images by default, while the
converted official weights produce RGB. :mod:`glean_sr.weights.banks` asks the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..config import StyleGAN2Config, StyleGAN2DiscriminatorConfig
from ..errors import WeightsError
from .stylegan2_common import (
    ConvertedBank,
    KeyRule,
    build_config,
    channel_multiplier,
    convert_by_rules,
    discriminator_target,
    expect_fir,
    generator_target,
    indices,
    need_tensor,
    pick_variant,
)

FORMAT = "mmagic/mmgeneration"

GENERATOR_RULES = [
    KeyRule(r"(.*\.(?:weight_orig|bias|weight|input)|injected_noise_\d+)", "{0}"),
    KeyRule(
        r"(convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel)", "{0}", expect_fir(4, 4)
    ),
]
DISCRIMINATOR_RULES = [
    KeyRule(r"(.*\.(?:weight_orig|bias))", "{0}"),
    KeyRule(r"(.*\.kernel)", "{0}", expect_fir(1, 1)),
]

#: Parts of mmagic/mmgeneration training checkpoints that are not the networks.
TOLERATED_PREFIXES = (
    "generator_ema.steps",
    "data_preprocessor.",
    "gen_auxiliary_losses.",
    "disc_auxiliary_losses.",
    "gan_loss.",
)
#: Where the generators are: mmagic 1.x EMA, mmgeneration / released EMA, raw.
_PREFIXES = ("generator_ema.module.", "generator_ema.", "generator.")
#: The ADA discriminator's augmentation pipeline (``ADAStyleGAN2Discriminator``).
_ADA_PREFIX = "ada_aug."


def _weights(obj: Any) -> Mapping[str, Any] | None:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return obj["state_dict"]
    return obj if isinstance(obj, Mapping) else None


def matches(obj: Any) -> bool:
    sd = _weights(obj)
    return sd is not None and any(
        k in sd
        for k in (
            "constant_input.input",
            "generator.constant_input.input",
            "generator_ema.constant_input.input",
            "generator_ema.module.constant_input.input",
        )
    )


def infer_generator_config(sd: Mapping[str, Tensor], name: str) -> StyleGAN2Config:
    """Architecture of a generator state_dict in mmagic's (= glean-sr's) layout."""
    what = "generator"
    convs = indices(sd, r"convs\.(\d+)\.conv\.weight_orig")
    if not convs or len(convs) % 2:
        raise WeightsError(f"{name}: cannot infer the generator architecture: no convs.* pairs")
    channels = {4: int(need_tensor(sd, "conv1.conv.weight_orig", name, what).shape[1])}
    for b in range(len(convs) // 2):
        key = f"convs.{2 * b + 1}.conv.weight_orig"
        channels[2 ** (b + 3)] = int(need_tensor(sd, key, name, what).shape[1])
    style = need_tensor(sd, "conv1.conv.style_modulation.linear.weight_orig", name, what)
    return build_config(
        StyleGAN2Config,
        name,
        "StyleGAN2 generator",
        resolution=max(channels),
        style_channels=int(style.shape[1]),
        num_mlps=len(indices(sd, r"style_mapping\.(\d+)\.bias")),
        channel_multiplier=channel_multiplier(channels, name, what),
        img_channels=int(need_tensor(sd, "to_rgb1.conv.weight_orig", name, what).shape[1]),
    )


def infer_discriminator_config(
    sd: Mapping[str, Tensor], name: str, mbstd_group_size: int = 4
) -> StyleGAN2DiscriminatorConfig:
    """Architecture of a discriminator state_dict in mmagic's layout (group size: not stored)."""
    what = "discriminator"
    blocks = indices(sd, r"convs\.(\d+)\.conv1\.0\.conv\.weight_orig")
    from_rgb = need_tensor(sd, "convs.0.0.conv.weight_orig", name, what)
    resolution = 2 ** (len(blocks) + 2)
    channels = {resolution: int(from_rgb.shape[0])}
    for k in blocks:
        key = f"convs.{k}.conv2.1.conv.weight_orig"
        channels[resolution >> k] = int(need_tensor(sd, key, name, what).shape[0])
    final = need_tensor(sd, "final_conv.0.conv.weight_orig", name, what)
    return build_config(
        StyleGAN2DiscriminatorConfig,
        name,
        "StyleGAN2 discriminator",
        resolution=resolution,
        channel_multiplier=channel_multiplier(channels, name, what),
        img_channels=int(from_rgb.shape[1]),
        mbstd_group_size=mbstd_group_size,
        mbstd_channels=int(final.shape[1]) - channels.get(4, 0),
    )


def _with_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def convert(obj: Any, name: str, ema: bool | None = None) -> ConvertedBank:
    sd = _weights(obj)
    assert sd is not None
    notes: list[str] = []
    if "constant_input.input" in sd:  # a bare generator state_dict
        gen, disc, used_ema, rest = dict(sd), {}, None, {}
    else:
        keys = list(sd)
        ema_prefix = next(
            (
                p
                for p in ("generator_ema.module.", "generator_ema.")
                if any(k.startswith(p) for k in keys)
            ),
            None,
        )
        raw_prefix = "generator." if any(k.startswith("generator.") for k in keys) else None
        prefix, used_ema, notes = pick_variant(
            {True: ema_prefix, False: raw_prefix},
            ema,
            name,
            {True: "the EMA generator (generator_ema.*)", False: "the raw generator (generator.*)"},
        )
        gen = _with_prefix(sd, prefix)
        disc = _with_prefix(sd, "discriminator.")
        ada = [k for k in disc if k.startswith(_ADA_PREFIX)]
        for k in ada:
            del disc[k]
        if ada:
            notes.append(f"ignored the ADA augmentation pipeline ({len(ada)} tensors)")
        skipped = [p for p in (ema_prefix, raw_prefix) if p and p != prefix]
        rest = {
            k: v
            for k, v in sd.items()
            if not k.startswith((prefix, "discriminator.", *skipped, *TOLERATED_PREFIXES))
        }
    if rest:
        shown = ", ".join(sorted(rest)[:4])
        raise WeightsError(
            f"{name}: {len(rest)} entries are neither generator nor discriminator ({shown})"
        )
    if any(k.startswith("embed.") for k in gen):
        raise WeightsError(f"{name}: conditional (class-label) generators are not supported")
    w_avg = gen.pop("w_avg", None)
    config = infer_generator_config(gen, name)
    generator = convert_by_rules(
        GENERATOR_RULES, generator_target(config), gen, name=name, what="generator"
    )
    d_config = d_sd = None
    if disc:
        d_config = infer_discriminator_config(disc, name)
        d_sd = convert_by_rules(
            DISCRIMINATOR_RULES,
            discriminator_target(d_config),
            disc,
            name=name,
            what="discriminator",
        )
    return ConvertedBank(
        format=FORMAT,
        generator_config=config,
        generator=generator,
        w_avg=w_avg,
        discriminator_config=d_config,
        discriminator=d_sd,
        channel_order=None,
        ema=used_ema,
        notes=notes,
    )
