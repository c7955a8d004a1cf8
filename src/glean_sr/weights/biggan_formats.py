"""The two BigGAN weight formats people hold, recognised and read off their tensors.

* pytorch-pretrained-biggan (Hugging Face): ``pytorch_model.bin``, the state_dict of its
  ``BigGAN`` (``embeddings.weight``, ``generator.gen_z.weight_orig``, ...), next to a
  ``config.json`` (``output_dim``, ``layers``, ``eps``, ...). The released files are
  BigGAN-deep 128 / 256 / 512 converted from TF Hub.
* BigGAN-PyTorch (Brock): ``G.pth`` / ``G_ema.pth``, the state_dict of ``BigGAN.Generator``
  (``shared.weight``, ``linear.u0``, ``blocks.{b}.{0,1}.*``, ``output_layer.*``).

Both are plain tensor dicts, read by ``torch.load(weights_only=True)`` or, when the pickle names
anything else, by the inert unpickler (:mod:`glean_sr.weights.safe_load`); no code from a file
ever runs. The architecture is inferred from the tensor shapes; what the tensors cannot tell
(epsilons, the up-sampling flags of BigGAN-deep's layers without its ``config.json``) comes from
the ``config.json`` when there is one, else from the released configurations, and is said in a
note. The state_dict must then match the architecture key for key and shape for shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..config import BIGGAN_ARCH, BigGANConfig, BigGANDeepConfig
from ..errors import ConfigError, WeightsError

DEEP_MARKERS = ("embeddings.weight", "generator.gen_z.weight_orig")
BROCK_MARKERS = ("linear.weight", "blocks.0.0.conv1.weight")

#: pytorch-pretrained-biggan's config.json keys; class_embed_dim is stored but unused by its code
_HF_KEYS = {
    "output_dim",
    "z_dim",
    "class_embed_dim",
    "channel_width",
    "num_classes",
    "layers",
    "attention_layer_position",
    "eps",
    "n_stats",
}


#: keys that mark BigGAN-PyTorch files of layouts glean-sr does not read, and what they are
OTHER_LAYOUTS = {
    "blocks.0.0.conv4.weight": "BigGAN-PyTorch's BigGANdeep.py generator",
    "G_linear.module.weight_bar": "a TF Hub BigGAN in BigGAN-PyTorch's TFHub/converter.py layout",
}


def other_layout(obj: Any) -> str | None:
    """What a BigGAN state_dict of a layout glean-sr does not read is, or None."""
    if isinstance(obj, Mapping):
        return next((what for key, what in OTHER_LAYOUTS.items() if key in obj), None)
    return None


def is_deep_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(k in obj for k in DEEP_MARKERS)


def is_brock_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(k in obj for k in BROCK_MARKERS)


def _tensor(sd: Mapping[str, Any], key: str, ndim: int, name: str) -> Tensor:
    value = sd.get(key)
    if not isinstance(value, Tensor) or value.ndim != ndim:
        got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise WeightsError(f"{name}: '{key}' must be a {ndim}-d tensor, got {got}")
    return value


def _indices(sd: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _divide(total: int, part: int, what: str, name: str) -> int:
    if part <= 0 or total % part:
        raise WeightsError(f"{name}: {what} is {total}, not a multiple of {part}")
    return total // part


# -- pytorch-pretrained-biggan ---------------------------------------------------------------------


def infer_deep_config(
    sd: Mapping[str, Any], hf_config: Mapping[str, Any] | None, name: str
) -> tuple[BigGANDeepConfig, list[str]]:
    """The :class:`BigGANDeepConfig` of a pytorch-pretrained-biggan state_dict, checked against
    its ``config.json`` (``hf_config``) when given; returns it and notes."""
    notes: list[str] = []
    z_dim, num_classes = _tensor(sd, "embeddings.weight", 2, name).shape
    gen_out, cond = _tensor(sd, "generator.gen_z.weight_orig", 2, name).shape
    if cond != 2 * z_dim:
        raise WeightsError(f"{name}: gen_z takes {cond} inputs, expected 2 x z_dim = {2 * z_dim}")
    width = _divide(gen_out, 256, "gen_z's output size", name)
    prefix = "generator.layers."
    modules = _indices(sd, re.escape(prefix) + r"(\d+)\.")
    attention = [i for i in modules if f"{prefix}{i}.snconv1x1_theta.weight_orig" in sd]
    if len(attention) != 1:
        raise WeightsError(f"{name}: expected one self-attention layer, found {len(attention)}")
    blocks = [i for i in modules if i not in attention]
    n_stats = _tensor(sd, f"{prefix}{blocks[0]}.bn_0.running_means", 2, name).shape[0]
    mults = []
    for i in blocks:
        c_in = _tensor(sd, f"{prefix}{i}.bn_0.running_means", 2, name).shape[1]
        c_out = _tensor(sd, f"{prefix}{i}.conv_3.weight_orig", 4, name).shape[0]
        mults.append(
            (_divide(c_in, width, "a block's width", name), _divide(c_out, width, "width", name))
        )
    if hf_config is not None:
        unknown = sorted(set(hf_config) - _HF_KEYS)
        if unknown:
            raise WeightsError(f"{name}: config.json has keys BigGAN-deep does not: {unknown}")
        try:
            ups = [bool(layer[0]) for layer in hf_config["layers"]]
            eps = hf_config["eps"]
        except (KeyError, TypeError, IndexError):
            raise WeightsError(f"{name}: config.json lacks a readable 'layers' or 'eps'") from None
    else:
        ups = [i % 2 == 1 for i in range(len(blocks))]
        eps = 1e-4
        notes.append(
            "no config.json beside the weights: the released BigGAN-deep layout (every second "
            "block up-samples) and eps 1e-4 are assumed"
        )
    if len(ups) != len(blocks):
        raise WeightsError(
            f"{name}: config.json lists {len(ups)} layers, the weights have {len(blocks)} blocks"
        )
    layers = tuple((up, m_in, m_out) for up, (m_in, m_out) in zip(ups, mults, strict=True))
    try:
        config = BigGANDeepConfig(
            resolution=4 * 2 ** sum(ups),
            layers=layers,
            z_dim=z_dim,
            channel_width=width,
            num_classes=num_classes,
            attention_layer_position=attention[0],
            eps=eps,
            n_stats=n_stats,
        )
    except ConfigError as exc:
        raise WeightsError(
            f"{name}: not a BigGAN-deep generator glean-sr can build ({exc})"
        ) from None
    if hf_config is not None:
        _check_hf_config(config, hf_config, name)
    return config, notes


def _check_hf_config(config: BigGANDeepConfig, hf: Mapping[str, Any], name: str) -> None:
    """Every config.json value the code reads must describe the weights."""
    expected = {
        "output_dim": config.resolution,
        "z_dim": config.z_dim,
        "channel_width": config.channel_width,
        "num_classes": config.num_classes,
        "layers": [list(layer) for layer in config.layers],
        "attention_layer_position": config.attention_layer_position,
        "n_stats": config.n_stats,
    }
    for key, value in expected.items():
        got = hf.get(key, value)
        if key == "layers":
            got = [[bool(up), m_in, m_out] for up, m_in, m_out in got]
        if got != value:
            raise WeightsError(
                f"{name}: config.json says {key} = {hf.get(key)!r}, the weights have {value!r}"
            )


# -- BigGAN-PyTorch --------------------------------------------------------------------------------


def infer_brock_config(
    sd: Mapping[str, Any], name: str, **fixed: Any
) -> tuple[BigGANConfig, list[str]]:
    """The :class:`BigGANConfig` of a BigGAN-PyTorch generator state_dict. ``fixed`` sets what
    the tensors do not record (``bn_eps``, ``sn_eps``, ``num_itrs``); returns it and notes."""
    if "shared.weight" not in sd:
        raise WeightsError(
            f"{name}: a BigGAN-PyTorch generator without a shared class embedding (G_shared "
            f"off); glean-sr reads generators trained with --G_shared"
        )
    if "linear.u0" not in sd:
        raise WeightsError(
            f"{name}: a BigGAN-PyTorch generator without spectral norm (G_param other than SN); "
            f"glean-sr reads spectrally normalised generators"
        )
    if any(k.endswith((".bn.stored_mean", ".bn.running_mean")) for k in sd):
        raise WeightsError(
            f"{name}: a BigGAN-PyTorch generator trained with --mybn or --cross_replica batch "
            f"norm; glean-sr reads the default one (stored_mean / stored_var in each ccbn)"
        )
    num_classes, shared_dim = _tensor(sd, "shared.weight", 2, name).shape
    blocks = _indices(sd, r"blocks\.(\d+)\.")
    resolution = 4 * 2 ** len(blocks)
    if resolution not in BIGGAN_ARCH:
        raise WeightsError(
            f"{name}: {len(blocks)} blocks make {resolution} px; BigGAN-PyTorch's G_arch has "
            f"{sorted(BIGGAN_ARCH)} px"
        )
    lin_out, chunk = _tensor(sd, "linear.weight", 2, name).shape
    ch = _divide(lin_out, 16 * BIGGAN_ARCH[resolution][0][0], "the linear layer's output", name)
    cond = _tensor(sd, "blocks.0.0.bn1.gain.weight", 2, name).shape[1]
    hier = cond != shared_dim
    if hier and cond != shared_dim + chunk:
        raise WeightsError(
            f"{name}: the blocks take {cond}-wide vectors, neither the embedding ({shared_dim}) "
            f"nor embedding + z chunk ({shared_dim + chunk})"
        )
    attention = tuple(8 * 2**b for b in blocks if f"blocks.{b}.1.gamma" in sd)
    num_svs = len(_indices(sd, r"linear\.u(\d+)$"))
    try:
        config = BigGANConfig(
            resolution=resolution,
            ch=ch,
            dim_z=chunk * (len(blocks) + 1) if hier else chunk,
            shared_dim=shared_dim,
            hier=hier,
            num_classes=num_classes,
            attention=attention,
            num_svs=num_svs,
            **fixed,
        )
    except ConfigError as exc:
        raise WeightsError(f"{name}: not a BigGAN generator glean-sr can build ({exc})") from None
    notes = []
    unset = sorted({"bn_eps", "sn_eps"} - set(fixed))
    if unset:
        notes.append(
            f"{' and '.join(unset)} are not stored in a BigGAN-PyTorch file: "
            + ", ".join(f"{k} = {getattr(config, k):g}" for k in unset)
            + " (its ImageNet launch scripts) assumed"
        )
    return config, notes


__all__ = [
    "OTHER_LAYOUTS",
    "infer_brock_config",
    "infer_deep_config",
    "is_brock_state_dict",
    "is_deep_state_dict",
    "other_layout",
]
