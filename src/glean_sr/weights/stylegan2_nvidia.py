"""StyleGAN2 pickles of NVlabs stylegan2-ada-pytorch and stylegan3 (``network-snapshot-*.pkl``).

A snapshot is a plain pickle of ``{"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}``
whose networks are ``torch_utils.persistence`` objects: the module's source code plus its
``__dict__``. :mod:`glean_sr.weights.inert_pickle` reads them as :class:`PickledObject` records
(class name + ``__dict__``) without running the code; this module flattens them into state_dicts
and maps those onto glean-sr's layout.

Numerical differences to glean-sr (= mmagic), all handled by the rule table or equivalent:

* equalized lr: NVIDIA scales ToRGB's *styles* by ``1/sqrt(fan_in)`` and leaves synthesis-layer
  weights unscaled (demodulation removes the scale); ours scales the weights. Same function.
* layouts: weights ``[out, in, k, k]`` (ours ``[1, out, in, k, k]``), const ``[C, 4, 4]``, noise
  maps ``noise_const [r, r]`` and a scalar ``noise_strength``, ToRGB bias ``[C]``;
  ``mapping.fc{i}`` is ``style_mapping.{i+1}`` (index 0 is PixelNorm).
* up-sampling: NVIDIA's ``conv2d_resample`` (transposed conv, then the FIR filter with pad 1 and
  gain 4) equals mmagic's; the taps are stored the same way and are not flipped.
* filters: ``resample_filter`` buffers are ``[1,3,3,1]`` outer products with sum 1; ours carry
  the up-sampling gain 4. The RGB skip is up-sampled with the same filter, pad (2, 1).
* ``mapping.w_avg`` is NVIDIA's running mean of ``w``: kept as the truncation centre.
* widths: ``min(channel_base // res, channel_max)``; the recorded constructor arguments
  (``_init_kwargs``: ``channel_base``, ``channel_max``, ``img_resolution``, ``z_dim``,
  ``w_dim``, the mapping's ``num_layers``) are read and must agree with the tensor shapes. Any
  widths load; a file whose widths are a config-f channel multiplier's gets the same config as a
  rosinality file.
* ``conv_clamp`` (256 in networks trained by ``train.py``) clamps activations at +-256 even in
  fp32; glean-sr does not clamp (trained networks stay far below it). ``num_fp16_res`` is a
  precision setting only: glean-sr computes in fp32 (NVIDIA's ``force_fp32=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..config import StyleGAN2Config, StyleGAN2DiscriminatorConfig
from ..errors import WeightsError
from .inert_pickle import PickledObject
from .stylegan2_common import (
    ConvertedBank,
    KeyRule,
    LayoutError,
    add_batch_dim,
    convert_networks,
    discriminator_config,
    expect_fir,
    generator_config,
    indices,
    need_tensor,
    pick_variant,
    reshape_to,
)

FORMAT = "NVIDIA pickle"
_PERSISTENT = "torch_utils.persistence:"


# -- from persistent records to state_dicts --------------------------------------------------------


def is_network(obj: Any, class_name: str) -> bool:
    return isinstance(obj, PickledObject) and obj.type_name == _PERSISTENT + class_name


def matches(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        return is_network(obj.get("G_ema"), "Generator") or is_network(obj.get("G"), "Generator")
    return is_network(obj, "Generator")


def flatten(obj: PickledObject, name: str) -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    """A persistent network's state_dict, and each sub-module's attributes by path."""
    tensors: dict[str, Tensor] = {}
    attrs: dict[str, dict[str, Any]] = {}

    def visit(node: Any, path: str) -> None:
        if not isinstance(node, PickledObject) or not node.type_name.startswith(_PERSISTENT):
            raise WeightsError(f"{name}: sub-module '{path}' is not an NVIDIA network layer")
        state = node.state if isinstance(node.state, dict) else {}
        attrs[path] = {**state, "class_name": node.type_name[len(_PERSISTENT) :]}
        prefix = f"{path}." if path else ""
        skip = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for key, value in (state.get(group) or {}).items():
                if value is not None and key not in skip:
                    tensors[prefix + key] = value
        for key, child in (state.get("_modules") or {}).items():
            if child is not None:
                visit(child, prefix + key)

    visit(obj, "")
    return tensors, attrs


# -- rules -----------------------------------------------------------------------------------------


def _synthesis_layer(layer: str) -> str:
    """Our ``conv1`` / ``convs.{i}`` -> NVIDIA ``synthesis.b{res}.conv{0,1}``."""
    if layer == "conv1":
        return "synthesis.b4.conv1"
    i = int(layer.split(".")[1])
    return f"synthesis.b{2 ** (i // 2 + 3)}.conv{i % 2}"


def _to_rgb(layer: str) -> str:
    """Our ``to_rgb1`` / ``to_rgbs.{b}`` -> NVIDIA ``synthesis.b{res}.torgb``."""
    if layer == "to_rgb1":
        return "synthesis.b4.torgb"
    return f"synthesis.b{2 ** (int(layer.split('.')[1]) + 3)}.torgb"


def _fc(index: str) -> str:
    """Our ``style_mapping.{i}`` (0 is PixelNorm) -> ``mapping.fc{i-1}``."""
    return f"mapping.fc{int(index) - 1}"


def _noise_layer(index: str) -> str:
    """Noise map ``l`` feeds synthesis layer ``l``: 0 is ``conv1``, ``l`` is ``convs.{l-1}``."""
    i = int(index)
    return _synthesis_layer("conv1" if i == 0 else f"convs.{i - 1}")


def _noise_map(t: Tensor) -> Tensor:
    if t.ndim != 2:
        raise LayoutError(f"expected a [r, r] noise map, got {list(t.shape)}")
    return t[None, None]


def _rgb_bias(t: Tensor) -> Tensor:
    return t.reshape(1, -1, 1, 1)


_LAYER = r"(conv1|convs\.\d+)"
_RGB = r"(to_rgb1|to_rgbs\.\d+)"


def _layer_rule(suffix: str, leaf: str, convert: Any = None) -> KeyRule:
    return KeyRule(_LAYER + suffix, lambda m: f"{_synthesis_layer(m[1])}.{leaf}", convert)


def _rgb_rule(suffix: str, leaf: str, convert: Any = None) -> KeyRule:
    return KeyRule(_RGB + suffix, lambda m: f"{_to_rgb(m[1])}.{leaf}", convert)


GENERATOR_RULES = [
    KeyRule(r"style_mapping\.(\d+)\.linear\.weight_orig", lambda m: f"{_fc(m[1])}.weight"),
    KeyRule(r"style_mapping\.(\d+)\.bias", lambda m: f"{_fc(m[1])}.bias"),
    KeyRule(r"constant_input\.input", "synthesis.b4.const", add_batch_dim),
    _layer_rule(r"\.conv\.weight_orig", "weight", add_batch_dim),
    _layer_rule(r"\.conv\.style_modulation\.linear\.weight_orig", "affine.weight"),
    _layer_rule(r"\.conv\.style_modulation\.bias", "affine.bias"),
    _layer_rule(r"\.noise_injector\.weight", "noise_strength", reshape_to(1)),
    _layer_rule(r"\.activate\.bias", "bias"),
    _layer_rule(r"\.conv\.blur\.kernel", "resample_filter", expect_fir(1, 4)),
    _rgb_rule(r"\.conv\.weight_orig", "weight", add_batch_dim),
    _rgb_rule(r"\.conv\.style_modulation\.linear\.weight_orig", "affine.weight"),
    _rgb_rule(r"\.conv\.style_modulation\.bias", "affine.bias"),
    _rgb_rule(r"\.bias", "bias", _rgb_bias),
    KeyRule(
        r"to_rgbs\.(\d+)\.upsample\.kernel",
        lambda m: f"synthesis.b{2 ** (int(m[1]) + 3)}.resample_filter",
        expect_fir(1, 4),
    ),
    KeyRule(r"injected_noise_(\d+)", lambda m: f"{_noise_layer(m[1])}.noise_const", _noise_map),
]
#: Filters of layers that do not resample (and the block-level copies) are unused; every filter
#: is still checked to be [1, 3, 3, 1] before conversion.
GENERATOR_TOLERATED = (r"mapping\.w_avg", r".*\.resample_filter")


def _d_block(k: str, resolution: int) -> str:
    """Our residual block ``convs.{k}`` (k >= 1) -> NVIDIA ``b{res}``."""
    return f"b{resolution >> (int(k) - 1)}"


def discriminator_rules(resolution: int) -> list[KeyRule]:
    def block(leaf: str, convert: Any = None, suffix: str = "") -> KeyRule:
        return KeyRule(
            r"convs\.(\d+)\." + suffix, lambda m: f"{_d_block(m[1], resolution)}.{leaf}", convert
        )

    return [
        KeyRule(r"convs\.0\.0\.conv\.weight_orig", f"b{resolution}.fromrgb.weight"),
        KeyRule(r"convs\.0\.1\.bias", f"b{resolution}.fromrgb.bias"),
        block("conv0.weight", suffix=r"conv1\.0\.conv\.weight_orig"),
        block("conv0.bias", suffix=r"conv1\.1\.bias"),
        block("conv1.resample_filter", expect_fir(1, 1), suffix=r"conv2\.0\.kernel"),
        block("conv1.weight", suffix=r"conv2\.1\.conv\.weight_orig"),
        block("conv1.bias", suffix=r"conv2\.2\.bias"),
        block("skip.resample_filter", expect_fir(1, 1), suffix=r"skip\.0\.kernel"),
        block("skip.weight", suffix=r"skip\.1\.conv\.weight_orig"),
        KeyRule(r"final_conv\.0\.conv\.weight_orig", "b4.conv.weight"),
        KeyRule(r"final_conv\.1\.bias", "b4.conv.bias"),
        KeyRule(r"final_linear\.0\.linear\.weight_orig", "b4.fc.weight"),
        KeyRule(r"final_linear\.0\.bias", "b4.fc.bias"),
        KeyRule(r"final_linear\.1\.linear\.weight_orig", "b4.out.weight"),
        KeyRule(r"final_linear\.1\.bias", "b4.out.bias"),
    ]


DISCRIMINATOR_TOLERATED = (r".*\.resample_filter",)


# -- architecture ----------------------------------------------------------------------------------


def _check_filters(tensors: Mapping[str, Tensor], name: str, what: str) -> None:
    check = expect_fir(1, 1)
    for key, value in tensors.items():
        if key.endswith("resample_filter"):
            try:
                check(value)
            except LayoutError as exc:
                raise WeightsError(f"{name}: {what} tensor '{key}': {exc}") from None


def _attr(attrs: Mapping[str, dict[str, Any]], path: str, key: str, default: Any = None) -> Any:
    return attrs.get(path, {}).get(key, default)


def _refuse_unless(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise WeightsError(f"{name}: {what} is not supported (only StyleGAN2 networks)")


#: NVIDIA's constructor default, used where a recorded call gave channel_base only.
_NVIDIA_CHANNEL_MAX = 512


def _init_kwargs(attrs: Mapping[str, dict[str, Any]], path: str) -> dict[str, Any]:
    """The keyword arguments ``path``'s module was constructed with (``persistence`` records
    them), with the generator's nested ``synthesis_kwargs`` / ``mapping_kwargs`` flattened in."""
    kwargs = _attr(attrs, path, "_init_kwargs")
    if not isinstance(kwargs, Mapping):
        return {}
    out = dict(kwargs)
    for nested in ("synthesis_kwargs", "mapping_kwargs"):
        if isinstance(kwargs.get(nested), Mapping):
            out.update(kwargs[nested])
    return out


