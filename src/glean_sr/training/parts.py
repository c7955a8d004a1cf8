"""The pieces a training run is made of, and their state in a checkpoint.

:func:`build_parts` loads the bank and the discriminator from their file, builds the restorer
around the bank, the perceptual loss, the optimisers and the schedules; :func:`checkpoint_state`
and :func:`restore` move all of it (plus random generator states) in and out of a checkpoint;
:func:`export_checkpoint` turns a checkpoint into a model directory.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, GleanError
from . import checkpoint as ckpt
from .distributed import DistInfo, TrainableView, all_gather_objects, barrier, wrap_ddp
from .ema import EMA
from .losses import PerceptualLoss
from .recipe import RESUMABLE_CHANGES, Recipe, recipe_from_dict, resume_changes

_AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class CosineSchedule:
    """Learning-rate factor before step ``i``: ``r + (1 - r) * (1 + cos(pi * i / T)) / 2`` with
    ``r = min_lr / lr`` (mmcv ``CosineRestart`` with one period ``T = total_steps``)."""

    def __init__(self, total_steps: int, min_ratio: float):
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        progress = min(step / self.total_steps, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adam(params: list[nn.Parameter], *, lr: float, betas: tuple[float, float]):
    """Adam without weight decay; the fused kernel where this torch has one for the device
    (several times faster on CPU too), else the default implementation. Same update rule."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def freeze_unreachable_parameters(model: nn.Module, lq_shape: tuple[int, ...]) -> list[str]:
    """Freeze trainable parameters that no gradient can reach (found with one backward pass).

    GLEAN's ``fusion_skip`` convolutions feed only the bank's RGB branch, which does not affect
    the output; the reference's optimiser held them but never changed them. Freezing them keeps
    them unchanged as well and lets DDP expect a gradient for every parameter it watches.
    """
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    model(torch.zeros(lq_shape, device=device)).sum().backward()
    unreachable = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        if name in unreachable:
            p.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    return unreachable


@dataclass
class Parts:
    """Everything a training step touches. ``g_ddp``/``d_ddp`` are the DDP-wrapped views (the
    modules themselves in a single process); ``disc`` is None without a GAN loss."""

    model: nn.Module
    trainable: dict[str, nn.Parameter]
    g_ddp: nn.Module
    disc: nn.Module | None
    d_ddp: nn.Module | None
    perceptual: PerceptualLoss | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    sched_g: Any
    sched_d: Any
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    ema: EMA | None
    amp_dtype: torch.dtype | None
    device: torch.device
    bank_print: str
    frozen: list[str]
    notes: list[str]

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def fingerprints(self) -> dict[str, str]:
        disc = self.disc.state_dict().items() if self.disc is not None else []
        return {
            "bank": ckpt.fingerprint(self.model.generator.state_dict().items()),
            "trainable": ckpt.fingerprint(self.trainable.items()),
            "discriminator": ckpt.fingerprint(disc),
        }


def build_parts(recipe: Recipe, device: torch.device, info: DistInfo) -> Parts:
    """Load the bank (and discriminator) from their file, build the restorer around it, the
    perceptual loss, optimisers and schedules. Seeded, so every process builds the same."""
    from ..models.registry import MODEL_TYPES
    from ..weights.vgg import load_vgg16_features
    from .bank import load_training_bank

    lo, opt, t = recipe.loss, recipe.optim, recipe.train

    def load_files():
        vgg = None
        if lo.perceptual_weight > 0:  # first: a missing VGG file should stop us at once
            try:
                vgg = load_vgg16_features(lo.vgg_weights, sha256=lo.vgg_sha256 or None)
            except GleanError as exc:
                raise GleanError(
                    f"the perceptual loss needs ImageNet VGG16 weights: {exc} (pass loss."
                    f"vgg_weights=PATH to a vgg16-397923af.pth, or set loss.perceptual_weight=0)"
                ) from None
        bank, disc, notes = load_training_bank(
            recipe.bank.source,
            recipe.model,
            need_discriminator=lo.gan_weight > 0,
            channel_order=recipe.bank.channel_order,
            progress=info.is_main,
        )
        return vgg, bank, disc, notes

    if info.is_main:  # rank 0 first: it fills the download cache the others then read
        vgg, bank, disc, notes = load_files()
    barrier(info)
    if not info.is_main:
        vgg, bank, disc, notes = load_files()
    perceptual = None
    if vgg is not None:
        perceptual = PerceptualLoss(vgg, norm_img=lo.perceptual_norm_img).to(device)
    torch.manual_seed(recipe.seed)
    model = MODEL_TYPES[recipe.model.model_type][1](recipe.model, bank=bank)
    # the bank as the model holds it (LightGLEAN keeps a subset of the file's blocks)
    bank_print = ckpt.fingerprint(model.generator.state_dict().items())
    model.to(device).train()
    cfg = recipe.model
    frozen = freeze_unreachable_parameters(model, (1, cfg.img_channels, cfg.in_size, cfg.in_size))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    g_ddp = wrap_ddp(TrainableView(model, model.generator), info, device)
    d_ddp = opt_d = sched_d = None
    if disc is not None:
        disc.to(device).train()
        d_ddp = wrap_ddp(disc, info, device)
        opt_d = adam(list(disc.parameters()), lr=opt.lr_d, betas=opt.betas)
        sched_d = torch.optim.lr_scheduler.LambdaLR(
            opt_d, CosineSchedule(opt.total_steps, opt.min_lr / opt.lr_d)
        )
    opt_g = adam(list(trainable.values()), lr=opt.lr_g, betas=opt.betas)
    sched_g = torch.optim.lr_scheduler.LambdaLR(
        opt_g, CosineSchedule(opt.total_steps, opt.min_lr / opt.lr_g)
    )
    fp16 = t.precision == "fp16"
    return Parts(
        model=model,
        trainable=trainable,
        g_ddp=g_ddp,
        disc=disc,
        d_ddp=d_ddp,
        perceptual=perceptual,
        opt_g=opt_g,
        opt_d=opt_d,
        sched_g=sched_g,
        sched_d=sched_d,
        scaler_g=torch.amp.GradScaler(device.type, enabled=fp16),
        scaler_d=torch.amp.GradScaler(device.type, enabled=fp16),
        ema=EMA(trainable, t.ema_decay) if t.ema_decay > 0 else None,
        amp_dtype=_AMP_DTYPES[t.precision],
        device=device,
        bank_print=bank_print,
        frozen=frozen,
        notes=notes,
    )


