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

from ..config import StyleGAN2Config, StyleGAN2DiscriminatorConfig, stylegan2_channels
from ..errors import ConfigError, WeightsError
from .glean_format import Mismatch

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


def channel_multiplier(channels: Mapping[int, int], name: str, what: str) -> int:
    """The config-f channel multiplier that gives ``channels`` (resolution -> width).

    Below 64 px the multiplier changes no width; 2 (config-f) is returned then.
    """
    candidates = [
        m
        for m in (1, 2, 4, 8)
        if all(stylegan2_channels(m)[res] == c for res, c in channels.items())
    ]
    if not candidates:
        widths = ", ".join(f"{r}px: {c}" for r, c in sorted(channels.items()))
        raise WeightsError(
            f"{name}: the {what}'s channel widths ({widths}) are not StyleGAN2 config-f's "
            f"(512 up to 32 px, then 256 x m at 64 px halving per resolution); other widths "
            f"are not supported"
        )
    return 2 if 2 in candidates else candidates[0]


def build_config(cls: type, name: str, what: str, **fields: Any) -> Any:
    try:
        return cls(**fields)
    except ConfigError as exc:
        raise WeightsError(f"{name}: the tensors describe no valid {what} ({exc})") from None


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


def pick_variant(
    variants: Mapping[bool, Any], ema: bool | None, name: str, labels: Mapping[bool, str]
) -> tuple[Any, bool, list[str]]:
    """Choose the EMA (``True``) or raw (``False``) generator; ``ema=None`` prefers the EMA one.

    Returns the chosen value, which one it is, and notes for the user.
    """
    want = True if ema is None else ema
    if variants.get(want) is not None:
        return variants[want], want, []
    other = not want
    if variants.get(other) is None:
        raise WeightsError(f"{name}: no generator found ({labels[True]} or {labels[False]})")
    if ema is None:
        return variants[other], other, [f"the file has no EMA generator; using {labels[other]}"]
    flag = "--ema" if other else "--no-ema"
    raise WeightsError(
        f"{name}: the file has no {labels[want]}; use {labels[other]} with ema={other} ({flag})"
    )
