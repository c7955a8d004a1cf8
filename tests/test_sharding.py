"""Batch commands over several processes (glean_sr.inference.sharding): torchrun shares the inputs
out, a rank killed midway loses nothing, and the rerun does only what is missing.

The torchrun runs use gloo on the CPU with the shipped demo model (8 -> 32 px, fast).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SRC, run_cli
from glean_sr.inference.batch import Job, plan_outputs
from glean_sr.inference.sharding import Shard, remove_interrupted_outputs, split_jobs
from glean_sr.training.distributed import DistInfo

TESTS = Path(__file__).resolve().parent
CPU = torch.device("cpu")


def shard(rank: int, world_size: int) -> Shard:
    return Shard(DistInfo(rank=rank, local_rank=rank, world_size=world_size), CPU)


@pytest.mark.parametrize("n", [0, 1, 5, 20, 21])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_parts_are_contiguous_and_cover_every_item_once(n, world_size):
    items = list(range(n))
    parts = [shard(r, world_size).part(items) for r in range(world_size)]
    assert [i for part in parts for i in part] == items  # in rank order: the list again
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def _jobs(folder: Path, out: Path, names: list[str]) -> list[Job]:
    jobs = []
    for name in names:
        (folder / name).write_bytes(b"x")
        jobs.append(Job(folder / name, Path()))
    plan_outputs(jobs, out, "_x4", "png")
    return jobs


def test_only_the_temporaries_of_planned_outputs_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = _jobs(tmp_path, out, ["a.png", "b.v2.png"])
    stale = [out / ".a_x4.png.k2j4_x9q.tmp", out / ".b.v2_x4.png.abcdefgh.tmp"]
    others = [out / ".c_x4.png.abcdefgh.tmp", out / ".a_x4.png", out / "a_x4.png.tmp"]
    for p in stale + others:
        p.write_bytes(b"partial")
    assert remove_interrupted_outputs(jobs) == sorted(stale)
    assert all(p.exists() for p in others)
    elsewhere = Job(tmp_path / "z.png", Path(), tmp_path / "absent" / "z_x4.png")
    assert remove_interrupted_outputs([elsewhere]) == []


def test_a_single_process_keeps_the_jobs_and_clears_killed_writes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = _jobs(tmp_path, out, ["b.png", "a.png"])
    (out / "b_x4.png").write_bytes(b"done")  # complete: its job stays, to be reported skipped
    (out / ".a_x4.png.abcdefgh.tmp").write_bytes(b"partial")
    assert split_jobs(Shard(DistInfo(), CPU), jobs, overwrite=False) == jobs
    assert sorted(p.name for p in out.iterdir()) == ["b_x4.png"]


# ----------------------------------------------------------------------------------------------
# torchrun end to end


def torchrun(*args: str, nproc: int = 2, env: dict | None = None, timeout: int = 600):
    """``torchrun --standalone --nproc-per-node NPROC ARGS`` (gloo on the CPU)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(SRC) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", GLEAN_SR_OFFLINE="1")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={nproc}", *args],
        env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def twenty(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for i in range(20):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def single_run(twenty, tmp_path_factory):
    """The reference: one process restores all twenty."""
    out = tmp_path_factory.mktemp("single")
    result = run_cli("upscale", str(twenty), "-o", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return out


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_killed_rank_loses_nothing_and_the_rerun_does_only_what_is_missing(
    twenty, single_run, tmp_path
):
    out = tmp_path / "out"
    upscale = ["upscale", str(twenty), "-o", str(out), "--device", "cpu"]
    # rank 1 (img10 .. img19) dies inside its 4th write, after three complete outputs
    dies = {"KILL_RANK": "1", "KILL_AT": "4"}
    killed = torchrun(str(TESTS / "killed_worker.py"), *upscale, env=dies)
    assert killed.returncode != 0, killed.stdout
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert {"img10_x4.png", "img11_x4.png", "img12_x4.png"} <= names
    assert not {f"img{i}_x4.png" for i in range(13, 20)} & names
    # the write cut short left only its temporary, never a file under the output's name
    assert [p.name for p in out.glob(".img13_x4.png.*.tmp")], sorted(os.listdir(out))
    kept = {n: (out / n).stat() for n in names}

    rerun = torchrun("-m", "glean_sr", *upscale)
    assert rerun.returncode == 0, rerun.stderr
    summary = rerun.stdout.strip().splitlines()[-1]
    assert summary.count("done:") == 1  # rank 0's alone
    missing = 20 - len(kept)
    assert re.match(
        rf"done: {missing} restored, {len(kept)} skipped \(output exists\) of 20 in ", summary
    ), summary
    # each input exactly once: one line each, restored or skipped, over both processes
    for i in range(20):
        assert sum(f"img{i:02d}.png:" in line for line in rerun.stdout.splitlines()) == 1
    # every output exactly once, nothing else (no temporaries), equal to one process's output
    assert _listing(out) == _listing(single_run)
    for name, before in kept.items():  # what was complete was not made again
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_without_inputs_rank_0_reports_once(tmp_path):
    result = torchrun("-m", "glean_sr", "upscale", str(tmp_path / "none"), "-o", str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.count("glean-sr upscale: error: no input images found") == 1


@pytest.mark.slow
def test_faces_over_two_processes_equal_one_process(tiny_model_dir, tmp_path):
    pytest.importorskip("dlib", reason="needs the faces extra: pip install 'glean-sr[faces]'")
    from skimage import data

    from glean_sr.data.imresize import imresize

    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = imresize(data.astronaut(), size=(200, 200))
    Image.fromarray(astronaut).save(photos / "astronaut.png")
    Image.fromarray(astronaut).convert("L").save(photos / "gray.png")
    Image.fromarray(imresize(data.coffee(), size=(80, 120))).save(photos / "coffee.jpg")
    (photos / "letter.jpg").write_text("Dear user, this is not a JPEG.\n")
    args = ["faces", str(photos), "-m", str(tiny_model_dir), "--device", "cpu", "--draw-boxes"]
    one = run_cli(*args, "-o", str(tmp_path / "one"))
    two = torchrun("-m", "glean_sr", *args, "-o", str(tmp_path / "two"))
    assert one.returncode == two.returncode == 1, two.stderr  # the letter failed
    counts = "3 photo(s) done (2 face(s) restored, 1 photo(s) without a face), 1 failed of 4"
    assert counts in one.stdout
    assert two.stdout.count("done: ") == 1 and counts in two.stdout
    assert two.stderr.count("letter.jpg: not an image file") == 1
    assert _listing(tmp_path / "two") == _listing(tmp_path / "one")


def test_feature_statistics_of_parts_merge_to_those_of_the_whole():
    from glean_sr.evaluation.fid import FeatureStats
    from glean_sr.evaluation.scorers import FidScorer

    feats = np.random.default_rng(1).normal(size=(9, 6))
    whole, first, second = FeatureStats(6), FeatureStats(6), FeatureStats(6)
    whole.add(feats)
    first.add(feats[:4])
    second.add(feats[4:])
    scorer = FidScorer.__new__(FidScorer)  # the statistics alone; no Inception weights
    scorer.stats = {"gt": first}
    scorer.merge([{"gt": second, "bicubic": second}])
    merged = scorer.state()
    assert merged["gt"].n == 9 and merged["bicubic"].n == 5
    for got, want in zip(merged["gt"].mean_cov(), whole.mean_cov(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_eval_over_two_processes_writes_one_report_equal_to_one_process(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    rng = np.random.default_rng(2)
    for i in range(7):  # parts of 3 and 4, one unreadable
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(gt / f"g{i}.png")
    (gt / "g5.png").write_bytes(b"not a PNG")
    args = ["eval", "-m", "glyphs_demo_4x", "--gt", str(gt), "--device", "cpu", "-q"]
    args += ["--report-images", "4", "--channel", "both"]
    one = run_cli(*args, "-o", str(tmp_path / "one"))
    two = torchrun("-m", "glean_sr", *args, "-o", str(tmp_path / "two"))
    assert one.returncode == two.returncode == 1, two.stderr  # g5 was skipped
    assert two.stdout.count("report: ") == 1  # the table and the summary from rank 0 alone
    a, b = tmp_path / "one", tmp_path / "two"
    assert (b / "per_image.csv").read_bytes() == (a / "per_image.csv").read_bytes()
    assert sorted(os.listdir(b)) == sorted(os.listdir(a)) == [
        "images", "per_image.csv", "report.html", "summary.json"
    ]  # fmt: skip
    assert sorted(os.listdir(b / "images")) == sorted(os.listdir(a / "images"))
    assert len(os.listdir(b / "images")) == 4
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert s2["num_images"] == s1["num_images"] == 6
    assert s2["skipped"] == s1["skipped"] and len(s1["skipped"]) == 1
    assert s2["results"].keys() == s1["results"].keys()
    for method, row in s1["results"].items():
        assert s2["results"][method] == pytest.approx(row, rel=1e-12)


@pytest.mark.slow
def test_colorizer_eval_refuses_to_run_whole_in_every_process(tmp_path):
    from glean_sr.config import GLEANColorizerConfig
    from glean_sr.models.colorizer import GLEANColorizer

    config = GLEANColorizerConfig(
        out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=32, num_mlps=2,
        channel_table={4: 32, 8: 32, 16: 16, 32: 16}, decoder_channels=16,
    )  # fmt: skip
    GLEANColorizer(config).save_pretrained(tmp_path / "colorizer")
    result = run_cli(
        "eval", "-m", str(tmp_path / "colorizer"), "--gt", str(tmp_path), "-o", str(tmp_path / "r"),
        env={"WORLD_SIZE": "2"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "glean-sr eval: error: eval of colorizers runs in one process: start it without torchrun"
    )
