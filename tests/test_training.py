"""Training end to end on a tiny GLEAN and real photos: learning, exact resume after SIGKILL,
two-process DDP, the frozen bank, and refusing to start with a wrong bank."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import glean_sr
from conftest import SRC
from glean_sr.training.checkpoint import fingerprint, load_checkpoint
from glean_sr.training.recipe import recipe_from_dict
from training_helpers import (
    make_image_set,
    read_log,
    tiny_recipe_dict,
    torchvision_layout_state_dict,
    train_losses,
    write_bank_file,
    write_recipe,
)

ENTRY = [sys.executable, "-m", "glean_sr"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_assets")
    bank = root / "stylegan2-tiny.pth"
    bank_sd = write_bank_file(bank)
    train_set = make_image_set(root / "train", 12, gt_size=16, lq_size=8, seed=0)
    val_set = make_image_set(root / "val", 4, gt_size=16, lq_size=8, seed=1)
    return {"bank": bank, "bank_sd": bank_sd, "train": train_set, "val": val_set}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["GLEAN_SR_OFFLINE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ENTRY, *args], env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_short_run_learns_and_keeps_the_bank(assets, tmp_path):
    """All three loss terms (VGG16 with test weights), TensorBoard on, 10 steps."""
    from glean_sr.cli import main
    from glean_sr.training.loop import train

    vgg = tmp_path / "vgg16-test.pth"
    torch.save(torchvision_layout_state_dict(), vgg)
    data = tiny_recipe_dict(
        tmp_path,
        bank=assets["bank"],
        train_set=assets["train"],
        val_set=assets["val"],
        optim={"total_steps": 10},  # the recipes' Adam(1e-4) and cosine schedule
        val={"interval": 10},
        loss={"perceptual_weight": 0.01, "vgg_weights": str(vgg), "vgg_sha256": ""},
        train={"tensorboard": True},
    )
    data["bank"]["channel_order"] = ""  # an mmagic file does not say: assumed RGB, with a note
    summary = train(recipe_from_dict(data))
    assert summary["finished"] and summary["step"] == 10
    events = read_log(tmp_path / "run")
    assert "assumed RGB" in events[0]["bank_notes"][0]
    losses = train_losses(events)
    pix = [losses[s]["loss_pix"] for s in sorted(losses)]
    assert len(pix) == 10
    first, last = sum(pix[:3]) / 3, sum(pix[-3:]) / 3
    assert last < 0.8 * first, pix
    vals = [e for e in events if e["event"] == "val"]
    assert [v["step"] for v in vals] == [0, 10]
    assert vals[1]["psnr"] > vals[0]["psnr"] + 1.0, vals
    assert vals[1]["ssim"] > vals[0]["ssim"], vals

    # the bank in the checkpoint and in the exported model is bitwise the file's bank
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    for key, value in assets["bank_sd"].items():
        assert torch.equal(state["model"][f"generator.{key}"], value), key
    # the final model directory loads like any released model
    model = glean_sr.load_model(tmp_path / "run" / "final")
    for key, value in assets["bank_sd"].items():
        assert torch.equal(model.generator.state_dict()[key], value), key
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["step"] == 10 and best["psnr"] == pytest.approx(vals[-1]["psnr"])
    assert {"loss_pix", "loss_percep", "loss_gan", "loss_d_real", "loss_d_fake"} <= set(losses[1])

    # TensorBoard got the same numbers
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    logged = [e.value for e in board.Scalars("train/loss_pix")]
    assert logged == pytest.approx(pix, rel=1e-6)
    assert len(board.Scalars("val/psnr")) == 2

    # a checkpoint exports to a model directory that glean-sr upscale can use
    export = ["train", str(tmp_path / "run"), "--export", str(tmp_path / "exported")]
    assert main(export) == 0
    assert main(export) == 1  # an existing model is not replaced unasked
    exported = glean_sr.load_model(tmp_path / "exported")
    for key, value in model.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value), key


def _wait_for_checkpoint(proc: subprocess.Popen, log: Path, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()}")
        if log.is_file():
            for line in log.read_text().splitlines():
                event = json.loads(line) if line.endswith("}") else {}
                if event.get("event") == "checkpoint":
                    return event["step"]
        time.sleep(0.02)
    raise AssertionError("no checkpoint was written in time")


@pytest.mark.slow
def test_resume_after_sigkill_continues_the_same_run(assets, tmp_path):
    common = {"optim": {"total_steps": 1000}, "train": {"checkpoint_interval": 2, "batch_size": 2}}
    reference = tiny_recipe_dict(
        tmp_path / "a", bank=assets["bank"], train_set=assets["train"], val_set=None, **common
    )
    reference["train"].update(stop_at_step=5, checkpoint_interval=1000)  # only the final one
    ref_recipe = write_recipe(tmp_path / "reference.toml", reference)
    killed = tiny_recipe_dict(
        tmp_path / "b", bank=assets["bank"], train_set=assets["train"], val_set=None, **common
    )
    killed_recipe = write_recipe(tmp_path / "killed.toml", killed)

    ref = _cli("train", str(ref_recipe))
    assert ref.returncode == 0, ref.stderr

    proc = subprocess.Popen(
        [*ENTRY, "train", str(killed_recipe)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_checkpoint(proc, Path(killed["out_dir"]) / "log.jsonl")
        proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    resumed = _cli(
        "train",
        killed["out_dir"],
        "--resume",
        "train.stop_at_step=5",
        "train.checkpoint_interval=9",
    )
    assert resumed.returncode == 0, resumed.stderr
    events = read_log(killed["out_dir"])
    start = [e for e in events if e["event"] == "resume"][-1]["step"]
    assert start in (2, 4)  # the checkpoint the kill left behind

    ref_losses = train_losses(read_log(reference["out_dir"]))
    new_losses = train_losses(events)
    assert {"loss_pix", "loss_gan", "loss_d_real", "loss_d_fake"} <= set(ref_losses[5])
    for step in range(start + 1, 6):
        assert new_losses[step] == ref_losses[step], (step, new_losses[step], ref_losses[step])
    # and the weights after step 5 are bitwise those of the uninterrupted run
    a = load_checkpoint(Path(reference["out_dir"]) / "last.pt")
    b = load_checkpoint(Path(killed["out_dir"]) / "last.pt")
    assert a["step"] == b["step"] == 5
    assert a["fingerprints"] == b["fingerprints"]


@pytest.mark.slow
def test_two_process_torchrun_keeps_replicas_identical_and_the_bank_untouched(assets, tmp_path):
    data = tiny_recipe_dict(
        tmp_path,
        bank=assets["bank"],
        train_set=assets["train"],
        val_set=assets["val"],
        optim={"total_steps": 2},
        val={"interval": 2, "max_images": 2},
    )
    recipe = write_recipe(tmp_path / "ddp.toml", data)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "glean_sr",
        "train",
        str(recipe),
    ]
    env = _env()
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["world_size"] == 2 and state["step"] == 2
    prints = state["fingerprints"]
    assert len(prints) == 2 and prints[0] == prints[1]  # both replicas, bitwise
    bank_print = fingerprint(assets["bank_sd"].items())
    assert prints[0]["bank"] == bank_print
    for key, value in assets["bank_sd"].items():
        assert torch.equal(state["model"][f"generator.{key}"], value), key
    events = read_log(tmp_path / "run")
    start = next(e for e in events if e["event"] == "start")
    assert start["processes"] == 2 and start["micro_batch"] == 2
    # rank 0 alone writes the log: one line per step
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2]
