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
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..devices import resolve_device
from ..errors import ConfigError
from . import checkpoint as ckpt
from .distributed import DistInfo, all_reduce_sum, barrier, init_distributed, no_sync, shutdown
from .losses import (
    discriminator_fake_loss,
    discriminator_real_loss,
    generator_gan_loss,
    pixel_loss,
)
from .parts import (
    Parts,
    build_parts,
    check_resume,
    checkpoint_state,
    restore,
)
from .recipe import Recipe
from .runlog import RunLog, check_tensorboard

LOSS_NAMES = ("loss_pix", "loss_percep", "loss_gan", "loss_g", "loss_d_real", "loss_d_fake")


class StopRequest:
    """SIGTERM or Ctrl-C (SIGINT) ask the run to stop after the current step, with a checkpoint
    (a cluster's pre-emption notice); a second signal interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.__exit__()
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


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


# -- the run -------------------------------------------------------------------------------------


def train(recipe: Recipe, *, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the training ``recipe`` describes; returns a summary of the run.

    Outputs in ``recipe.out_dir``: ``last.pt`` (checkpoint), ``log.jsonl``, ``tensorboard/``,
    ``best/`` and ``final/`` (model directories for ``glean-sr upscale -m``), ``recipe.toml``.
    """
    if recipe.train.tensorboard:
        check_tensorboard()
    if recipe.train.deterministic:  # bitwise-repeatable GPU runs, at some speed
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    # under torchrun each process takes the GPU of its LOCAL_RANK
    device = resolve_device(recipe.train.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
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
    recovery = (
        [
            f"removed {p.name}, left by an interrupted write"
            for p in ckpt.remove_interrupted_writes(last_path)
        ]
        if info.is_main
        else []
    )
    if resume:
        state, used, skipped = ckpt.load_newest_checkpoint(last_path, set_aside=info.is_main)
        recovery += skipped + ([f"resumed from {used.name}"] if used != last_path else [])
        changed = check_resume(recipe, state, used)
    elif ckpt.has_checkpoint(last_path):
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
    if d.degradation == "grayscale":  # a colorizer: the photos' L* in, the photos out
        from ..data.colorization import ColorizationDataset

        train_set = ColorizationDataset(
            gt_dir=d.gt_dir, size=cfg.out_size, meta_file=d.meta_file, flip=d.flip, seed=recipe.seed
        )
    elif d.photos:  # a folder of photos of any size (ImageNet): squares cut, LQ by bicubic
        from ..data.photo_sr import PhotoSRDataset

        train_set = PhotoSRDataset(
            gt_dir=d.gt_dir,
            meta_file=d.meta_file,
            in_size=cfg.in_size,
            out_size=cfg.out_size,
            flip=d.flip,
            seed=recipe.seed,
        )
    else:
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
    if v.gt_dir and d.degradation == "grayscale":
        val_set = ColorizationDataset(
            gt_dir=v.gt_dir, size=cfg.out_size, meta_file=v.meta_file, crop="centre"
        )
    elif v.gt_dir and d.photos:
        val_set = PhotoSRDataset(
            gt_dir=v.gt_dir,
            meta_file=v.meta_file,
            in_size=cfg.in_size,
            out_size=cfg.out_size,
            crop="centre",
        )
    elif v.gt_dir:
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
        recovery=recovery,
    )
    for note in [*recovery, *parts.notes] if info.is_main else []:
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
    try:
        if state is None and val_set is not None:
            run_validation()  # the starting point: shows the bank and the data are right
        batches = iter(loader)
        sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=device)
        steps_in_sums, tick = 0, time.perf_counter()
        with StopRequest() as stop:
            while step < end and not stopped(stop, info, device):
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
                    losses = dict(zip(LOSS_NAMES, mean.tolist(), strict=True))
                    losses = {k: x for k, x in losses.items() if not math.isnan(x)}
                    now = time.perf_counter()
                    speed = steps_in_sums / (now - tick)
                    log.event("train", step, **losses, lr_g=lr_g, it_s=speed)
                    sums.zero_()
                    steps_in_sums, tick = 0, now
                if val_set is not None and (step % v.interval == 0 or step == total):
                    run_validation()
                if step % t.checkpoint_interval == 0 or step == end:
                    save()
        if step < end:  # a stop was requested: keep what was done
            save()
            log.event("stopped", step, reason="SIGTERM/SIGINT")
        if step >= total and info.is_main:
            with ema_weights():
                parts.model.save_pretrained(out_dir / "final")
            best_run = best if best["step"] >= 0 else None
            log.event("final", step, path=str(out_dir / "final"), best=best_run)
        barrier(info)
    finally:
        log.close()
    return {
        "step": step,
        "best": best,
        "out_dir": str(out_dir),
        "finished": step >= total,
        "stopped": step < end,
        "rank": info.rank,
    }


def stopped(stop: StopRequest, info: DistInfo, device: torch.device) -> bool:
    """Whether any process was asked to stop: all stop after the same step."""
    if not info.enabled:
        return stop.requested
    flag = torch.tensor([float(stop.requested)], device=device)
    return all_reduce_sum(flag, info).item() > 0


__all__ = ["LOSS_NAMES", "StopRequest", "stopped", "train", "train_step"]
