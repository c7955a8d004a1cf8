"""Using a bank: bank directories (convert-bank), sample grids (sample-bank), and a GLEAN built
around a loaded bank."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sg2_files as files
from conftest import run_cli
from glean_sr import build_glean_from_bank, cli, load_bank, load_model
from glean_sr.config import GLEANConfig
from glean_sr.errors import DownloadError, WeightsError
from glean_sr.models import GLEAN
from glean_sr.weights.banks import sample_grid

SIZE, STYLE, N_MLP = 8, 16, 2


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A small NVIDIA snapshot: generator (with w_avg) and discriminator."""
    g = files.nvidia_generator_tensors(SIZE, STYLE, N_MLP, seed=50)
    d = files.nvidia_discriminator_tensors(SIZE, seed=51)
    path = tmp_path_factory.mktemp("snap") / "network-snapshot.pkl"
    files.write_nvidia_snapshot(
        path,
        {
            "G_ema": files.nvidia_generator_object(g, SIZE, STYLE, N_MLP, 2, ""),
            "D": files.nvidia_discriminator_object(d, SIZE, 2, ""),
        },
    )
    return path


@pytest.fixture(scope="module")
def bank_dir(snapshot, tmp_path_factory):
    out = tmp_path_factory.mktemp("bank") / "cat_bank"
    assert cli.main(["convert-bank", str(snapshot), str(out)]) == 0
    return out


def test_convert_bank_round_trips(snapshot, bank_dir):
    assert sorted(p.name for p in bank_dir.iterdir()) == [
        "config.json",
        "discriminator.json",
        "discriminator.safetensors",
        "model.safetensors",
    ]
    config = json.loads((bank_dir / "config.json").read_text())
    assert config["model_type"] == "stylegan2"
    assert (config["resolution"], config["style_channels"], config["num_mlps"]) == (8, 16, 2)
    original, converted = load_bank(snapshot), load_bank(bank_dir)
    for a, b in (
        (original.generator, converted.generator),
        (original.discriminator, converted.discriminator),
    ):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(original.generator.stored_w_avg, converted.generator.stored_w_avg)
    assert "w_avg" not in original.generator.state_dict()  # kept out of every state_dict
    assert converted.format == "NVIDIA pickle" and converted.ema is True
    assert converted.source_channel_order == "RGB"
    assert converted.discriminator.config == original.discriminator.config


def test_convert_bank_never_overwrites_unasked(snapshot, bank_dir, capsys):
    assert cli.main(["convert-bank", str(snapshot), str(bank_dir)]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1  # refused before loading anything


@pytest.mark.slow
def test_sample_bank_writes_the_grid_of_the_banks_images(bank_dir, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli("sample-bank", str(bank_dir), "-o", str(out), "--seed", "3", "--num", "5")
    assert result.returncode == 0, result.stderr
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape == (2 * SIZE, 3 * SIZE, 3)  # 5 images: 3 columns, 2 rows
    bank = load_bank(bank_dir)
    expected = sample_grid(bank.generator, seed=3, num=5)
    assert np.array_equal(grid, expected)
    with torch.no_grad():
        z = torch.randn(5, STYLE, generator=torch.Generator().manual_seed(3))
        first = bank.generator.generate(z[:1])[0]
    first_u8 = ((first.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(grid[:SIZE, :SIZE], first_u8)
    assert not grid[SIZE:, 2 * SIZE :].any()  # the empty cell stays black


def test_sampling_options_are_deterministic(bank_dir, tmp_path, capsys):
    generator = load_bank(bank_dir).generator
    options = {"seed": 1, "num": 2, "truncation_psi": 0.5, "noise_mode": "random"}
    first = sample_grid(generator, **options)
    assert np.array_equal(first, sample_grid(generator, **options))
    assert not np.array_equal(first, sample_grid(generator, seed=1, num=2))
    existing = tmp_path / "x.png"
    existing.write_bytes(b"")
    assert cli.main(["sample-bank", str(bank_dir), "-o", str(existing)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_a_bank_directory_is_not_a_restorer(bank_dir):
    with pytest.raises(WeightsError, match="load_bank"):
        load_model(bank_dir)


def test_bank_presets_are_downloaded_by_name():
    with pytest.raises(DownloadError, match="stylegan2_cat_256.*GLEAN_SR_OFFLINE"):
        load_bank("stylegan2_cat_256")
    with pytest.raises(WeightsError, match="stylegan2_ffhq_1024"):
        load_bank("no_such_bank")


def test_glean_built_around_a_loaded_bank(snapshot, tmp_path):
    bank = load_bank(snapshot)
    model = build_glean_from_bank(bank, in_size=4, rrdb_channels=8, num_rrdbs=1)
    expected_config = GLEANConfig(
        in_size=4, out_size=8, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2
    )
    assert model.config == expected_config
    assert model.generator is bank.generator
    assert not any(p.requires_grad for p in model.generator.parameters())
    with torch.device("meta"):
        reference_keys = GLEAN(expected_config).state_dict().keys()
    assert model.state_dict().keys() == reference_keys  # the bank's w_avg is not in the file
    lq = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model.eval()
    with torch.no_grad():
        sr = model(lq)
    assert sr.shape == (2, 3, 8, 8) and torch.isfinite(sr).all()
    model.save_pretrained(tmp_path / "glean")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "glean")(lq), sr)


def test_loaded_discriminator_trains(snapshot):
    """Issue 5 trains D from the bank's file: every parameter gets a finite gradient, and an
    input gradient exists (R1-style penalties need it)."""
    d = load_bank(snapshot).discriminator.train()
    img = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    img.requires_grad_(True)
    torch.nn.functional.softplus(-d(img)).mean().backward()
    grads = {n: p.grad for n, p in d.named_parameters()}
    assert all(
        g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values()
    )
    assert img.grad is not None and img.grad.abs().sum() > 0
