"""Architecture configurations: frozen dataclasses that are saved next to every set of weights.

A configuration is the complete description of a network's shape. ``config.json`` in a glean-sr
model directory is ``{"model_type": ..., **fields}``; :func:`config_from_dict` reads it back
strictly (unknown or missing keys are errors, never silently ignored).

A config may come from an untrusted file, so every field is checked against a stated range
before anything is built: resolutions are powers of two in the supported range, feature widths
(and ``style_channels``, ``rrdb_channels``, ...) at most :data:`MAX_CHANNELS`, block counts
(``num_rrdbs``, ``num_mlps``) at most :data:`MAX_BLOCKS`, ``channel_multiplier`` at most
:data:`MAX_CHANNEL_MULTIPLIER`, image channels at most :data:`MAX_IMAGE_CHANNELS`, ``lr_mlp`` a
finite number > 0. Then the network's parameter count, computed from the fields alone
(``parameter_count()``), must be within :func:`glean_sr.limits.max_params`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ConfigError
from .limits import max_params

#: StyleGAN2's feature channels per resolution (config-f), before the channel multiplier.
_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def stylegan2_channels(channel_multiplier: int) -> dict[int, int]:
    """StyleGAN2's channel table: resolution -> channels (the multiplier applies from 64 up)."""
    return {
        res: (ch if res <= 32 else ch * channel_multiplier) for res, ch in _BASE_CHANNELS.items()
    }


