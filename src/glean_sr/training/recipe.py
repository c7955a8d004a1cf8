"""Training recipes: TOML files mapped strictly onto frozen dataclasses.

A recipe is everything a run needs: the architecture (``[model]``), the StyleGAN2 file the bank and
the discriminator come from (``[bank]``), data, validation, losses, optimiser and schedule, and
how to run (``[train]``). It is saved into every checkpoint. Reading is strict: an unknown key, a
missing required key or a value of the wrong type is a one-line :class:`ConfigError` naming the
key. Command-line overrides ``section.key=value`` go through the same checks; their values use
TOML syntax (``train.batch_size=8``, ``optim.betas=[0.9,0.99]``) and a bare word is a string
(``data.gt_dir=/data/ffhq``).

The shipped recipes (``glean_sr/recipes/*.toml``) reproduce the mmediting 0.x configurations that
trained the released weights; see :func:`recipe_names`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..config import config_from_dict, config_to_dict
from ..errors import ConfigError

#: ImageNet VGG16 weights as published by torchvision; the 8 hex digits are its SHA-256 prefix.
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_SHA256 = "397923af"

_RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


@dataclass(frozen=True)
class BankSection:
    """Where the frozen latent bank and the initial discriminator come from.

    ``source`` is a ``BANK_PRESETS`` name or a path to a StyleGAN2 file that holds the generator
    (mmagic ``generator_ema``, rosinality ``g_ema``, NVIDIA ``G_ema``) and, for the GAN loss, the
    discriminator (CVPR 2021, Sec. 3.4: the bank stays fixed throughout training).
    ``channel_order`` states the order of the file's images where its format does not record it
    (mmagic training checkpoints: BGR by default); empty means as the format says, else RGB.
    """

    source: str
    channel_order: Literal["", "rgb", "bgr"] = ""


@dataclass(frozen=True)
class DataSection:
    """Training data. GT images are ``out_size`` squares; LQ images ``in_size`` squares.

    * ``lq_dir`` set: paired folders (same file names), as the bicubic recipes ship them.
    * ``lq_dir`` empty: LQ made from GT on the fly, by the MATLAB-compatible bicubic
      (``degradation = "bicubic"``) or the blind-restoration pipeline (``"blind_face"``).
    * ``degradation = "grayscale"`` (colorizers): ``gt_dir`` is any folder of colour photos,
      searched recursively (ImageNet's ``train/<wnid>/*.JPEG``), the input is their L* channel
      (:class:`glean_sr.data.colorization.ColorizationDataset`: random ``out_size`` crops).
    * ``photos = true`` (bicubic SR): ``gt_dir`` and ``val.gt_dir`` are folders of photos of
      any size, searched recursively (ImageNet's ``train/<wnid>/*.JPEG``); each is cut to an
      ``out_size`` square and its LQ made by bicubic
      (:class:`glean_sr.data.photo_sr.PhotoSRDataset`: random crops, centred for validation).
    * ``meta_file``: optional list of GT names, one per line (``00001.png (1024,1024,3)``).
    """

    gt_dir: str
    lq_dir: str = ""
    meta_file: str = ""
    degradation: Literal["bicubic", "blind_face", "grayscale"] = "bicubic"
    flip: bool = True
    num_workers: int = 4
    photos: bool = False


@dataclass(frozen=True)
class ValSection:
    """Fixed-step validation: PSNR/SSIM on RGB, no border crop (the released README's metric).

    An empty ``gt_dir`` disables validation. LQ images come from ``lq_dir`` or, when it is empty,
    from the MATLAB-compatible bicubic of the GT.
    """

    gt_dir: str = ""
    lq_dir: str = ""
    meta_file: str = ""
    interval: int = 5000
    max_images: int = 0  # 0 = all


@dataclass(frozen=True)
class LossSection:
    """Generator objective (CVPR 2021, appendix Eq. 5-8): pixel MSE + perceptual + vanilla GAN.

    ``perceptual_norm_img`` replicates the reference's flag: ``False`` feeds the [-1, 1] images
    straight into the ImageNet normalisation (the three bicubic recipes), ``True`` maps them to
    [0, 1] first (the in128out1024 recipe).
    """

    pixel_weight: float = 1.0
    perceptual_weight: float = 1e-2
    perceptual_norm_img: bool = False
    gan_weight: float = 1e-2
    vgg_weights: str = VGG16_URL
    vgg_sha256: str = VGG16_SHA256


@dataclass(frozen=True)
class OptimSection:
    """Adam for G and D and cosine annealing from ``lr`` to ``min_lr`` over ``total_steps``
    (mmediting 0.x ``CosineRestart`` with one period of ``total_steps``)."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    min_lr: float = 1e-7
    total_steps: int = 300_000


@dataclass(frozen=True)
class TrainSection:
    """How to run. ``batch_size`` is the global batch of one optimiser step; each process gets
    ``batch_size / (processes * grad_accum)`` images per micro-batch."""

    batch_size: int
    grad_accum: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    ema_decay: float = 0.0  # 0 disables the EMA of the trainable weights
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    checkpoint_interval: int = 5000
    log_interval: int = 100
    tensorboard: bool = True
    progress_bar: bool = True
    stop_at_step: int = 0  # end this invocation early (the schedule still spans total_steps)
    deterministic: bool = False  # deterministic GPU kernels (CPU runs are deterministic anyway)


#: Keys that may differ between a checkpoint's recipe and the one it is resumed with: they change
#: how the run is executed or where data lives, never what is computed.
RESUMABLE_CHANGES = frozenset(
    {
        "data.gt_dir",
        "data.lq_dir",
        "data.meta_file",
        "data.num_workers",
        "val.gt_dir",
        "val.lq_dir",
        "val.meta_file",
        "val.interval",
        "val.max_images",
        "loss.vgg_weights",
        "bank.source",
        "train.device",
        "train.checkpoint_interval",
        "train.log_interval",
        "train.tensorboard",
        "train.progress_bar",
        "train.stop_at_step",
        "train.deterministic",
    }
)


@dataclass(frozen=True)
class Recipe:
    """A complete training run. ``model`` is an architecture config (e.g. ``GLEANConfig``)."""

    name: str
    out_dir: str
    model: Any
    bank: BankSection
    data: DataSection
    train: TrainSection
    val: ValSection = field(default_factory=ValSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML/JSON-ready); :func:`recipe_from_dict` reads it back."""
        out: dict[str, Any] = {"name": self.name, "out_dir": self.out_dir, "seed": self.seed}
        model = config_to_dict(self.model)
        if "channel_table" in model:  # TOML keys are strings: the table is written as pairs
            model["channel_table"] = [[int(r), w] for r, w in model["channel_table"].items()]
        out["model"] = {"type": model.pop("model_type"), **model}
        for section in ("bank", "data", "val", "loss", "optim", "train"):
            out[section] = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(getattr(self, section)).items()
            }
        return out

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())


_SECTIONS: dict[str, type] = {
    "bank": BankSection,
    "data": DataSection,
    "val": ValSection,
    "loss": LossSection,
    "optim": OptimSection,
    "train": TrainSection,
}
_TOP_LEVEL = {"name": str, "out_dir": str, "seed": int}


def _fail(msg: str) -> None:
    raise ConfigError(msg)


def _validate(r: Recipe) -> None:
    for attr in ("in_size", "out_size"):
        if not hasattr(r.model, attr):
            _fail(f"model type {r.model.model_type!r} is not a restorer with in_size/out_size")
    if not r.name or not r.out_dir:
        _fail("name and out_dir must not be empty")
    if not r.bank.source:
        _fail("bank.source must name the StyleGAN2 file of the latent bank (path or preset)")
    if not r.data.gt_dir:
        _fail("data.gt_dir must name the folder of ground-truth images")
    if r.data.degradation == "blind_face" and r.data.lq_dir:
        _fail("data.degradation = 'blind_face' makes LQ images on the fly; leave data.lq_dir empty")
    colorizer = r.model.model_type == "glean_colorizer"
    if colorizer != (r.data.degradation == "grayscale"):
        _fail(
            "a colorizer (model type 'glean_colorizer') trains with data.degradation = "
            f"'grayscale', and only a colorizer does; got model type {r.model.model_type!r} "
            f"with {r.data.degradation!r}"
        )
    if colorizer and (r.data.lq_dir or r.val.lq_dir):
        _fail(
            "a colorizer's inputs are the L* of its photos; leave data.lq_dir and val.lq_dir empty"
        )
    if r.data.photos and (r.data.degradation != "bicubic" or r.data.lq_dir or r.val.lq_dir):
        _fail(
            "data.photos = true cuts GT squares from photos and makes their LQ by bicubic: "
            "it takes data.degradation = 'bicubic' and no data.lq_dir or val.lq_dir"
        )
    t, o, lo = r.train, r.optim, r.loss
    for key, value, minimum in [
        ("train.batch_size", t.batch_size, 1),
        ("train.grad_accum", t.grad_accum, 1),
        ("train.checkpoint_interval", t.checkpoint_interval, 1),
        ("train.log_interval", t.log_interval, 1),
        ("train.stop_at_step", t.stop_at_step, 0),
        ("optim.total_steps", o.total_steps, 1),
        ("val.interval", r.val.interval, 1),
        ("val.max_images", r.val.max_images, 0),
        ("data.num_workers", r.data.num_workers, 0),
        ("seed", r.seed, 0),
    ]:
        if value < minimum:
            _fail(f"{key} must be >= {minimum}, got {value}")
    if t.batch_size % t.grad_accum:
        _fail(f"train.batch_size ({t.batch_size}) must be a multiple of train.grad_accum")
    if not 0.0 <= t.ema_decay < 1.0:
        _fail(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    for key in ("pixel_weight", "perceptual_weight", "gan_weight"):
        if not getattr(lo, key) >= 0:
            _fail(f"loss.{key} must be >= 0, got {getattr(lo, key)}")
    if lo.pixel_weight + lo.perceptual_weight + lo.gan_weight == 0:
        _fail("all loss weights are zero: nothing to train")
    if not (o.lr_g > 0 and o.lr_d > 0 and 0 <= o.min_lr <= min(o.lr_g, o.lr_d)):
        _fail(f"need lr_g, lr_d > 0 and 0 <= min_lr <= lr, got {o.lr_g}, {o.lr_d}, {o.min_lr}")
    if not all(0 <= b < 1 for b in o.betas):
        _fail(f"optim.betas must be in [0, 1), got {list(o.betas)}")


# -- strict typed conversion --------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    return getattr(hint, "__name__", str(hint))


def coerce_value(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``hint``; ints are accepted where floats go."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            _fail(f"{key} must be one of {_type_name(hint)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return coerce_value(value, option, key)
            except ConfigError:
                pass
        _fail(f"{key}: {value!r} matches none of {hint}")
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, (list, tuple)):
            _fail(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(f"{key} must have {len(args)} entries, got {len(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(coerce_value(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if hint is bool:
        if not isinstance(value, bool):
            _fail(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            _fail(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(f"{key} must be a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"unsupported recipe annotation {hint!r} for {key}")


def section_from_dict(cls: type, data: Any, section: str) -> Any:
    if not isinstance(data, dict):
        _fail(f"[{section}] must be a table, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        _fail(f"unknown key(s) in [{section}]: {', '.join(unknown)} (known: {', '.join(fields)})")
    missing = [
        n
        for n, f in fields.items()
        if n not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        _fail(f"missing key(s) in [{section}]: {', '.join(missing)}")
    kwargs = {k: coerce_value(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _model_from_dict(data: Any) -> Any:
    if not isinstance(data, dict):
        _fail(f"[model] must be a table, got {data!r}")
    data = dict(data)
    model_type = data.pop("type", None)
    if not isinstance(model_type, str):
        _fail('[model] needs type = "glean" (or another registered model type)')
    cfg_cls = _config_class(model_type)
    hints = get_type_hints(cfg_cls)
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        known = ", ".join(sorted(names))
        _fail(f"unknown key(s) in [model]: {', '.join(unknown)} (known: {known})")
    checked = {k: coerce_value(v, hints[k], f"model.{k}") for k, v in data.items()}
    return config_from_dict({"model_type": model_type, **checked})


def _config_class(model_type: str) -> type:
    from ..models.registry import MODEL_TYPES

    if model_type not in MODEL_TYPES:
        _fail(f"unknown model type {model_type!r} (known: {', '.join(sorted(MODEL_TYPES))})")
    return MODEL_TYPES[model_type][0]


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    """Build a :class:`Recipe` from a nested dict (a parsed TOML file); strict."""
    if not isinstance(data, dict):
        _fail("a recipe must be a TOML table")
    known = set(_TOP_LEVEL) | set(_SECTIONS) | {"model"}
    unknown = sorted(set(data) - known)
    if unknown:
        _fail(f"unknown key(s) in recipe: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("name", "out_dir", "model", "bank", "data", "train"):
        if key not in data:
            _fail(
                f"recipe is missing [{key}]"
                if key in _SECTIONS or key == "model"
                else f"recipe is missing the top-level key {key!r}"
            )
    kwargs: dict[str, Any] = {
        k: coerce_value(data[k], hint, k) for k, hint in _TOP_LEVEL.items() if k in data
    }
    kwargs["model"] = _model_from_dict(data["model"])
    for name, cls in _SECTIONS.items():
        if name in data:
            kwargs[name] = section_from_dict(cls, data[name], name)
    return Recipe(**kwargs)


# -- files and overrides ------------------------------------------------------------------------


def parse_toml(text: str, what: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what}: not valid TOML ({exc})") from None


def recipe_names(shipped_dir: Path = _RECIPES_DIR) -> list[str]:
    """Names of the recipes shipped with glean-sr (in ``shipped_dir``)."""
    return sorted(p.stem for p in shipped_dir.glob("*.toml"))


def read_recipe_dict(
    source: str | Path, *, shipped_dir: Path = _RECIPES_DIR, what: str = "recipe"
) -> dict[str, Any]:
    """The raw dict of a recipe file, or of a recipe shipped in ``shipped_dir`` given by name
    (``what`` names that kind of recipe in the error)."""
    path = Path(source).expanduser()
    if not path.is_file():
        shipped = shipped_dir / f"{source}.toml"
        if not shipped.is_file():
            _fail(
                f"'{source}' is neither a recipe file nor a shipped {what} "
                f"(shipped: {', '.join(recipe_names(shipped_dir))})"
            )
        path = shipped
    return parse_toml(path.read_text(encoding="utf-8"), str(path))


def _field_hint(path: list[str], data: dict[str, Any]) -> Any:
    """The annotation of the recipe key ``path`` (``['train', 'batch_size']``)."""
    dotted = ".".join(path)
    if len(path) == 1:
        if path[0] not in _TOP_LEVEL:
            _fail(f"unknown recipe key '{dotted}' (top-level keys: {', '.join(_TOP_LEVEL)})")
        return _TOP_LEVEL[path[0]]
    if len(path) != 2:
        _fail(f"unknown recipe key '{dotted}' (use section.key)")
    section, key = path
    if section == "model":
        if key == "type":
            return str
        model_type = (data.get("model") or {}).get("type", "glean")
        cls = _config_class(model_type)
    elif section in _SECTIONS:
        cls = _SECTIONS[section]
    else:
        _fail(f"unknown recipe section '{section}' in '{dotted}'")
    hints = get_type_hints(cls)
    if key not in hints or key == "model_type":
        names = [f.name for f in dataclasses.fields(cls)]
        _fail(f"unknown recipe key '{dotted}' ([{section}] has: {', '.join(names)})")
    return hints[key]


def _parse_value(text: str, hint: Any) -> Any:
    """TOML syntax for the value; a bare word is a string when the key holds text."""
    try:
        value = parse_toml(f"v = {text}", "override")["v"]
    except ConfigError:
        value = text
    if hint is str and not isinstance(value, str):
        value = text
    return value


def apply_overrides(
    data: dict[str, Any],
    overrides: list[str],
    *,
    field_hint: Callable[[list[str], dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """Return a copy of ``data`` with ``section.key=value`` overrides applied (type-checked).

    ``field_hint(path, data)`` gives the annotation of a dotted key (default: a restorer
    recipe's); it raises a one-line :class:`ConfigError` for an unknown key."""
    field_hint = field_hint or _field_hint
    out = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            _fail(f"override '{item}' must look like section.key=value")
        path = key.split(".")
        hint = field_hint(path, out)
        value = _parse_value(text.strip(), hint)
        coerce_value(value, hint, key)
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return out


def load_recipe(source: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file (or a shipped recipe by name) and apply ``key=value`` overrides."""
    return recipe_from_dict(apply_overrides(read_recipe_dict(source), overrides or []))


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two recipe dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{k}" for k in recipe_changes(a, b)]
        elif a != b:
            changed.append(key)
    return changed


def resume_changes(
    saved: dict[str, Any], current: dict[str, Any], resumable: frozenset[str], path: Path
) -> list[str]:
    """The keys in which ``current`` changes the run whose checkpoint ``path`` holds ``saved``;
    refuses a change outside ``resumable`` (where data lives and how the run is executed).

    Both dicts come from the recipe class (``saved`` parsed through it), so a key added to the
    recipe since the checkpoint was written compares as its default."""
    changed = recipe_changes(saved, current)
    refused = [k for k in changed if k not in resumable]
    if refused:
        raise ConfigError(
            f"cannot resume {path}: it was written by a run with a different recipe "
            f"({', '.join(refused)}); resume with the original recipe (or pass the run's out_dir "
            f"as RECIPE) or start a new run in another out_dir"
        )
    return changed


# -- writing TOML -------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """Write a two-level dict (scalars, then tables of scalars) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


__all__ = [
    "RESUMABLE_CHANGES",
    "VGG16_SHA256",
    "VGG16_URL",
    "BankSection",
    "DataSection",
    "LossSection",
    "OptimSection",
    "Recipe",
    "TrainSection",
    "ValSection",
    "apply_overrides",
    "coerce_value",
    "dump_toml",
    "load_recipe",
    "parse_toml",
    "read_recipe_dict",
    "recipe_changes",
    "recipe_from_dict",
    "recipe_names",
    "resume_changes",
    "section_from_dict",
]
