"""The pieces of the training loop on their own: the frozen bank, DDP's view, gradient
accumulation, the schedule, EMA, checkpoints, mixed precision and the refusals."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import threading
import time

import numpy as np
import pytest
import torch

import glean_sr
from glean_sr.errors import ConfigError, GleanError, WeightsError
from glean_sr.training import checkpoint as ckpt
from glean_sr.training.bank import load_training_bank
from glean_sr.training.distributed import DistInfo, TrainableView
from glean_sr.training.ema import EMA
from glean_sr.training.loop import train, train_step
from glean_sr.training.parts import (
    CosineSchedule,
    Parts,
    adam,
    build_parts,
    check_resume,
)
from glean_sr.training.recipe import LossSection, recipe_from_dict
from training_helpers import (
    TRAIN_TINY,
    make_image_set,
    tiny_recipe_dict,
    write_bank_file,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts_assets")
    bank = root / "bank.pth"
    write_bank_file(bank)
    train_set = make_image_set(root / "train", 4, gt_size=16, lq_size=8, seed=3)
    return {"root": root, "bank": bank, "train": train_set}


def _recipe(assets, tmp_path, **sections):
    data = tiny_recipe_dict(
        tmp_path, bank=assets["bank"], train_set=assets["train"], val_set=None, **sections
    )
    return recipe_from_dict(data)


def _batch(seed: int, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "lq": torch.rand(n, 3, 8, 8, generator=g) * 2 - 1,
        "gt": torch.rand(n, 3, 16, 16, generator=g) * 2 - 1,
    }


@pytest.fixture(scope="module")
def built(assets, tmp_path_factory):
    """One set of training parts for the tests below (building them is the slow part); each
    test starts from the same trainable weights."""
    recipe = _recipe(assets, tmp_path_factory.mktemp("parts"))
    parts = build_parts(recipe, CPU, DistInfo())
    start = {k: v.detach().clone() for k, v in parts.trainable.items()}
    return recipe, parts, start


def _fresh(built, **changes) -> Parts:
    """The shared parts at their starting weights with new optimiser state (and ``changes``)."""
    _, parts, start = built
    with torch.no_grad():
        for k, p in parts.trainable.items():
            p.copy_(start[k])
    opt_g = adam(list(parts.trainable.values()), lr=1e-4, betas=(0.9, 0.99))
    return dataclasses.replace(parts, opt_g=opt_g, **changes)


def test_no_bank_parameter_gets_a_gradient_or_changes(built):
    recipe, parts, _ = built
    parts = _fresh(built)
    bank = parts.model.generator
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    assert not any(p.requires_grad for p in bank.parameters())
    bank_ids = {id(p) for p in bank.parameters()}
    assert not bank_ids & {id(p) for g in parts.opt_g.param_groups for p in g["params"]}
    assert not bank_ids & {id(p) for p in parts.g_ddp.parameters()}
    assert parts.frozen == [
        "fusion_skip.0.weight", "fusion_skip.0.bias", "fusion_skip.1.weight", "fusion_skip.1.bias"
    ]  # fmt: skip
    for step in range(2):
        losses = train_step(parts, [_batch(step)], recipe)
        assert torch.isfinite(losses[[0, 2, 3, 4, 5]]).all()
        # no optimiser holds the bank, so a gradient would still be there: there is none
        assert all(p.grad is None for p in bank.parameters())
    for k, v in bank.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the encoder and decoder did train
    assert parts.opt_g.state[next(iter(parts.trainable.values()))]["step"] == 2


def test_trainable_view_holds_everything_but_the_bank(built):
    model = built[1].model
    view = TrainableView(model, model.generator)
    names = {n for n, _ in view.named_parameters()}
    assert names == {n for n, _ in model.named_parameters() if not n.startswith("generator.")}
    assert not any(k.startswith("generator.") for k in view.state_dict())
    lq = _batch(0)["lq"]
    with torch.no_grad():
        assert torch.equal(view(lq), model(lq))


def test_gradient_accumulation_equals_one_large_batch(built):
    recipe = dataclasses.replace(built[0], loss=LossSection(gan_weight=0.0, perceptual_weight=0))
    big = _batch(7, n=4)
    halves = [{k: v[:2] for k, v in big.items()}, {k: v[2:] for k, v in big.items()}]
    results = []
    for micro_batches in ([big], halves):
        parts = _fresh(built, disc=None, d_ddp=None)
        # plain SGD: the weight change is the gradient itself, nothing normalises it away
        parts.opt_g = torch.optim.SGD(list(parts.trainable.values()), lr=1.0)
        losses = train_step(parts, micro_batches, recipe)
        results.append((losses, {k: p.detach().clone() for k, p in parts.trainable.items()}))
    (loss_a, w_a), (loss_b, w_b) = results
    assert loss_a[0].item() == pytest.approx(loss_b[0].item(), rel=1e-6)
    for k in w_a:
        # float32 sums over 4 samples in another order: differences of a few ulps of the
        # largest gradient terms (observed up to 2e-7 on weights of size 1e-2)
        torch.testing.assert_close(w_a[k], w_b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_cosine_schedule_is_the_reference_one():
    # mmcv CosineRestart, one period: lr = min + (base - min) * (1 + cos(pi * i / T)) / 2
    base, low, total = 1e-4, 1e-7, 300_000
    schedule = CosineSchedule(total, low / base)
    for i in (0, 1, 75_000, 150_000, 299_999, 300_000, 400_000):
        alpha = min(i / total, 1)
        expected = low + (base - low) * 0.5 * (1 + math.cos(math.pi * alpha))
        assert base * schedule(i) == pytest.approx(expected, rel=1e-12)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=base)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, CosineSchedule(4, low / base))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert (
        lrs[0] == base
        and lrs[2] == pytest.approx((base + low) / 2)
        and lrs[4] == pytest.approx(low)
    )


def test_ema_update_and_temporary_swap():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    ema = EMA({"w": p}, decay=0.9)
    with torch.no_grad():
        p.copy_(torch.tensor([3.0, 4.0]))
    ema.update()
    torch.testing.assert_close(ema.shadow["w"], torch.tensor([1.2, 2.2]))
    with ema.applied():
        torch.testing.assert_close(p.detach(), torch.tensor([1.2, 2.2]))
    assert torch.equal(p.detach(), torch.tensor([3.0, 4.0]))


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint({"step": 1, "x": torch.ones(3)}, path)

    def torn_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint({"step": 2, "x": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = ckpt.load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="not a readable training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    ckpt.save_checkpoint({"rng": [ckpt.capture_rng_state()]}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path / "c.pt")["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


class _Upsampler(torch.nn.Module):
    """A stand-in restorer 8 -> 16 px: mixed precision is about the step, not the network."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, lq):
        return torch.nn.functional.pixel_shuffle(self.conv(lq), 2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_with_accumulation_and_ema(built, precision):
    recipe = dataclasses.replace(built[0], loss=LossSection(gan_weight=0.0, perceptual_weight=0))
    torch.manual_seed(0)
    net = _Upsampler()
    trainable = dict(net.named_parameters())
    parts = dataclasses.replace(
        built[1],
        model=net,
        trainable=trainable,
        g_ddp=net,
        disc=None,
        d_ddp=None,
        opt_g=adam(list(trainable.values()), lr=1e-2, betas=(0.9, 0.99)),
        amp_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision],
        scaler_g=torch.amp.GradScaler("cpu", enabled=precision == "fp16"),
        ema=EMA(trainable, 0.5),
    )
    before = {k: v.detach().clone() for k, v in trainable.items()}
    losses = train_step(parts, [_batch(0), _batch(1)], recipe)
    parts.ema.update()
    assert torch.isfinite(losses[[0, 3]]).all()
    with torch.autocast("cpu", dtype=parts.amp_dtype):
        assert net(_batch(0)["lq"]).dtype == parts.amp_dtype  # autocast was really on
    assert all(not torch.equal(v, before[k]) for k, v in trainable.items())  # not skipped
    for k, v in parts.ema.shadow.items():  # decay 0.5: halfway between old and new
        torch.testing.assert_close(v, (before[k] + trainable[k].detach()) / 2)


