"""GLEAN state_dicts in the wild: recognise the container, strip prefixes, infer the architecture
from tensor shapes, and report mismatches precisely.

Released checkpoints (mmediting 0.x ``tools/publish_model.py``) are ``{"meta": ..., "state_dict":
{...}}`` whose keys are the restorer's: ``generator.<GLEAN key>`` for the network, plus
``discriminator.*`` and ``perceptual_loss.*`` (training-only parts, ignored on an allow-list).
BasicSR's containers (``{"params_ema": ...}``, Real-ESRGAN's released files) are recognised by
:mod:`.basicsr_format`, which also reads the architecture of their RRDBNet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import GLEANConfig, LightGLEANConfig, stylegan2_channels
from ..errors import ConfigError, WeightsError
from .basicsr_format import basicsr_state_dict, infer_realesrgan_config, is_realesrgan_state_dict
from .widths import widths_as_fields

#: Sub-modules of the reference restorer that are not part of the network; ignored on load.
RESTORER_EXTRA_PREFIXES = ("discriminator.", "perceptual_loss.")


@dataclass
class UnwrappedWeights:
    state_dict: dict[str, Tensor]
    format: str
    #: keys of the container that are neither network nor allow-listed extras (strict: an error)
    unexpected: list[str] = field(default_factory=list)
    ignored: int = 0


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _check_tensor_dict(sd: Mapping[str, Any], name: str) -> None:
    if not _is_tensor_dict(sd):
        bad = next((k for k, v in sd.items() if not isinstance(v, Tensor)), None)
        detail = f" (entry {bad!r} is not a tensor)" if bad is not None else " (it is empty)"
        raise WeightsError(f"{name}: not a state_dict of tensors{detail}")


def unwrap_restorer_checkpoint(obj: Any, name: str) -> UnwrappedWeights:
    """Find the network's state_dict inside a released checkpoint or a bare state_dict."""
    basicsr = basicsr_state_dict(obj)
    if basicsr is not None:
        sd, fmt, unexpected, ignored = basicsr
        _check_tensor_dict(sd, name)
        return UnwrappedWeights(dict(sd), fmt, unexpected, ignored)
    wrapped = isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
    if wrapped:
        sd = obj["state_dict"]
    elif isinstance(obj, Mapping):
        sd = obj
    else:
        raise WeightsError(f"{name}: expected a dict of tensors, found a {type(obj).__name__}")
    _check_tensor_dict(sd, name)
    if not any(k.startswith("generator.encoder.") for k in sd):
        fmt = "state_dict in a checkpoint" if wrapped else "bare state_dict"
        return UnwrappedWeights(dict(sd), fmt)
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    ignored = 0
    for key, value in sd.items():
        if key.startswith("generator."):
            out[key[len("generator.") :]] = value
        elif key.startswith(RESTORER_EXTRA_PREFIXES):
            ignored += 1
        else:
            unexpected.append(key)
    fmt = "mmediting/mmagic checkpoint" if wrapped else "restorer state_dict (generator.* keys)"
    return UnwrappedWeights(out, fmt, unexpected, ignored)


def _count_indexed(sd: Mapping[str, Tensor], pattern: str) -> int:
    """Number of distinct integers ``i`` among keys matching ``pattern`` (with one ``(\\d+)``)."""
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _need(sd: Mapping[str, Tensor], key: str, name: str) -> Tensor:
    if key not in sd:
        raise WeightsError(
            f"{name}: cannot infer the GLEAN architecture: key '{key}' is missing "
            f"(not a GLEAN checkpoint, or the file is truncated)"
        )
    return sd[key]


def _block_widths(sd: Mapping[str, Tensor], blocks: Any, name: str) -> dict[int, int]:
    """Widths of the bank's synthesis blocks: block ``b``'s second conv works at ``2 ** (b + 3)``
    px; its weight is ``[1, out, in, 3, 3]``."""
    return {
        2 ** (b + 3): int(_need(sd, f"generator.convs.{2 * b + 1}.conv.weight_orig", name).shape[1])
        for b in blocks
    }


def _lightglean_width_fields(channels: Mapping[int, int], name: str) -> dict[str, Any]:
    """A LightGLEAN state_dict holds the bank's widths from in_size / 2 up only; the pruned
    coarse blocks' widths follow only where a config-f multiplier gives the known ones."""
    for multiplier in (2, 1, 4, 8):
        full = stylegan2_channels(multiplier)
        if all(full[res] == width for res, width in channels.items()):
            return {"channel_multiplier": multiplier}
    raise WeightsError(
        f"{name}: the bank's widths {dict(sorted(channels.items()))} are no config-f multiplier's "
        f"and the pruned coarse blocks' widths are not in the tensors; load it with its "
        f"config.json"
    )


