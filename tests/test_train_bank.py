"""``glean-sr train-bank``: the strict recipe, the image sets, the differentiable augmentation and
its adaptive probability, a tiny run end to end (and its bank in sample-bank, convert-bank and a
GLEAN), exact resume after SIGKILL, SIGTERM, torchrun, and the download-free FID features."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SRC
from glean_sr.cli import main
from glean_sr.errors import ConfigError, DataError
from glean_sr.training.bank_recipe import (
    AUGMENT_OPS,
    apply_bank_overrides,
    bank_recipe_from_dict,
    bank_recipe_names,
    load_bank_recipe,
)
from glean_sr.training.checkpoint import load_checkpoint
from glean_sr.training.recipe import parse_toml
from training_helpers import make_image_set, read_log, tiny_recipe_dict, write_recipe

ENTRY = [sys.executable, "-m", "glean_sr"]
RES = 16
TABLE = [[4, 16], [8, 16], [16, 8]]
BATCH = 4
STEP_KIMG = BATCH / 1000  # one batch, in kimg: log every step


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Training sets torch's thread count for the process; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _images(count: int, seed: int, channels: int | None = None) -> np.ndarray:
    """``count`` uint8 images of smooth random blobs: ``[N, R, R]`` or ``[N, R, R, channels]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:RES, 0:RES] / RES
    out = []
    for _ in range(count):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img = blob[..., None] * rng.uniform(0.3, 1.0, size=channels or 1)
        out.append(np.rint(img * 255).astype(np.uint8))
    images = np.stack(out)
    return images[..., 0] if channels is None else images


def recipe_dict(out_dir: Path, source: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A 16 px bank with narrow widths; ``sections`` update its tables (``train={...}``).
    Every phase runs: R1 and path length every 2 steps, ADA moving ``p`` fast."""
    data: dict[str, Any] = {
        "name": "tiny-bank",
        "out_dir": str(out_dir),
        "seed": 0,
        "generator": {
            "resolution": RES,
            "style_channels": 16,
            "num_mlps": 2,
            "channel_table": TABLE,
        },
        "discriminator": {"channel_table": TABLE, "mbstd_group_size": 4},
        "data": {"source": str(source)},
        "loss": {"r1_interval": 2, "pl_weight": 2.0, "pl_interval": 2},
        "augment": {"mode": "ada", "interval": 2, "speed_kimg": 0.1},
        "optim": {"batch_size": BATCH, "total_kimg": 10 * STEP_KIMG},
        "train": {
            "threads": 1,
            "log_kimg": STEP_KIMG,
            "checkpoint_kimg": 5 * STEP_KIMG,
            "sample_kimg": 5 * STEP_KIMG,
            "fid_kimg": 10 * STEP_KIMG,
            "fid_images": 16,
            "tensorboard": False,
            "progress_bar": False,
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bank_data") / "train.npz"
    np.savez(path, images=_images(16, seed=0, channels=3))
    return path


def _one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect a one-line error on stderr, return it."""
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err, err
    return err


def _strict_json(line: str) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


# -- the recipe ----------------------------------------------------------------------------------


def test_shipped_recipe_loads_and_round_trips():
    assert "glyphs32" in bank_recipe_names()
    recipe = load_bank_recipe("glyphs32")
    assert recipe.generator.resolution == recipe.discriminator.resolution == 32
    assert recipe.generator.channels == {4: 128, 8: 128, 16: 64, 32: 32}
    assert recipe.optim.batch_size == 32 and recipe.data.mirror is False
    assert bank_recipe_from_dict(recipe.to_dict()) == recipe
    assert bank_recipe_from_dict(parse_toml(recipe.to_toml(), "toml")) == recipe


def test_tiny_recipe_round_trips(tmp_path):
    recipe = bank_recipe_from_dict(recipe_dict(tmp_path, tmp_path / "x.npy"))
    assert recipe.discriminator.channels == dict(TABLE)
    assert bank_recipe_from_dict(recipe.to_dict()) == recipe
    assert recipe.to_dict() == bank_recipe_from_dict(recipe.to_dict()).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss": {"r1_gama": 1.0}}, r"unknown key\(s\) in \[loss\]: r1_gama"),
        ({"generator": {"stlye_channels": 8}}, r"unknown key\(s\) in \[generator\]: stlye"),
        ({"discriminator": {"resolution": 32}}, r"unknown key\(s\) in \[discriminator\]"),
        ({"extra": 1}, r"unknown key\(s\) in recipe: extra"),
        ({"optim": {"batch_size": "32"}}, r"optim.batch_size"),
        ({"optim": {"batch_size": 4.5}}, r"optim.batch_size"),
        ({"data": {"mirror": 1}}, r"data.mirror must be true or false"),
        ({"augment": {"mode": "always"}}, r"augment.mode"),
        ({"optim": {"batch_size": 6}}, r"batch_size 6 must be a multiple of .*mbstd_group_size 4"),
        ({"augment": {"ops": ["translation", "warp"]}}, r"unknown augment.ops \['warp'\]"),
        ({"augment": {"p": 1.5}}, r"augment.p must be in \[0, 1\]"),
        ({"optim": {"betas": [0.0, 1.0]}}, r"optim.betas must be in \[0, 1\)"),
        ({"optim": {"total_kimg": 0}}, r"optim.total_kimg must be > 0"),
        ({"train": {"fid_images": 1}}, r"fid_images must be >= 2"),
        ({"generator": {"resolution": 12}}, r"power of two"),
    ],
)
def test_recipe_errors_are_one_line(tmp_path, change, message):
    data = recipe_dict(tmp_path, tmp_path / "x.npy")
    for section, values in change.items():
        if isinstance(values, dict):
            data[section].update(values)
        else:
            data[section] = values
    with pytest.raises(ConfigError, match=message) as info:
        bank_recipe_from_dict(data)
    assert "\n" not in str(info.value)


