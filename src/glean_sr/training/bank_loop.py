"""StyleGAN2 training: the latent bank GLEAN restores with (``glean-sr train-bank``).

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), as
stylegan2-ada-pytorch trains it. Per step of ``B`` real images (one batch):

1. ``Gmain``: non-saturating logistic loss ``softplus(-D(aug(G(z))))`` with style mixing;
2. ``Greg`` every ``pl_interval`` steps when ``pl_weight > 0``: path-length regularisation on
   a batch shrunk by ``pl_batch_shrink``;
3. ``Dmain``: ``softplus(D(aug(G(z)))) + softplus(-D(aug(x)))``;
4. ``Dreg`` every ``r1_interval`` steps: R1, ``gamma / 2 * |grad_x D(aug(x))|^2``.

Lazy regularisation (Sec. 3.1): a regularisation step is scaled by its interval, and the
optimiser of the lazily regularised network has ``lr * c`` and ``betas ** c`` with
``c = interval / (interval + 1)`` (App. B). Each phase is its own Adam step. The generator EMA
(``G_ema``) has a half-life of ``ema_kimg`` thousand images, ramped up at the start; the
truncation centre ``w_avg`` is tracked as NVIDIA's mapping network tracks it. D sees every image
through the same differentiable augmentation, with ADA's adaptive probability.

Data parallel through torchrun only: each process takes ``B / world_size`` images of the same
deterministic stream (:class:`~glean_sr.data.datasets.StepSampler`) and gradients are averaged
with one all-reduce per phase (as NVIDIA does; DDP's hooks do not support R1's double backward).
Checkpoints (``last.pt``) are atomic and hold every random state, so a run killed at any moment
and resumed with ``--resume`` computes exactly the steps the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..devices import resolve_device
from ..errors import ConfigError
from ..models.discriminator import StyleGAN2Discriminator
from ..models.stylegan2 import ModulatedConv2d, StyleGAN2Generator
from . import checkpoint as ckpt
from .augment import AdaptiveP, Augment
from .bank_recipe import RESUMABLE_CHANGES, BankRecipe, bank_recipe_from_dict
from .distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown,
)
from .loop import StopRequest, stopped
from .parts import adam
from .recipe import resume_changes
from .runlog import RunLog, check_tensorboard

LOSS_NAMES = (
    "loss_g",
    "loss_d_real",
    "loss_d_fake",
    "r1_penalty",
    "pl_penalty",
    "score_real",
    "score_fake",
)
_GRID = 64  # sample-grid images


@dataclass
class _Nets:
    G: StyleGAN2Generator
    D: StyleGAN2Discriminator
    G_ema: StyleGAN2Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    w_avg: Tensor
    pl_mean: Tensor


def _activation_modulation(G: nn.Module) -> None:
    """Modulate activations, not weights: one shared convolution for the whole batch, which is
    what training wants (NVIDIA's ``fused_modconv=False`` in training)."""
    for m in G.modules():
        if isinstance(m, ModulatedConv2d):
            m.fused_modconv = False


def build_networks(recipe: BankRecipe, device: torch.device) -> _Nets:
    """Fresh G, D, G_ema and optimisers; weights depend only on ``recipe.seed`` (the same on
    every process)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        G = StyleGAN2Generator(recipe.generator).to(device)
        D = StyleGAN2Discriminator(recipe.discriminator).to(device)
    G.train().requires_grad_(True)
    D.train().requires_grad_(True)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    _activation_modulation(G)
    _activation_modulation(G_ema)
    o, lo = recipe.optim, recipe.loss

    def optimiser(params: list[nn.Parameter], lr: float, interval: int | None):
        c = interval / (interval + 1) if interval else 1.0
        return adam(params, lr=lr * c, betas=(o.betas[0] ** c, o.betas[1] ** c))

    opt_g = optimiser(list(G.parameters()), o.lr_g, lo.pl_interval if lo.pl_weight > 0 else None)
    opt_d = optimiser(list(D.parameters()), o.lr_d, lo.r1_interval if lo.r1_gamma > 0 else None)
    fp16 = recipe.train.precision == "fp16"
    return _Nets(
        G=G,
        D=D,
        G_ema=G_ema,
        opt_g=opt_g,
        opt_d=opt_d,
        scaler_g=torch.amp.GradScaler(device.type, enabled=fp16),
        scaler_d=torch.amp.GradScaler(device.type, enabled=fp16),
        w_avg=torch.zeros(recipe.generator.style_channels, device=device),
        pl_mean=torch.zeros((), device=device),
    )


class BankTrainer:
    """One process's part of a bank training run: the networks, the phases of a step, the
    averaging of gradients over processes and the EMA."""

    def __init__(self, recipe: BankRecipe, nets: _Nets, info: DistInfo, device: torch.device):
        self.recipe = recipe
        self.nets = nets
        self.info = info
        self.device = device
        a = recipe.augment
        self.augment = Augment(a.ops if a.mode != "none" else (), a.p if a.mode != "none" else 0)
        self.ada = AdaptiveP(target=a.target, speed_kimg=a.speed_kimg, max_p=a.max_p)
        precision = recipe.train.precision
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- the generator with style mixing ---------------------------------------------------------

    def generate(self, n: int, *, track_w_avg: bool = False) -> tuple[Tensor, Tensor]:
        """``(images [n, C, R, R], ws [n, L, S])`` from fresh latents with style mixing
        (StyleGAN, Sec. 3.1): with probability ``style_mixing`` the latents from a random
        layer on come from a second ``z``."""
        G, cfg = self.nets.G, self.recipe.generator
        z = torch.randn(n, cfg.style_channels, device=self.device)
        w = G.style_mapping(z)  # [n, S]
        if track_w_avg:  # NVIDIA's w_avg: EMA of the batch mean of w, decay 0.995
            mean = all_reduce_sum(w.detach().float().mean(0), self.info) / self.info.world_size
            self.nets.w_avg.copy_(mean.lerp(self.nets.w_avg, 0.995))
        ws = w[:, None].repeat(1, cfg.num_latents, 1)  # [n, L, S]
        p = self.recipe.loss.style_mixing
        if p > 0:
            cutoff = int(torch.randint(1, cfg.num_latents, ()))
            if float(torch.rand(())) < p:
                w2 = G.style_mapping(torch.randn_like(z))
                ws = torch.cat(
                    [ws[:, :cutoff], w2[:, None].expand(-1, cfg.num_latents - cutoff, -1)], 1
                )
        return G.synthesis(ws, noise_mode="random"), ws

    # -- one step ------------------------------------------------------------------------------

    def _apply(self, module: nn.Module, opt: torch.optim.Optimizer, scaler, loss: Tensor) -> None:
        """Backward, average the gradients over processes, one Adam step."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        params = [p for p in module.parameters() if p.grad is not None]
        if self.info.enabled and params:
            flat = torch.cat([p.grad.flatten() for p in params])
            all_reduce_sum(flat, self.info).div_(self.info.world_size)
            for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
                p.grad.copy_(g.view_as(p))
        for p in params:  # as NVIDIA: a stray inf/nan gradient does not destroy the weights
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        scaler.step(opt)
        scaler.update()

    def step(self, real: Tensor, step: int) -> Tensor:
        """One training step on this process's ``real: [n, C, R, R]`` in ``[-1, 1]``; returns
        the step's values of :data:`LOSS_NAMES` (``nan`` where a phase did not run)."""
        nets, lo = self.nets, self.recipe.loss
        G, D, n = nets.G, nets.D, real.shape[0]
        out = torch.full((len(LOSS_NAMES),), math.nan, dtype=torch.float64)
        d_only = step * self.recipe.optim.batch_size < self.recipe.init.d_warmup_kimg * 1000

        # Gmain
        D.requires_grad_(False)
        if d_only:  # a fresh D learns against a started G before it steers it
            return self._d_phases(real, step, out)
        with self.autocast():
            fake, _ = self.generate(n)
            logits = D(self.augment(fake)).float()
        loss_g = F.softplus(-logits).mean()
        self._apply(G, nets.opt_g, nets.scaler_g, loss_g)
        out[0] = loss_g.item()

        # Greg: path-length regularisation, lazily
        if lo.pl_weight > 0 and step % lo.pl_interval == 0:
            m = max(n // lo.pl_batch_shrink, 1)
            fake, ws = self.generate(m)
            noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
            (grads,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()  # [m]
            batch_mean = all_reduce_sum(lengths.detach().mean(), self.info) / self.info.world_size
            nets.pl_mean.copy_(nets.pl_mean.lerp(batch_mean, lo.pl_decay))
            penalty = (lengths - nets.pl_mean).square()
            loss_pl = (fake[:, 0, 0, 0] * 0 + penalty * lo.pl_weight).mean() * lo.pl_interval
            self._apply(G, nets.opt_g, nets.scaler_g, loss_pl)
            out[4] = penalty.mean().item()
        return self._d_phases(real, step, out)

    def _d_phases(self, real: Tensor, step: int, out: Tensor) -> Tensor:
        nets, lo, D = self.nets, self.recipe.loss, self.nets.D
        n = real.shape[0]

        # Dmain
        D.requires_grad_(True)
        with torch.no_grad(), self.autocast():
            fake, _ = self.generate(n, track_w_avg=True)
        with self.autocast():
            logits_fake = D(self.augment(fake)).float()
            logits_real = D(self.augment(real)).float()
        loss_d_fake = F.softplus(logits_fake).mean()
        loss_d_real = F.softplus(-logits_real).mean()
        self.ada.accumulate(logits_real)
        self._apply(D, nets.opt_d, nets.scaler_d, loss_d_fake + loss_d_real)
        out[1], out[2] = loss_d_real.item(), loss_d_fake.item()
        out[5], out[6] = logits_real.mean().item(), logits_fake.mean().item()

        # Dreg: R1 on the reals, lazily (in fp32: a squared gradient norm overflows fp16)
        if lo.r1_gamma > 0 and step % lo.r1_interval == 0:
            x = real.detach().requires_grad_(True)
            logits = D(self.augment(x)).float()
            (grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
            penalty = grads.square().sum(dim=(1, 2, 3))  # [n]
            loss_r1 = (logits[:, 0] * 0 + penalty * (lo.r1_gamma / 2)).mean() * lo.r1_interval
            self._apply(D, nets.opt_d, nets.scaler_d, loss_r1)
            out[3] = penalty.mean().item()
        return out

    @torch.no_grad()
    def update_ema(self, nimg: int) -> None:
        """``G_ema = beta * G_ema + (1 - beta) * G`` with a half-life of ``ema_kimg`` kimg,
        ramped up to ``ema_rampup`` of the images seen so far."""
        t, batch = self.recipe.train, self.recipe.optim.batch_size
        ema_nimg = t.ema_kimg * 1000
        if t.ema_rampup > 0:
            ema_nimg = min(ema_nimg, nimg * t.ema_rampup)
        beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.nets.G_ema.parameters(), self.nets.G.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.nets.G_ema.buffers(), self.nets.G.buffers(), strict=True):
            b_ema.copy_(b)

    def adjust_augment(self, images: int) -> None:
        """ADA: move ``p`` from the sign statistics of the last interval (all processes)."""
        if self.recipe.augment.mode != "ada":
            return
        sums = torch.tensor([self.ada.sign_sum, float(self.ada.count)], dtype=torch.float64)
        if self.info.enabled:
            sums = sums.to(self.device)
            all_reduce_sum(sums, self.info)
        self.augment.p = self.ada.adjust(self.augment.p, float(sums[0]), int(sums[1]), images)
        self.ada.reset()


# -- checkpoints ---------------------------------------------------------------------------------


def _state(trainer: BankTrainer, step: int, history: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of the run after ``step`` steps (on rank 0; None elsewhere)."""
    n = trainer.nets
    per_process = all_gather_objects(
        {
            "rng": ckpt.capture_rng_state(),
            "ada": [trainer.ada.sign_sum, trainer.ada.count],
        },
        trainer.info,
    )
    if not trainer.info.is_main:
        return None
    return {
        "kind": "bank",
        "recipe": trainer.recipe.to_dict(),
        "step": step,
        "nimg": step * trainer.recipe.optim.batch_size,
        "G": n.G.state_dict(),
        "D": n.D.state_dict(),
        "G_ema": n.G_ema.state_dict(),
        "opt_g": n.opt_g.state_dict(),
        "opt_d": n.opt_d.state_dict(),
        "scaler_g": n.scaler_g.state_dict(),
        "scaler_d": n.scaler_d.state_dict(),
        "w_avg": n.w_avg.cpu(),
        "pl_mean": n.pl_mean.cpu(),
        "augment_p": trainer.augment.p,
        "ada_rt": trainer.ada.last_rt,  # the last measured r_t, logged until the next one
        "per_process": per_process,
        "history": history,
    }


def _restore(trainer: BankTrainer, state: dict[str, Any]) -> None:
    n, info = trainer.nets, trainer.info
    n.G.load_state_dict(state["G"])
    n.D.load_state_dict(state["D"])
    n.G_ema.load_state_dict(state["G_ema"])
    n.opt_g.load_state_dict(state["opt_g"])
    n.opt_d.load_state_dict(state["opt_d"])
    n.scaler_g.load_state_dict(state["scaler_g"])
    n.scaler_d.load_state_dict(state["scaler_d"])
    n.w_avg.copy_(state["w_avg"])
    n.pl_mean.copy_(state["pl_mean"])
    trainer.augment.p = float(state["augment_p"])
    trainer.ada.last_rt = float(state.get("ada_rt", math.nan))
    saved = state["per_process"]
    if len(saved) != info.world_size:
        raise ConfigError(
            f"the checkpoint was written by {len(saved)} process(es); resume it with the same "
            f"number (this run has {info.world_size}) to continue exactly"
        )
    mine = saved[info.rank]
    ckpt.restore_rng_state(mine["rng"])
    trainer.ada.sign_sum, trainer.ada.count = float(mine["ada"][0]), int(mine["ada"][1])


def start_from_bank(nets: _Nets, source: str, recipe: BankRecipe) -> list[str]:
    """Load the bank ``source`` into G, G_ema (and D when it has one of the recipe's
    architecture) and its ``w_avg`` into the tracked centre; returns notes for the log."""
    from ..config import config_to_dict
    from ..weights.banks import load_bank

    bank = load_bank(source, progress=False)
    have, want = config_to_dict(bank.config), config_to_dict(recipe.generator)
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise ConfigError(
            f"init.bank {source}: its generator differs from the recipe's in "
            f"{', '.join(diff)}; start from a bank of the recipe's architecture"
        )
    state = bank.generator.state_dict()
    nets.G.load_state_dict(state)
    nets.G_ema.load_state_dict(state)
    w_avg = bank.generator.stored_w_avg
    if w_avg is not None:
        nets.w_avg.copy_(w_avg)
    notes = [f"G and G_ema start from {source}"]
    disc = bank.discriminator
    same = disc is not None and config_to_dict(disc.config) == config_to_dict(recipe.discriminator)
    if same and recipe.init.discriminator:
        nets.D.load_state_dict(disc.state_dict())
        notes.append("D starts from its discriminator")
    else:
        why = (
            "init.discriminator is false"
            if same
            else ("the bank has none" if disc is None else "its D has another architecture")
        )
        notes.append(f"D starts fresh ({why}); {recipe.init.d_warmup_kimg:g} kimg of D-only steps")
    return notes


def _check_resume(recipe: BankRecipe, state: dict[str, Any], path: Path) -> list[str]:
    if state.get("kind") != "bank":
        raise ConfigError(f"{path} is not a bank training checkpoint (train-bank writes those)")
    saved = bank_recipe_from_dict(state["recipe"]).to_dict()
    return resume_changes(saved, recipe.to_dict(), RESUMABLE_CHANGES, path)


# -- outputs ---------------------------------------------------------------------------------------


def write_bank(trainer: BankTrainer, directory: Path, source: str) -> Path:
    """The EMA generator, the discriminator and ``w_avg`` as a bank directory."""
    from ..weights.banks import LoadedBank

    G = copy.deepcopy(trainer.nets.G_ema).cpu()
    for m in G.modules():  # back to the class default: the file's modules choose per input
        if isinstance(m, ModulatedConv2d):
            m.__dict__.pop("fused_modconv", None)
    G.set_w_avg(trainer.nets.w_avg.detach().cpu())
    bank = LoadedBank(
        generator=G,
        discriminator=copy.deepcopy(trainer.nets.D).cpu().eval(),
        source=source,
        format="glean-sr train-bank",
        source_channel_order="RGB",
        ema=True,
    )
    return bank.save(directory, overwrite=True)


def _save_png(path: Path, img: np.ndarray) -> None:
    import io

    from PIL import Image

    from ..atomic import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


class _FID:
    """FID of ``G_ema`` samples against the training images, in a download-free feature space
    (:mod:`glean_sr.evaluation.domain_features`); the reference statistics are computed once."""

    def __init__(self, recipe: BankRecipe, data: Any, device: torch.device):
        from ..evaluation.domain_features import load_feature_network

        self.net = load_feature_network(recipe.train.fid_network, device)
        self.device = device
        self.num = recipe.train.fid_images
        self.seed = recipe.seed
        self.data = data
        self.ref: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _stats(self, batches) -> Any:
        from ..evaluation.fid import FeatureStats

        stats = None
        with torch.no_grad():
            for img in batches:  # [n, C, R, R] in [0, 1]
                f = self.net(img.to(self.device).float())
                stats = stats or FeatureStats(f.shape[1])
                stats.add(f)
        return stats.mean_cov()

    def reference(self):
        from ..evaluation.fid import sqrt_psd

        if self.ref is None:
            rng = np.random.default_rng(self.seed)
            count = min(self.num, self.data.num_images)
            idx = np.sort(rng.choice(self.data.num_images, count, replace=False))

            def batches():
                for s in range(0, count, 256):
                    u8 = self.data.uint8_batch(idx[s : s + 256])
                    yield torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255

            mu, cov = self._stats(batches())
            self.ref = (mu, cov, sqrt_psd(cov))
        return self.ref

    def __call__(self, G: StyleGAN2Generator) -> float:
        from ..evaluation.fid import frechet_distance

        mu_r, cov_r, root = self.reference()
        g = torch.Generator().manual_seed(self.seed + 1)

        def batches():
            for s in range(0, self.num, 256):
                z = torch.randn(min(256, self.num - s), G.config.style_channels, generator=g)
                img = G.generate(z.to(self.device), noise_mode="const")
                yield ((img.float() + 1) / 2).clamp(0, 1)

        mu, cov = self._stats(batches())
        return frechet_distance(mu_r, cov_r, mu, cov, sqrt_cov1=root)


def _crossed(before: int, after: int, kimg: float) -> bool:
    """Whether the image count passed a multiple of ``kimg`` thousand images."""
    if kimg <= 0:
        return False
    every = kimg * 1000
    return math.floor(after / every) > math.floor(before / every)


# -- the run ---------------------------------------------------------------------------------------


def train_bank(recipe: BankRecipe, *, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the bank training ``recipe`` describes; returns a summary.

    Outputs in ``recipe.out_dir``: ``last.pt`` (checkpoint), ``bank/`` (the bank directory:
    ``load_bank``, ``sample-bank``, ``train`` and ``convert-bank`` take it), ``samples/`` (grids
    of a fixed set of latents), ``log.jsonl``, ``tensorboard/``, ``recipe.toml``.
    """
    if recipe.train.tensorboard:
        check_tensorboard()
    device = resolve_device(recipe.train.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cpu" and recipe.train.threads > 0:
        torch.set_num_threads(recipe.train.threads)
    info = init_distributed(device.type)
    try:
        return _train(recipe, resume, info, device)
    finally:
        shutdown(info)


def _train(
    recipe: BankRecipe, resume: bool, info: DistInfo, device: torch.device
) -> dict[str, Any]:
    from ..data.datasets import StepSampler
    from ..data.image_sets import ImageSet

    o, t = recipe.optim, recipe.train
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
        changed = _check_resume(recipe, state, used)
    elif ckpt.has_checkpoint(last_path):
        raise ConfigError(
            f"{out_dir} already holds a run ({last_path.name}); continue it with --resume or "
            f"choose another out_dir"
        )
    if o.batch_size % info.world_size:
        raise ConfigError(
            f"optim.batch_size {o.batch_size} cannot be split over {info.world_size} processes"
        )
    micro = o.batch_size // info.world_size
    group = recipe.discriminator.mbstd_group_size
    if micro % group and micro > group:  # D sees each process's images as one batch
        raise ConfigError(
            f"optim.batch_size {o.batch_size} over {info.world_size} processes gives {micro} "
            f"images per process, which must be a multiple of discriminator.mbstd_group_size "
            f"{group} (or smaller than it)"
        )
    data = ImageSet(
        recipe.data.source,
        resolution=recipe.generator.resolution,
        channels=recipe.generator.img_channels,
        mirror=recipe.data.mirror,
    )

    trainer = BankTrainer(recipe, build_networks(recipe, device), info, device)
    step, history = 0, {"fid": []}
    init_notes = []
    if state is None and recipe.init.bank:
        init_notes = start_from_bank(trainer.nets, recipe.init.bank, recipe)
    if state is not None:
        _restore(trainer, state)
        step, history = state["step"], state["history"]
    else:  # each process its own stream of latents, noise and augmentations
        torch.manual_seed(recipe.seed * 1000 + 1 + info.rank)
        np.random.seed(recipe.seed * 1000 + 1 + info.rank)

    sampler = StepSampler(
        len(data),
        global_batch=o.batch_size,
        micro_batch=micro,
        rank=info.rank,
        world_size=info.world_size,
        seed=recipe.seed,
        start_step=step,
    )
    loader = DataLoader(
        data,
        batch_size=micro,
        sampler=sampler,
        num_workers=recipe.data.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=recipe.data.num_workers > 0,
        # its own generator: the global one must only see the training step's draws, or a
        # resumed run would draw differently from the run it continues
        generator=torch.Generator().manual_seed(recipe.seed),
    )
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recipe.toml").write_text(recipe.to_toml(), encoding="utf-8")
    barrier(info)

    total_steps = math.ceil(o.total_kimg * 1000 / o.batch_size)
    end = total_steps
    if t.stop_at_kimg > 0:
        end = min(end, math.ceil(t.stop_at_kimg * 1000 / o.batch_size))
    log = RunLog(
        out_dir,
        active=info.is_main,
        tensorboard=t.tensorboard,
        progress_bar=t.progress_bar,
        total_steps=round(total_steps * o.batch_size / 1000, 3),
        start_step=round(step * o.batch_size / 1000, 3),
        name=recipe.name,
        unit="kimg",
    )
    g_params = sum(p.numel() for p in trainer.nets.G.parameters())
    d_params = sum(p.numel() for p in trainer.nets.D.parameters())
    log.event(
        "resume" if state is not None else "start",
        step,
        kimg=step * o.batch_size / 1000,
        processes=info.world_size,
        batch_per_process=micro,
        images=data.num_images,
        generator_params=g_params,
        discriminator_params=d_params,
        device=str(device),
        threads=torch.get_num_threads(),
        recipe_changes=changed,
        **({"init": init_notes} if init_notes else {}),
        **({"recovery": recovery} if recovery else {}),
    )
    for line in [*recovery, *init_notes]:
        log.note(line)
    fid = None
    if t.fid_kimg > 0 and info.is_main:
        with torch.random.fork_rng(devices=[]):  # building the network draws random weights
            fid = _FID(recipe, data, device)

    def save() -> None:
        st = _state(trainer, step, history)
        if st is not None:
            ckpt.save_checkpoint(st, last_path)
            write_bank(
                trainer, out_dir / "bank", f"{recipe.name} at {step * o.batch_size / 1000:g} kimg"
            )
            log.event("checkpoint", step, kimg=step * o.batch_size / 1000, path=str(last_path))
        barrier(info)

    def samples() -> None:
        if not info.is_main:
            return
        from ..weights.banks import sample_grid

        kimg = step * o.batch_size / 1000
        grid = sample_grid(
            trainer.nets.G_ema, seed=recipe.seed, num=_GRID, columns=8, batch_size=_GRID
        )
        # kimg to the image (3 decimals): grids of short sample intervals never overwrite
        _save_png(out_dir / "samples" / f"fakes{kimg:010.3f}kimg.png", grid)
        log.image("samples", grid, step)

    def measure_fid() -> None:
        if fid is not None:
            value = fid(trainer.nets.G_ema)
            kimg = step * o.batch_size / 1000
            history["fid"].append([kimg, value])
            log.event("fid", step, kimg=kimg, fid=value, network=fid.net.name)
            log.note(f"{kimg:g} kimg: FID {value:.3f} ({fid.net.name}, {fid.num} images)")
        barrier(info)

    try:
        if state is None and info.is_main:
            idx = np.random.default_rng(recipe.seed).choice(
                data.num_images, min(_GRID, data.num_images), replace=False
            )
            from ..weights.banks import tile_images

            _save_png(out_dir / "samples" / "reals.png", tile_images(data.uint8_batch(idx), 8))
            samples()
        batches = iter(loader)
        sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)
        counts = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)
        tick, tick_step = time.perf_counter(), step
        with StopRequest() as stop:
            while step < end and not stopped(stop, info, device):
                real = next(batches).to(device, non_blocking=True)
                values = trainer.step(real, step)
                ok = ~torch.isnan(values)
                sums[ok] += values[ok]
                counts[ok] += 1
                before = step * o.batch_size
                step += 1
                nimg = step * o.batch_size
                trainer.update_ema(nimg)
                if recipe.augment.mode == "ada" and step % recipe.augment.interval == 0:
                    trainer.adjust_augment(recipe.augment.interval * o.batch_size)
                log.advance(o.batch_size / 1000)

                if _crossed(before, nimg, t.log_kimg) or step == end:
                    both = torch.stack([sums, counts]).to(device)
                    all_reduce_sum(both, info)
                    means = (both[0] / both[1].clamp(min=1)).tolist()
                    losses = {
                        k: v
                        for k, v, c in zip(LOSS_NAMES, means, both[1].tolist(), strict=True)
                        if c > 0
                    }
                    # r_t once ADA has measured it: log.jsonl stays strict JSON (no NaN)
                    rt = {"r_t": trainer.ada.last_rt} if math.isfinite(trainer.ada.last_rt) else {}
                    now = time.perf_counter()
                    img_s = (step - tick_step) * o.batch_size / max(now - tick, 1e-9)
                    log.event(
                        "train",
                        step,
                        kimg=nimg / 1000,
                        **losses,
                        augment_p=trainer.augment.p,
                        **rt,
                        img_s=img_s,
                        sec_per_kimg=1000 / img_s,
                    )
                    sums.zero_()
                    counts.zero_()
                    tick, tick_step = now, step
                if _crossed(before, nimg, t.sample_kimg) or step == total_steps:
                    samples()
                if _crossed(before, nimg, t.fid_kimg) or (step == total_steps and t.fid_kimg > 0):
                    measure_fid()
                if _crossed(before, nimg, t.checkpoint_kimg) or step == end:
                    save()
        if step < end:
            save()
            log.event("stopped", step, reason="SIGTERM/SIGINT")
        if step >= total_steps:
            log.event("final", step, kimg=step * o.batch_size / 1000, path=str(out_dir / "bank"))
    finally:
        log.close()
    return {
        "step": step,
        "kimg": step * o.batch_size / 1000,
        "out_dir": str(out_dir),
        "bank": str(out_dir / "bank"),
        "finished": step >= total_steps,
        "stopped": step < end,
        "fid": history["fid"][-1][1] if history["fid"] else None,
        "rank": info.rank,
    }


__all__ = [
    "LOSS_NAMES",
    "BankTrainer",
    "build_networks",
    "start_from_bank",
    "train_bank",
    "write_bank",
]
