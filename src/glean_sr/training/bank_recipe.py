"""Recipes for training a StyleGAN2 latent bank (``glean-sr train-bank``).

A bank recipe is a TOML file read as strictly as a restorer recipe
(:mod:`glean_sr.training.recipe`): unknown keys, missing required keys and wrong types are one-line
:class:`ConfigError`s, and ``section.key=value`` overrides go through the same checks::

    name, out_dir, seed
    [generator]      StyleGAN2Config fields (resolution, style_channels, widths, ...)
    [discriminator]  StyleGAN2DiscriminatorConfig fields except resolution (= the generator's)
    [data]           the training images: a folder or an array file
    [loss]           R1, path length, style mixing
    [augment]        differentiable augmentation, fixed or adaptive (ADA)
    [optim]          Adam, batch, length of the run in kimg
    [train]          device, precision, EMA, logging, checkpoints, FID
    [init]           start from an existing bank instead of random weights (fine-tuning)

Shipped bank recipes live in ``glean_sr/recipes/banks/``; :func:`bank_recipe_names` lists them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

from ..config import (
    StyleGAN2Config,
    StyleGAN2DiscriminatorConfig,
    config_from_dict,
    config_to_dict,
)
from ..errors import ConfigError
from .recipe import (
    apply_overrides,
    coerce_value,
    dump_toml,
    read_recipe_dict,
    recipe_names,
    section_from_dict,
)

_BANK_RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes" / "banks"

AUGMENT_OPS = ("xflip", "translation", "scale", "rotation", "brightness", "contrast", "cutout")


@dataclass(frozen=True)
class DataSection:
    """The training images: a folder of image files (read at ``generator.resolution``, resized
    with area averaging when larger, refused when smaller) or an array file (``.npy``, or
    ``.npz`` with an ``images`` array) of uint8 ``[N, R, R]`` (grey) or ``[N, R, R, C]``.
    ``mirror`` adds left-right flipped copies (as NVIDIA's ``--mirror``; wrong for text)."""

    source: str
    mirror: bool = False
    num_workers: int = 0


@dataclass(frozen=True)
class LossSection:
    """Karras et al., CVPR 2020: non-saturating logistic loss; R1 on reals every
    ``r1_interval`` steps (lazy regularisation, Sec. 3.1); path-length regularisation every
    ``pl_interval`` steps when ``pl_weight > 0`` (Sec. 3.2); style mixing with probability
    ``style_mixing`` (StyleGAN, Sec. 3.1)."""

    r1_gamma: float = 1.0
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9


@dataclass(frozen=True)
class AugmentSection:
    """Differentiable augmentation of every image the discriminator sees (Karras et al.,
    NeurIPS 2020 "ADA"; Zhao et al., NeurIPS 2020 "DiffAugment"). Each op in ``ops`` is applied
    to each image with probability ``p``. ``mode = "ada"`` adjusts ``p`` every ``interval``
    steps towards ``E[sign(D(real))] = target``, by at most 1 per ``speed_kimg`` kimg."""

    mode: Literal["none", "fixed", "ada"] = "ada"
    p: float = 0.0
    target: float = 0.6
    interval: int = 4
    speed_kimg: float = 100.0
    max_p: float = 0.8
    ops: tuple[str, ...] = ("translation", "scale", "rotation", "brightness", "contrast", "cutout")


@dataclass(frozen=True)
class OptimSection:
    """Adam with StyleGAN2's settings (lr 0.0025, betas (0, 0.99)); the lazily regularised
    network's lr and betas are adjusted as in the paper (App. B). ``batch_size`` is the global
    batch; ``total_kimg`` the length of the run in thousands of real images shown to D."""

    batch_size: int = 32
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    total_kimg: float = 500.0


@dataclass(frozen=True)
class TrainSection:
    """How to run. ``threads``: torch CPU threads (0 = torch's default); one thread is the
    fastest per core when other work shares the machine. ``ema_kimg``: half-life of the
    generator EMA in kimg, ramped up over the first ``ema_rampup`` of the images seen (NVIDIA's
    schedule; 0 disables the ramp). Intervals are in kimg; 0 disables. FID compares
    ``fid_images`` EMA samples with the training set in the features of ``fid_network``: the
    classifier directory of ``glean-sr train-glyph-classifier`` for glyph banks, or
    ``"random"``, a fixed, seeded, randomly initialised conv net (meaningful for comparing runs
    of one domain, not across domains)."""

    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    threads: int = 1
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    log_kimg: float = 1.0
    checkpoint_kimg: float = 10.0
    sample_kimg: float = 10.0
    fid_kimg: float = 50.0
    fid_images: int = 5000
    fid_network: str = "random"
    tensorboard: bool = True
    progress_bar: bool = True
    stop_at_kimg: float = 0.0  # end this invocation early (the run still spans total_kimg)


@dataclass(frozen=True)
class InitSection:
    """Start from a trained bank instead of random weights, as NVIDIA's ``--resume=PKL``:
    ``bank`` is anything :func:`~glean_sr.weights.banks.load_bank` takes (a bank directory, a
    StyleGAN2 file of any format, a restorer whose bank it is) and must have the recipe's
    generator architecture. Its generator starts G and G_ema and its ``w_avg`` the truncation
    centre; its discriminator starts D when it has one of the recipe's architecture and
    ``discriminator`` is true. Otherwise (a bank taken out of a restorer has no discriminator) D
    starts fresh, and ``d_warmup_kimg`` thousand images of D-only steps let it learn before it
    steers G."""

    bank: str = ""
    discriminator: bool = True
    d_warmup_kimg: float = 0.0


#: keys that may change when a run is resumed: how and where it runs, not what it computes (a
#: run folder resumes wherever it is now, by whichever path names it)
RESUMABLE_CHANGES = frozenset(
    {
        "out_dir",
        "data.source",
        "data.num_workers",
        "train.device",
        "train.threads",
        "train.log_kimg",
        "train.checkpoint_kimg",
        "train.sample_kimg",
        "train.fid_kimg",
        "train.fid_images",
        "train.fid_network",
        "train.tensorboard",
        "train.progress_bar",
        "train.stop_at_kimg",
        "optim.total_kimg",
    }
)

_SECTIONS: dict[str, type] = {
    "data": DataSection,
    "loss": LossSection,
    "augment": AugmentSection,
    "optim": OptimSection,
    "train": TrainSection,
    "init": InitSection,
}
_TOP_LEVEL = {"name": str, "out_dir": str, "seed": int}


@dataclass(frozen=True)
class BankRecipe:
    """A complete bank training run; saved in every checkpoint."""

    name: str
    out_dir: str
    generator: StyleGAN2Config
    discriminator: StyleGAN2DiscriminatorConfig
    data: DataSection
    loss: LossSection = field(default_factory=LossSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    init: InitSection = field(default_factory=InitSection)
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML/JSON-ready); :func:`bank_recipe_from_dict` reads it back."""
        out: dict[str, Any] = {"name": self.name, "out_dir": self.out_dir, "seed": self.seed}
        for key in ("generator", "discriminator"):
            cfg = config_to_dict(getattr(self, key))
            cfg.pop("model_type")
            if key == "discriminator":  # both follow the generator
                cfg.pop("resolution")
                cfg.pop("img_channels")
            if "channel_table" in cfg:  # TOML keys are strings: the table is written as pairs
                cfg["channel_table"] = [[int(r), w] for r, w in cfg["channel_table"].items()]
            out[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
        for section in _SECTIONS:
            out[section] = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(getattr(self, section)).items()
            }
        return out

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())

    @property
    def batch_size(self) -> int:
        return self.optim.batch_size


def _fail(msg: str) -> None:
    raise ConfigError(msg)


def _validate(r: BankRecipe) -> None:
    if not r.name or not r.out_dir:
        _fail("name and out_dir must not be empty")
    if not r.data.source:
        _fail("data.source must name a folder of images or an array file (.npy/.npz)")
    if r.discriminator.resolution != r.generator.resolution:
        _fail("the discriminator must judge the generator's resolution")
    if r.discriminator.img_channels != r.generator.img_channels:
        _fail("generator.img_channels and discriminator.img_channels differ")
    o, lo, a, t = r.optim, r.loss, r.augment, r.train
    for key, value in [
        ("optim.batch_size", o.batch_size),
        ("loss.r1_interval", lo.r1_interval),
        ("loss.pl_interval", lo.pl_interval),
        ("loss.pl_batch_shrink", lo.pl_batch_shrink),
        ("augment.interval", a.interval),
    ]:
        if value < 1:
            _fail(f"{key} must be >= 1, got {value}")
    for key, value in [
        ("optim.lr_g", o.lr_g),
        ("optim.lr_d", o.lr_d),
        ("optim.total_kimg", o.total_kimg),
        ("augment.speed_kimg", a.speed_kimg),
    ]:
        if not value > 0:
            _fail(f"{key} must be > 0, got {value}")
    for key, value in [
        ("loss.r1_gamma", lo.r1_gamma),
        ("loss.pl_weight", lo.pl_weight),
        ("train.ema_kimg", t.ema_kimg),
        ("train.ema_rampup", t.ema_rampup),
        ("train.log_kimg", t.log_kimg),
        ("train.checkpoint_kimg", t.checkpoint_kimg),
        ("train.sample_kimg", t.sample_kimg),
        ("train.fid_kimg", t.fid_kimg),
        ("train.stop_at_kimg", t.stop_at_kimg),
        ("train.threads", t.threads),
        ("init.d_warmup_kimg", r.init.d_warmup_kimg),
    ]:
        if value < 0:
            _fail(f"{key} must be >= 0, got {value}")
    for key, value in [("loss.style_mixing", lo.style_mixing), ("augment.p", a.p)]:
        if not 0 <= value <= 1:
            _fail(f"{key} must be in [0, 1], got {value}")
    if not 0 < a.max_p <= 1:
        _fail(f"augment.max_p must be in (0, 1], got {a.max_p}")
    unknown = [op for op in a.ops if op not in AUGMENT_OPS]
    if unknown:
        _fail(f"unknown augment.ops {unknown} (known: {', '.join(AUGMENT_OPS)})")
    if a.mode != "none" and not a.ops:
        _fail("augment.ops is empty; list some ops or set augment.mode = 'none'")
    if not 0 <= o.betas[0] < 1 or not 0 <= o.betas[1] < 1:
        _fail(f"optim.betas must be in [0, 1), got {list(o.betas)}")
    group = r.discriminator.mbstd_group_size
    if o.batch_size % group and o.batch_size > group:
        _fail(
            f"optim.batch_size {o.batch_size} must be a multiple of "
            f"discriminator.mbstd_group_size {group}"
        )
    if t.fid_kimg > 0 and t.fid_images < 2:
        _fail("train.fid_images must be >= 2 when FID is on (train.fid_kimg > 0)")


def _network_from_dict(data: Any, section: str, cls: type, extra: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        _fail(f"[{section}] must be a table, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(extra)
    unknown = sorted(set(data) - names)
    if unknown:
        _fail(
            f"unknown key(s) in [{section}]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})"
        )
    checked = {k: coerce_value(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    return config_from_dict({"model_type": cls.model_type, **checked, **extra})


def bank_recipe_from_dict(data: dict[str, Any]) -> BankRecipe:
    """Build a :class:`BankRecipe` from a nested dict (a parsed TOML file); strict."""
    if not isinstance(data, dict):
        _fail("a bank recipe must be a TOML table")
    known = set(_TOP_LEVEL) | set(_SECTIONS) | {"generator", "discriminator"}
    unknown = sorted(set(data) - known)
    if unknown:
        _fail(f"unknown key(s) in recipe: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("name", "out_dir", "generator", "data"):
        if key not in data:
            what = f"[{key}]" if key in ("generator", "data") else repr(key)
            _fail(f"bank recipe is missing {what}")
    kwargs: dict[str, Any] = {
        k: coerce_value(data[k], hint, k) for k, hint in _TOP_LEVEL.items() if k in data
    }
    gen = _network_from_dict(data["generator"], "generator", StyleGAN2Config, {})
    kwargs["generator"] = gen
    disc_extra = {"resolution": gen.resolution, "img_channels": gen.img_channels}
    kwargs["discriminator"] = _network_from_dict(
        data.get("discriminator", {}), "discriminator", StyleGAN2DiscriminatorConfig, disc_extra
    )
    for name, cls in _SECTIONS.items():
        if name in data:
            kwargs[name] = section_from_dict(cls, data[name], name)
    return BankRecipe(**kwargs)


def bank_recipe_names() -> list[str]:
    """Names of the bank recipes shipped with glean-sr."""
    return recipe_names(_BANK_RECIPES_DIR)


def read_bank_recipe_dict(source: str | Path) -> dict[str, Any]:
    """The raw dict of a bank recipe file, or of a shipped one given by name."""
    return read_recipe_dict(source, shipped_dir=_BANK_RECIPES_DIR, what="bank recipe")


def _hint(path: list[str], data: dict[str, Any]) -> Any:
    dotted = ".".join(path)
    if len(path) == 1:
        if path[0] not in _TOP_LEVEL:
            _fail(f"unknown recipe key '{dotted}' (top-level keys: {', '.join(_TOP_LEVEL)})")
        return _TOP_LEVEL[path[0]]
    if len(path) != 2:
        _fail(f"unknown recipe key '{dotted}' (use section.key)")
    section, key = path
    classes = {
        **_SECTIONS,
        "generator": StyleGAN2Config,
        "discriminator": StyleGAN2DiscriminatorConfig,
    }
    if section not in classes:
        _fail(f"unknown recipe section '{section}' in '{dotted}'")
    hints = get_type_hints(classes[section])
    names = [f.name for f in dataclasses.fields(classes[section])]
    if key not in names or (section == "discriminator" and key in ("resolution", "img_channels")):
        _fail(f"unknown recipe key '{dotted}' ([{section}] has: {', '.join(names)})")
    return hints[key]


def apply_bank_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with ``section.key=value`` overrides applied (type-checked)."""
    return apply_overrides(data, overrides, field_hint=_hint)


def load_bank_recipe(source: str | Path, overrides: list[str] | None = None) -> BankRecipe:
    """Read a bank recipe file (or a shipped one by name) and apply ``key=value`` overrides."""
    return bank_recipe_from_dict(
        apply_bank_overrides(read_bank_recipe_dict(source), overrides or [])
    )


__all__ = [
    "AUGMENT_OPS",
    "RESUMABLE_CHANGES",
    "AugmentSection",
    "BankRecipe",
    "DataSection",
    "InitSection",
    "LossSection",
    "OptimSection",
    "TrainSection",
    "apply_bank_overrides",
    "bank_recipe_from_dict",
    "bank_recipe_names",
    "load_bank_recipe",
    "read_bank_recipe_dict",
]
