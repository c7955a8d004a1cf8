"""Latent banks from the StyleGAN2 files people have: ``load_bank``, bank directories, sampling,
and a GLEAN built around a bank.

``load_bank(source)`` accepts

* an NVIDIA ``network-snapshot-*.pkl`` (stylegan2-ada-pytorch, stylegan3's StyleGAN2), read by
  the inert unpickler (:mod:`glean_sr.weights.stylegan2_nvidia`);
* a rosinality ``.pt`` (``train.py`` checkpoint, ``convert_weight.py`` output or a bare
  generator state_dict) (:mod:`glean_sr.weights.stylegan2_rosinality`);
* an mmagic 1.x / mmgeneration ``.pth`` or a bare generator state_dict in that layout, incl.
  ``.safetensors`` (:mod:`glean_sr.weights.stylegan2_mmagic`);
* a bank directory written by :meth:`LoadedBank.save` (``glean-sr convert-bank``);
* a BigGAN generator: pytorch-pretrained-biggan's BigGAN-deep, BigGAN-PyTorch's ``G.pth`` /
  ``G_ema.pth``, or their bank directory (:mod:`glean_sr.weights.biggan_banks`);
* a restorer (a GLEAN model directory, or a preset shipped in the package such as the demo
  ``glyphs_demo_4x``): the frozen bank inside it, without a discriminator;
* a name of :data:`glean_sr.presets.BANK_PRESETS` (downloaded once, SHA-256 verified) or a URL.

The result is always in glean-sr's layout and produces (and its discriminator expects) RGB
images. Which order a file's images are in is a property of the file that is not stored in it
for mmagic/mmgeneration training checkpoints: the user states it (``channel_order='bgr'`` turns
the bank to RGB exactly by permuting the RGB layers' weights); nothing is ever flipped otherwise.

Bank directory::

    config.json                StyleGAN2Config ({"model_type": "stylegan2", ...})
    model.safetensors          generator state_dict [+ "w_avg"]; metadata: source format, ...
    discriminator.json         StyleGAN2DiscriminatorConfig          (when the source had one)
    discriminator.safetensors  discriminator state_dict
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..atomic import atomic_write_bytes, remove_interrupted_writes
from ..config import (
    GLEANConfig,
    StyleGAN2Config,
    config_from_dict,
    config_to_dict,
    describe_widths,
    width_fields,
)
from ..errors import ConfigError, WeightsError
from ..io import quantize
from ..limits import loads_json
from ..models.discriminator import StyleGAN2Discriminator
from ..models.stylegan2 import NoiseMode, StyleGAN2Generator
from ..presets import BANK_PRESETS
from ..serialization import (
    CONFIG_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_NAME,
    save_state_dict_safetensors,
)
from . import hf_hub, hub
from .bank_dirs import DISC_CONFIG_NAME, DISC_WEIGHTS_NAME, check_bank_directory, tile_images
from .biggan_banks import (
    BIGGAN_TYPES,
    LoadedBigGAN,
    is_biggan_directory,
    is_biggan_state_dict,
    load_biggan,
)
from .glean_format import to_float32
from .safe_load import read_weights_file
from .stylegan2_common import ConvertedBank

if TYPE_CHECKING:
    from ..models.glean import GLEAN
    from ..models.light_glean import LightGLEAN

_W_AVG_KEY = "w_avg"
_ORDERS = ("RGB", "BGR")


@dataclass
class LoadedBank:
    """A StyleGAN2 generator (and discriminator) in glean-sr's layout, producing RGB."""

    generator: StyleGAN2Generator
    discriminator: StyleGAN2Discriminator | None
    source: str
    format: str
    #: the channel order of the *file's* images ("RGB" or "BGR"); the modules here are RGB
    source_channel_order: str
    #: True: the EMA generator, False: the raw one, None: the file had a single, unlabelled one
    ema: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> StyleGAN2Config:
        return self.generator.config

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    def describe(self) -> str:
        c = self.config
        which = {True: "EMA generator", False: "raw generator", None: "generator"}[self.ema]
        disc = (
            f"discriminator (mbstd group {self.discriminator.config.mbstd_group_size})"
            if self.discriminator is not None
            else "no discriminator"
        )
        w_avg = "stored w_avg" if self.generator.stored_w_avg is not None else "no stored w_avg"
        return (
            f"{self.format}: {which} {c.resolution}px, style {c.style_channels}, "
            f"{c.num_mlps} mapping layers, {describe_widths(c)}, "
            f"{disc}, {w_avg}, images {self.source_channel_order} in the file"
        )

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the bank directory (see the module docstring); files are written atomically."""
        from .. import __version__

        out = check_bank_directory(directory, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_NAME, CONFIG_NAME, DISC_WEIGHTS_NAME, DISC_CONFIG_NAME):
            remove_interrupted_writes(out / name)  # what a write killed midway left behind
        meta = {
            "format": "pt",
            "glean_sr_version": __version__,
            "source_format": self.format,
            "source_channel_order": self.source_channel_order,
            "ema": json.dumps(self.ema),
        }
        sd = dict(self.generator.state_dict())
        if self.generator.stored_w_avg is not None:
            sd[_W_AVG_KEY] = self.generator.stored_w_avg
        save_state_dict_safetensors(sd, out / WEIGHTS_NAME, {**meta, "model_type": "stylegan2"})
        _write_json(out / CONFIG_NAME, config_to_dict(self.config))
        for stale in (DISC_CONFIG_NAME, DISC_WEIGHTS_NAME):
            if self.discriminator is None and (out / stale).exists():
                (out / stale).unlink()  # overwrite=True: do not leave another bank's D behind
        if self.discriminator is not None:
            d_meta = {**meta, "model_type": "stylegan2_discriminator"}
            save_state_dict_safetensors(
                dict(self.discriminator.state_dict()), out / DISC_WEIGHTS_NAME, d_meta
            )
            _write_json(out / DISC_CONFIG_NAME, config_to_dict(self.discriminator.config))
        return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


# -- reading ---------------------------------------------------------------------------------------


def _converters() -> list[Any]:
    from . import stylegan2_mmagic, stylegan2_nvidia, stylegan2_rosinality

    return [stylegan2_nvidia, stylegan2_rosinality, stylegan2_mmagic]


def convert_object(obj: Any, name: str, ema: bool | None = None) -> ConvertedBank:
    """Recognise the format of an unpickled file and convert it to glean-sr's layout."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if isinstance(sd, dict) and any(str(k).startswith("generator.encoder.") for k in sd):
        raise WeightsError(
            f"{name}: this is a GLEAN restorer checkpoint, not a StyleGAN2 bank; load it with "
            f"glean_sr.load_model"
        )
    for module in _converters():
        if module.matches(obj):
            return module.convert(obj, name, ema)
    raise WeightsError(
        f"{name}: not a StyleGAN2 file glean-sr knows (NVIDIA network-snapshot .pkl, rosinality "
        f".pt, mmagic/mmgeneration .pth, or a glean-sr bank directory)"
    )