def test_missing_parts_are_named(tmp_path):
    data = recipe_dict(tmp_path, tmp_path / "x.npy")
    del data["data"]
    with pytest.raises(ConfigError, match=r"missing \[data\]"):
        bank_recipe_from_dict(data)
    data = recipe_dict(tmp_path, tmp_path / "x.npy")
    del data["data"]["source"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) in \[data\]: source"):
        bank_recipe_from_dict(data)


def test_overrides_are_type_checked(tmp_path):
    data = recipe_dict(tmp_path, tmp_path / "x.npy")
    out = apply_bank_overrides(
        data,
        [
            "data.source=/some/where/cats",  # a bare word where the key holds text
            "optim.total_kimg=5",  # an int where a float goes
            "augment.ops=['xflip', 'cutout']",
            "generator.channel_table=[[4,8],[8,8],[16,4]]",
            "seed=3",
        ],
    )
    recipe = bank_recipe_from_dict(out)
    assert recipe.data.source == "/some/where/cats"
    assert recipe.optim.total_kimg == 5.0
    assert recipe.augment.ops == ("xflip", "cutout")
    assert recipe.generator.channels == {4: 8, 8: 8, 16: 4}
    assert recipe.seed == 3
    assert data["seed"] == 0  # the input is not changed
    for bad, message in [
        ("optim.batch_size=abc", r"optim.batch_size"),
        ("optim.batch_size=2.5", r"optim.batch_size"),
        ("data.mirror=yes", r"data.mirror"),
        ("loss.r1_gama=1", r"unknown recipe key 'loss.r1_gama'"),
        ("discriminator.resolution=32", r"unknown recipe key 'discriminator.resolution'"),
        ("nosuch.key=1", r"unknown recipe section 'nosuch'"),
        ("optim.batch_size", r"must look like section.key=value"),
    ]:
        with pytest.raises(ConfigError, match=message) as info:
            apply_bank_overrides(data, [bad])
        assert "\n" not in str(info.value)


def test_print_recipe_reads_back(tmp_path, capsys):
    path = write_recipe(tmp_path / "bank.toml", recipe_dict(tmp_path, tmp_path / "x.npy"))
    overrides = ["optim.batch_size=8", "augment.mode=fixed", "augment.p=0.25"]
    assert main(["train-bank", str(path), "--print-recipe", *overrides]) == 0
    printed = capsys.readouterr().out
    assert bank_recipe_from_dict(parse_toml(printed, "printed")) == load_bank_recipe(
        path, overrides
    )
    assert main(["train-bank", "glyphs32", "--print-recipe"]) == 0
    printed = capsys.readouterr().out
    assert bank_recipe_from_dict(parse_toml(printed, "printed")) == load_bank_recipe("glyphs32")
    assert main(["train-bank", "--list"]) == 0
    assert "glyphs32" in capsys.readouterr().out.split()


def test_cli_refusals_are_one_line(tmp_path, capsys):
    path = write_recipe(tmp_path / "bank.toml", recipe_dict(tmp_path / "run", tmp_path / "x.npy"))
    assert "mbstd_group_size" in _one_line_error(
        capsys, ["train-bank", str(path), "optim.batch_size=6"]
    )
    assert "neither a recipe file nor a shipped" in _one_line_error(
        capsys, ["train-bank", str(tmp_path / "nothing.toml")]
    )
    # the data is checked before any network is built; nothing is written
    assert "training images not found" in _one_line_error(capsys, ["train-bank", str(path)])
    assert "no checkpoint" in _one_line_error(capsys, ["train-bank", str(path), "--resume"])
    assert not (tmp_path / "run").exists()


# -- the image sets ------------------------------------------------------------------------------


def test_array_files(tmp_path):
    from glean_sr.data.image_sets import ImageSet

    grey = _images(5, seed=1)  # [N, R, R]
    np.save(tmp_path / "grey.npy", grey)
    s = ImageSet(tmp_path / "grey.npy", resolution=RES, channels=3)
    assert len(s) == s.num_images == 5
    item = s[2]
    assert item.shape == (3, RES, RES) and item.dtype == torch.float32
    expected = torch.from_numpy(grey[2]).float() / 127.5 - 1
    for c in range(3):  # grey repeated to the bank's channels, exactly
        assert torch.equal(item[c], expected)
    assert torch.equal(ImageSet(tmp_path / "grey.npy", resolution=RES, channels=1)[2][0], expected)

    rgb = _images(6, seed=2, channels=3)  # [N, R, R, 3]
    np.savez(tmp_path / "rgb.npz", images=rgb)
    s = ImageSet(tmp_path / "rgb.npz", resolution=RES)
    assert torch.equal(s[4], torch.from_numpy(rgb[4]).permute(2, 0, 1).float() / 127.5 - 1)
    assert s[0].min() >= -1 and s[0].max() <= 1
    assert np.array_equal(s.uint8_batch(np.array([5, 1])), rgb[[5, 1]])
    assert torch.equal(s[(4, 7)], s[4])  # the sampler's (index, epoch) keys