def nvidia_channels(channel_base: int, channel_max: int, resolution: int) -> dict[int, int]:
    """NVIDIA's channel rule (stylegan2-ada-pytorch, stylegan3): ``min(channel_base // res,
    channel_max)`` for res = 4, 8, ..., resolution. Config-f is ``channel_base=32768,
    channel_max=512``; ``--cfg paper256`` halves the base."""
    return {2**k: min(channel_base // 2**k, channel_max) for k in range(2, _log2(resolution) + 1)}


def _log2(value: int) -> int:
    return int(math.log2(value))


def is_power_of_two(value: int) -> bool:
    return isinstance(value, int) and value > 0 and value & (value - 1) == 0


#: Largest feature width (and style, RRDB, head and minibatch-stddev width); released models
#: use at most 512.
MAX_CHANNELS = 4096
#: Largest number of RRDBs or mapping layers; released models use at most 23 and 8.
MAX_BLOCKS = 64
#: Largest ``channel_multiplier``; config-f is 2.
MAX_CHANNEL_MULTIPLIER = 64
#: Largest number of image channels (grey 1, RGB 3, RGBA 4).
MAX_IMAGE_CHANNELS = 4
#: Largest ``channel_base`` of NVIDIA's width rule (config-f: 32768); widths are bounded anyway.
MAX_CHANNEL_BASE = MAX_CHANNELS * 1024


def _check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


def _check_positive_float(name: str, value: Any) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


def _check_parameter_budget(config: Any) -> None:
    """Refuse a config whose network would have more parameters than the budget, before it is
    built (a million RRDBs would otherwise take minutes and gigabytes to refuse)."""
    count, budget = config.parameter_count(), max_params()
    if count > budget:
        raise ConfigError(
            f"this {config.model_type} config describes {count:,} parameters, more than the "
            f"budget of {budget:,} (set GLEAN_SR_MAX_PARAMS to raise it if you trust the config)"
        )


def _conv_params(c_in: int, c_out: int, k: int = 3) -> int:
    """Parameters of ``nn.Conv2d(c_in, c_out, k)`` with bias."""
    return c_in * c_out * k * k + c_out


def _rrdb_trunk_params(in_channels: int, channels: int, num_blocks: int, growth: int = 32) -> int:
    """Parameters of ``RRDBFeatureExtractor``: conv_first, ``num_blocks`` RRDBs of three dense
    blocks (five 3x3 convs each), conv_body."""
    dense = sum(_conv_params(channels + j * growth, growth) for j in range(4))
    dense += _conv_params(channels + 4 * growth, channels)
    first, body = _conv_params(in_channels, channels), _conv_params(channels, channels)
    return first + num_blocks * 3 * dense + body


#: The fields that describe StyleGAN2's widths besides ``channel_multiplier``; left out of
#: ``config.json`` when unset, so files written before they existed read back unchanged.
WIDTH_FIELDS = ("channel_base", "channel_max", "channel_table")

ChannelTable = tuple[tuple[int, int], ...]


def _normalise_table(config: Any, name: str = "channel_table") -> None:
    """Store an explicit width table (a mapping or pairs) as sorted ``(res, width)`` pairs, so
    that the frozen config stays hashable."""
    table = getattr(config, name)
    if table is None:
        return
    try:
        pairs = table.items() if isinstance(table, Mapping) else table
        pairs = tuple(sorted((r, w) for r, w in pairs))
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must map resolutions to widths ({{4: 512, 8: 512, ...}}), got {table!r}"
        ) from None
    object.__setattr__(config, name, pairs)


def _check_widths(config: Any, resolution: int) -> None:
    """Exactly one width description, and a table of widths in [1, MAX_CHANNELS] for
    4 .. ``resolution``."""
    _check_int("channel_multiplier", config.channel_multiplier, maximum=MAX_CHANNEL_MULTIPLIER)
    _normalise_table(config)
    uses_rule = config.channel_base is not None or config.channel_max is not None
    if uses_rule and config.channel_table is not None:
        raise ConfigError(
            "give the widths either as channel_base/channel_max or as channel_table, not both"
        )
    if (uses_rule or config.channel_table is not None) and config.channel_multiplier != 2:
        raise ConfigError(
            f"channel_multiplier must stay 2 (its default) when channel_base or channel_table "
            f"gives the widths, got {config.channel_multiplier!r}"
        )
    if uses_rule:
        _check_int("channel_base", config.channel_base, maximum=MAX_CHANNEL_BASE)
        _check_int("channel_max", config.channel_max, maximum=MAX_CHANNELS)
    if config.channel_table is not None:
        expected = [2**k for k in range(2, _log2(resolution) + 1)]
        got = [r for r, _ in config.channel_table]
        if got != expected:
            raise ConfigError(
                f"channel_table must give the widths at resolutions {expected}, got {got}"
            )
    for res, width in _resolve_channels(config, resolution).items():
        _check_int(f"the width at {res} px", width, maximum=MAX_CHANNELS)


def _resolve_channels(config: Any, resolution: int) -> dict[int, int]:
    """resolution -> width for 4 .. ``resolution``, from whichever description is set."""
    if config.channel_table is not None:
        return dict(config.channel_table)
    if config.channel_base is not None:
        return nvidia_channels(config.channel_base, config.channel_max, resolution)
    full = stylegan2_channels(config.channel_multiplier)
    return {res: full[res] for res in full if res <= resolution}


def width_fields(config: Any) -> dict[str, Any]:
    """The width description of ``config`` as constructor arguments, to build another config
    with the same widths (a restorer around a bank)."""
    return {name: getattr(config, name) for name in ("channel_multiplier", *WIDTH_FIELDS)}


def describe_widths(config: Any) -> str:
    """The width description in words, as set: ``channel multiplier 2``, ``channel_base 2048,
    channel_max 64`` or ``channels {4: 64, 8: 64, ...}``."""
    if config.channel_table is not None:
        return f"channels {dict(config.channel_table)}"
    if config.channel_base is not None:
        return f"channel_base {config.channel_base}, channel_max {config.channel_max}"
    return f"channel multiplier {config.channel_multiplier}"


@dataclass(frozen=True)
class StyleGAN2Config:
    """A StyleGAN2 generator used as the latent bank.

    ``resolution`` is the output size of the generator; ``img_channels`` the channels of its own
    RGB branch (3 for every released bank). The feature widths per resolution (``channels``) are
    given in one of three ways: rosinality's ``channel_multiplier`` (the default; config-f is 2),
    NVIDIA's rule ``min(channel_base // res, channel_max)`` (both fields set), or an explicit
    ``channel_table`` ``{4: 512, 8: 512, ..., resolution: w}``.
    """

    model_type: ClassVar[str] = "stylegan2"

    resolution: int
    style_channels: int = 512
    num_mlps: int = 8
    channel_multiplier: int = 2
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    img_channels: int = 3
    channel_base: int | None = None
    channel_max: int | None = None
    channel_table: ChannelTable | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))
        if not is_power_of_two(self.resolution) or not 8 <= self.resolution <= 1024:
            raise ConfigError(
                f"bank resolution must be a power of two in [8, 1024], got {self.resolution!r}"
            )
        _check_int("style_channels", self.style_channels, maximum=MAX_CHANNELS)
        _check_int("num_mlps", self.num_mlps, minimum=0, maximum=MAX_BLOCKS)
        _check_widths(self, self.resolution)
        _check_int("img_channels", self.img_channels, maximum=MAX_IMAGE_CHANNELS)
        if self.blur_kernel != (1, 3, 3, 1):
            raise ConfigError(
                f"only blur_kernel (1, 3, 3, 1) is supported (every released StyleGAN2 uses it), "
                f"got {self.blur_kernel}"
            )
        _check_positive_float("lr_mlp", self.lr_mlp)
        _check_parameter_budget(self)

    @property
    def channels(self) -> dict[int, int]:
        """Feature width per resolution, 4 .. resolution: what every network built from this
        config reads."""
        return _resolve_channels(self, self.resolution)

    @property
    def resolutions(self) -> list[int]:
        """Resolutions of the synthesis blocks after the 4x4 stage: 8, 16, ..., resolution."""
        return [2**k for k in range(3, int(math.log2(self.resolution)) + 1)]

    @property
    def num_latents(self) -> int:
        """Number of style vectors the synthesis network consumes (w+ space)."""
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def num_noises(self) -> int:
        return self.num_latents - 1

    def parameter_count(self, first_resolution: int | None = None) -> int:
        """Parameters of the generator this config describes, from the fields alone (the
        mapping MLP, the 4x4 stage, and per resolution an up-sampling conv, a conv and a ToRGB,
        each modulated conv with its style affine); with ``first_resolution``, of the bank
        LightGLEAN keeps (the mapping and the blocks from that resolution up)."""
        s, ch, img = self.style_channels, self.channels, self.img_channels

        def style_conv(c_in: int, c_out: int) -> int:  # affine, 3x3 weight, noise, bias
            return s * c_in + c_in + c_out * c_in * 9 + 1 + c_out

        def to_rgb(c_in: int) -> int:  # affine, 1x1 weight, bias
            return s * c_in + c_in + img * c_in + img

        count = self.num_mlps * (s * s + s)
        if first_resolution is None:
            count += ch[4] * 16 + style_conv(ch[4], ch[4]) + to_rgb(ch[4])
        for res in self.resolutions:
            if first_resolution is None or res >= first_resolution:
                count += style_conv(ch[res // 2], ch[res]) + style_conv(ch[res], ch[res])
                count += to_rgb(ch[res])
        return count


@dataclass(frozen=True)
class StyleGAN2DiscriminatorConfig:
    """The StyleGAN2 residual discriminator (Karras et al., CVPR 2020, Fig. 7c).

    ``resolution`` is the input image size; the widths are described as in
    :class:`StyleGAN2Config`. The minibatch standard deviation layer (Karras et
    al., ICLR 2018, Sec. 3) splits a batch into groups of ``mbstd_group_size`` samples (a batch
    must be a multiple of it, or smaller) and appends ``mbstd_channels`` feature maps.
    """

    model_type: ClassVar[str] = "stylegan2_discriminator"

    resolution: int
    channel_multiplier: int = 2
    img_channels: int = 3
    mbstd_group_size: int = 4
    mbstd_channels: int = 1
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    channel_base: int | None = None
    channel_max: int | None = None
    channel_table: ChannelTable | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))
        if not is_power_of_two(self.resolution) or not 8 <= self.resolution <= 1024:
            raise ConfigError(
                f"discriminator resolution must be a power of two in [8, 1024], "
                f"got {self.resolution!r}"
            )
        _check_widths(self, self.resolution)
        _check_int("img_channels", self.img_channels, maximum=MAX_IMAGE_CHANNELS)
        _check_int("mbstd_group_size", self.mbstd_group_size, maximum=MAX_CHANNELS)
        _check_int("mbstd_channels", self.mbstd_channels, maximum=MAX_CHANNELS)
        if self.channels[4] % self.mbstd_channels:
            raise ConfigError(
                f"mbstd_channels must divide {self.channels[4]}, got {self.mbstd_channels}"
            )
        if self.blur_kernel != (1, 3, 3, 1):
            raise ConfigError(f"only blur_kernel (1, 3, 3, 1) is supported, got {self.blur_kernel}")
        _check_parameter_budget(self)

    @property
    def channels(self) -> dict[int, int]:
        """Feature width per resolution, 4 .. resolution."""
        return _resolve_channels(self, self.resolution)

    @property
    def resolutions(self) -> list[int]:
        """Resolutions of the residual blocks, fine to coarse: resolution, ..., 8."""
        return [2**k for k in range(int(math.log2(self.resolution)), 2, -1)]

    def parameter_count(self) -> int:
        """Parameters of the discriminator this config describes, from the fields alone."""
        ch, c4 = self.channels, self.channels[4]
        count = self.img_channels * ch[self.resolution] + ch[self.resolution]  # fromRGB 1x1
        for res in self.resolutions:  # conv, down-sampling conv, 1x1 skip without bias
            c_in, c_out = ch[res], ch[res // 2]
            count += _conv_params(c_in, c_in) + _conv_params(c_in, c_out) + c_in * c_out
        count += _conv_params(c4 + self.mbstd_channels, c4)
        return count + (16 * c4 * c4 + c4) + (c4 + 1)


def _check_restorer(config: _RestorerConfig, min_size: int) -> None:
    """The checks every bank-based restorer config shares (sizes, RRDB encoder, its bank)."""
    object.__setattr__(config, "blur_kernel", tuple(config.blur_kernel))
    for name in ("in_size", "out_size"):
        value = getattr(config, name)
        if not is_power_of_two(value) or not min_size <= value <= 1024:
            raise ConfigError(f"{name} must be a power of two in [{min_size}, 1024], got {value!r}")
    if config.in_size >= config.out_size:
        raise ConfigError(
            f"in_size must be smaller than out_size, got {config.in_size} and {config.out_size}"
        )
    _check_int("img_channels", config.img_channels, maximum=MAX_IMAGE_CHANNELS)
    _check_int("rrdb_channels", config.rrdb_channels, maximum=MAX_CHANNELS)
    _check_int("num_rrdbs", config.num_rrdbs, minimum=0, maximum=MAX_BLOCKS)
    _normalise_table(config)
    _ = config.bank  # validates the bank's fields


def stylegan2_bank_config(config: Any) -> StyleGAN2Config:
    """The StyleGAN2 bank a restorer or colorizer config describes: its output size, style and
    mapping fields, ``bank_img_channels`` and widths."""
    return StyleGAN2Config(
        resolution=config.out_size,
        style_channels=config.style_channels,
        num_mlps=config.num_mlps,
        blur_kernel=config.blur_kernel,
        lr_mlp=config.lr_mlp,
        img_channels=config.bank_img_channels,
        **width_fields(config),
    )


@dataclass(frozen=True)
class _RestorerConfig:
    """The fields and derived sizes every bank-based restorer config shares: GLEAN's
    constructor fields (the sizes, the RRDB encoder, the bank) and the bank, decoder and latent
    sizes that follow from them. The bank's widths are described as in :class:`StyleGAN2Config`
    (a table covers 4 .. out_size); the encoder and decoder take their widths from them.
    ``bank_img_channels`` is the channel count of the bank's own image branch (3 for every
    released bank; 1 for a bank trained on grey images), which GLEAN never reads: its input and
    output have ``img_channels``."""

    in_size: int
    out_size: int
    img_channels: int = 3
    rrdb_channels: int = 64
    num_rrdbs: int = 23
    style_channels: int = 512
    num_mlps: int = 8
    channel_multiplier: int = 2
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    channel_base: int | None = None
    channel_max: int | None = None
    channel_table: ChannelTable | None = None
    bank_img_channels: int = 3

    @property
    def bank(self) -> StyleGAN2Config:
        return stylegan2_bank_config(self)

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    @property
    def channels(self) -> dict[int, int]:
        """The bank's feature widths, 4 .. out_size: the encoder and decoder use them too."""
        return self.bank.channels

    @property
    def decoder_resolutions(self) -> list[int]:
        """Resolutions the decoder works at: in_size, 2 * in_size, ..., out_size."""
        return [
            2**k for k in range(int(math.log2(self.in_size)), int(math.log2(self.out_size)) + 1)
        ]

    @property
    def num_latents(self) -> int:
        return self.bank.num_latents


@dataclass(frozen=True)
class GLEANConfig(_RestorerConfig):
    """GLEAN with a StyleGAN2 latent bank (CVPR 2021, Sec. 3; mmagic ``GLEANStyleGANv2``).

    The fields and defaults are exactly the reference constructor's. ``in_size`` and ``out_size``
    are powers of two with ``4 <= in_size < out_size <= 1024``.
    """

    model_type: ClassVar[str] = "glean"

    def __post_init__(self) -> None:
        _check_restorer(self, min_size=4)
        _check_parameter_budget(self)

    @property
    def encoder_resolutions(self) -> list[int]:
        """Resolutions the encoder produces features at, fine to coarse: in_size, ..., 4."""
        return [2**k for k in range(int(math.log2(self.in_size)), 1, -1)]

    @property
    def fusion_resolutions(self) -> list[int]:
        """Resolutions where encoder features are fused into the bank, coarse to fine."""
        return self.encoder_resolutions[::-1]

    def parameter_count(self) -> int:
        """Parameters of the network this config describes (bank included), from the fields
        alone: the RRDB encoder and its stride-2 stages, the latent head, the fusion convs and
        the decoder, as ``glean_sr.models.glean`` builds them."""
        ch, img = self.channels, self.img_channels
        count = self.bank.parameter_count()
        count += _rrdb_trunk_params(img, self.rrdb_channels, self.num_rrdbs)
        count += _conv_params(self.rrdb_channels, ch[self.in_size])
        for res in self.encoder_resolutions:
            if res > 4:
                count += _conv_params(ch[res], ch[res // 2]) + _conv_params(
                    ch[res // 2], ch[res // 2]
                )
            else:  # the latent head: conv, then linear to all latents
                latents = self.num_latents * self.style_channels
                count += _conv_params(ch[4], ch[4]) + 16 * ch[4] * latents + latents
        for res in self.fusion_resolutions:  # fusion_out, fusion_skip (RGB: 3 channels)
            count += _conv_params(2 * ch[res], ch[res]) + _conv_params(ch[res] + 3, 3)
        for res in self.decoder_resolutions:
            in_ch = ch[res] if res == self.in_size else 2 * ch[res]
            if res < self.out_size:  # pixel shuffle: 4x the channels of the next resolution
                count += _conv_params(in_ch, 4 * ch[2 * res])
            else:
                count += _conv_params(in_ch, 64) + _conv_params(64, img)
        return count


@dataclass(frozen=True)
class GLEANNoBankConfig(GLEANConfig):
    """GLEAN with every latent-bank feature discarded: the paper's ablation of the bank (CVPR
    2021, Sec. 4.3 "Effects of latent bank features", Fig. 8, left). The same fields, encoder
    and decoder as :class:`GLEANConfig`; the decoder receives zeros where GLEAN concatenates
    the bank's features, so the network is exactly GLEAN's encoder-decoder without the prior.
    """

    model_type: ClassVar[str] = "glean_nobank"


def _check_light_decoder(config: Any) -> None:
    """LightGLEAN's decoder fields: ``head_channels`` and ``decoder_reduction``."""
    _check_int("head_channels", config.head_channels, maximum=MAX_CHANNELS)
    if not is_power_of_two(config.decoder_reduction) or config.decoder_reduction > MAX_CHANNELS:
        raise ConfigError(
            f"decoder_reduction must be a power of two in [1, {MAX_CHANNELS}], "
            f"got {config.decoder_reduction!r}"
        )


def _light_decoder_params(config: Any) -> int:
    """Parameters of LightGLEAN's decoder (``glean_sr.models.light_glean.light_decoder``): a
    pixel-shuffle stage per resolution from in_size, at the bank's widths divided by
    ``decoder_reduction``, then the two-convolution head of ``head_channels``."""
    ch, count, width = config.channels, 0, config.channels[config.in_size]
    for res in config.decoder_resolutions[:-1]:
        in_ch = width if res == config.in_size else width + ch[res]
        width = config.decoder_channels(2 * res)
        count += _conv_params(in_ch, 4 * width)
    head = config.head_channels
    last = _conv_params(width + ch[config.out_size], head)
    return count + last + _conv_params(head, config.img_channels)


@dataclass(frozen=True)
class LightGLEANConfig(_RestorerConfig):
    """LightGLEAN (TPAMI 2023, Sec. 4): the RRDB encoder E0 only, a bank that starts at the
    input resolution, learnable latent codes shared by all inputs, and a narrow decoder.

    The fields shared with :class:`GLEANConfig` mean the same. ``decoder_reduction`` divides
    GLEAN's decoder widths; ``head_channels`` is the hidden width of the last two convolutions.
    The defaults reproduce the per-part sizes of Table 1 (see ``glean_sr.models.light_glean``).
    ``8 <= in_size < out_size <= 1024``: the bank's first kept block up-samples from in_size / 2.
    """

    model_type: ClassVar[str] = "lightglean"

    decoder_reduction: int = 4
    head_channels: int = 8

    def __post_init__(self) -> None:
        _check_restorer(self, min_size=8)
        _check_light_decoder(self)
        _check_parameter_budget(self)

    @property
    def bank_resolutions(self) -> list[int]:
        """Resolutions of the bank blocks LightGLEAN keeps: in_size, 2 * in_size, ..., out_size."""
        return [r for r in self.bank.resolutions if r >= self.in_size]

    def decoder_channels(self, res: int) -> int:
        """Width of the decoder's features at ``res`` (in_size < res <= out_size)."""
        return max(self.channels[res] // self.decoder_reduction, 1)

    def parameter_count(self) -> int:
        """Parameters of the network this config describes (the kept bank blocks included),
        from the fields alone, as ``glean_sr.models.light_glean`` builds them."""
        ch, img = self.channels, self.img_channels
        c_in, c_half = ch[self.in_size], ch[self.in_size // 2]
        count = self.bank.parameter_count(first_resolution=self.in_size)
        count += _rrdb_trunk_params(img, self.rrdb_channels, self.num_rrdbs)
        count += _conv_params(self.rrdb_channels, c_in)
        count += _conv_params(c_in, c_half) + 2 * _conv_params(c_half, c_half)  # bank input
        count += self.num_latents * self.style_channels  # the learnable latent codes
        return count + _light_decoder_params(self)


@dataclass(frozen=True)
class GLEANColorizerConfig:
    """GLEAN as a colorizer (TPAMI 2023, Sec. 5.4 and Appendix A): the L channel in, at the
    output resolution ``out_size``; GLEAN's encoder (its first convolution takes 1 channel) and
    a bank of resolution ``out_size``; the decoder four convolutions ending in 2 channels (ab).

    The fields shared with :class:`GLEANConfig` mean the same; ``decoder_channels`` is the
    width of the decoder's hidden convolutions. ``in_size`` is ``out_size`` (no enlargement);
    ``img_channels`` is the input's one channel. ``8 <= out_size <= 1024``.
    """

    model_type: ClassVar[str] = "glean_colorizer"

    out_size: int
    rrdb_channels: int = 64
    num_rrdbs: int = 23
    style_channels: int = 512
    num_mlps: int = 8
    channel_multiplier: int = 2
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    channel_base: int | None = None
    channel_max: int | None = None
    channel_table: ChannelTable | None = None
    bank_img_channels: int = 3
    decoder_channels: int = 64

    #: the input: CIE L* alone
    img_channels: ClassVar[int] = 1
    #: the output: RGB
    out_channels: ClassVar[int] = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))
        if not is_power_of_two(self.out_size) or not 8 <= self.out_size <= 1024:
            raise ConfigError(
                f"out_size must be a power of two in [8, 1024], got {self.out_size!r}"
            )
        _check_int("rrdb_channels", self.rrdb_channels, maximum=MAX_CHANNELS)
        _check_int("num_rrdbs", self.num_rrdbs, minimum=0, maximum=MAX_BLOCKS)
        _check_int("decoder_channels", self.decoder_channels, maximum=MAX_CHANNELS)
        _normalise_table(self)
        _ = self.bank  # validates the bank's fields
        _check_parameter_budget(self)

    @property
    def in_size(self) -> int:
        return self.out_size

    @property
    def scale(self) -> int:
        return 1

    @property
    def bank(self) -> StyleGAN2Config:
        return stylegan2_bank_config(self)

    @property
    def channels(self) -> dict[int, int]:
        return self.bank.channels

    @property
    def num_latents(self) -> int:
        return self.bank.num_latents

    @property
    def encoder_resolutions(self) -> list[int]:
        """Resolutions the encoder produces features at, fine to coarse: out_size, ..., 4."""
        return [2**k for k in range(int(math.log2(self.out_size)), 1, -1)]

    @property
    def fusion_resolutions(self) -> list[int]:
        """Resolutions where encoder features are fused into the bank, coarse to fine: 4 ..
        out_size / 2 (each before the bank block that doubles it)."""
        return self.encoder_resolutions[:0:-1]

    def parameter_count(self) -> int:
        """Parameters of the network this config describes (bank included), from the fields
        alone, as ``glean_sr.models.colorizer`` builds them."""
        ch, s = self.channels, self.out_size
        count = self.bank.parameter_count()
        count += _rrdb_trunk_params(1, self.rrdb_channels, self.num_rrdbs)
        count += _conv_params(self.rrdb_channels, ch[s])
        for res in self.encoder_resolutions:
            if res > 4:
                count += _conv_params(ch[res], ch[res // 2]) + _conv_params(
                    ch[res // 2], ch[res // 2]
                )
            else:
                latents = self.num_latents * self.style_channels
                count += _conv_params(ch[4], ch[4]) + 16 * ch[4] * latents + latents
        count += sum(_conv_params(2 * ch[res], ch[res]) for res in self.fusion_resolutions)
        d = self.decoder_channels
        count += _conv_params(2 * ch[s], d) + 2 * _conv_params(d, d) + _conv_params(d, 2)
        return count


#: Real-ESRGAN's scale factors: the RRDBNet trunk always enlarges x4, and x2 / x1 first fold the
#: input into channels by pixel-unshuffle (2 or 4), so that the trunk runs at the same cost.
REALESRGAN_SCALES = (1, 2, 4)


@dataclass(frozen=True)
class RealESRGANConfig:
    """Real-ESRGAN's generator: BasicSR's ``RRDBNet``, ESRGAN's network (Wang et al. 2018,
    Sec. 3.1) with Real-ESRGAN's pixel-unshuffle input for x2 and x1 (Wang et al., ICCVW 2021).

    A fully convolutional network: it takes images of any size (a multiple of
    :attr:`size_multiple`) and enlarges them ``scale`` times. The fields are BasicSR's constructor
    arguments under GLEAN's names: ``img_channels`` is ``num_in_ch`` and ``num_out_ch``,
    ``rrdb_channels`` ``num_feat``, ``num_rrdbs`` ``num_block``, ``growth_channels``
    ``num_grow_ch``. The defaults are those of ``RealESRGAN_x4plus`` and ``RealESRGAN_x2plus``.
    """

    model_type: ClassVar[str] = "realesrgan_rrdbnet"

    scale: int = 4
    img_channels: int = 3
    rrdb_channels: int = 64
    num_rrdbs: int = 23
    growth_channels: int = 32

    def __post_init__(self) -> None:
        if self.scale not in REALESRGAN_SCALES or isinstance(self.scale, bool):
            raise ConfigError(f"scale must be one of {REALESRGAN_SCALES}, got {self.scale!r}")
        _check_int("img_channels", self.img_channels, maximum=MAX_IMAGE_CHANNELS)
        _check_int("rrdb_channels", self.rrdb_channels, maximum=MAX_CHANNELS)
        _check_int("num_rrdbs", self.num_rrdbs, minimum=0, maximum=MAX_BLOCKS)
        _check_int("growth_channels", self.growth_channels, maximum=MAX_CHANNELS)
        _check_parameter_budget(self)

    @property
    def unshuffle(self) -> int:
        """The pixel-unshuffle factor of the input: 1 (x4), 2 (x2) or 4 (x1)."""
        return 4 // self.scale

    @property
    def size_multiple(self) -> int:
        """Input heights and widths must be multiples of this (the unshuffle factor)."""
        return self.unshuffle

    def parameter_count(self) -> int:
        """Parameters of the network this config describes, from the fields alone: the RRDB
        trunk on the unshuffled input, two up-sampling convs, ``conv_hr`` and ``conv_last``."""
        ch, img = self.rrdb_channels, self.img_channels
        trunk = _rrdb_trunk_params(
            img * self.unshuffle**2, ch, self.num_rrdbs, self.growth_channels
        )
        return trunk + 3 * _conv_params(ch, ch) + _conv_params(ch, img)


# -- BigGAN latent banks (TPAMI 2023, Sec. 5.3) --------------------------------------------------

#: BigGAN-PyTorch's ``G_arch``: per output resolution, the width multipliers (of ``ch``) of the
#: residual blocks' inputs and outputs; block ``b`` up-samples to ``8 * 2 ** b``.
BIGGAN_ARCH: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    32: ((4, 4, 4), (4, 4, 4)),
    64: ((16, 16, 8, 4), (16, 8, 4, 2)),
    128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
    256: ((16, 16, 8, 8, 4, 2), (16, 8, 8, 4, 2, 1)),
    512: ((16, 16, 8, 8, 4, 2, 1), (16, 8, 8, 4, 2, 1, 1)),
}


#: How a generator in BigGAN-PyTorch's layout normalises the vectors of its spectral norm's power
#: iteration (:class:`glean_sr.models.biggan_layers.BrockSN`): ``layers.SN`` of BigGAN-PyTorch, or
#: the ``SpectralNorm`` of its ``TFHub/biggan.py``, the generator that TF Hub's BigGAN weights are
#: converted into.
BIGGAN_SN_VARIANTS = ("biggan_pytorch", "tfhub")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_eps(name: str, value: Any) -> None:
    _check_positive_float(name, value)
    if value >= 1:
        raise ConfigError(f"{name} must be in (0, 1), got {value!r}")


def _biggan_fields_check(config: Any, resolution: int) -> None:
    """The checks of BigGAN-PyTorch's generator fields (shared by the bank and GLEAN-BigGAN)."""
    if resolution not in BIGGAN_ARCH:
        raise ConfigError(
            f"a BigGAN-PyTorch generator's resolution is one of {sorted(BIGGAN_ARCH)}, "
            f"got {resolution!r}"
        )
    _check_int("ch", config.ch, maximum=MAX_CHANNELS // 16)
    _check_int("dim_z", config.dim_z, maximum=MAX_CHANNELS)
    _check_int("shared_dim", config.shared_dim, maximum=MAX_CHANNELS)
    _check_flag("hier", config.hier)
    _check_int("num_classes", config.num_classes, maximum=100_000)
    _check_int("num_svs", config.num_svs, maximum=MAX_BLOCKS)
    _check_int("num_itrs", config.num_itrs, maximum=MAX_BLOCKS)
    _check_eps("bn_eps", config.bn_eps)
    _check_eps("sn_eps", config.sn_eps)
    if config.sn_variant not in BIGGAN_SN_VARIANTS:
        raise ConfigError(
            f"sn_variant must be one of {list(BIGGAN_SN_VARIANTS)}, got {config.sn_variant!r}"
        )
    try:
        attention = tuple(sorted(int(r) for r in config.attention))
    except (TypeError, ValueError):
        raise ConfigError(f"attention must list resolutions, got {config.attention!r}") from None
    object.__setattr__(config, "attention", attention)
    allowed = [8 * 2**b for b in range(len(BIGGAN_ARCH[resolution][0]))]
    if any(r not in allowed for r in attention) or len(set(attention)) != len(attention):
        raise ConfigError(f"attention resolutions must be among {allowed}, got {list(attention)}")
    slots = len(allowed) + 1
    if config.hier and config.dim_z % slots:
        raise ConfigError(
            f"a hierarchical z is split into {slots} equal chunks: dim_z must be a multiple of "
            f"{slots}, got {config.dim_z}"
        )


@dataclass(frozen=True)
class BigGANConfig:
    """BigGAN-PyTorch's generator (Brock et al., ICLR 2019; ``BigGAN.py``) as a latent bank.

    The fields are its constructor's: ``ch`` is ``G_ch``, ``attention`` the resolutions of
    ``G_attn``, ``num_svs`` / ``num_itrs`` are ``num_G_SVs`` / ``num_G_SV_itrs``, ``bn_eps`` /
    ``sn_eps`` are ``BN_eps`` / ``SN_eps``. With ``hier`` the latent ``z`` (``dim_z``, a multiple
    of the number of blocks + 1) is split into equal chunks: the first feeds the linear layer,
    each block takes one beside the shared class embedding (``shared_dim``). The two epsilons
    are not stored in a ``G.pth``; the defaults are those of its ImageNet launch scripts.
    ``sn_variant`` is one of :data:`BIGGAN_SN_VARIANTS`: ``"tfhub"`` for TF Hub's BigGAN
    converted by BigGAN-PyTorch's ``TFHub/converter.py``, whose spectral norm normalises by
    ``|v| + sn_eps``; config.json leaves it out when it is ``"biggan_pytorch"``.
    """

    model_type: ClassVar[str] = "biggan"

    resolution: int
    ch: int = 96
    dim_z: int = 120
    shared_dim: int = 128
    hier: bool = True
    num_classes: int = 1000
    attention: tuple[int, ...] = (64,)
    num_svs: int = 1
    num_itrs: int = 1
    bn_eps: float = 1e-5
    sn_eps: float = 1e-6
    sn_variant: str = "biggan_pytorch"

    def __post_init__(self) -> None:
        _biggan_fields_check(self, self.resolution)
        _check_parameter_budget(self)

    @property
    def resolutions(self) -> list[int]:
        """Output resolutions of the residual blocks: 8, 16, ..., resolution."""
        return [8 * 2**b for b in range(len(BIGGAN_ARCH[self.resolution][0]))]

    @property
    def block_resolutions(self) -> list[int]:
        """The output resolution of each block, in order (one block per resolution)."""
        return self.resolutions

    @property
    def channels(self) -> dict[int, int]:
        """Feature width per resolution: at 4 the linear layer's output, at ``res`` the output
        of the block that up-samples to ``res``."""
        ins, outs = BIGGAN_ARCH[self.resolution]
        blocks = zip(self.resolutions, outs, strict=True)
        return {4: self.ch * ins[0], **{res: self.ch * m for res, m in blocks}}

    @property
    def num_slots(self) -> int:
        """How many chunks ``z`` is split into (1 without ``hier``)."""
        return len(self.resolutions) + 1 if self.hier else 1

    @property
    def z_chunk(self) -> int:
        return self.dim_z // self.num_slots

    @property
    def cond_dim(self) -> int:
        """Width of the vector each block's class-conditional batch norms take."""
        return self.shared_dim + (self.z_chunk if self.hier else 0)

    @property
    def condition_sizes(self) -> list[int]:
        """Sizes of the conditioning vectors, in order: the linear layer's input, then one per
        block (``resolutions``)."""
        return [self.z_chunk] + [self.cond_dim] * len(self.resolutions)

    def parameter_count(self, first_resolution: int | None = None) -> int:
        """Parameters of the generator; with ``first_resolution``, of the bank LightGLEAN keeps:
        the blocks producing that resolution and above, without the class embedding, the linear
        layer and the output layer."""
        ch, cond = self.channels, self.cond_dim
        count = 0
        if first_resolution is None:
            last = ch[self.resolution]
            count += self.num_classes * self.shared_dim + self.z_chunk * 16 * ch[4] + 16 * ch[4]
            count += 2 * last + _conv_params(last, 3)
        for res in self.resolutions:
            if first_resolution is not None and res < first_resolution:
                continue
            c_in, c_out = ch[res // 2], ch[res]
            count += _conv_params(c_in, c_out) + _conv_params(c_out, c_out)
            count += _conv_params(c_in, c_out, 1) + 2 * cond * (c_in + c_out)
            if res in self.attention:
                count += c_out * c_out * 5 // 4 + 1  # theta, phi (C/8), g (C/2), o, gamma
        return count


#: pytorch-pretrained-biggan's layer tables (up-sample, in and out width multipliers) of the
#: released BigGAN-deep 128 / 256 / 512: a non-up-sampling and an up-sampling block per stage.
BIGGAN_DEEP_LAYERS: dict[int, tuple[tuple[bool, int, int], ...]] = {
    res: tuple((up, m_in, m_out if up else m_in) for m_in, m_out in pairs for up in (False, True))
    for res, pairs in {
        128: ((16, 16), (16, 8), (8, 4), (4, 2), (2, 1)),
        256: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)),
        512: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)),
    }.items()
}


@dataclass(frozen=True)
class BigGANDeepConfig:
    """BigGAN-deep as Hugging Face's ``pytorch-pretrained-biggan`` defines it (its
    ``BigGANConfig``; TF Hub's ``biggan-deep-{128,256,512}``).

    ``layers`` lists each residual block as ``(up_sample, in_mult, out_mult)`` (widths are
    ``channel_width`` times these); the self-attention layer sits before block
    ``attention_layer_position``. ``eps`` is both the spectral-norm and the batch-norm epsilon;
    ``n_stats`` batch-norm statistics are stored for truncations 0, 1 / (n_stats - 1), ..., 1.
    The class embedding has ``z_dim`` entries, so each block is conditioned on ``2 * z_dim``.
    """

    model_type: ClassVar[str] = "biggan_deep"

    resolution: int
    layers: tuple[tuple[bool, int, int], ...]
    z_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def __post_init__(self) -> None:
        try:
            layers = tuple((up, m_in, m_out) for up, m_in, m_out in self.layers)
        except (TypeError, ValueError):
            raise ConfigError(
                f"layers must list [up_sample, in_mult, out_mult] triples, got {self.layers!r}"
            ) from None
        object.__setattr__(self, "layers", layers)
        _check_int("z_dim", self.z_dim, maximum=MAX_CHANNELS)
        _check_int("channel_width", self.channel_width, maximum=MAX_CHANNELS // 16)
        _check_int("num_classes", self.num_classes, maximum=100_000)
        _check_int("n_stats", self.n_stats, minimum=2, maximum=10_000)
        _check_eps("eps", self.eps)
        if not layers or len(layers) > MAX_BLOCKS:
            raise ConfigError(f"layers must list 1 to {MAX_BLOCKS} blocks, got {len(layers)}")
        width = 16
        for i, (up, m_in, m_out) in enumerate(layers):
            _check_flag(f"layers[{i}] up_sample", up)
            _check_int(f"layers[{i}] in_mult", m_in, maximum=16)
            _check_int(f"layers[{i}] out_mult", m_out, maximum=16)
            if m_in != width:
                raise ConfigError(f"layers[{i}] takes {m_in} x width, the previous gives {width}")
            c_in = self.channel_width * m_in
            if c_in % 4 or (m_out != m_in and 2 * m_out != m_in):
                raise ConfigError(
                    f"layers[{i}]: a block keeps its width or halves it, and its input width "
                    f"{c_in} must divide by 4; got {m_in} -> {m_out}"
                )
            width = m_out
        if width != 1:
            raise ConfigError(f"the last block must end at 1 x width, got {width}")
        _check_int("attention_layer_position", self.attention_layer_position, minimum=0)
        if self.attention_layer_position >= len(layers):
            raise ConfigError(
                f"attention_layer_position must be < {len(layers)}, "
                f"got {self.attention_layer_position}"
            )
        if self.attention_channels % 8:
            raise ConfigError(
                f"the attention width must divide by 8, got {self.attention_channels}"
            )
        expected = 4 * 2 ** sum(up for up, _, _ in layers)
        if self.resolution != expected:
            raise ConfigError(
                f"these layers make {expected} px images, but resolution is {self.resolution!r}"
            )
        _check_parameter_budget(self)

    @property
    def attention_channels(self) -> int:
        return self.channel_width * self.layers[self.attention_layer_position][1]

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning vector ``[z, class embedding]``."""
        return 2 * self.z_dim

    @property
    def block_resolutions(self) -> list[int]:
        """The output resolution of each block, in order (4 until the first one up-samples)."""
        out, res = [], 4
        for up, _, _ in self.layers:
            res = 2 * res if up else res
            out.append(res)
        return out

    @property
    def channels(self) -> dict[int, int]:
        """Feature width per resolution: at 4 the first layer's output, at ``res`` the output
        of the last block at ``res``."""
        widths = {4: 16 * self.channel_width}
        for res, (_, _, m_out) in zip(self.block_resolutions, self.layers, strict=True):
            widths[res] = self.channel_width * m_out
        return widths

    @property
    def condition_sizes(self) -> list[int]:
        """Sizes of the conditioning vectors, in order: the first layer's input, then one per
        block (the generator gives all of them the same ``[z, class embedding]``)."""
        return [self.cond_dim] * (len(self.layers) + 1)

    def parameter_count(self, first_resolution: int | None = None) -> int:
        """Parameters of the generator; with ``first_resolution``, of the bank LightGLEAN keeps:
        the blocks producing that resolution and above (with the attention before one of
        them), without the class embedding, the first layer and the output layers."""
        cw, cond = self.channel_width, self.cond_dim
        count = 0
        if first_resolution is None:
            count += self.num_classes * self.z_dim + cond * 16 * 16 * cw + 16 * 16 * cw
            count += 2 * cw + _conv_params(cw, cw)
        kept = [
            i
            for i, res in enumerate(self.block_resolutions)
            if first_resolution is None or res >= first_resolution
        ]
        for i in kept:
            _, m_in, m_out = self.layers[i]
            c_in, c_out = cw * m_in, cw * m_out
            mid = c_in // 4
            count += 2 * cond * (c_in + 3 * mid)  # the batch norms' scale and offset
            count += _conv_params(c_in, mid, 1) + 2 * _conv_params(mid, mid)
            count += _conv_params(mid, c_out, 1)
        if self.attention_layer_position in kept:
            c = self.attention_channels
            count += c * c * 5 // 4 + 1
        return count


# -- GLEAN and LightGLEAN around a BigGAN bank ----------------------------------------------------


class _BigGANRestorer:
    """What the restorer configs around a BigGAN bank derive from their fields: sizes, widths
    and parameter counts (a mixin; the dataclasses below hold ``in_size``, ``out_size``,
    ``img_channels``, ``rrdb_channels``, ``num_rrdbs`` and define ``bank``)."""

    in_size: int
    out_size: int
    img_channels: int
    rrdb_channels: int
    num_rrdbs: int
    bank: Any

    def _check_restorer_fields(self, min_size: int) -> None:
        for name in ("in_size", "out_size"):
            value = getattr(self, name)
            if not is_power_of_two(value) or not min_size <= value <= 1024:
                raise ConfigError(
                    f"{name} must be a power of two in [{min_size}, 1024], got {value!r}"
                )
        if self.in_size >= self.out_size:
            raise ConfigError(
                f"in_size must be smaller than out_size, got {self.in_size} and {self.out_size}"
            )
        _check_int("img_channels", self.img_channels, maximum=MAX_IMAGE_CHANNELS)
        _check_int("rrdb_channels", self.rrdb_channels, maximum=MAX_CHANNELS)
        _check_int("num_rrdbs", self.num_rrdbs, minimum=0, maximum=MAX_BLOCKS)

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    @property
    def channels(self) -> dict[int, int]:
        """The bank's feature widths, 4 .. out_size: the encoder and decoder use them too."""
        return self.bank.channels

    @property
    def encoder_resolutions(self) -> list[int]:
        """Resolutions the encoder produces features at, fine to coarse: in_size, ..., 4."""
        return [2**k for k in range(int(math.log2(self.in_size)), 1, -1)]

    @property
    def fusion_resolutions(self) -> list[int]:
        """Resolutions where encoder features are fused into the bank, coarse to fine."""
        return self.encoder_resolutions[::-1]

    @property
    def decoder_resolutions(self) -> list[int]:
        """Resolutions the decoder works at: in_size, 2 * in_size, ..., out_size."""
        return [
            2**k for k in range(int(math.log2(self.in_size)), int(math.log2(self.out_size)) + 1)
        ]

    def parameter_count(self) -> int:
        """Parameters of the network (bank included), as ``glean_sr.models.glean_biggan``
        builds it: GLEAN's encoder, fusion and decoder at the bank's widths, with a latent head
        that predicts every conditioning vector of the bank."""
        ch, img = self.channels, self.img_channels
        count = self.bank.parameter_count()
        count += _rrdb_trunk_params(img, self.rrdb_channels, self.num_rrdbs)
        count += _conv_params(self.rrdb_channels, ch[self.in_size])
        for res in self.encoder_resolutions:
            if res > 4:
                count += _conv_params(ch[res], ch[res // 2]) + _conv_params(
                    ch[res // 2], ch[res // 2]
                )
            else:
                head = sum(self.bank.condition_sizes)
                count += _conv_params(ch[4], ch[4]) + 16 * ch[4] * head + head
        for res in self.fusion_resolutions:
            count += _conv_params(2 * ch[res], ch[res])
        for res in self.decoder_resolutions:
            in_ch = ch[res] if res == self.in_size else 2 * ch[res]
            if res < self.out_size:
                count += _conv_params(in_ch, 4 * ch[2 * res])
            else:
                count += _conv_params(in_ch, 64) + _conv_params(64, img)
        return count


class _LightBigGANRestorer(_BigGANRestorer):
    """LightGLEAN's derived sizes around a BigGAN bank (a mixin, as above; the dataclasses add
    ``decoder_reduction`` and ``head_channels``)."""

    decoder_reduction: int
    head_channels: int

    @property
    def bank_blocks(self) -> list[int]:
        """Indices of the bank's blocks LightGLEAN keeps: those producing in_size and above."""
        resolutions = self.bank.block_resolutions
        return [i for i, res in enumerate(resolutions) if res >= self.in_size]

    def decoder_channels(self, res: int) -> int:
        """Width of the decoder's features at ``res`` (in_size < res <= out_size)."""
        return max(self.channels[res] // self.decoder_reduction, 1)

    def parameter_count(self) -> int:
        """Parameters of the network this config describes (the kept bank blocks included),
        from the fields alone, as ``glean_sr.models.light_glean_biggan`` builds them."""
        ch, img = self.channels, self.img_channels
        c_in, c_half = ch[self.in_size], ch[self.in_size // 2]
        count = self.bank.parameter_count(first_resolution=self.in_size)
        count += _rrdb_trunk_params(img, self.rrdb_channels, self.num_rrdbs)
        count += _conv_params(self.rrdb_channels, c_in)
        count += _conv_params(c_in, c_half) + 2 * _conv_params(c_half, c_half)  # bank input
        count += len(self.bank_blocks) * self.bank.cond_dim  # the learnable conditions
        return count + _light_decoder_params(self)


def _check_truncation(value: Any) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and 0 < value <= 1):
        raise ConfigError(f"truncation must be a number in (0, 1], got {value!r}")


@dataclass(frozen=True)
class GLEANBigGANConfig(_BigGANRestorer):
    """GLEAN with a BigGAN-PyTorch generator as the latent bank (TPAMI 2023, Sec. 5.3): one
    restorer for every class the bank was trained on (ImageNet's 1000).

    ``in_size``, ``out_size``, ``img_channels``, ``rrdb_channels`` and ``num_rrdbs`` mean what
    they mean in :class:`GLEANConfig`; the other fields are the bank's (:class:`BigGANConfig`,
    whose resolution is ``out_size``). The defaults describe BigGAN 256 (``G_ch`` 96, a
    hierarchical ``z`` of 140 = 7 x 20, a 128-wide shared embedding, attention at 64 px).
    """

    model_type: ClassVar[str] = "glean_biggan"

    in_size: int
    out_size: int
    img_channels: int = 3
    rrdb_channels: int = 64
    num_rrdbs: int = 23
    ch: int = 96
    dim_z: int = 140
    shared_dim: int = 128
    hier: bool = True
    num_classes: int = 1000
    attention: tuple[int, ...] = (64,)
    num_svs: int = 1
    num_itrs: int = 1
    bn_eps: float = 1e-5
    sn_eps: float = 1e-6
    sn_variant: str = "biggan_pytorch"

    def __post_init__(self) -> None:
        self._check_restorer_fields(min_size=4)
        _biggan_fields_check(self, self.out_size)
        _check_parameter_budget(self)

    @property
    def bank(self) -> BigGANConfig:
        names = [f.name for f in dataclasses.fields(BigGANConfig) if f.name != "resolution"]
        return BigGANConfig(resolution=self.out_size, **{n: getattr(self, n) for n in names})

    @property
    def truncation(self) -> float:
        """BigGAN-PyTorch's batch norms keep one set of statistics, so there is no truncation
        to choose: 1.0, which its blocks ignore."""
        return 1.0


@dataclass(frozen=True)
class LightGLEANBigGANConfig(_LightBigGANRestorer, GLEANBigGANConfig):
    """LightGLEAN (TPAMI 2023, Sec. 4) with a BigGAN-PyTorch bank (Sec. 5.3, Table 6): the
    fields of :class:`GLEANBigGANConfig` plus LightGLEAN's ``decoder_reduction`` and
    ``head_channels`` (:class:`LightGLEANConfig`). ``8 <= in_size``: the bank's first kept
    block up-samples from in_size / 2.
    """

    model_type: ClassVar[str] = "lightglean_biggan"

    decoder_reduction: int = 4
    head_channels: int = 8

    def __post_init__(self) -> None:
        self._check_restorer_fields(min_size=8)
        _biggan_fields_check(self, self.out_size)
        _check_light_decoder(self)
        _check_parameter_budget(self)


@dataclass(frozen=True)
class GLEANBigGANDeepConfig(_BigGANRestorer):
    """GLEAN with a BigGAN-deep bank (pytorch-pretrained-biggan's ``BigGAN``, TF Hub's
    ``biggan-deep-{128,256,512}``).

    ``in_size`` .. ``num_rrdbs`` mean what they mean in :class:`GLEANBigGANConfig`; ``layers``
    .. ``n_stats`` are the bank's (:class:`BigGANDeepConfig`, whose resolution is
    ``out_size``), and ``layers`` left unset is the released table for ``out_size`` (128, 256
    or 512 px). Every block that does not up-sample must keep its width, as in the released
    tables: GLEAN takes one width per resolution. ``truncation`` in (0, 1] picks the bank's
    batch-norm statistics as its ``generate`` does; the default 1.0 (those of untruncated
    samples) suits conditioning vectors that the encoder predicts without bound.
    """

    model_type: ClassVar[str] = "glean_biggan_deep"

    in_size: int
    out_size: int
    img_channels: int = 3
    rrdb_channels: int = 64
    num_rrdbs: int = 23
    layers: tuple[tuple[bool, int, int], ...] | None = None
    z_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51
    truncation: float = 1.0

    def __post_init__(self) -> None:
        self._check_restorer_fields(min_size=4)
        self._check_deep_bank()
        _check_parameter_budget(self)

    def _check_deep_bank(self) -> None:
        if self.layers is None:
            if self.out_size not in BIGGAN_DEEP_LAYERS:
                raise ConfigError(
                    f"layers: BigGAN-deep was released at {sorted(BIGGAN_DEEP_LAYERS)} px, not "
                    f"{self.out_size}; give the bank's layers"
                )
            object.__setattr__(self, "layers", BIGGAN_DEEP_LAYERS[self.out_size])
        object.__setattr__(self, "layers", self.bank.layers)  # validated, tuples of tuples
        _check_truncation(self.truncation)
        for i, (up, m_in, m_out) in enumerate(self.layers):
            if not up and m_in != m_out:
                raise ConfigError(
                    f"layers[{i}] changes the width without up-sampling ({m_in} -> {m_out}); "
                    f"GLEAN takes one width per resolution"
                )

    @property
    def bank(self) -> BigGANDeepConfig:
        names = [f.name for f in dataclasses.fields(BigGANDeepConfig) if f.name != "resolution"]
        return BigGANDeepConfig(resolution=self.out_size, **{n: getattr(self, n) for n in names})


@dataclass(frozen=True)
class LightGLEANBigGANDeepConfig(_LightBigGANRestorer, GLEANBigGANDeepConfig):
    """LightGLEAN with a BigGAN-deep bank: the fields of :class:`GLEANBigGANDeepConfig` plus
    ``decoder_reduction`` and ``head_channels`` (:class:`LightGLEANConfig`); ``8 <= in_size``.
    """

    model_type: ClassVar[str] = "lightglean_biggan_deep"

    decoder_reduction: int = 4
    head_channels: int = 8

    def __post_init__(self) -> None:
        self._check_restorer_fields(min_size=8)
        self._check_deep_bank()
        _check_light_decoder(self)
        _check_parameter_budget(self)


def describe_size(config: Any) -> str:
    """What a restorer config maps, in words: ``"16 -> 256"`` for a fixed input size,
    ``"x4, any size"`` for a fully convolutional network."""
    if getattr(config, "in_size", None) is None:
        return f"x{config.scale}, any size"
    return f"{config.in_size} -> {config.out_size}"


_CONFIG_TYPES: dict[str, type] = {}


def register_config(cls: type) -> type:
    """Make a config class readable by :func:`config_from_dict` under its ``model_type``."""
    _CONFIG_TYPES[cls.model_type] = cls
    return cls


register_config(StyleGAN2Config)
register_config(StyleGAN2DiscriminatorConfig)
register_config(GLEANConfig)
register_config(GLEANNoBankConfig)
register_config(LightGLEANConfig)
register_config(RealESRGANConfig)
register_config(BigGANConfig)
register_config(BigGANDeepConfig)
register_config(GLEANBigGANConfig)
register_config(LightGLEANBigGANConfig)
register_config(GLEANBigGANDeepConfig)
register_config(LightGLEANBigGANDeepConfig)
register_config(GLEANColorizerConfig)


#: fields left out of ``config.json`` at these values, so that files written before the fields
#: existed read back unchanged and are written unchanged
_OMITTED_DEFAULTS = {"bank_img_channels": 3, "sn_variant": "biggan_pytorch"}


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict: ``model_type`` first, then every field (tuples become lists)."""
    out: dict[str, Any] = {"model_type": config.model_type}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in WIDTH_FIELDS and value is None:
            continue  # unset width descriptions stay out: older files read back the same
        if _OMITTED_DEFAULTS.get(f.name, dataclasses.MISSING) == value:
            continue  # likewise the RGB bank every released file has, BigGAN-PyTorch's SN
        if f.name == "channel_table":
            out[f.name] = {str(res): width for res, width in value}  # JSON keys are strings
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _table_from_json(table: Any) -> Any:
    """``{"4": 512, ...}`` as JSON stores it -> ``{4: 512, ...}``; other values are left to the
    config's own check."""
    if not isinstance(table, dict):
        return table
    try:
        return {int(res): width for res, width in table.items()}
    except ValueError:
        raise ConfigError(f"channel_table keys must be resolutions, got {sorted(table)}") from None


def config_from_dict(data: dict[str, Any], expected_type: str | None = None) -> Any:
    """Rebuild a config written by :func:`config_to_dict`; unknown or missing keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"a model config must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    model_type = data.pop("model_type", None)
    if model_type not in _CONFIG_TYPES:
        known = ", ".join(sorted(_CONFIG_TYPES))
        raise ConfigError(f"unknown model_type {model_type!r} in config (known: {known})")
    if expected_type is not None and model_type != expected_type:
        raise ConfigError(f"expected a {expected_type!r} config, got model_type {model_type!r}")
    cls = _CONFIG_TYPES[model_type]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in {model_type} config: {', '.join(unknown)}")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"missing key(s) in {model_type} config: {', '.join(missing)}")
    if "channel_table" in data:
        data["channel_table"] = _table_from_json(data["channel_table"])
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid {model_type} config: {exc}") from None


__all__ = [
    "BIGGAN_SN_VARIANTS",
    "MAX_BLOCKS",
    "MAX_CHANNELS",
    "MAX_CHANNEL_MULTIPLIER",
    "MAX_IMAGE_CHANNELS",
    "REALESRGAN_SCALES",
    "BigGANConfig",
    "BigGANDeepConfig",
    "GLEANBigGANConfig",
    "GLEANBigGANDeepConfig",
    "GLEANColorizerConfig",
    "GLEANConfig",
    "GLEANNoBankConfig",
    "LightGLEANBigGANConfig",
    "LightGLEANBigGANDeepConfig",
    "LightGLEANConfig",
    "RealESRGANConfig",
    "StyleGAN2Config",
    "StyleGAN2DiscriminatorConfig",
    "config_from_dict",
    "config_to_dict",
    "describe_size",
    "describe_widths",
    "is_power_of_two",
    "nvidia_channels",
    "register_config",
    "stylegan2_bank_config",
    "stylegan2_channels",
    "width_fields",
]