def _read_dir(directory: Path) -> ConvertedBank:
    for needed in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / needed).is_file():
            raise WeightsError(f"{directory}: a bank directory needs {needed}, which is missing")
    config = _read_config(directory / CONFIG_NAME, "stylegan2")
    sd = read_weights_file(directory / WEIGHTS_NAME)
    from safetensors import safe_open

    with safe_open(str(directory / WEIGHTS_NAME), framework="pt") as f:
        meta = f.metadata() or {}
    bank = ConvertedBank(
        format=meta.get("source_format", "glean-sr bank"),
        generator_config=config,
        generator=sd,
        w_avg=sd.pop(_W_AVG_KEY, None),
        channel_order=meta.get("source_channel_order"),  # of the original; stored here as RGB
        ema=_ema_flag(meta.get("ema", "null"), directory),
    )
    if (directory / DISC_CONFIG_NAME).is_file():
        if not (directory / DISC_WEIGHTS_NAME).is_file():
            raise WeightsError(
                f"{directory}: {DISC_CONFIG_NAME} is there but {DISC_WEIGHTS_NAME} is missing"
            )
        bank.discriminator_config = _read_config(
            directory / DISC_CONFIG_NAME, "stylegan2_discriminator"
        )
        bank.discriminator = read_weights_file(directory / DISC_WEIGHTS_NAME)
    return bank


