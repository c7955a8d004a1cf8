"""What the three StyleGAN2 converters share: key-rule tables, architecture inference, and the
converted result.

A converter is a table of :class:`KeyRule`: for every key of *our* network (built on the meta
device from the inferred architecture) exactly one rule says which key of the foreign file holds
it and how its layout changes. Conversion is strict both ways: every target key must be found
with the right shape, and every foreign key must be used or be on the converter's explicit list of
tolerated keys. A target key that matches no rule, or two, is a bug in the table, not in the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import StyleGAN2Config, StyleGAN2DiscriminatorConfig
from ..errors import ConfigError, WeightsError
from .glean_format import Mismatch
from .widths import ChannelRule, widths_as_fields

#: The FIR taps of every released StyleGAN2 (``blur_kernel`` / ``resample_filter``).
TAPS = (1, 3, 3, 1)


class LayoutError(ValueError):
    """A foreign tensor's value or layout cannot be converted (raised inside a rule)."""


@dataclass(frozen=True)
class KeyRule:
    """Our key (``target``, a regex matched in full) <- the foreign key that holds it.

    ``source`` is a ``str.format`` template over the match's groups (``"{0}.conv.weight"``) or a
    function of the match. ``convert`` changes the layout (reshape, filter gain); it may raise
    :class:`LayoutError`.
    """

    target: str
    source: str | Callable[[re.Match[str]], str]
    convert: Callable[[Tensor], Tensor] | None = None

    def source_key(self, match: re.Match[str]) -> str:
        if callable(self.source):
            return self.source(match)
        return self.source.format(*match.groups())


def convert_by_rules(
    rules: Sequence[KeyRule],
    target: Mapping[str, Tensor],
    source: Mapping[str, Tensor],
    *,
    name: str,
    what: str,
    tolerated: Iterable[str] = (),
) -> dict[str, Tensor]:
    """Fill every key of ``target`` (shapes only, e.g. on the meta device) from ``source``.

    Raises :class:`WeightsError` listing missing, unexpected and mis-shaped keys (in the foreign
    file's names) when the file does not fit.
    """
    compiled = [(re.compile(rule.target), rule) for rule in rules]
    tolerated_rx = [re.compile(p) for p in tolerated]
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for key, ref in target.items():
        hits = [(rx.fullmatch(key), rule) for rx, rule in compiled]
        hits = [(m, rule) for m, rule in hits if m is not None]
        if len(hits) != 1:
            raise RuntimeError(f"converter table for {what}: key {key} matches {len(hits)} rules")
        match, rule = hits[0]
        src_key = rule.source_key(match)
        if src_key not in source:
            missing.append(src_key)
            continue
        used.add(src_key)
        value = source[src_key]
        if not isinstance(value, Tensor):
            raise WeightsError(f"{name}: {what} entry '{src_key}' is not a tensor")
        try:
            value = rule.convert(value) if rule.convert is not None else value
        except LayoutError as exc:
            raise WeightsError(f"{name}: {what} tensor '{src_key}': {exc}") from None
        if tuple(value.shape) != tuple(ref.shape):
            misshaped.append((src_key, tuple(source[src_key].shape), tuple(ref.shape)))
            continue
        out[key] = value.contiguous()
    unexpected = sorted(
        k for k in source if k not in used and not any(rx.fullmatch(k) for rx in tolerated_rx)
    )
    mismatch = Mismatch(missing, unexpected, misshaped)
    if mismatch:
        raise WeightsError(f"{name}: the {what} does not fit: {mismatch.describe()}")
    return out


# -- layout changes --------------------------------------------------------------------------------


def fir_kernel(gain: float) -> Tensor:
    """``outer(TAPS, TAPS) / sum * gain``: the stored filter buffers (gain 1 or up ** 2 = 4)."""
    t = torch.tensor(TAPS, dtype=torch.float32)
    k = t[:, None] * t[None, :]
    return k / k.sum() * gain


def expect_fir(stored_gain: float, target_gain: float) -> Callable[[Tensor], Tensor]:
    """A rule conversion for filter buffers: check the stored filter is [1, 3, 3, 1] with
    ``stored_gain`` and return ours with ``target_gain`` (the taps are never flipped)."""

    def convert(t: Tensor) -> Tensor:
        ref = fir_kernel(stored_gain)
        if tuple(t.shape) != tuple(ref.shape) or not torch.allclose(t.float(), ref, atol=1e-6):
            raise LayoutError(f"the filter is not StyleGAN2's {list(TAPS)} (only that one is read)")
        return fir_kernel(target_gain)

    return convert


def reshape_to(*shape: int) -> Callable[[Tensor], Tensor]:
    def convert(t: Tensor) -> Tensor:
        if t.numel() != math.prod(shape):
            raise LayoutError(f"has {t.numel()} values, expected {list(shape)}")
        return t.reshape(shape)

    return convert


