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

FORMAT = "mmagic/mmgeneration"

LAYOUT = StyledLayout(
    conv="weight_orig",
    modulation="style_modulation.linear.weight_orig",
    mapping="style_mapping",
    d_conv="conv.weight_orig",
)

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


def _with_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def convert(obj: Any, name: str, ema: bool | None = None) -> ConvertedBank:
    sd = _weights(obj)
    assert sd is not None
    notes: list[str] = []
    if "constant_input.input" in sd:  # a bare generator state_dict
        gen, disc, used_ema, rest = dict(sd), {}, None, {}
    else:
        present = [p for p in _PREFIXES if any(k.startswith(p) for k in sd)]
        ema_prefix = next((p for p in present if p.startswith("generator_ema.")), None)
        raw_prefix = "generator." if "generator." in present else None
        prefix, used_ema, notes = pick_variant(
            {True: ema_prefix, False: raw_prefix},
            ema,
            name,
            {True: "EMA generator (generator_ema.*)", False: "raw generator (generator.*)"},
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
    discriminator = None
    if disc:
        config = infer_styled_discriminator(disc, name, LAYOUT)
        discriminator = (config, disc, DISCRIMINATOR_RULES, ())
    return convert_networks(
        FORMAT,
        name,
        generator=(infer_styled_generator(gen, name, LAYOUT), gen, GENERATOR_RULES, ()),
        discriminator=discriminator,
        w_avg=w_avg,
        channel_order=None,
        ema=used_ema,
        notes=notes,
    )
