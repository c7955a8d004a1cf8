"""The GLEAN training loop, readable top to bottom (CVPR 2021, Sec. 3.4 and appendix A).

Per optimiser step (mmediting 0.x ``SRGAN.train_step``, the code that trained the released
weights):

1. generator update with the discriminator frozen:
   ``L_g = 1 * MSE + 1e-2 * perceptual(VGG16 conv4_3) + 1e-2 * GAN`` (weights from the recipe);
2. discriminator update on the real GT (target 1) and the detached output (target 0).

Adam (1e-4, betas 0.9/0.99) for both, cosine annealing to 1e-7 over the whole run. The bank is
frozen: not in the optimiser, not in DDP, and its bytes are checked against its file at every
checkpoint. Launch with ``glean-sr train`` (one process) or through ``torchrun`` (one process per
device); see :mod:`glean_sr.training.distributed`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..errors import ConfigError, GleanError
from . import checkpoint as ckpt
from .distributed import (
    DistInfo,
    TrainableView,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    init_distributed,
    no_sync,
    shutdown,
    wrap_ddp,
)
from .ema import EMA
from .losses import (
    PerceptualLoss,
    discriminator_fake_loss,
    discriminator_real_loss,
    generator_gan_loss,
    pixel_loss,
)
from .recipe import RESUMABLE_CHANGES, Recipe, recipe_changes, recipe_from_dict
from .runlog import RunLog, check_tensorboard

LOSS_NAMES = ("loss_pix", "loss_percep", "loss_gan", "loss_g", "loss_d_real", "loss_d_fake")
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device asks for CUDA, but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


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
    from ..models.vgg import load_vgg16_features
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
    bank_print = ckpt.fingerprint(bank.state_dict().items())

    torch.manual_seed(recipe.seed)
    model = MODEL_TYPES[recipe.model.model_type][1](recipe.model, bank=bank)
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


def train_step(parts: Parts, micro_batches: list[dict[str, Tensor]], recipe: Recipe) -> Tensor:
    """One optimiser step of G, then of D (the SRGAN order); returns the mean of each loss in
    :data:`LOSS_NAMES` over the micro-batches (``nan`` for a term the recipe does not use)."""
    lo, p = recipe.loss, parts
    n = len(micro_batches)
    terms: dict[str, Tensor] = {}

    def add(key: str, value: Tensor) -> None:
        terms[key] = terms.get(key, 0) + value.detach().double() / n

    # generator, D frozen: its weights get no gradient, the GAN term still reaches G through it
    if p.disc is not None:
        p.disc.requires_grad_(False)
    fakes = []
    for j, batch in enumerate(micro_batches):
        lq = batch["lq"].to(p.device, non_blocking=True)
        gt = batch["gt"].to(p.device, non_blocking=True)
        with no_sync(p.g_ddp, skip=j < n - 1):
            with p.autocast():
                sr = p.g_ddp(lq)
                losses = {"loss_pix": lo.pixel_weight * pixel_loss(sr.float(), gt)}
                if p.perceptual is not None:
                    losses["loss_percep"] = lo.perceptual_weight * p.perceptual(sr, gt)
                if p.disc is not None:
                    losses["loss_gan"] = lo.gan_weight * generator_gan_loss(p.disc(sr).float())
                loss_g = sum(losses.values())
            p.scaler_g.scale(loss_g / n).backward()
        for key, value in losses.items():
            add(key, value)
        add("loss_g", loss_g)
        fakes.append((sr.detach(), gt))
    p.scaler_g.step(p.opt_g)
    p.scaler_g.update()
    p.opt_g.zero_grad(set_to_none=True)

    # discriminator: real GT -> 1, the detached outputs -> 0 (unweighted, as the reference).
    # Real and fake go through D separately, as its minibatch-stddev layer expects.
    if p.disc is not None:
        p.disc.requires_grad_(True)
        for j, (sr, gt) in enumerate(fakes):
            with no_sync(p.d_ddp, skip=True):
                with p.autocast():
                    loss_real = discriminator_real_loss(p.d_ddp(gt).float())
                p.scaler_d.scale(loss_real / n).backward()
            with no_sync(p.d_ddp, skip=j < n - 1):  # the last backward syncs the sum
                with p.autocast():
                    loss_fake = discriminator_fake_loss(p.d_ddp(sr).float())
                p.scaler_d.scale(loss_fake / n).backward()
            add("loss_d_real", loss_real)
            add("loss_d_fake", loss_fake)
        p.scaler_d.step(p.opt_d)
        p.scaler_d.update()
        p.opt_d.zero_grad(set_to_none=True)

    out = torch.full((len(LOSS_NAMES),), math.nan, dtype=torch.float64, device=p.device)
    for i, key in enumerate(LOSS_NAMES):
        if key in terms:
            out[i] = terms[key]
    return out


# -- checkpoints ----------------------------------------------------------------------------------


def _check_resume(recipe: Recipe, state: dict[str, Any], path: Path) -> list[str]:
    """Check that ``recipe`` may continue the run saved in ``state``; returns the keys it changes
    (only those in ``RESUMABLE_CHANGES``: where data lives and how the run is executed)."""
    changed = recipe_changes(state["recipe"], recipe.to_dict())
    refused = [k for k in changed if k not in RESUMABLE_CHANGES]
    if refused:
        raise ConfigError(
            f"{path} was written by a run with a different recipe ({', '.join(refused)}); "
            f"resume with the original recipe (or pass the run's out_dir as RECIPE) or start "
            f"a new run in another out_dir"
        )
    return changed


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


# -- the run -------------------------------------------------------------------------------------


def train(recipe: Recipe, *, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the training ``recipe`` describes; returns a summary of the run.

    Outputs in ``recipe.out_dir``: ``last.pt`` (checkpoint), ``log.jsonl``, ``tensorboard/``,
    ``best/`` and ``final/`` (model directories for ``glean-sr upscale -m``), ``recipe.toml``.
    """
    if recipe.train.tensorboard:
        check_tensorboard()
    device = resolve_device(recipe.train.device)
    info = init_distributed(device.type)
    try:
        return _train(recipe, resume, info, device)
    finally:
        shutdown(info)


