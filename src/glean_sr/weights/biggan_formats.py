"""The BigGAN weight formats people hold, recognised and read off their tensors.

* pytorch-pretrained-biggan (Hugging Face): ``pytorch_model.bin``, the state_dict of its
  ``BigGAN`` (``embeddings.weight``, ``generator.gen_z.weight_orig``, ...), next to a
  ``config.json`` (``output_dim``, ``layers``, ``eps``, ...). The released files are
  BigGAN-deep 128 / 256 / 512 converted from TF Hub.
* BigGAN-PyTorch (Brock): ``G.pth`` / ``G_ema.pth``, the state_dict of ``BigGAN.Generator``
  (``shared.weight``, ``linear.u0``, ``blocks.{b}.{0,1}.*``, ``output_layer.*``).
* TF Hub's BigGAN 128 / 256 / 512 as BigGAN-PyTorch's ``TFHub/converter.py`` writes it
  (``biggan-{128,256,512}.pth``): the state_dict of that folder's ``biggan.Generator{128,256,512}``
  (``linear.weight``, ``G_linear.module.weight_bar``, ``GBlock.{b}.HyperBN.*``, ``attention.*``,
  ``ScaledCrossReplicaBN.*``, ``colorize.*``). It is BigGAN.py's generator in other terms and is
  read into it by the table :data:`TFHUB_RULES` (see :func:`convert_tfhub_state_dict`).

All are plain tensor dicts, read by ``torch.load(weights_only=True)`` or, when the pickle names
anything else, by the inert unpickler (:mod:`glean_sr.weights.safe_load`); no code from a file
ever runs. The architecture is inferred from the tensor shapes; what the tensors cannot tell
(epsilons, the up-sampling flags of BigGAN-deep's layers without its ``config.json``) comes from
the ``config.json`` when there is one, else from the released configurations, and is said in a
note (a TF Hub conversion's epsilons and attention are fixed by ``TFHub/biggan.py``, per
resolution). The state_dict must then match the architecture key for key and shape for shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..config import BIGGAN_ARCH, BigGANConfig, BigGANDeepConfig
from ..errors import ConfigError, WeightsError
from ..models.biggan import OUTPUT_BN_EPS

DEEP_MARKERS = ("embeddings.weight", "generator.gen_z.weight_orig")
BROCK_MARKERS = ("linear.weight", "blocks.0.0.conv1.weight")
TFHUB_MARKERS = ("G_linear.module.weight_bar", "GBlock.0.conv0.module.weight_bar")

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
}


def other_layout(obj: Any) -> str | None:
    """What a BigGAN state_dict of a layout glean-sr does not read is, or None."""
    if isinstance(obj, Mapping):
        return next((what for key, what in OTHER_LAYOUTS.items() if key in obj), None)
    return None


def is_tfhub_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(k in obj for k in TFHUB_MARKERS)


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


# -- TF Hub's BigGAN through BigGAN-PyTorch's TFHub/converter.py -----------------------------------

#: ``TFHub/biggan.py``: per generator class, the resolution its self-attention works at (it
#: runs before GBlock ``sa_id``, i.e. after BigGAN.py's block ``sa_id - 1``) and the epsilon of
#: its output batch norm (``ScaledCrossReplicaBN``; nn.BatchNorm2d's default at 512 px)
TFHUB_GENERATORS = {128: (64, 1e-4), 256: (128, 1e-4), 512: (64, 1e-5)}
#: the epsilon of ``TFHub/biggan.py``'s ``ConditionalBatchNorm2d`` and of its spectral norm's
#: ``l2normalize``; neither is stored in the file, both are fixed in that code
TFHUB_EPS = 1e-4

_SN = r"module\.(?P<p>weight_bar|weight_u|bias)"
#: TFHub/converter.py's keys -> BigGAN.py's, rule by rule: every key of a file must match one.
#: A target of None drops the key: ``weight_v`` (TFHub/biggan.py recomputes v from u on every
#: forward and never reads it) and ``num_batches_tracked`` (statistics bookkeeping). ``{p}`` is
#: an SN parameter (weight_bar -> weight, weight_u -> u0, bias), ``{a}`` the block the attention
#: follows. The transforms are those of :func:`convert_tfhub_state_dict`.
TFHUB_RULES: list[tuple[str, str | None, str]] = [
    (r"linear\.weight", "shared.weight", "transpose"),
    (rf"G_linear\.{_SN}", "linear.{p}", "nhwc_rows"),
    (rf"GBlock\.(?P<b>\d+)\.conv0\.{_SN}", "blocks.{b}.0.conv1.{p}", ""),
    (rf"GBlock\.(?P<b>\d+)\.conv1\.{_SN}", "blocks.{b}.0.conv2.{p}", ""),
    (rf"GBlock\.(?P<b>\d+)\.conv_sc\.{_SN}", "blocks.{b}.0.conv_sc.{p}", ""),
    (rf"GBlock\.(?P<b>\d+)\.HyperBN\.gamma_embed\.{_SN}", "blocks.{b}.0.bn1.gain.{p}", "zy"),
    (rf"GBlock\.(?P<b>\d+)\.HyperBN\.beta_embed\.{_SN}", "blocks.{b}.0.bn1.bias.{p}", "zy"),
    (rf"GBlock\.(?P<b>\d+)\.HyperBN_1\.gamma_embed\.{_SN}", "blocks.{b}.0.bn2.gain.{p}", "zy"),
    (rf"GBlock\.(?P<b>\d+)\.HyperBN_1\.beta_embed\.{_SN}", "blocks.{b}.0.bn2.bias.{p}", "zy"),
    (
        r"GBlock\.(?P<b>\d+)\.HyperBN\.bn\.running_(?P<s>mean|var)",
        "blocks.{b}.0.bn1.stored_{s}",
        "",
    ),
    (
        r"GBlock\.(?P<b>\d+)\.HyperBN_1\.bn\.running_(?P<s>mean|var)",
        "blocks.{b}.0.bn2.stored_{s}",
        "",
    ),
    (rf"attention\.(?P<l>theta|phi|g)\.{_SN}", "blocks.{a}.1.{l}.{p}", ""),
    (rf"attention\.o_conv\.{_SN}", "blocks.{a}.1.o.{p}", ""),
    (r"attention\.gamma", "blocks.{a}.1.gamma", "scalar"),
    (r"ScaledCrossReplicaBN\.weight", "output_layer.0.gain", ""),
    (r"ScaledCrossReplicaBN\.bias", "output_layer.0.bias", ""),
    (r"ScaledCrossReplicaBN\.running_mean", "output_layer.0.stored_mean", ""),
    (r"ScaledCrossReplicaBN\.running_var", "output_layer.0.stored_var", "output_eps"),
    (rf"colorize\.{_SN}", "output_layer.2.{p}", ""),
    (r".*\.weight_v", None, ""),
    (r".*\.num_batches_tracked", None, ""),
]
_SN_NAMES = {"weight_bar": "weight", "weight_u": "u0", "bias": "bias"}


def infer_tfhub_config(sd: Mapping[str, Any], name: str) -> BigGANConfig:
    """The :class:`BigGANConfig` of a ``TFHub/converter.py`` file: sizes from the tensors, the
    attention and epsilons from ``TFHub/biggan.py``'s generator class of that resolution."""
    blocks = _indices(sd, r"GBlock\.(\d+)\.")
    resolution = 4 * 2 ** len(blocks)
    if resolution not in TFHUB_GENERATORS:
        raise WeightsError(
            f"{name}: {len(blocks)} GBlocks make {resolution} px; TFHub/converter.py writes the "
            f"{sorted(TFHUB_GENERATORS)} px generators of TFHub/biggan.py"
        )
    shared_dim, num_classes = _tensor(sd, "linear.weight", 2, name).shape
    lin_out, chunk = _tensor(sd, "G_linear.module.weight_bar", 2, name).shape
    cond = _tensor(sd, "GBlock.0.HyperBN.gamma_embed.module.weight_bar", 2, name).shape[1]
    if cond != chunk + shared_dim:
        raise WeightsError(
            f"{name}: the blocks take {cond}-wide vectors, not z chunk + class embedding "
            f"({chunk} + {shared_dim})"
        )
    try:
        return BigGANConfig(
            resolution=resolution,
            ch=_divide(lin_out, 16 * BIGGAN_ARCH[resolution][0][0], "G_linear's output", name),
            dim_z=chunk * (len(blocks) + 1),
            shared_dim=shared_dim,
            hier=True,
            num_classes=num_classes,
            attention=(TFHUB_GENERATORS[resolution][0],),
            bn_eps=TFHUB_EPS,
            sn_eps=TFHUB_EPS,
            sn_variant="tfhub",
        )
    except ConfigError as exc:
        raise WeightsError(f"{name}: not a BigGAN generator glean-sr can build ({exc})") from None