def infer_glean_config(sd: Mapping[str, Tensor], name: str = "weights") -> GLEANConfig:
    """Read GLEAN's constructor arguments off the tensor shapes of an (unprefixed) state_dict."""
    conv_first = _need(sd, "encoder.0.0.conv_first.weight", name)
    num_fusions = _count_indexed(sd, r"fusion_out\.(\d+)\.weight$")
    num_convs = _count_indexed(sd, r"generator\.convs\.(\d+)\.")
    if num_fusions == 0 or num_convs == 0:
        raise WeightsError(
            f"{name}: cannot infer the GLEAN architecture: no fusion_out/generator.convs keys "
            f"(not a GLEAN checkpoint, or the file is truncated)"
        )
    in_size = 2 ** (num_fusions + 1)
    out_size = 2 ** (num_convs // 2 + 2)
    style = _need(sd, "generator.conv1.conv.style_modulation.linear.weight_orig", name)
    num_mlps = _count_indexed(sd, r"generator\.style_mapping\.(\d+)\.bias$")
    num_mlps = max(num_mlps - 1, 0)  # index 0 is the parameter-free PixelNorm
    channels = {4: int(_need(sd, "generator.conv1.conv.weight_orig", name).shape[1])}
    channels.update(_block_widths(sd, range(num_convs // 2), name))
    try:
        return GLEANConfig(
            in_size=in_size,
            out_size=out_size,
            img_channels=int(conv_first.shape[1]),
            rrdb_channels=int(conv_first.shape[0]),
            num_rrdbs=_count_indexed(sd, r"encoder\.0\.0\.body\.(\d+)\."),
            style_channels=int(style.shape[1]),
            num_mlps=num_mlps,
            **widths_as_fields(channels, name, "GLEAN bank"),
            bank_img_channels=int(_need(sd, "generator.to_rgb1.conv.weight_orig", name).shape[1]),
        )
    except ConfigError as exc:
        raise WeightsError(f"{name}: the tensors describe no valid GLEAN ({exc})") from None


def infer_lightglean_config(sd: Mapping[str, Tensor], name: str = "weights") -> LightGLEANConfig:
    """Read LightGLEAN's constructor arguments off the tensor shapes of its state_dict."""
    conv_first = _need(sd, "encoder.0.conv_first.weight", name)
    codes = _need(sd, "latent_codes.z", name)
    rx = re.compile(r"generator\.convs\.(\d+)\.conv\.weight_orig$")
    blocks = sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})
    num_decoder = _count_indexed(sd, r"decoder\.(\d+)\.")
    if not blocks or num_decoder < 2:
        raise WeightsError(
            f"{name}: cannot infer the LightGLEAN architecture: no bank blocks or decoder "
            f"(the file is truncated or damaged)"
        )
    in_size, out_size = 2 ** (blocks[0] // 2 + 3), 2 ** (blocks[-1] // 2 + 3)
    first = _need(sd, f"generator.convs.{blocks[0]}.conv.weight_orig", name)
    channels = {in_size // 2: int(first.shape[2])}
    channels.update(_block_widths(sd, range(blocks[0] // 2, blocks[-1] // 2 + 1), name))
    first_decoder = _need(sd, "decoder.0.upsample_conv.weight", name)
    width = int(first_decoder.shape[0]) // 4
    head = _need(sd, f"decoder.{num_decoder - 1}.0.weight", name)
    try:
        return LightGLEANConfig(
            in_size=in_size,
            out_size=out_size,
            img_channels=int(conv_first.shape[1]),
            rrdb_channels=int(conv_first.shape[0]),
            num_rrdbs=_count_indexed(sd, r"encoder\.0\.body\.(\d+)\."),
            style_channels=int(codes.shape[1]),
            num_mlps=max(_count_indexed(sd, r"generator\.style_mapping\.(\d+)\.bias$") - 1, 0),
            decoder_reduction=max(channels[2 * in_size] // max(width, 1), 1),
            **_lightglean_width_fields(channels, name),
            head_channels=int(head.shape[0]),
        )
    except ConfigError as exc:
        raise WeightsError(f"{name}: the tensors describe no valid LightGLEAN ({exc})") from None


#: Architecture inferers, tried in order; each returns a config or None if the keys are not its.
INFERERS: list[tuple[Callable[[Mapping[str, Tensor]], bool], Callable[..., Any]]] = [
    (
        lambda sd: "encoder.0.0.conv_first.weight" in sd or "fusion_out.0.weight" in sd,
        infer_glean_config,
    ),
    (lambda sd: "latent_codes.z" in sd, infer_lightglean_config),
    (is_realesrgan_state_dict, infer_realesrgan_config),
]


def infer_config(sd: Mapping[str, Tensor], name: str = "weights") -> Any:
    for matches, infer in INFERERS:
        if matches(sd):
            return infer(sd, name)
    sample = ", ".join(sorted(sd)[:3])
    raise WeightsError(
        f"{name}: not a GLEAN-family or Real-ESRGAN RRDBNet state_dict (first keys: {sample}); "
        f"for a StyleGAN2 bank use 'glean-sr convert-bank'"
    )


@dataclass
class Mismatch:
    missing: list[str]
    unexpected: list[str]
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # key, file shape, model shape

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    def describe(self, limit: int = 4) -> str:
        def listing(items: list[str]) -> str:
            shown = ", ".join(items[:limit])
            more = f", +{len(items) - limit} more" if len(items) > limit else ""
            return shown + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({listing(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({listing(self.unexpected)})")
        if self.misshaped:
            items = [f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in self.misshaped]
            parts.append(f"{len(self.misshaped)} mis-shaped ({listing(items)})")
        return "; ".join(parts)


def compare_state_dict(
    expected: Mapping[str, Tensor], found: Mapping[str, Tensor], extra_unexpected: list[str] = ()
) -> Mismatch:
    """Strict comparison of key sets and shapes (``expected`` may live on the meta device)."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted([k for k in found if k not in expected] + list(extra_unexpected))
    misshaped = sorted(
        (k, tuple(found[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    )
    return Mismatch(missing, unexpected, misshaped)


def to_float32(sd: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    """All GLEAN tensors are float32; half-precision files are widened, anything else refused.

    Tensors that are not 64-byte aligned (safetensors packs them back to back) are copied:
    oneDNN picks other kernels for unaligned weights, which would make results depend on the
    file format by a few 1e-8.
    """
    out = {}
    for key, value in sd.items():
        if not torch.is_floating_point(value):
            raise WeightsError(f"{name}: tensor '{key}' has dtype {value.dtype}, expected float")
        if value.dtype != torch.float32:
            value = value.float()
        elif value.data_ptr() % 64:
            value = value.clone()
        out[key] = value
    return out
