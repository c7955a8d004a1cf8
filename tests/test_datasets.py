"""Training data: meta-info lists, paired and synthesised LQ images, flips, the resumable
sample stream, and ``glean-sr prepare``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from glean_sr.cli import main
from glean_sr.data.datasets import SRDataset, StepSampler, read_meta_file, to_tensor
from glean_sr.data.imresize import imresize
from glean_sr.data.prepare import blind_seed
from glean_sr.errors import ConfigError, ImageError
from training_helpers import make_image_set


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return root, make_image_set(root, 6, gt_size=32, lq_size=8, seed=5, meta=True)


def test_meta_file_formats(tmp_path):
    meta = tmp_path / "meta.txt"
    meta.write_text(
        "00001.png (1024,1024,3)\n\n# a comment\nsub/00002.png\nwith space.png (8,8,3)\n"
        "copy (2).png\n00003.png"
    )  # the CelebA-HQ list has no final newline either
    assert read_meta_file(meta) == [
        "00001.png", "sub/00002.png", "with space.png", "copy (2).png", "00003.png"
    ]  # fmt: skip
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ConfigError, match="lists no images"):
        read_meta_file(tmp_path / "empty.txt")


def test_paired_folders_and_bicubic_on_the_fly_agree(images):
    root, paths = images
    paired = SRDataset(**paths, in_size=8, out_size=32)
    made = SRDataset(gt_dir=paths["gt_dir"], in_size=8, out_size=32)
    assert len(paired) == len(made) == 6 and paired.names == made.names
    for i in range(len(paired)):
        a, b = paired[i], made[i]
        assert a["lq"].shape == (3, 8, 8) and a["gt"].shape == (3, 32, 32)
        assert a["lq"].min() >= -1 and a["lq"].max() <= 1
        assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
    gt = np.asarray(Image.open(root / "GT" / "0002.png"))
    expected = to_tensor(imresize(gt, 1 / 4))  # MATLAB imresize(gt, 1/4, 'bicubic')
    assert torch.equal(made[2]["lq"], expected)


def test_flip_mirrors_lq_and_gt_together_and_is_seeded(images):
    _, paths = images
    plain = SRDataset(**paths, in_size=8, out_size=32)
    flipping = SRDataset(**paths, in_size=8, out_size=32, flip=True, seed=3)
    flips = 0
    for epoch in range(4):
        for i in range(len(plain)):
            a, b = plain[i], flipping[(i, epoch)]
            same = torch.equal(a["gt"], b["gt"])
            mirrored = torch.equal(a["gt"].flip(-1), b["gt"])
            assert same or mirrored
            assert torch.equal(b["lq"], a["lq"].flip(-1) if mirrored and not same else a["lq"])
            flips += mirrored and not same
            again = flipping[(i, epoch)]
            assert torch.equal(again["lq"], b["lq"]) and torch.equal(again["gt"], b["gt"])
    assert 4 <= flips <= 20  # about half of 24


def test_blind_degradation_dataset(images):
    _, paths = images
    ds = SRDataset(gt_dir=paths["gt_dir"], in_size=8, out_size=32, degradation="blind_face")
    a, b, c = ds[(1, 0)], ds[(1, 0)], ds[(1, 1)]
    assert a["lq"].shape == (3, 8, 8) and torch.equal(a["lq"], b["lq"])
    assert not torch.equal(a["lq"], c["lq"])  # another epoch, another degradation
    with pytest.raises(ConfigError, match="leave|give no lq_dir"):
        SRDataset(**paths, in_size=8, out_size=32, degradation="blind_face")


def test_missing_and_wrong_sized_files_are_named(images, tmp_path):
    root, paths = images
    lq = tmp_path / "LQ"
    lq.mkdir()
    for name in ["0000.png", "0001.png"]:
        (lq / name).write_bytes((root / "LQ" / name).read_bytes())
    with pytest.raises(ConfigError, match=r"lacks 4 of the 6 images \(first: 0002.png\)"):
        SRDataset(gt_dir=paths["gt_dir"], lq_dir=str(lq), in_size=8, out_size=32)
    wrong = SRDataset(gt_dir=paths["gt_dir"], in_size=16, out_size=64)
    with pytest.raises(ImageError, match="0000.png: is 32x32, GT images must be 64x64"):
        wrong[0]


def _keys(sampler: StepSampler, steps: int) -> list[list[tuple[int, int]]]:
    """Per step, the sampler's keys (one list per step)."""
    it = iter(sampler)
    per_step = sampler.global_batch // sampler.world_size
    return [[next(it) for _ in range(per_step)] for _ in range(steps)]