def add_batch_dim(t: Tensor) -> Tensor:
    """``[out, in, k, k]`` -> ``[1, out, in, k, k]``; ``[C, 4, 4]`` -> ``[1, C, 4, 4]``."""
    return t.unsqueeze(0)


# -- architecture ----------------------------------------------------------------------------------


def indices(keys: Iterable[str], pattern: str) -> list[int]:
    """Sorted distinct integers ``i`` of keys matching ``pattern`` (one ``(\\d+)`` group)."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.fullmatch(k))})


def need_tensor(sd: Mapping[str, Any], key: str, name: str, what: str) -> Tensor:
    """``sd[key]``, or a one-line error saying the architecture cannot be read without it."""
    value = sd.get(key)
    if not isinstance(value, Tensor):
        raise WeightsError(f"{name}: cannot infer the {what} architecture: '{key}' is missing")
    return value


def _build_config(cls: type, name: str, what: str, **fields: Any) -> Any:
    try:
        return cls(**fields)
    except ConfigError as exc:
        raise WeightsError(f"{name}: the tensors describe no valid {what} ({exc})") from None


def generator_config(
    name: str,
    *,
    channels: Mapping[int, int],
    style_channels: int,
    num_mlps: int,
    img_channels: int,
    lr_mlp: float = 0.01,
    rule: ChannelRule | None = None,
) -> StyleGAN2Config:
    """The generator whose widths are ``channels`` (resolution -> width, 4 .. resolution);
    ``rule`` is NVIDIA's recorded ``(channel_base, channel_max)`` where the file has one.

    ``lr_mlp`` is not in the tensors; 0.01 is every released network's (and every code's
    default)."""
    return _build_config(
        StyleGAN2Config,
        name,
        "StyleGAN2 generator",
        resolution=max(channels),
        style_channels=style_channels,
        num_mlps=num_mlps,
        img_channels=img_channels,
        lr_mlp=lr_mlp,
        **widths_as_fields(channels, name, "generator", rule),
    )


def discriminator_config(
    name: str,
    *,
    channels: Mapping[int, int],
    img_channels: int,
    final_in_channels: int,
    mbstd_group_size: int = 4,
    rule: ChannelRule | None = None,
) -> StyleGAN2DiscriminatorConfig:
    """The discriminator whose widths are ``channels`` (resolution -> width, 4 .. resolution);
    the minibatch-stddev channels are what the final conv takes beyond the 4x4 features."""
    return _build_config(
        StyleGAN2DiscriminatorConfig,
        name,
        "StyleGAN2 discriminator",
        resolution=max(channels),
        img_channels=img_channels,
        mbstd_group_size=mbstd_group_size,
        mbstd_channels=final_in_channels - channels.get(4, 0),
        **widths_as_fields(channels, name, "discriminator", rule),
    )


def meta_state_dict(module_cls: type, config: Any) -> dict[str, Tensor]:
    """Keys and shapes of our module for ``config``, built without allocating memory."""
    with torch.device("meta"):
        return dict(module_cls(config).state_dict())


def generator_target(config: StyleGAN2Config) -> dict[str, Tensor]:
    from ..models.stylegan2 import StyleGAN2Generator

    return meta_state_dict(StyleGAN2Generator, config)


def discriminator_target(config: StyleGAN2DiscriminatorConfig) -> dict[str, Tensor]:
    from ..models.discriminator import StyleGAN2Discriminator

    return meta_state_dict(StyleGAN2Discriminator, config)


@dataclass(frozen=True)
class StyledLayout:
    """Where rosinality's module tree, and mmagic's port of it, keep the tensors the architecture
    is read from (the trees are the same; leaf names differ)."""

    conv: str  # leaf of a modulated conv's weight: conv1.conv.<conv>, [1, out, in, k, k]
    modulation: str  # leaf of its style dense weight: conv1.conv.<modulation>, [in, S]
    mapping: str  # prefix of the mapping MLP: <mapping>.{1..L}.bias
    d_conv: str  # leaf of a discriminator conv's weight: convs.0.0.<d_conv>, [out, in, k, k]


def infer_styled_generator(
    sd: Mapping[str, Any], name: str, layout: StyledLayout
) -> StyleGAN2Config:
    """StyleGAN2Config of a generator in a rosinality-style tree."""
    what = "generator"
    convs = indices(sd, rf"convs\.(\d+)\.conv\.{re.escape(layout.conv)}")
    if not convs or len(convs) % 2:
        raise WeightsError(f"{name}: cannot infer the generator architecture: no convs.* pairs")
    channels = {4: int(need_tensor(sd, f"conv1.conv.{layout.conv}", name, what).shape[1])}
    for b in range(len(convs) // 2):  # block b's second conv has the width of 2 ** (b + 3)
        key = f"convs.{2 * b + 1}.conv.{layout.conv}"
        channels[2 ** (b + 3)] = int(need_tensor(sd, key, name, what).shape[1])
    style = need_tensor(sd, f"conv1.conv.{layout.modulation}", name, what)
    rgb = need_tensor(sd, f"to_rgb1.conv.{layout.conv}", name, what)
    return generator_config(
        name,
        channels=channels,
        style_channels=int(style.shape[1]),
        num_mlps=len(indices(sd, rf"{re.escape(layout.mapping)}\.(\d+)\.bias")),
        img_channels=int(rgb.shape[1]),
    )


def infer_styled_discriminator(
    sd: Mapping[str, Any], name: str, layout: StyledLayout, mbstd_group_size: int = 4
) -> StyleGAN2DiscriminatorConfig:
    """StyleGAN2DiscriminatorConfig of a rosinality-style discriminator (the minibatch-stddev
    group size is not stored in these files: both codes fix it at 4)."""
    what = "discriminator"
    blocks = indices(sd, rf"convs\.(\d+)\.conv1\.0\.{re.escape(layout.d_conv)}")
    from_rgb = need_tensor(sd, f"convs.0.0.{layout.d_conv}", name, what)
    resolution = 2 ** (len(blocks) + 2)
    channels = {resolution: int(from_rgb.shape[0])}
    for k in blocks:  # block k halves resolution >> (k - 1)
        key = f"convs.{k}.conv2.1.{layout.d_conv}"
        channels[resolution >> k] = int(need_tensor(sd, key, name, what).shape[0])
    final = need_tensor(sd, f"final_conv.0.{layout.d_conv}", name, what)
    return discriminator_config(
        name,
        channels=channels,
        img_channels=int(from_rgb.shape[1]),
        final_in_channels=int(final.shape[1]),
        mbstd_group_size=mbstd_group_size,
    )


# -- the converted result --------------------------------------------------------------------------


@dataclass
class ConvertedBank:
    """A foreign StyleGAN2 file in glean-sr's layout (state_dicts, not yet modules)."""

    format: str
    generator_config: StyleGAN2Config
    generator: dict[str, Tensor]
    w_avg: Tensor | None = None
    discriminator_config: StyleGAN2DiscriminatorConfig | None = None
    discriminator: dict[str, Tensor] | None = None
    #: "RGB" where the format fixes it, None where the file does not say
    channel_order: str | None = None
    #: True: the EMA generator, False: the raw one, None: the file has only one, unlabelled
    ema: bool | None = None
    notes: list[str] = field(default_factory=list)


