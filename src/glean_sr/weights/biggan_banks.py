"""BigGAN latent banks: loading both released formats, the bank directory, sampling.

:func:`glean_sr.load_bank` hands BigGAN sources here:

* a pytorch-pretrained-biggan directory (``config.json`` + ``pytorch_model.bin``) or its
  ``pytorch_model.bin`` alone (:mod:`glean_sr.weights.biggan_formats`);
* a BigGAN-PyTorch ``G.pth`` / ``G_ema.pth`` (the EMA file is a separate file there);
* TF Hub's BigGAN converted by BigGAN-PyTorch's ``TFHub/converter.py`` (``biggan-256.pth``),
  read as BigGAN-PyTorch's generator;
* a bank directory written by :meth:`LoadedBigGAN.save` (``glean-sr convert-bank``)::

      config.json         BigGANConfig ({"model_type": "biggan", ...}) or BigGANDeepConfig
                          ({"model_type": "biggan_deep", ...}), epsilons included
      model.safetensors   the generator's state_dict in its own code's key layout, with the
                          spectral-norm vectors and every batch-norm statistic; metadata:
                          source format

The directory stores exactly what the generator computes with, so loading it gives the same
images as the original file, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..atomic import atomic_write_bytes, remove_interrupted_writes
from ..config import BigGANConfig, BigGANDeepConfig, config_from_dict, config_to_dict
from ..errors import ConfigError, WeightsError
from ..io import quantize
from ..limits import loads_json
from ..models.biggan import BigGANGenerator
from ..models.biggan_deep import BigGANDeepGenerator
from ..serialization import CONFIG_NAME, WEIGHTS_NAME, save_state_dict_safetensors
from .bank_dirs import DISC_CONFIG_NAME, DISC_WEIGHTS_NAME, check_bank_directory, tile_images
from .biggan_formats import (
    convert_tfhub_state_dict,
    infer_brock_config,
    infer_deep_config,
    is_brock_state_dict,
    is_deep_state_dict,
    is_tfhub_state_dict,
    other_layout,
)
from .glean_format import compare_state_dict, to_float32
from .safe_load import read_weights_file

#: pytorch-pretrained-biggan's weight file name (its config is ``config.json`` too)
HF_WEIGHTS_NAME = "pytorch_model.bin"
#: the ``model_type`` of the two generators in a bank directory's config.json
BIGGAN_TYPES = ("biggan", "biggan_deep")
_GENERATORS = {"biggan": BigGANGenerator, "biggan_deep": BigGANDeepGenerator}
_FORMAT_NAMES = {
    "biggan": "BigGAN-PyTorch G.pth",
    "biggan_deep": "pytorch-pretrained-biggan (BigGAN-deep)",
}
TFHUB_FORMAT = "TF Hub BigGAN via BigGAN-PyTorch's TFHub/converter.py"

BigGANModule = BigGANGenerator | BigGANDeepGenerator


@dataclass
class LoadedBigGAN:
    """A BigGAN generator in its own code's layout, producing RGB in [-1, 1]."""

    generator: BigGANModule
    source: str
    format: str
    notes: list[str] = field(default_factory=list)
    #: BigGAN files hold no discriminator (kept for the interface the StyleGAN2 banks share)
    discriminator: None = None

    @property
    def config(self) -> BigGANConfig | BigGANDeepConfig:
        return self.generator.config

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    def generate(self, z: Tensor, class_labels: Tensor, truncation: float = 1.0) -> Tensor:
        """See the generator's ``generate``: ``z`` as its code takes it, ``class_labels: [N]``
        int64 -> ``[N, 3, R, R]`` RGB in [-1, 1]."""
        return self.generator.generate(z, class_labels, truncation)

    def describe(self) -> str:
        c = self.config
        if isinstance(c, BigGANDeepConfig):
            arch = (
                f"BigGAN-deep {c.resolution}px, channel_width {c.channel_width}, z {c.z_dim}, "
                f"{len(c.layers)} blocks, attention before block {c.attention_layer_position}, "
                f"{c.n_stats} truncation statistics, eps {c.eps:g}"
            )
        else:
            z = f"hierarchical z {c.dim_z} ({c.num_slots} x {c.z_chunk})" if c.hier else "z"
            sn = " (TFHub/biggan.py's spectral norm)" if c.sn_variant == "tfhub" else ""
            arch = (
                f"BigGAN {c.resolution}px, ch {c.ch}, {z}, shared embedding {c.shared_dim}, "
                f"attention at {list(c.attention)} px, {c.num_svs} singular vector(s), "
                f"bn_eps {c.bn_eps:g}, sn_eps {c.sn_eps:g}{sn}"
            )
        return f"{self.format}: {arch}, {c.num_classes} classes"

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the bank directory (see the module docstring), each file atomically."""
        from .. import __version__

        out = check_bank_directory(directory, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            remove_interrupted_writes(out / name)
        for stale in (DISC_CONFIG_NAME, DISC_WEIGHTS_NAME):
            if (out / stale).exists():
                (out / stale).unlink()  # overwrite=True: leave no StyleGAN2 bank's D behind
        meta = {
            "format": "pt",
            "glean_sr_version": __version__,
            "source_format": self.format,
            "model_type": self.config.model_type,
        }
        save_state_dict_safetensors(dict(self.generator.state_dict()), out / WEIGHTS_NAME, meta)
        text = json.dumps(config_to_dict(self.config), indent=2) + "\n"
        atomic_write_bytes(out / CONFIG_NAME, text.encode())
        return out


# -- recognising and reading -----------------------------------------------------------------------


def _config_type(directory: Path) -> str | None:
    """The ``model_type`` in ``directory/config.json``, or None (no file, not a glean-sr one)."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        data = loads_json(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def is_biggan_directory(path: Path) -> bool:
    """A pytorch-pretrained-biggan directory or a BigGAN bank directory."""
    if not path.is_dir():
        return False
    return (path / HF_WEIGHTS_NAME).is_file() or _config_type(path) in BIGGAN_TYPES