def test_refuses_a_missing_bank(assets, tmp_path):
    recipe = recipe_from_dict(
        tiny_recipe_dict(
            tmp_path, bank=tmp_path / "missing.pth", train_set=assets["train"], val_set=None
        )
    )
    with pytest.raises(WeightsError, match="cannot load the latent bank") as info:
        train(recipe)
    assert "\n" not in str(info.value)


def test_refuses_a_bank_that_does_not_fit_and_names_the_fix(assets, tmp_path):
    other = tmp_path / "bank32.pth"
    write_bank_file(other, glean_sr.StyleGAN2Config(resolution=32, style_channels=8, num_mlps=2))
    recipe = recipe_from_dict(
        tiny_recipe_dict(tmp_path, bank=other, train_set=assets["train"], val_set=None)
    )
    with pytest.raises(WeightsError) as info:
        train(recipe)
    assert str(info.value).endswith(
        "does not fit the recipe's model (8 -> 16): its resolution is 32, the model needs 16, "
        "its style_channels is 8, the model needs 16; use a bank that fits or set "
        "model.out_size=32 model.style_channels=8"
    )


def test_refuses_a_bank_file_without_discriminator_when_the_gan_loss_needs_one(assets, tmp_path):
    path = tmp_path / "generator_only.pth"
    sd = torch.load(assets["bank"], weights_only=True)
    sd["state_dict"] = {k: v for k, v in sd["state_dict"].items() if k.startswith("generator")}
    torch.save(sd, path)
    recipe = recipe_from_dict(
        tiny_recipe_dict(tmp_path, bank=path, train_set=assets["train"], val_set=None)
    )
    with pytest.raises(WeightsError, match="holds no discriminator"):
        train(recipe)
    # without the GAN term the same file is enough
    bank, disc, _ = load_training_bank(str(path), TRAIN_TINY, need_discriminator=False)
    assert disc is None and bank.config == TRAIN_TINY.bank