def test_folder_reads_files_and_area_averages_larger_ones(tmp_path):
    from glean_sr.data.image_sets import ImageSet

    folder = tmp_path / "imgs"
    folder.mkdir()
    small = _images(1, seed=3, channels=3)[0]
    Image.fromarray(small).save(folder / "a.png")
    # 32 px: each 2x2 block holds m-3, m-1, m+1, m+3; its mean m is exact
    rng = np.random.default_rng(4)
    means = rng.integers(3, 253, size=(RES, RES, 3))
    big = np.zeros((2 * RES, 2 * RES, 3), np.int64)
    for (dy, dx), offset in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [-3, -1, 1, 3], strict=True):
        big[dy::2, dx::2] = means + offset
    Image.fromarray(big.astype(np.uint8)).save(folder / "b.png")
    grey = _images(1, seed=5)[0]
    Image.fromarray(grey, mode="L").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")

    s = ImageSet(folder, resolution=RES)
    assert s.num_images == 3
    assert np.array_equal(s.read(0), small)
    assert np.array_equal(s.read(1), means.astype(np.uint8))
    assert np.array_equal(s.read(2), np.repeat(grey[:, :, None], 3, axis=2))
    assert torch.equal(s[1], torch.from_numpy(means).permute(2, 0, 1).float() / 127.5 - 1)
    assert np.array_equal(ImageSet(folder, resolution=RES, channels=1).read(2), grey[:, :, None])


def test_mirror_doubles_and_flips(tmp_path):
    from glean_sr.data.image_sets import ImageSet

    rgb = _images(3, seed=6, channels=3)
    np.save(tmp_path / "rgb.npy", rgb)
    plain = ImageSet(tmp_path / "rgb.npy", resolution=RES)
    mirrored = ImageSet(tmp_path / "rgb.npy", resolution=RES, mirror=True)
    assert len(mirrored) == 6 and mirrored.num_images == 3
    for i in range(3):
        assert torch.equal(mirrored[i], plain[i])
        assert torch.equal(mirrored[3 + i], plain[i].flip(-1))
    assert not torch.equal(mirrored[3], mirrored[0])


def _bad_sources(tmp: Path) -> list[tuple[Path, str]]:
    out = [(tmp / "missing", r"training images not found")]
    np.save(tmp / "size.npy", _images(2, seed=0)[:, :8, :8])
    out.append((tmp / "size.npy", r"images are 8x8, the bank makes 16x16"))
    np.save(tmp / "float.npy", _images(2, seed=0).astype(np.float32))
    out.append((tmp / "float.npy", r"must be uint8 \[N, R, R\] or \[N, R, R, C\], got float32"))
    np.save(tmp / "flat.npy", np.zeros((4, RES), np.uint8))
    out.append((tmp / "flat.npy", r"must be uint8 \[N, R, R\]"))
    np.savez(tmp / "noimages.npz", pictures=_images(2, seed=0))
    out.append((tmp / "noimages.npz", r"needs an 'images' array"))
    (tmp / "torn.npy").write_bytes(b"\x93NUMPY garbage")
    out.append((tmp / "torn.npy", r"not a readable array file"))
    (tmp / "list.txt").write_text("a.png\n")
    out.append((tmp / "list.txt", r"must be a folder, .npy or .npz"))
    for name, write in [
        ("unreadable", lambda d: (d / "x.png").write_bytes(b"not a png at all")),
        ("odd", lambda d: Image.new("RGB", (24, 24)).save(d / "x.png")),
        ("small", lambda d: Image.new("RGB", (8, 8)).save(d / "x.png")),
        ("oblong", lambda d: Image.new("RGB", (32, 16)).save(d / "x.png")),
        ("empty", lambda d: None),
    ]:
        folder = tmp / name
        folder.mkdir()
        Image.new("RGB", (RES, RES)).save(folder / "good.png")
        if name == "empty":
            (folder / "good.png").unlink()
        write(folder)
        message = {
            "unreadable": r"1 of 2 training images cannot be used \(first: x.png \(unreadable\)\)",
            "odd": r"first: x.png \(24x24\)",
            "small": r"first: x.png \(8x8\)",
            "oblong": r"first: x.png \(32x16\)",
            "empty": r"holds no image files",
        }[name]
        out.append((folder, message))
    return out


def test_data_errors_are_one_line(tmp_path):
    from glean_sr.data.image_sets import ImageSet

    for source, message in _bad_sources(tmp_path):
        with pytest.raises(DataError, match=message) as info:
            ImageSet(source, resolution=RES)
        assert "\n" not in str(info.value), source


# -- augmentation --------------------------------------------------------------------------------


def test_augment_with_p_zero_is_the_identity():
    from glean_sr.training.augment import Augment

    x = torch.randn(4, 3, RES, RES)
    state = torch.get_rng_state()
    assert Augment(AUGMENT_OPS, p=0.0)(x) is x
    assert Augment((), p=1.0)(x) is x
    assert torch.equal(torch.get_rng_state(), state)  # and draws nothing


def test_translation_shifts_by_whole_pixels():
    from glean_sr.training.augment import Augment

    torch.manual_seed(0)
    x = torch.randn(64, 3, RES, RES)
    out = Augment(["translation"], p=1.0)(x)
    m = RES // 8  # at most 1/8 of the size: the interior never needs padding
    inner = out[:, :, m:-m, m:-m]
    shifts = []
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(-m, m + 1)
            for dx in range(-m, m + 1)
            if torch.allclose(
                inner[i], x[i, :, m + dy : RES - m + dy, m + dx : RES - m + dx], atol=1e-5
            )
        ]
        assert len(found) == 1, (i, found)
        shifts.append(found[0])
    assert len(set(shifts)) >= 10  # many of the 25 possible shifts occur
    assert (0, 0) in shifts and any(abs(dy) == m for dy, _ in shifts)