def is_biggan_state_dict(obj: Any) -> bool:
    """A format read here, or a BigGAN layout glean-sr recognises in order to refuse it by
    name."""
    known = is_deep_state_dict(obj) or is_brock_state_dict(obj) or is_tfhub_state_dict(obj)
    return known or other_layout(obj) is not None


def _build(config: Any, sd: dict[str, Tensor], name: str) -> BigGANModule:
    """The generator of ``config`` with ``sd`` loaded strictly, in eval mode."""
    with torch.device("meta"):
        module = _GENERATORS[config.model_type](config)
    sd = to_float32(sd, name)
    mismatch = compare_state_dict(module.state_dict(), sd)
    if mismatch:
        raise WeightsError(f"{name}: does not fit the inferred {config}: {mismatch.describe()}")
    module.load_state_dict(sd, strict=True, assign=True)
    return module.eval()


def load_biggan_state_dict(
    sd: Any, name: str, *, hf_config: dict[str, Any] | None = None, **fixed: Any
) -> tuple[BigGANModule, str, list[str]]:
    """``(generator, format, notes)`` of a BigGAN state_dict of any format read here.
    ``hf_config`` is pytorch-pretrained-biggan's config.json; ``fixed`` sets BigGAN-PyTorch's
    ``bn_eps``, ``sn_eps`` and ``num_itrs``, which its G.pth files do not store."""
    other = other_layout(sd)
    if other is not None:
        raise WeightsError(
            f"{name}: {other}; glean-sr reads pytorch-pretrained-biggan's BigGAN-deep, "
            f"BigGAN-PyTorch's BigGAN.py generators and TFHub/converter.py's files"
        )
    if is_deep_state_dict(sd):
        if fixed:
            raise WeightsError(f"{name}: {sorted(fixed)} apply to BigGAN-PyTorch files only")
        config, notes = infer_deep_config(sd, hf_config, name)
    elif is_tfhub_state_dict(sd):
        if fixed:
            raise WeightsError(
                f"{name}: {sorted(fixed)} are fixed by TFHub/biggan.py for a converted TF Hub "
                f"file; they apply to BigGAN-PyTorch G.pth files only"
            )
        converted, config = convert_tfhub_state_dict(sd, name)
        return _build(config, converted, name), TFHUB_FORMAT, []
    elif is_brock_state_dict(sd):
        config, notes = infer_brock_config(sd, name, **fixed)
    else:
        raise WeightsError(f"{name}: not a BigGAN state_dict (pytorch-pretrained-biggan or G.pth)")
    return _build(config, dict(sd), name), _FORMAT_NAMES[config.model_type], notes