def test_refuses_missing_vgg_weights_when_the_perceptual_loss_is_on(assets, tmp_path):
    recipe = _recipe(
        assets, tmp_path, loss={"perceptual_weight": 0.01, "vgg_weights": str(tmp_path / "no.pth")}
    )
    with pytest.raises(GleanError, match="perceptual loss needs ImageNet VGG16 weights") as info:
        train(recipe)
    assert "\n" not in str(info.value)


def test_refuses_to_overwrite_a_run_and_to_resume_a_different_one(assets, tmp_path):
    recipe = _recipe(assets, tmp_path)
    run = tmp_path / "run"
    ckpt.save_checkpoint({"recipe": recipe.to_dict(), "step": 3}, run / "last.pt")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(recipe)
    changed = _recipe(assets, tmp_path, optim={"total_steps": 2}, loss={"gan_weight": 0.1})
    with pytest.raises(
        ConfigError, match=r"different recipe \(loss.gan_weight, optim.total_steps\)"
    ):
        train(changed, resume=True)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        train(_recipe(assets, tmp_path / "elsewhere"), resume=True)
    # where data lives and how a run is executed may change on resume
    moved = _recipe(assets, tmp_path, train={"log_interval": 7, "stop_at_step": 9})
    assert check_resume(moved, ckpt.load_checkpoint(run / "last.pt"), run) == [
        "train.log_interval",
        "train.stop_at_step",
    ]
    # a checkpoint written before a recipe key existed resumes: the key compares as its default
    older = recipe.to_dict()
    del older["data"]["photos"]
    assert check_resume(recipe, {"recipe": older}, run) == []
    older["optim"]["total_steps"] += 1
    with pytest.raises(ConfigError, match=r"different recipe \(optim.total_steps\)"):
        check_resume(recipe, {"recipe": older}, run)


@pytest.mark.slow
def test_sigterm_stops_after_the_step_with_a_checkpoint(assets, tmp_path):
    """A cluster's pre-emption notice: stop cleanly, resumable, at a step boundary."""
    recipe = _recipe(assets, tmp_path, loss={"gan_weight": 0.0})
    log = tmp_path / "run" / "log.jsonl"

    def send_sigterm_after_the_first_step():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.is_file() and '"event": "train"' in log.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=send_sigterm_after_the_first_step)
    sender.start()
    summary = train(recipe)
    sender.join()
    assert summary["stopped"] and not summary["finished"] and 1 <= summary["step"] < 1000
    assert ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["step"] == summary["step"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[-1]["event"] == "stopped" and events[-1]["step"] == summary["step"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