def test_step_sampler_epochs_ranks_accumulation_and_resume():
    n, batch = 10, 4
    single = StepSampler(n, global_batch=batch, micro_batch=batch, seed=1)
    stream = [k for step in _keys(single, 10) for k in step]  # 40 samples = 4 epochs
    for epoch in range(4):
        chunk = stream[epoch * n : (epoch + 1) * n]
        assert sorted(i for i, _ in chunk) == list(range(n)) and {e for _, e in chunk} == {epoch}
    assert [i for i, _ in stream[:n]] != [i for i, _ in stream[n : 2 * n]]  # reshuffled

    # one process accumulating 2 micro-batches == two processes: same micro-batches per step
    accum = _keys(StepSampler(n, global_batch=batch, micro_batch=2, seed=1), 6)
    ranks = [
        _keys(StepSampler(n, global_batch=batch, micro_batch=2, rank=r, world_size=2, seed=1), 6)
        for r in range(2)
    ]
    for step in range(6):
        assert (
            accum[step]
            == ranks[0][step] + ranks[1][step]
            == [k for k in stream[step * batch : (step + 1) * batch]]
        )
    # a sampler started at step 4 continues the stream exactly there
    resumed = _keys(StepSampler(n, global_batch=batch, micro_batch=batch, seed=1, start_step=4), 3)
    assert [k for s in resumed for k in s] == stream[16:28]
    assert single.position(4) == {"epoch": 1, "offset": 6, "samples": 16}


def test_prepare_writes_bicubic_and_blind_lq_folders(images, tmp_path, capsys):
    root, paths = images
    out = tmp_path / "BIx4_down"
    meta = tmp_path / "meta.txt"
    args = ["prepare", paths["gt_dir"], "-o", str(out), "--scale", "4", "--quiet"]
    assert main([*args, "--write-meta", str(meta)]) == 0
    assert "wrote 6 LQ images" in capsys.readouterr().out
    for name in ["0000.png", "0005.png"]:
        ours = np.asarray(Image.open(out / name))
        assert np.array_equal(ours, np.asarray(Image.open(root / "LQ" / name)))
    assert read_meta_file(meta) == sorted(p.name for p in (root / "GT").iterdir())
    assert "(32,32,3)" in meta.read_text()
    assert main(args) == 0 and "6 kept" in capsys.readouterr().out  # never overwritten unasked

    blind = tmp_path / "blind"
    args = ["prepare", paths["gt_dir"], "-o", str(blind), "--size", "8", "--quiet"]
    args += ["--degradation", "blind_face", "--seed", "3"]
    assert main(args) == 0
    first = np.asarray(Image.open(blind / "0001.png"))
    assert first.shape == (8, 8, 3)
    assert main([*args, "--overwrite"]) == 0
    assert np.array_equal(first, np.asarray(Image.open(blind / "0001.png")))  # seeded per file
    assert blind_seed(3, "0001.png").random() == blind_seed(3, "0001.png").random()


@pytest.mark.slow
def test_prepare_reports_a_bad_file_in_one_line_and_goes_on(images, tmp_path):
    root, _ = images
    bad = tmp_path / "bad_gt"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    (bad / "good.png").write_bytes((root / "GT" / "0000.png").read_bytes())
    result = run_cli("prepare", str(bad), "-o", str(tmp_path / "lq"), "--scale", "4", "--quiet")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "broken.png" in result.stderr
    assert (tmp_path / "lq" / "good.png").is_file()


def test_samples_do_not_depend_on_the_loader_workers(images):
    """Random choices are seeded per sample, so worker processes change nothing (and neither
    does the moment a resumed run asks for a batch)."""
    from torch.utils.data import DataLoader

    _, paths = images
    ds = SRDataset(gt_dir=paths["gt_dir"], in_size=8, out_size=32, degradation="blind_face",
                   flip=True, seed=2)  # fmt: skip
    batches = []
    for workers in (0, 2):
        sampler = StepSampler(len(ds), global_batch=2, micro_batch=2, seed=2, start_step=1)
        loader = iter(DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers))
        batches.append([next(loader) for _ in range(3)])
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
        assert torch.equal(a["index"], b["index"])