def load_biggan(
    path: str | os.PathLike, obj: Any = None, *, device: str | torch.device = "cpu", **fixed: Any
) -> LoadedBigGAN:
    """A BigGAN bank from a directory (either kind) or a file; ``obj`` is the file's content
    when the caller has read it already. ``fixed`` sets BigGAN-PyTorch's ``bn_eps``,
    ``sn_eps`` or ``num_itrs`` (its files do not record them)."""
    path = Path(path).expanduser()
    name = str(path)
    if path.is_dir():
        if (path / HF_WEIGHTS_NAME).is_file():
            hf_config = None
            if (path / CONFIG_NAME).is_file():
                try:
                    hf_config = loads_json((path / CONFIG_NAME).read_text())
                except json.JSONDecodeError as exc:
                    raise WeightsError(f"{path / CONFIG_NAME}: not valid JSON ({exc})") from None
            sd = read_weights_file(path / HF_WEIGHTS_NAME)
            generator, fmt, notes = load_biggan_state_dict(
                sd, str(path / HF_WEIGHTS_NAME), hf_config=hf_config, **fixed
            )
        else:
            generator, fmt, notes = _read_bank_directory(path, fixed)
    else:
        sd = read_weights_file(path) if obj is None else obj
        generator, fmt, notes = load_biggan_state_dict(sd, name, **fixed)
    return LoadedBigGAN(generator=generator.to(device), source=name, format=fmt, notes=notes)