def check_resume(recipe: Recipe, state: dict[str, Any], path: Path) -> list[str]:
    """Check that ``recipe`` may continue the run saved in ``state``; returns the keys it changes
    (only those in ``RESUMABLE_CHANGES``: where data lives and how the run is executed)."""
    saved = recipe_from_dict(state["recipe"]).to_dict()
    return resume_changes(saved, recipe.to_dict(), RESUMABLE_CHANGES, path)


def restore(parts: Parts, state: dict[str, Any], recipe: Recipe, info: DistInfo) -> None:
    """Put a checkpoint's weights, optimiser/schedule/scaler/EMA states and RNG states back."""
    if state["fingerprints"][0]["bank"] != parts.bank_print:
        raise GleanError(
            f"the bank file '{recipe.bank.source}' is not the bank this run was trained with "
            f"(its weights differ from the checkpoint's); restore the original file"
        )
    p = parts
    p.model.load_state_dict(state["model"], strict=True)
    p.opt_g.load_state_dict(state["optim_g"])
    p.sched_g.load_state_dict(state["sched_g"])
    p.scaler_g.load_state_dict(state["scaler_g"])
    if p.disc is not None:
        p.disc.load_state_dict(state["discriminator"], strict=True)
        p.opt_d.load_state_dict(state["optim_d"])
        p.sched_d.load_state_dict(state["sched_d"])
        p.scaler_d.load_state_dict(state["scaler_d"])
    if p.ema is not None:
        p.ema.load_state_dict(state["ema"])
    if len(state["rng"]) == info.world_size:  # per process; another world size starts afresh
        ckpt.restore_rng_state(state["rng"][info.rank])


def checkpoint_state(
    parts: Parts, recipe: Recipe, step: int, best: dict, position: dict, info: DistInfo
) -> dict[str, Any] | None:
    """The checkpoint of this moment (on rank 0; None elsewhere). Collective: every process
    must call it. Verifies that the bank is its file's and that all replicas are identical."""
    from .. import __version__

    p = parts
    prints = p.fingerprints()
    if prints["bank"] != p.bank_print:
        raise GleanError("internal error: the frozen bank changed during training")
    every_print = all_gather_objects(prints, info)
    if any(x != every_print[0] for x in every_print):
        raise GleanError(f"internal error: the replicas diverged by step {step}")
    rng = all_gather_objects(ckpt.capture_rng_state(), info)
    if not info.is_main:
        return None
    gan = p.disc is not None
    return {
        "glean_sr_version": __version__,
        "recipe": recipe.to_dict(),
        "step": step,
        "world_size": info.world_size,
        "model": p.model.state_dict(),
        "discriminator": p.disc.state_dict() if gan else {},
        "optim_g": p.opt_g.state_dict(),
        "optim_d": p.opt_d.state_dict() if gan else {},
        "sched_g": p.sched_g.state_dict(),
        "sched_d": p.sched_d.state_dict() if gan else {},
        "scaler_g": p.scaler_g.state_dict(),
        "scaler_d": p.scaler_d.state_dict(),
        "ema": p.ema.state_dict() if p.ema is not None else {},
        "best": best,
        "sampler": position,
        "rng": rng,
        "fingerprints": every_print,
    }


def export_checkpoint(
    checkpoint: str | Path, directory: str | Path, *, use_ema: bool = True, overwrite: bool = False
) -> Path:
    """Write the model of a training checkpoint as a glean-sr model directory (``config.json`` +
    ``model.safetensors``) that ``glean-sr upscale -m`` and ``load_model`` read. With
    ``use_ema`` the averaged weights are exported when the run kept an EMA. An existing model
    in ``directory`` is replaced only with ``overwrite``."""
    from ..models.registry import build_model
    from ..weights.pretrained import CONFIG_NAME, WEIGHTS_NAME

    out = Path(directory).expanduser()
    if not overwrite and any((out / name).exists() for name in (CONFIG_NAME, WEIGHTS_NAME)):
        raise ConfigError(f"{out} already holds a model; choose another folder (or --overwrite)")
    state = ckpt.load_checkpoint(checkpoint)
    recipe = recipe_from_dict(state["recipe"])
    model = build_model(recipe.model, device="meta")
    weights = dict(state["model"])
    if use_ema and state.get("ema"):
        weights.update(state["ema"])
    model.load_state_dict(weights, strict=True, assign=True)
    return model.save_pretrained(directory)


__all__ = [
    "CosineSchedule",
    "Parts",
    "adam",
    "build_parts",
    "check_resume",
    "checkpoint_state",
    "export_checkpoint",
    "freeze_unreachable_parameters",
    "restore",
]