def convert_networks(
    fmt: str,
    name: str,
    *,
    generator: tuple[StyleGAN2Config, Mapping[str, Tensor], Sequence[KeyRule], Iterable[str]],
    discriminator: tuple[Any, Mapping[str, Tensor], Sequence[KeyRule], Iterable[str]] | None,
    **fields: Any,
) -> ConvertedBank:
    """Convert a generator and an optional discriminator, each given as (config, foreign
    state_dict, rules, tolerated keys), into a :class:`ConvertedBank`."""
    config, sd, rules, tolerated = generator
    g_sd = convert_by_rules(
        rules, generator_target(config), sd, name=name, what="generator", tolerated=tolerated
    )
    d_config = d_sd = None
    if discriminator is not None:
        d_config, sd, rules, tolerated = discriminator
        d_sd = convert_by_rules(
            rules,
            discriminator_target(d_config),
            sd,
            name=name,
            what="discriminator",
            tolerated=tolerated,
        )
    return ConvertedBank(
        format=fmt,
        generator_config=config,
        generator=g_sd,
        discriminator_config=d_config,
        discriminator=d_sd,
        **fields,
    )


def pick_variant(
    variants: Mapping[bool, Any], ema: bool | None, name: str, labels: Mapping[bool, str]
) -> tuple[Any, bool, list[str]]:
    """Choose the EMA (``True``) or raw (``False``) generator; ``ema=None`` prefers the EMA one.

    ``labels`` name them for messages ("EMA generator ('g_ema')"). Returns the chosen value,
    which one it is, and notes for the user.
    """
    want = True if ema is None else ema
    if variants.get(want) is not None:
        return variants[want], want, []
    other = not want
    if variants.get(other) is None:
        raise WeightsError(f"{name}: no generator found ({labels[True]} or {labels[False]})")
    if ema is None:
        return variants[other], other, [f"the file has no EMA generator; using the {labels[other]}"]
    flag = "--ema" if other else "--no-ema"
    raise WeightsError(
        f"{name}: the file has no {labels[want]}; use the {labels[other]} with ema={other} ({flag})"
    )