def _read_config(path: Path, model_type: str) -> Any:
    try:
        return config_from_dict(loads_json(path.read_text()), expected_type=model_type)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None
    except ConfigError as exc:
        raise WeightsError(f"{path}: {exc}") from None


def _ema_flag(text: str, directory: Path) -> bool | None:
    """The bank file's ``ema`` metadata: ``true``, ``false`` or ``null``."""
    value = {"true": True, "false": False, "null": None}.get(text.strip(), "bad")
    if value == "bad":
        raise WeightsError(f"{directory}: the 'ema' metadata is {text[:40]!r}, not true/false/null")
    return value


def _resolve_path(text: str, progress: bool) -> tuple[Path, str | None]:
    """A local file for ``text`` and, for presets, the channel order their release states."""
    path = Path(text).expanduser()
    if path.exists():
        return path, None
    if text in BANK_PRESETS:
        preset = BANK_PRESETS[text]
        assert preset.url is not None
        got = hub.download(
            preset.url, sha256_prefix=preset.sha256_prefix, progress=progress, what=text
        )
        return got, "RGB"  # the official weights converted by OpenMMLab produce RGB
    if text.startswith(("http://", "https://")):
        return hub.download(text, progress=progress), None
    ref = hf_hub.parse_hub_source(text)
    if ref is not None and ref.filename:
        return hf_hub.hub_file(ref, progress=progress), None
    if ref is not None:  # a bank directory in a Hub repository
        return hf_hub.hub_directory(
            ref,
            (CONFIG_NAME, WEIGHTS_NAME),
            (DISC_CONFIG_NAME, DISC_WEIGHTS_NAME, MODEL_CARD_NAME),
            progress=progress,
        ), None
    known = ", ".join(sorted(BANK_PRESETS))
    raise WeightsError(
        f"'{text}' is neither an existing file or directory, a bank preset (presets: {known}), "
        f"an http(s) URL nor a Hugging Face Hub repo (owner/repo, hf://owner/repo/file.pkl)"
    )


_RGB_LAYER_KEY = re.compile(r"to_rgb(?:1|s\.\d+)\.(?:conv\.weight_orig|bias)")


def _to_rgb(bank: ConvertedBank) -> None:
    """Reverse the output channels of the RGB layers and the input channels of the
    discriminator's first convolution: the BGR bank becomes exactly the RGB one."""
    for key, value in bank.generator.items():
        if _RGB_LAYER_KEY.fullmatch(key):
            bank.generator[key] = value.flip(1)  # [1, 3, C, 1, 1] or [1, 3, 1, 1]
    if bank.discriminator is not None:
        key = "convs.0.0.conv.weight_orig"
        bank.discriminator[key] = bank.discriminator[key].flip(1)  # [C, 3, 1, 1]


def _channel_order(stated: str | None, known: str | None, name: str) -> tuple[str, list[str]]:
    """The order of the file's images: as stated, else as the format fixes it, else assumed RGB
    (with a note)."""
    if stated is not None:
        order = stated.upper()
        if order not in _ORDERS:
            raise ConfigError(f"channel_order must be 'rgb' or 'bgr', got {stated!r}")
        if known is not None and known != order:
            return order, [
                f"{name} is {known} by its format, but {order} was stated: using {order}"
            ]
        return order, []
    if known is not None:
        return known, []
    return "RGB", [
        "the file does not record its channel order (mmagic trains on BGR by default, the "
        "official converted weights are RGB): assumed RGB; if colours look swapped, pass "
        "channel_order='bgr' (--channel-order bgr)"
    ]