def _channel_rule(kwargs: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(channel_base, channel_max)`` as recorded (stylegan2-ada-pytorch's ``train.py`` passes
    both; stylegan3's too), or None where the call recorded no ``channel_base``."""
    if "channel_base" not in kwargs:
        return None
    rule = (kwargs["channel_base"], kwargs.get("channel_max", _NVIDIA_CHANNEL_MAX))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rule):
        return None
    return rule


def _check_recorded(kwargs: Mapping[str, Any], key: str, actual: int, name: str, what: str):
    """A recorded constructor argument must agree with what the tensors say."""
    recorded = kwargs.get(key)
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded != actual:
        raise WeightsError(
            f"{name}: the {what} records {key}={recorded}, its tensors give {actual}"
        )


def infer_generator_config(
    sd: Mapping[str, Tensor], attrs: Mapping[str, dict[str, Any]], name: str
) -> StyleGAN2Config:
    what = "generator"
    if any(a.get("class_name") == "SynthesisInput" for a in attrs.values()):
        raise WeightsError(f"{name}: a StyleGAN3 (alias-free) generator is not a StyleGAN2 bank")
    _refuse_unless("mapping.embed.weight" not in sd, name, "a conditional (class-label) generator")
    blocks = indices(sd, r"synthesis\.b(\d+)\.conv1\.weight")
    _refuse_unless(bool(blocks) and blocks[0] == 4, name, "a generator without a 4x4 block")
    for res in blocks:
        arch = _attr(attrs, f"synthesis.b{res}", "architecture", "skip")
        _refuse_unless(arch == "skip", name, f"synthesis architecture '{arch}'")
        _refuse_unless(
            f"synthesis.b{res}.conv1.noise_const" in sd, name, "a generator without noise inputs"
        )
    channels = {res: int(sd[f"synthesis.b{res}.conv1.weight"].shape[0]) for res in blocks}
    style = need_tensor(sd, "synthesis.b4.conv1.affine.weight", name, what)
    fc0 = need_tensor(sd, "mapping.fc0.weight", name, what)
    if fc0.shape[1] != style.shape[1]:
        raise WeightsError(
            f"{name}: z size {fc0.shape[1]} differs from w size {style.shape[1]} "
            f"(glean-sr's mapping network keeps one size)"
        )
    kwargs = {**_init_kwargs(attrs, "synthesis"), **_init_kwargs(attrs, "")}
    num_mlps = len(indices(sd, r"mapping\.fc(\d+)\.weight"))
    for key, actual in (
        ("img_resolution", max(blocks)),
        ("z_dim", int(fc0.shape[1])),
        ("w_dim", int(style.shape[1])),
        ("num_layers", num_mlps),
    ):
        _check_recorded(kwargs, key, actual, name, what)
    return generator_config(
        name,
        channels=channels,
        style_channels=int(style.shape[1]),
        num_mlps=num_mlps,
        img_channels=int(need_tensor(sd, "synthesis.b4.torgb.weight", name, what).shape[0]),
        lr_mlp=float(_attr(attrs, "mapping.fc0", "bias_gain", 0.01)),
        rule=_channel_rule(kwargs),
    )


def infer_discriminator_config(
    sd: Mapping[str, Tensor], attrs: Mapping[str, dict[str, Any]], name: str
) -> StyleGAN2DiscriminatorConfig:
    what = "discriminator"
    _refuse_unless("mapping.fc0.weight" not in sd, name, "a conditional discriminator")
    blocks = indices(sd, r"b(\d+)\.conv1\.weight")
    _refuse_unless(bool(blocks), name, "a discriminator without blocks")
    for res in blocks:
        arch = _attr(attrs, f"b{res}", "architecture", "resnet")
        _refuse_unless(arch == "resnet", name, f"discriminator architecture '{arch}'")
    resolution = max(blocks)
    from_rgb = need_tensor(sd, f"b{resolution}.fromrgb.weight", name, what)
    channels = {resolution: int(from_rgb.shape[0])}
    channels.update({res // 2: int(sd[f"b{res}.conv1.weight"].shape[0]) for res in blocks})
    group = _attr(attrs, "b4.mbstd", "group_size", 4)
    mbstd_channels = _attr(attrs, "b4.mbstd", "num_channels", 1)
    if group is None:
        raise WeightsError(f"{name}: a minibatch-stddev group of the whole batch is not supported")
    final = need_tensor(sd, "b4.conv.weight", name, what)
    if int(final.shape[1]) != channels[4] + int(mbstd_channels):
        raise WeightsError(f"{name}: the discriminator's epilogue does not match its mbstd layer")
    kwargs = _init_kwargs(attrs, "")
    _check_recorded(kwargs, "img_resolution", resolution, name, what)
    return discriminator_config(
        name,
        channels=channels,
        img_channels=int(from_rgb.shape[1]),
        final_in_channels=int(final.shape[1]),
        mbstd_group_size=int(group),
        rule=_channel_rule(kwargs),
    )


# -- conversion ------------------------------------------------------------------------------------


def convert(obj: Any, name: str, ema: bool | None = None) -> ConvertedBank:
    notes: list[str] = []
    if isinstance(obj, Mapping):
        net, used_ema, notes = pick_variant(
            {True: obj.get("G_ema"), False: obj.get("G")},
            ema,
            name,
            {True: "EMA generator ('G_ema')", False: "raw generator ('G')"},
        )
        disc = obj.get("D")
    else:
        net, used_ema, disc = obj, None, None
    sd, attrs = flatten(net, name)
    _check_filters(sd, name, "generator")
    clamps = {a.get("conv_clamp") for a in attrs.values() if a.get("conv_clamp") is not None}
    if clamps:
        notes.append(
            f"the file clamps activations at +-{max(clamps):g} (conv_clamp); glean-sr does not"
        )
    discriminator = None
    if is_network(disc, "Discriminator"):
        d_tensors, d_attrs = flatten(disc, name)
        _check_filters(d_tensors, name, "discriminator")
        d_config = infer_discriminator_config(d_tensors, d_attrs, name)
        rules = discriminator_rules(d_config.resolution)
        discriminator = (d_config, d_tensors, rules, DISCRIMINATOR_TOLERATED)
    config = infer_generator_config(sd, attrs, name)
    return convert_networks(
        FORMAT,
        name,
        generator=(config, sd, GENERATOR_RULES, GENERATOR_TOLERATED),
        discriminator=discriminator,
        w_avg=sd.get("mapping.w_avg"),
        channel_order="RGB",  # NVIDIA's dataset tool stores RGB images
        ema=used_ema,
        notes=notes,
    )


__all__ = ["FORMAT", "convert", "flatten", "matches"]