def _train(recipe: Recipe, resume: bool, info: DistInfo, device: torch.device) -> dict[str, Any]:
    from ..data.datasets import SRDataset, StepSampler
    from .validation import validate

    t, v, cfg = recipe.train, recipe.val, recipe.model
    out_dir = Path(recipe.out_dir).expanduser()
    last_path = out_dir / "last.pt"
    state, changed = None, []
    if resume:
        state = ckpt.load_checkpoint(last_path)
        changed = _check_resume(recipe, state, last_path)
    elif last_path.exists():
        raise ConfigError(
            f"{out_dir} already holds a run ({last_path.name}); continue it with --resume or "
            f"choose another out_dir"
        )
    if t.batch_size % (info.world_size * t.grad_accum):
        raise ConfigError(
            f"train.batch_size {t.batch_size} cannot be split over {info.world_size} process(es) "
            f"x {t.grad_accum} accumulation step(s)"
        )
    micro = t.batch_size // (info.world_size * t.grad_accum)

    # data first: a missing folder should not wait for the networks to be built
    d = recipe.data
    train_set = SRDataset(
        gt_dir=d.gt_dir,
        lq_dir=d.lq_dir,
        meta_file=d.meta_file,
        in_size=cfg.in_size,
        out_size=cfg.out_size,
        degradation=d.degradation,
        flip=d.flip,
        seed=recipe.seed,
    )
    val_set = None
    if v.gt_dir:
        val_set = SRDataset(
            gt_dir=v.gt_dir,
            lq_dir=v.lq_dir,
            meta_file=v.meta_file,
            in_size=cfg.in_size,
            out_size=cfg.out_size,
        )

    parts = build_parts(recipe, device, info)
    step, best = 0, {"psnr": -math.inf, "ssim": 0.0, "step": -1}
    if state is not None:
        restore(parts, state, recipe, info)
        step, best = state["step"], state["best"]

    sampler = StepSampler(
        len(train_set),
        global_batch=t.batch_size,
        micro_batch=micro,
        rank=info.rank,
        world_size=info.world_size,
        seed=recipe.seed,
        start_step=step,
    )
    loader = DataLoader(
        train_set,
        batch_size=micro,
        sampler=sampler,
        num_workers=d.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=d.num_workers > 0,
    )

    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recipe.toml").write_text(recipe.to_toml(), encoding="utf-8")
    barrier(info)
    log = RunLog(
        out_dir,
        active=info.is_main,
        tensorboard=t.tensorboard,
        progress_bar=t.progress_bar,
        total_steps=recipe.optim.total_steps,
        start_step=step,
        name=recipe.name,
    )
    log.event(
        "resume" if state is not None else "start",
        step,
        processes=info.world_size,
        micro_batch=micro,
        grad_accum=t.grad_accum,
        trainable_params=sum(x.numel() for x in parts.trainable.values()),
        frozen_unreachable=parts.frozen,
        device=str(device),
        recipe_changes=changed,
        bank_notes=parts.notes,
    )
    for note in parts.notes if info.is_main else []:
        print(f"glean-sr train: note: {note}", file=sys.stderr)
    ema_weights = parts.ema.applied if parts.ema is not None else nullcontext

    def run_validation() -> None:
        nonlocal best
        with ema_weights():
            metrics = validate(
                parts.model, val_set, device=device, info=info, max_images=v.max_images
            )
            if step > 0 and metrics["psnr"] > best["psnr"]:  # step 0 is only the baseline
                best = {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "step": step}
                if info.is_main:
                    parts.model.save_pretrained(out_dir / "best")
                    (out_dir / "best.json").write_text(json.dumps(best) + "\n")
        log.event("val", step, **metrics)
        barrier(info)

    def save() -> None:
        state = checkpoint_state(parts, recipe, step, best, sampler.position(step), info)
        if state is not None:
            ckpt.save_checkpoint(state, last_path)
            log.event("checkpoint", step, path=str(last_path))
        barrier(info)

    # -- the loop ------------------------------------------------------------------------------
    total = recipe.optim.total_steps
    end = total if t.stop_at_step <= 0 else min(t.stop_at_step, total)
    if state is None and val_set is not None:
        run_validation()  # the starting point: shows the bank and the data are right
    batches = iter(loader)
    sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=device)
    steps_in_sums, tick = 0, time.perf_counter()
    while step < end:
        micro_batches = [next(batches) for _ in range(t.grad_accum)]
        lr_g = parts.opt_g.param_groups[0]["lr"]
        sums += train_step(parts, micro_batches, recipe)
        parts.sched_g.step()
        if parts.sched_d is not None:
            parts.sched_d.step()
        if parts.ema is not None:
            parts.ema.update()
        step += 1
        steps_in_sums += 1
        log.advance()

        if step % t.log_interval == 0 or step == end:
            mean = all_reduce_sum(sums.clone(), info) / (steps_in_sums * info.world_size)
            losses = {k: x for k, x in zip(LOSS_NAMES, mean.tolist(), strict=True) if x == x}
            now = time.perf_counter()
            log.event("train", step, **losses, lr_g=lr_g, it_s=steps_in_sums / (now - tick))
            sums.zero_()
            steps_in_sums, tick = 0, now
        if val_set is not None and (step % v.interval == 0 or step == total):
            run_validation()
        if step % t.checkpoint_interval == 0 or step == end:
            save()

    if step >= total and info.is_main:
        with ema_weights():
            parts.model.save_pretrained(out_dir / "final")
        log.event("final", step, path=str(out_dir / "final"), best=best)
    barrier(info)
    log.close()
    return {
        "step": step,
        "best": best,
        "out_dir": str(out_dir),
        "finished": step >= total,
        "rank": info.rank,
    }


def export_checkpoint(
    checkpoint: str | Path, directory: str | Path, *, use_ema: bool = True
) -> Path:
    """Write the model of a training checkpoint as a glean-sr model directory (``config.json`` +
    ``model.safetensors``) that ``glean-sr upscale -m`` and ``load_model`` read. With
    ``use_ema`` the averaged weights are exported when the run kept an EMA."""
    from ..models.registry import build_model

    state = ckpt.load_checkpoint(checkpoint)
    recipe = recipe_from_dict(state["recipe"])
    model = build_model(recipe.model, device="meta")
    weights = dict(state["model"])
    if use_ema and state.get("ema"):
        weights.update(state["ema"])
    model.load_state_dict(weights, strict=True, assign=True)
    return model.save_pretrained(directory)


__all__ = [
    "LOSS_NAMES",
    "CosineSchedule",
    "Parts",
    "build_parts",
    "export_checkpoint",
    "train",
    "train_step",
]