def load_bank(
    source: str | os.PathLike,
    *,
    ema: bool | None = None,
    channel_order: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> LoadedBank | LoadedBigGAN:
    """Load a StyleGAN2 latent bank (and its discriminator, when the file has one), or a BigGAN
    generator (pytorch-pretrained-biggan, BigGAN-PyTorch ``G.pth``, or a BigGAN bank directory:
    a :class:`~glean_sr.weights.biggan_banks.LoadedBigGAN`).

    ``ema``: None takes the EMA generator when the file has one (what GLEAN trains with, spec
    §8), else the only one; True / False insist on the EMA / raw generator. ``channel_order``
    ('rgb' or 'bgr') states the order of the file's images where the format does not fix it;
    a BGR file is turned into the equivalent RGB bank. The architecture is inferred from the
    tensors. Returns modules in eval mode on ``device``.
    """
    text = os.fspath(source)
    inside = _bank_inside_restorer(text, device)
    if inside is not None:
        return inside
    path, known = _resolve_path(text, progress)
    name = str(path)
    biggan = is_biggan_directory(path)
    obj = None if path.is_dir() else read_weights_file(path)
    if biggan or is_biggan_state_dict(obj):
        if ema is not None or channel_order is not None:
            raise WeightsError(
                f"{path}: a BigGAN file holds one RGB generator (G.pth and G_ema.pth are separate "
                f"files); ema and channel_order apply to StyleGAN2 files"
            )
        return load_biggan(path, obj, device=device)
    if path.is_dir():
        if ema is not None or channel_order is not None:
            raise WeightsError(
                f"{path}: a bank directory is already converted (RGB, one generator); "
                f"ema and channel_order apply to the original file"
            )
        bank = _read_dir(path)
        order, notes = bank.channel_order or "RGB", []
    else:
        bank = convert_object(obj, name, ema)
        order, notes = _channel_order(channel_order, known or bank.channel_order, name)
        if order == "BGR":
            _to_rgb(bank)
    generator = _build(StyleGAN2Generator, bank.generator_config, bank.generator, name)
    if bank.w_avg is not None:
        generator.set_w_avg(to_float32({"w_avg": bank.w_avg}, name)["w_avg"].reshape(-1))
    discriminator = None
    if bank.discriminator is not None:
        discriminator = _build(
            StyleGAN2Discriminator, bank.discriminator_config, bank.discriminator, name
        )
    return LoadedBank(
        generator=generator.to(device),
        discriminator=discriminator.to(device) if discriminator is not None else None,
        source=text,
        format=bank.format,
        source_channel_order=order,
        ema=bank.ema,
        notes=bank.notes + notes,
    )


def _bank_inside_restorer(
    text: str, device: str | torch.device
) -> LoadedBank | LoadedBigGAN | None:
    """The frozen bank of a restorer that ``text`` names (a shipped preset or a model
    directory whose config is a restorer's), or None when ``text`` names no restorer."""
    from ..presets import PRESETS
    from .pretrained import load_model

    path = Path(text).expanduser()
    shipped = text in PRESETS and PRESETS[text].packaged and not path.exists()
    model_dir = path.is_dir() and (path / CONFIG_NAME).is_file()
    if model_dir:
        try:
            model_type = loads_json((path / CONFIG_NAME).read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError):
            model_type = None
        model_dir = model_type not in (None, "stylegan2", *BIGGAN_TYPES)
    if not shipped and not model_dir:
        return None
    restorer = load_model(text, device)
    if restorer.generator.first_resolution is not None:
        raise WeightsError(f"{text}: its bank keeps only some blocks and cannot sample images")
    if not isinstance(restorer.generator, StyleGAN2Generator):  # a BigGAN bank
        what = f"the bank inside the restorer {text}"
        return LoadedBigGAN(generator=restorer.generator, source=text, format=what)
    return LoadedBank(
        generator=restorer.generator,
        discriminator=None,
        source=text,
        format=f"the bank inside the restorer {text}",
        source_channel_order="RGB",
        ema=None,
    )


def _build(cls: type, config: Any, sd: dict[str, Tensor], name: str) -> Any:
    with torch.device("meta"):
        module = cls(config)
    sd = to_float32(sd, name)
    try:
        module.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:  # only our own bank directories can get here unconverted
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{name}: does not fit {cls.__name__} ({first})") from None
    return module.eval()


# -- using a bank ----------------------------------------------------------------------------------


@torch.no_grad()
def sample_grid(
    generator: StyleGAN2Generator,
    *,
    seed: int = 0,
    num: int = 16,
    truncation_psi: float = 1.0,
    noise_mode: NoiseMode = "const",
    columns: int | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """Images from ``num`` seeded latents ``z ~ N(0, I)`` as one ``[H, W, 3]`` uint8 RGB grid.

    ``z`` is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (the same images on
    any device); random noise maps (``noise_mode='random'``) are drawn from the same seed.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    param = generator.constant_input.input
    z = torch.randn(
        num, generator.config.style_channels, generator=torch.Generator().manual_seed(seed)
    )
    center = None  # the truncation centre, estimated once for all batches when not stored
    if truncation_psi != 1.0:
        center = generator.stored_w_avg
        center = generator.mean_latent() if center is None else center
    images = []
    devices = [param.device] if param.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, num, batch_size):
            batch = z[start : start + batch_size].to(param)
            img = generator.generate(
                batch, truncation_psi=truncation_psi, noise_mode=noise_mode, w_avg=center
            )
            pixels = (img.float().cpu().permute(0, 2, 3, 1).numpy() + 1) / 2  # [N, R, R, C]
            images.append(torch.from_numpy(quantize(pixels, 8)).permute(0, 3, 1, 2))
    imgs = torch.cat(images).permute(0, 2, 3, 1).numpy()  # [N, R, R, C]
    return tile_images(imgs, columns or math.ceil(math.sqrt(num)))


def _restorer_from_bank(
    bank: LoadedBank | StyleGAN2Generator, config_cls: type, model_type: str, **fields: Any
) -> Any:
    """A ``model_type`` restorer around ``bank``; the config's bank fields are the bank's."""
    from ..models.registry import MODEL_TYPES

    model_cls = MODEL_TYPES[model_type][1]
    generator = bank.generator if isinstance(bank, LoadedBank) else bank
    c = generator.config
    config = config_cls(
        bank_img_channels=c.img_channels,
        out_size=c.resolution,
        style_channels=c.style_channels,
        num_mlps=c.num_mlps,
        blur_kernel=c.blur_kernel,
        **width_fields(c),
        lr_mlp=c.lr_mlp,
        **fields,
    )
    with torch.device(next(generator.parameters()).device):
        return model_cls(config, bank=generator)


def build_glean_from_bank(
    bank: LoadedBank | StyleGAN2Generator,
    in_size: int,
    *,
    rrdb_channels: int = 64,
    num_rrdbs: int = 23,
) -> GLEAN:
    """A GLEAN around ``bank`` (not copied; it is frozen): ``out_size`` is the bank's
    resolution and style size, mapping depth and widths are the bank's (encoder and decoder
    widths follow the bank's).

    This is how training on a new category starts (GLEAN, Sec. 3.2 and 3.4: a pretrained
    StyleGAN2 is the bank and stays fixed; encoder, fusion and decoder are trained). The bank's
    stored truncation centre is not part of GLEAN's state_dict, so the model's files keep the
    released key set.
    """
    fields = {"in_size": in_size, "rrdb_channels": rrdb_channels, "num_rrdbs": num_rrdbs}
    return _restorer_from_bank(bank, GLEANConfig, "glean", **fields)


def build_lightglean_from_bank(
    bank: LoadedBank | StyleGAN2Generator,
    in_size: int,
    *,
    rrdb_channels: int = 64,
    num_rrdbs: int = 23,
) -> LightGLEAN:
    """A LightGLEAN around a copy of ``bank``'s blocks from ``in_size`` up and its mapping
    network (TPAMI Sec. 4); ``out_size`` and the bank's widths come from the bank."""
    from ..config import LightGLEANConfig

    fields = {"in_size": in_size, "rrdb_channels": rrdb_channels, "num_rrdbs": num_rrdbs}
    return _restorer_from_bank(bank, LightGLEANConfig, "lightglean", **fields)


__all__ = [
    "LoadedBank",
    "build_glean_from_bank",
    "build_lightglean_from_bank",
    "check_bank_directory",
    "convert_object",
    "load_bank",
    "sample_grid",
    "tile_images",
]