def test_augment_is_differentiable():
    from glean_sr.training.augment import Augment

    torch.manual_seed(1)
    x = torch.randn(8, 3, RES, RES, requires_grad=True)
    weights = torch.randn(8, 3, RES, RES)
    (Augment(AUGMENT_OPS, p=1.0)(x) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # geometric ops resample: every output pixel is a convex combination of input pixels
    x.grad = None
    out = Augment(["xflip", "translation", "scale", "rotation"], p=1.0)(x)
    out.sum().backward()
    assert x.grad.sum().item() == pytest.approx(out.numel(), rel=1e-4)


def test_cutout_zeroes_a_quarter_square():
    from glean_sr.training.augment import Augment

    torch.manual_seed(2)
    n = 200
    out = Augment(["cutout"], p=1.0)(torch.ones(n, 3, RES, RES))
    assert torch.all((out == 0) | (out == 1))
    assert torch.equal(out[:, :1].expand_as(out), out)  # the same square in every channel
    inside = 0
    for mask in (out[:, 0] == 0).numpy():
        ys, xs = np.nonzero(mask)
        assert len(ys) > 0  # the centre is always inside the image
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert mask[y0:y1, x0:x1].all() and mask.sum() == (y1 - y0) * (x1 - x0)  # a rectangle
        assert y1 - y0 <= RES // 2 and x1 - x0 <= RES // 2
        if y0 > 0 and x0 > 0 and y1 < RES and x1 < RES:  # not clipped by the border
            assert mask.sum() == RES * RES // 4
            inside += 1
    assert inside > 20


def test_each_op_applies_with_probability_p():
    from glean_sr.training.augment import Augment

    torch.manual_seed(3)
    x = torch.zeros(1000, 1, 4, 4)
    changed = (Augment(["brightness"], p=0.3)(x) != 0).flatten(1).any(1).float().mean()
    assert 0.25 < changed.item() < 0.35


def test_adaptive_p_moves_by_images_over_speed():
    from glean_sr.training.augment import AdaptiveP

    ada = AdaptiveP(target=0.6, speed_kimg=2.0, max_p=0.5)
    step = 64 / 2000  # 64 images at 2 kimg per unit of p
    assert ada.adjust(0.1, sign_sum=8, count=10, images=64) == pytest.approx(0.1 + step)
    assert ada.last_rt == 0.8
    assert ada.adjust(0.1, sign_sum=2, count=10, images=64) == pytest.approx(0.1 - step)
    assert ada.adjust(0.1, sign_sum=-10, count=10, images=64) == pytest.approx(0.1 - step)
    assert ada.adjust(0.1, sign_sum=6, count=10, images=64) == 0.1  # on target: stays
    assert ada.adjust(0.49, sign_sum=10, count=10, images=64) == 0.5  # clamped to max_p
    assert ada.adjust(0.01, sign_sum=0, count=10, images=64) == 0.0  # and to 0
    assert ada.adjust(0.3, sign_sum=0, count=0, images=64) == 0.3  # nothing measured
    ada.accumulate(torch.tensor([[1.5], [-0.2], [3.0]]))
    ada.accumulate(torch.tensor([[0.7]]))
    assert (ada.sign_sum, ada.count) == (2.0, 4)
    ada.reset()
    assert (ada.sign_sum, ada.count) == (0.0, 0)


# -- a run end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, images) -> dict[str, Any]:
    """Ten steps through the CLI: checkpoints and samples at steps 5 and 10. FID (two 512 x 512
    eigendecompositions) is left to the torchrun test."""
    root = tmp_path_factory.mktemp("bank_run")
    data = recipe_dict(root / "run", images, train={"fid_kimg": 0})
    recipe = write_recipe(root / "bank.toml", data)
    threads = torch.get_num_threads()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = main(["train-bank", str(recipe)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return {"root": root, "run": root / "run", "recipe": recipe, "stdout": out.getvalue()}


def test_run_writes_checkpoint_bank_samples_and_log(trained):
    run = trained["run"]
    assert trained["stdout"] == f"finished at 0.04 kimg; bank in {run / 'bank'}\n"
    lines = (run / "log.jsonl").read_text().splitlines()
    events = [_strict_json(line) for line in lines]  # tools other than Python read it too
    assert events[0]["event"] == "start" and events[0]["processes"] == 1
    assert events[0]["images"] == 16 and events[0]["batch_per_process"] == BATCH
    train = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train] == list(range(1, 11))
    assert [e["kimg"] for e in train] == pytest.approx([s * STEP_KIMG for s in range(1, 11)])
    for e in train:
        assert e["img_s"] > 0 and e["sec_per_kimg"] == pytest.approx(1000 / e["img_s"])
        assert {"loss_g", "loss_d_real", "loss_d_fake", "score_real", "score_fake"} <= set(e)
        assert all(math.isfinite(v) for v in e.values() if isinstance(v, float))
    # lazy regularisation: R1 and path length every 2nd step (steps 0, 2, ... -> logged at 1, 3)
    assert [e["step"] for e in train if "r1_penalty" in e] == [1, 3, 5, 7, 9]
    assert [e["step"] for e in train if "pl_penalty" in e] == [1, 3, 5, 7, 9]
    # ADA: p moves every 2 steps by 2 * 4 images / 100 images
    ps = [e["augment_p"] for e in train]
    assert ps[0] == 0.0 and ps[-1] > 0
    moves = [round(b - a, 9) for a, b in itertools.pairwise(ps)]
    assert set(moves) <= {0.0, 0.08, -0.08} and moves[1::2] == [0.0] * 4, moves
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [5, 10]
    assert not [e for e in events if e["event"] == "fid"]
    assert events[-1]["event"] == "final" and events[-1]["step"] == 10
    fakes = sorted(p.name for p in (run / "samples").glob("fakes*.png"))
    assert len(fakes) == 3, fakes  # at 0, 5 and 10 steps, one grid each
    assert (run / "samples" / "reals.png").is_file()
    grid = np.asarray(Image.open(run / "samples" / fakes[-1]))
    assert grid.shape == (8 * RES, 8 * RES, 3)
    saved = load_bank_recipe(run / "recipe.toml")
    assert saved == bank_recipe_from_dict(load_checkpoint(run / "last.pt")["recipe"])


def test_bank_directory_is_the_ema_generator(trained):
    import glean_sr

    state = load_checkpoint(trained["run"] / "last.pt")
    assert state["kind"] == "bank" and state["step"] == 10 and state["nimg"] == 40
    bank = glean_sr.load_bank(trained["run"] / "bank")
    assert bank.format == "glean-sr train-bank" and bank.ema is True
    assert bank.config.resolution == RES and bank.config.channels == dict(TABLE)
    sd = bank.generator.state_dict()
    assert sd.keys() == state["G_ema"].keys()
    for key, value in state["G_ema"].items():
        assert torch.equal(sd[key], value), key
    assert not all(torch.equal(state["G"][k], v) for k, v in state["G_ema"].items())
    assert torch.equal(bank.generator.stored_w_avg, state["w_avg"])
    assert state["w_avg"].abs().sum() > 0
    for key, value in state["D"].items():
        assert torch.equal(bank.discriminator.state_dict()[key], value), key
    # the file generates (it is not left in training's activation modulation)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    img = bank.generator.generate(z, noise_mode="const")
    assert img.shape == (2, 3, RES, RES) and torch.isfinite(img).all()


def test_bank_works_with_sample_bank_and_convert_bank(trained, tmp_path, capsys):
    import glean_sr

    bank_dir = trained["run"] / "bank"
    grid = tmp_path / "grid.png"
    assert main(["sample-bank", str(bank_dir), "-o", str(grid), "--num", "4"]) == 0
    assert "stored w_avg" in capsys.readouterr().out
    assert np.asarray(Image.open(grid)).shape == (2 * RES, 2 * RES, 3)
    assert main(["sample-bank", str(bank_dir), "-o", str(tmp_path / "t.png"),
                 "--truncation", "0.5"]) == 0  # fmt: skip
    copy = tmp_path / "copy"
    assert main(["convert-bank", str(bank_dir), str(copy)]) == 0
    a, b = glean_sr.load_bank(bank_dir), glean_sr.load_bank(copy)
    assert a.generator.config == b.generator.config
    for key, value in a.generator.state_dict().items():
        assert torch.equal(b.generator.state_dict()[key], value), key
    assert torch.equal(a.generator.stored_w_avg, b.generator.stored_w_avg)
    for key, value in a.discriminator.state_dict().items():
        assert torch.equal(b.discriminator.state_dict()[key], value), key


def test_bank_is_the_frozen_bank_of_a_glean(trained):
    import glean_sr
    from glean_sr.weights.banks import build_glean_from_bank

    bank_dir = trained["run"] / "bank"
    bank = glean_sr.load_bank(bank_dir)
    model = build_glean_from_bank(bank, in_size=8, rrdb_channels=4, num_rrdbs=1).eval()
    assert model.generator is bank.generator
    with torch.no_grad():
        sr = model(torch.rand(1, 3, 8, 8) * 2 - 1)
    assert sr.shape == (1, 3, RES, RES) and torch.isfinite(sr).all()


@pytest.mark.slow
def test_glean_trains_around_the_bank(trained, tmp_path):
    """``glean-sr train`` takes the directory as its frozen bank and its discriminator."""
    import glean_sr
    from glean_sr.config import config_to_dict
    from glean_sr.training.loop import train
    from glean_sr.training.recipe import recipe_from_dict
    from glean_sr.weights.banks import build_glean_from_bank

    bank_dir = trained["run"] / "bank"
    bank = glean_sr.load_bank(bank_dir)
    model = build_glean_from_bank(bank, in_size=8, rrdb_channels=4, num_rrdbs=1)
    cfg = {k: v for k, v in config_to_dict(model.config).items() if v is not None}
    cfg.pop("model_type")
    cfg["channel_table"] = [[int(r), w] for r, w in cfg["channel_table"].items()]  # TOML pairs
    sets = make_image_set(tmp_path / "sr", 4, gt_size=RES, lq_size=8, seed=0)
    data = tiny_recipe_dict(
        tmp_path, bank=bank_dir, train_set=sets, val_set=None, optim={"total_steps": 1}
    )
    data["model"] = {"type": "glean", **cfg}
    data["bank"]["channel_order"] = ""  # a bank directory is RGB by construction
    data["train"]["batch_size"] = 2
    summary = train(recipe_from_dict(data))
    assert summary["finished"]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    for key, value in bank.generator.state_dict().items():
        assert torch.equal(state["model"][f"generator.{key}"], value), key


def test_resume_refuses_other_runs_and_accepts_how_it_runs(trained, tmp_path, capsys):
    moved = tmp_path / "moved"  # a run folder resumes wherever it is now
    shutil.copytree(trained["run"], moved)
    assert "cannot resume" in _one_line_error(
        capsys, ["train-bank", str(moved), "--resume", "loss.r1_gamma=2"]
    )
    assert "already holds a run" in _one_line_error(
        capsys, ["train-bank", str(trained["recipe"]), f"out_dir={moved}"]
    )
    assert main(["train-bank", str(moved), "--resume", "train.threads=2",
                 f"optim.total_kimg={12 * STEP_KIMG}"]) == 0  # fmt: skip
    assert "finished at 0.048 kimg" in capsys.readouterr().out
    events = read_log(moved)
    resume = [e for e in events if e["event"] == "resume"][-1]
    assert resume["step"] == 10 and resume["threads"] == 2
    assert {"train.threads", "optim.total_kimg"} <= set(resume["recipe_changes"])
    assert [e["step"] for e in events if e["event"] == "train"][-2:] == [11, 12]
    assert load_checkpoint(moved / "last.pt")["step"] == 12


def test_per_process_batch_must_suit_the_minibatch_std(images, tmp_path, monkeypatch):
    """The global batch 12 is a multiple of the group of 4, but 2 processes get 6 each."""
    from glean_sr.training import bank_loop
    from glean_sr.training.distributed import DistInfo

    monkeypatch.setattr(bank_loop, "init_distributed", lambda _: DistInfo(world_size=2))
    recipe = bank_recipe_from_dict(recipe_dict(tmp_path / "run", images, optim={"batch_size": 12}))
    with pytest.raises(ConfigError, match=r"6 images per process, .*mbstd_group_size 4"):
        bank_loop.train_bank(recipe)
    assert not (tmp_path / "run").exists()


# -- exact resume, SIGTERM, torchrun (subprocesses) ------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["GLEAN_SR_OFFLINE"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _wait_for_checkpoint(proc: subprocess.Popen, log: Path, timeout: float = 300) -> int:
    """The step of the first checkpoint event (``last.pt`` is complete by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-3000:]}")
        if log.is_file():
            for line in log.read_text().splitlines():
                event = json.loads(line) if line.endswith("}") else {}
                if event.get("event") == "checkpoint":
                    return event["step"]
        time.sleep(0.02)
    raise AssertionError("no checkpoint was written in time")


def _long_run(tmp: Path, images: Path, name: str) -> tuple[dict[str, Any], Path]:
    """A run far longer than the test waits, checkpointing every 4 steps (so right after an ADA
    adjustment: the measured r_t must survive the resume); no samples or FID."""
    data = recipe_dict(
        tmp / name,
        images,
        optim={"total_kimg": 1000 * STEP_KIMG},
        train={"checkpoint_kimg": 4 * STEP_KIMG, "sample_kimg": 0, "fid_kimg": 0},
    )
    return data, write_recipe(tmp / f"{name}.toml", data)


def _step_records(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Per step, what the last segment logged, without the timings."""
    return {
        e["step"]: {k: v for k, v in e.items() if k not in ("img_s", "sec_per_kimg")}
        for e in read_log(out_dir)
        if e["event"] == "train"
    }


@pytest.mark.slow
def test_resume_after_sigkill_continues_the_same_run(images, tmp_path):
    killed, killed_recipe = _long_run(tmp_path, images, "killed")
    proc = subprocess.Popen(
        [*ENTRY, "train-bank", str(killed_recipe)],
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
    start = load_checkpoint(Path(killed["out_dir"]) / "last.pt")["step"]
    assert start > 0 and start % 4 == 0
    stop = f"train.stop_at_kimg={(start + 4) * STEP_KIMG}"

    # the uninterrupted run, to 4 steps past the checkpoint the kill left behind
    _, reference_recipe = _long_run(tmp_path, images, "reference")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train-bank", str(reference_recipe), stop]) == 0
        assert main(["train-bank", killed["out_dir"], "--resume", stop]) == 0

    events = read_log(killed["out_dir"])
    assert [e["step"] for e in events if e["event"] == "resume"] == [start]
    assert not list(Path(killed["out_dir"]).glob("*.tmp"))  # a write the kill cut is cleared
    ref, new = _step_records(tmp_path / "reference"), _step_records(Path(killed["out_dir"]))
    assert set(range(start + 1, start + 5)) <= set(new)
    for step in range(start + 1, start + 5):
        assert new[step] == ref[step], (step, new[step], ref[step])
    assert {"r1_penalty", "pl_penalty"} <= set(ref[start + 1]) | set(ref[start + 2])
    assert any(ref[s]["augment_p"] > 0 for s in range(start + 1, start + 5))  # ADA is on
    assert "r_t" in new[start + 1]  # measured at step `start`, before the kill
    # and every weight, optimiser moment and statistic after the last step is bitwise the same
    a = load_checkpoint(tmp_path / "reference" / "last.pt")
    b = load_checkpoint(Path(killed["out_dir"]) / "last.pt")
    assert a["step"] == b["step"] == start + 4
    for key in ("G", "D", "G_ema"):
        for name, value in a[key].items():
            assert torch.equal(b[key][name], value), (key, name)
    for key in ("w_avg", "pl_mean"):
        assert torch.equal(a[key], b[key]), key
    assert a["augment_p"] == b["augment_p"]
    for key in ("opt_g", "opt_d"):
        for i, moments in a[key]["state"].items():
            for name, value in moments.items():
                assert torch.equal(b[key]["state"][i][name], value), (key, i, name)


@pytest.mark.slow
def test_sigterm_stops_with_a_checkpoint_and_says_how_to_resume(images, tmp_path):
    data, recipe = _long_run(tmp_path, images, "run")
    out_dir = Path(data["out_dir"])
    proc = subprocess.Popen(
        [*ENTRY, "train-bank", str(recipe)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_checkpoint(proc, out_dir / "log.jsonl")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    events = read_log(out_dir)
    stopped = [e for e in events if e["event"] == "stopped"]
    assert len(stopped) == 1 and events[-1] == stopped[0]
    state = load_checkpoint(out_dir / "last.pt")
    assert state["step"] == stopped[0]["step"] > 0
    assert events[-2]["event"] == "checkpoint" and events[-2]["step"] == state["step"]
    kimg = state["step"] * STEP_KIMG
    assert f"stopped at {kimg:g} kimg" in stdout
    assert f"continue with: glean-sr train-bank {out_dir} --resume" in stdout
    assert (out_dir / "bank" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_process_torchrun(images, tmp_path, capsys):
    data = recipe_dict(
        tmp_path / "run",
        images,
        optim={"batch_size": 2 * BATCH, "total_kimg": 3 * 2 * STEP_KIMG},
        train={"log_kimg": 2 * STEP_KIMG, "sample_kimg": 0, "fid_kimg": 3 * 2 * STEP_KIMG},
    )
    recipe = write_recipe(tmp_path / "ddp.toml", data)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "glean_sr", "train-bank", str(recipe)]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished at 0.024 kimg") == 1  # rank 0 alone reports
    assert "0.024 kimg: FID " in done.stdout and "; last FID " in done.stdout
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 3 and len(state["per_process"]) == 2
    rng = [p["rng"]["torch"] for p in state["per_process"]]
    assert not torch.equal(rng[0], rng[1])  # each process draws its own latents
    events = read_log(tmp_path / "run")
    start = events[0]
    assert start["processes"] == 2 and start["batch_per_process"] == BATCH
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3]
    fids = [e for e in events if e["event"] == "fid"]
    assert [e["step"] for e in fids] == [3] and fids[0]["fid"] > 0
    assert state["history"]["fid"] == [[pytest.approx(0.024), fids[0]["fid"]]]

    import glean_sr

    bank = glean_sr.load_bank(tmp_path / "run" / "bank")
    for key, value in state["G_ema"].items():
        assert torch.equal(bank.generator.state_dict()[key], value), key
    # one process cannot continue what two computed
    err = _one_line_error(
        capsys,
        ["train-bank", str(tmp_path / "run"), "--resume", f"optim.total_kimg={8 * STEP_KIMG}"],
    )
    assert "written by 2 process(es)" in err


# -- download-free FID features ------------------------------------------------------------------


def test_random_features_are_fixed_and_channel_agnostic():
    from glean_sr.evaluation.domain_features import RandomFeatures, load_feature_network

    torch.manual_seed(1)
    a = RandomFeatures()
    torch.manual_seed(2)
    b = load_feature_network("random")
    assert b.name == "random-conv-512"
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
    grey = torch.rand(3, 1, RES, RES)
    f = a(grey)
    assert f.shape == (3, 512)
    assert torch.equal(f, a(grey.expand(-1, 3, -1, -1)))
    assert torch.equal(f, b(grey))
    assert not torch.equal(f[0], f[1])
    with pytest.raises(ConfigError, match="not 'random' and not a classifier directory"):
        load_feature_network("/no/such/classifier")


@pytest.mark.slow
def test_random_feature_fid_separates_sets():
    from glean_sr.evaluation.domain_features import RandomFeatures
    from glean_sr.evaluation.fid import FeatureStats, frechet_distance, sqrt_psd

    net = RandomFeatures()

    def stats(u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = FeatureStats(512)
        s.add(net(torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255))
        return s.mean_cov()

    blobs = stats(_images(32, seed=10, channels=3))
    more_blobs = stats(_images(32, seed=11, channels=3))
    rng = np.random.default_rng(12)
    noise = stats(rng.integers(0, 256, (32, RES, RES, 3), dtype=np.uint8))
    root = sqrt_psd(blobs[1])  # one decomposition of the reference for all three
    same = frechet_distance(*blobs, *blobs, sqrt_cov1=root)
    alike = frechet_distance(*blobs, *more_blobs, sqrt_cov1=root)
    other = frechet_distance(*blobs, *noise, sqrt_cov1=root)
    assert abs(same) < 1e-6 * other
    assert 0 < alike < other / 4


def test_untrained_bank_is_the_runs_starting_point(tmp_path, images, capsys):
    from glean_sr import load_bank
    from glean_sr.training.bank_loop import build_networks

    recipe_file = tmp_path / "bank.toml"
    write_recipe(recipe_file, recipe_dict(tmp_path / "run", images))
    assert main(["train-bank", str(recipe_file), "--untrained", str(tmp_path / "random")]) == 0
    assert "untrained bank" in capsys.readouterr().out
    bank = load_bank(str(tmp_path / "random"))
    start = build_networks(load_bank_recipe(recipe_file), torch.device("cpu"))
    for mine, theirs in ((bank.generator, start.G), (bank.discriminator, start.D)):
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        assert all(
            torch.equal(a, b)
            for a, b in zip(mine.state_dict().values(), theirs.state_dict().values(), strict=True)
        )
    err = _one_line_error(
        capsys, ["train-bank", str(recipe_file), "--untrained", str(tmp_path / "random")]
    )
    assert "--overwrite" in err


def test_init_starts_from_a_bank_and_warms_a_fresh_discriminator_up(trained, tmp_path, capsys):
    """init.bank starts G, G_ema, w_avg (and D when the bank has one) from a trained bank; a bank
    without D (as inside a restorer) gets a fresh D and D-only steps that leave G untouched."""
    from glean_sr import load_bank
    from glean_sr.weights.banks import LoadedBank

    images = Path(load_bank_recipe(trained["recipe"]).data.source)
    source = load_bank(trained["run"] / "bank")
    no_d = LoadedBank(
        generator=source.generator,
        discriminator=None,
        source="test",
        format="glean-sr train-bank",
        source_channel_order="RGB",
        ema=True,
    ).save(tmp_path / "no_d")
    warm = 3 * STEP_KIMG
    data = recipe_dict(
        tmp_path / "run",
        images,
        init={"bank": str(no_d), "d_warmup_kimg": warm},
        optim={"total_kimg": 4 * STEP_KIMG},
        train={"fid_kimg": 0, "checkpoint_kimg": 3 * STEP_KIMG, "stop_at_kimg": warm},
    )
    assert main(["train-bank", str(write_recipe(tmp_path / "b.toml", data))]) == 0
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 3
    start = source.generator.state_dict()
    for key in ("G", "G_ema"):  # three D-only steps: the generator is where it started
        assert all(torch.equal(state[key][k], v) for k, v in start.items()), key
    assert not all(  # D is not the source's (it had none): a fresh one, trained
        torch.equal(state["D"][k], v) for k, v in source.discriminator.state_dict().items()
    )
    events = read_log(tmp_path / "run")
    assert "D starts fresh" in " ".join(events[0]["init"])
    train = [e for e in events if e["event"] == "train"]
    assert all("loss_g" not in e for e in train) and all("loss_d_real" in e for e in train)

    # with its discriminator, D starts from it too; G moves from the first step
    data["init"] = {"bank": str(trained["run"] / "bank")}
    data["out_dir"] = str(tmp_path / "run2")
    data["optim"]["total_kimg"] = STEP_KIMG
    data["train"].update(checkpoint_kimg=STEP_KIMG, stop_at_kimg=0)
    assert main(["train-bank", str(write_recipe(tmp_path / "c.toml", data))]) == 0
    events = read_log(tmp_path / "run2")
    assert "D starts from its discriminator" in events[0]["init"]
    assert "loss_g" in next(e for e in events if e["event"] == "train")

    # ... unless the recipe asks for a fresh one
    from glean_sr.training.bank_loop import build_networks, start_from_bank

    data["init"]["discriminator"] = False
    recipe = bank_recipe_from_dict(data)
    nets = build_networks(recipe, torch.device("cpu"))
    fresh = {k: v.clone() for k, v in nets.D.state_dict().items()}
    notes = start_from_bank(nets, data["init"]["bank"], recipe)
    assert "init.discriminator is false" in notes[-1]
    assert all(torch.equal(nets.D.state_dict()[k], v) for k, v in fresh.items())

    # another architecture is one line
    data["generator"]["style_channels"] = 8
    data["out_dir"] = str(tmp_path / "run3")
    err = _one_line_error(capsys, ["train-bank", str(write_recipe(tmp_path / "d.toml", data))])
    assert "init.bank" in err and "style_channels" in err


def test_resume_falls_back_past_a_damaged_checkpoint_and_clears_interrupted_writes(
    trained, tmp_path, capsys
):
    """The run keeps last.pt and last.1.pt; a truncated last.pt resumes from last.1.pt (saying
    so), and the temporary file of a write a kill cut short is removed when the run restarts."""
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    assert load_checkpoint(run / "last.1.pt")["step"] == 5  # the checkpoint before step 10
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:1000])
    (run / "last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (run / "bank" / ".model.safetensors.x.tmp").write_bytes(b"")  # not this command's target
    stop = f"train.stop_at_kimg={6 * STEP_KIMG}"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["train-bank", str(run), "--resume", stop]) == 0
    events = read_log(run)
    resumed = [e for e in events if e["event"] == "resume"]
    assert [e["step"] for e in resumed] == [5]
    notes = " ".join(resumed[0]["recovery"])
    assert "removed last.pt.k1ll3d.tmp" in notes and "skipped" in notes and "last.pt" in notes
    assert "resumed from last.1.pt" in notes and "resumed from last.1.pt" in out.getvalue()
    assert "kept the skipped last.pt as last.pt.damaged" in notes
    assert not list(run.glob("*.tmp"))
    assert (run / "last.pt.damaged").stat().st_size == 1000  # nothing is deleted
    assert load_checkpoint(run / "last.pt")["step"] == 6
    assert load_checkpoint(run / "last.1.pt")["step"] == 5


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_train_and_log_finite_losses(tmp_path, images, precision):
    """Autocast forward passes (R1 stays fp32): a few steps give finite losses and a bank."""
    data = recipe_dict(
        tmp_path / "run",
        images,
        optim={"total_kimg": 3 * STEP_KIMG},
        train={"precision": precision, "fid_kimg": 0, "sample_kimg": 0},
    )
    recipe = write_recipe(tmp_path / "bank.toml", data)
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train-bank", str(recipe)]) == 0
    finally:
        torch.set_num_threads(threads)
    train = [e for e in read_log(tmp_path / "run") if e["event"] == "train"]
    assert len(train) == 3
    assert all(math.isfinite(e["loss_g"]) and math.isfinite(e["loss_d_real"]) for e in train)
    assert (tmp_path / "run" / "bank" / "model.safetensors").is_file()