def _read_bank_directory(directory: Path, fixed: dict[str, Any]) -> tuple[Any, str, list[str]]:
    if fixed:
        raise WeightsError(f"{directory}: a bank directory records its epsilons; {sorted(fixed)}")
    for needed in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / needed).is_file():
            raise WeightsError(f"{directory}: a bank directory needs {needed}, which is missing")
    try:
        data = loads_json((directory / CONFIG_NAME).read_text())
        config = config_from_dict(data, expected_type=data.get("model_type"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{directory / CONFIG_NAME}: not valid JSON ({exc})") from None
    except ConfigError as exc:
        raise WeightsError(f"{directory / CONFIG_NAME}: {exc}") from None
    from safetensors import safe_open

    sd = read_weights_file(directory / WEIGHTS_NAME)
    with safe_open(str(directory / WEIGHTS_NAME), framework="pt") as f:
        fmt = (f.metadata() or {}).get("source_format", _FORMAT_NAMES[config.model_type])
    return _build(config, sd, str(directory)), fmt, []


def build_glean_biggan_from_bank(
    bank: LoadedBigGAN | BigGANModule,
    in_size: int,
    *,
    rrdb_channels: int = 64,
    num_rrdbs: int = 23,
    truncation: float | None = None,
) -> Any:
    """A GLEAN-BigGAN around ``bank`` (not copied; it is frozen): ``out_size`` and the bank's
    fields are the bank's; encoder, fusion and decoder are new (TPAMI Sec. 3.2 and 5.3). A
    BigGAN-deep bank gives a ``glean_biggan_deep`` model whose batch norms use the statistics of
    ``truncation`` (default 1.0)."""
    fields = {"in_size": in_size, "rrdb_channels": rrdb_channels, "num_rrdbs": num_rrdbs}
    return _biggan_restorer(bank, "glean", truncation, fields)


def build_lightglean_biggan_from_bank(
    bank: LoadedBigGAN | BigGANModule,
    in_size: int,
    *,
    rrdb_channels: int = 64,
    num_rrdbs: int = 23,
    truncation: float | None = None,
) -> Any:
    """A LightGLEAN around a copy of ``bank``'s blocks from ``in_size`` up (TPAMI Sec. 4 and
    5.3); ``out_size`` and the bank's fields are the bank's, ``truncation`` as for
    :func:`build_glean_biggan_from_bank`."""
    fields = {"in_size": in_size, "rrdb_channels": rrdb_channels, "num_rrdbs": num_rrdbs}
    return _biggan_restorer(bank, "lightglean", truncation, fields)


def _biggan_restorer(
    bank: LoadedBigGAN | BigGANModule, kind: str, truncation: float | None, fields: dict
) -> Any:
    """The ``kind`` ("glean" or "lightglean") restorer around ``bank``; its config holds the
    restorer's ``fields`` and every field of the bank's config."""
    from ..models.registry import MODEL_TYPES

    generator = bank.generator if isinstance(bank, LoadedBigGAN) else bank
    if generator.first_resolution is not None:
        raise WeightsError("this BigGAN bank keeps only some of its blocks; give the whole one")
    c = generator.config
    if isinstance(c, BigGANDeepConfig):
        model_type = f"{kind}_biggan_deep"
        fields = {**fields, "truncation": 1.0 if truncation is None else truncation}
    elif truncation is not None:
        raise WeightsError(
            "truncation picks the batch-norm statistics of a BigGAN-deep bank; a "
            "BigGAN-PyTorch bank keeps one set"
        )
    else:
        model_type = f"{kind}_biggan"
    names = [f.name for f in dataclasses.fields(c) if f.name != "resolution"]
    config_cls, model_cls = MODEL_TYPES[model_type]
    config = config_cls(out_size=c.resolution, **fields, **{n: getattr(c, n) for n in names})
    with torch.device(next(generator.parameters()).device):
        return model_cls(config, bank=generator)


# -- sampling --------------------------------------------------------------------------------------


def truncated_noise(num: int, dim: int, truncation: float, *, seed: int) -> Tensor:
    """``truncation * z`` with ``z`` standard normal truncated to [-2, 2] (TF Hub's BigGAN
    convention; pytorch-pretrained-biggan's ``truncated_noise_sample``): ``[num, dim]``.
    Drawn on the CPU from ``torch.Generator().manual_seed(seed)`` by redrawing every value
    outside [-2, 2]."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, dim, generator=gen)
    while (outside := z.abs() > 2).any():
        z[outside] = torch.randn(int(outside.sum()), generator=gen)
    return truncation * z


@torch.no_grad()
def sample_class_grid(
    generator: BigGANModule,
    *,
    classes: list[int] | None = None,
    num: int = 8,
    seed: int = 0,
    truncation: float = 1.0,
    batch_size: int = 4,
) -> np.ndarray:
    """One ``[H, W, 3]`` uint8 RGB grid: with ``classes``, one row per class of ``num`` images
    (column ``j`` uses the same ``z`` in every row); without, ``num`` images of seeded random
    classes. ``z`` comes from :func:`truncated_noise`."""
    c = generator.config
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    dim = c.dim_z if isinstance(c, BigGANConfig) else c.z_dim
    z = truncated_noise(num, dim, truncation, seed=seed)
    if classes:
        bad = [k for k in classes if not 0 <= k < c.num_classes]
        if bad:
            raise ValueError(f"classes must be in [0, {c.num_classes}), got {bad}")
        labels = torch.tensor(classes).repeat_interleave(num)
        z = z.repeat(len(classes), 1)
        columns = num
    else:
        labels = torch.randint(c.num_classes, (num,), generator=torch.Generator().manual_seed(seed))
        columns = math.ceil(math.sqrt(num))
    param = next(generator.parameters())
    tiles = []
    for start in range(0, len(labels), batch_size):
        img = generator.generate(
            z[start : start + batch_size].to(param),
            labels[start : start + batch_size].to(param.device),
            truncation,
        )
        tiles.append(quantize((img.float().cpu().permute(0, 2, 3, 1).numpy() + 1) / 2, 8))
    return tile_images(np.concatenate(tiles), columns)


__all__ = [
    "BIGGAN_TYPES",
    "HF_WEIGHTS_NAME",
    "TFHUB_FORMAT",
    "LoadedBigGAN",
    "build_glean_biggan_from_bank",
    "build_lightglean_biggan_from_bank",
    "is_biggan_directory",
    "is_biggan_state_dict",
    "load_biggan",
    "load_biggan_state_dict",
    "sample_class_grid",
    "truncated_noise",
]