def convert_tfhub_state_dict(
    sd: Mapping[str, Any], name: str
) -> tuple[dict[str, Tensor], BigGANConfig]:
    """A ``TFHub/converter.py`` state_dict as the state_dict of BigGAN.py's generator of the
    same computation, and its config (``sn_variant="tfhub"``). Every key is mapped by
    :data:`TFHUB_RULES`, exactly:

    * ``transpose``: the class embedding is a bias-free Linear of the one-hot class there, an
      ``nn.Embedding`` here (``[classes, dim]``);
    * ``nhwc_rows``: ``G_linear``'s output is read as ``[N, 4, 4, C]`` there, ``[N, C, 4, 4]``
      here, so its rows (weight, bias and the singular vector ``u``) are reordered;
    * ``zy``: the blocks are conditioned on ``[z chunk, class embedding]`` there and
      ``[class embedding, z chunk]`` here, so the batch norms' gain and bias maps swap their
      column blocks (neither reordering changes the spectral norm);
    * ``scalar``: attention's ``gamma`` is ``[1]`` there, ``[]`` here;
    * ``output_eps``: the output batch norm's epsilon (1e-4 at 128 and 256 px) is folded into
      its stored variance, BigGAN.py's being 1e-5; exact in eval mode, where a bank runs.

    Singular vectors become ``u0 [1, out]``; ``sv0``, which BigGAN.py writes in training mode
    only and never reads, starts at 1 as in a fresh ``layers.SN``.
    """
    config = infer_tfhub_config(sd, name)
    attention = config.attention[0]
    after = {"a": str(config.resolutions.index(attention))}
    chunk, width = config.z_chunk, config.channels[4]
    rules = [(re.compile(pattern), target, how) for pattern, target, how in TFHUB_RULES]
    out: dict[str, Tensor] = {}
    unmatched = []
    for key, value in sd.items():
        match = next(((m, t, how) for rx, t, how in rules if (m := rx.fullmatch(key))), None)
        if match is None:
            unmatched.append(key)
            continue
        m, target, how = match
        if target is None:
            continue
        if not isinstance(value, Tensor):
            raise WeightsError(f"{name}: '{key}' is a {type(value).__name__}, not a tensor")
        groups = {**after, **m.groupdict()}
        param = groups.get("p")
        if param is not None:
            groups["p"] = _SN_NAMES[param]
        if how == "transpose":
            value = value.t()
        elif how == "nhwc_rows":  # row (h * 4 + w) * C + c there is c * 16 + h * 4 + w here
            rest = value.shape[1:]
            value = value.reshape(4, 4, width, *rest).movedim(2, 0).reshape(16 * width, *rest)
        elif how == "zy" and param == "weight_bar":
            value = torch.cat((value[:, chunk:], value[:, :chunk]), 1)
        elif how == "scalar":
            value = value.reshape(())
        elif how == "output_eps":
            value = value + (TFHUB_GENERATORS[config.resolution][1] - OUTPUT_BN_EPS)
        if param == "weight_u":
            value = value.reshape(1, -1)
            out[target.format(**groups).removesuffix("u0") + "sv0"] = torch.ones(1)
        out[target.format(**groups)] = value
    if unmatched:
        raise WeightsError(
            f"{name}: keys no TFHub/converter.py rule maps: {', '.join(sorted(unmatched)[:8])}"
        )
    return out, config


__all__ = [
    "OTHER_LAYOUTS",
    "TFHUB_RULES",
    "convert_tfhub_state_dict",
    "infer_brock_config",
    "infer_deep_config",
    "infer_tfhub_config",
    "is_brock_state_dict",
    "is_deep_state_dict",
    "is_tfhub_state_dict",
    "other_layout",
]
