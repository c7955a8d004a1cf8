"""LightGLEAN (TPAMI 2023, Sec. 4): Table 1 sizes, the pruned bank, the model contract, files."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli, set_noise_strengths
from glean_sr import PRESETS, load_model
from glean_sr.analysis import complexity
from glean_sr.config import LightGLEANConfig, StyleGAN2Config
from glean_sr.errors import ConfigError
from glean_sr.models import LightGLEAN, StyleGAN2Generator
from glean_sr.models.registry import build_model
from glean_sr.weights.banks import build_lightglean_from_bank
from glean_sr.weights.glean_format import infer_config

TINY_LIGHT = LightGLEANConfig(
    in_size=8,
    out_size=32,
    rrdb_channels=8,
    num_rrdbs=1,
    style_channels=16,
    num_mlps=2,
    decoder_reduction=8,
    head_channels=4,
)


@pytest.fixture(scope="module")
def tiny_light():
    torch.manual_seed(0)
    return set_noise_strengths(LightGLEAN(TINY_LIGHT).eval(), 0.1)


def test_table_1_sizes_and_flops():
    """64 -> 1024: parts within 2 % of Table 1, FLOPs within 5 % of 98.24 G under the
    convention that gives GLEAN 64 -> 1024 its 277.5 G."""
    light = complexity(build_model(PRESETS["lightglean_ffhq_16x"].config, device="meta"))
    glean = complexity(build_model(PRESETS["glean_ffhq_16x"].config, device="meta"))
    assert glean["macs_modules"] / 1e9 == pytest.approx(277.5, rel=0.005)
    params = light["params"]
    assert params["encoder"] / 1e6 == pytest.approx(23.7, rel=0.02)
    assert params["bank"] / 1e6 == pytest.approx(10.9, rel=0.02)
    assert params["decoder"] / 1e6 == pytest.approx(1.7, rel=0.02)
    assert params["total"] == params["encoder"] + params["bank"] + params["decoder"]
    assert light["macs_modules"] / 1e9 == pytest.approx(98.24, rel=0.05)
    # the paper's headline ratios: 21 % of the parameters, 35 % of the FLOPs
    assert params["total"] / glean["params"]["total"] == pytest.approx(0.21, abs=0.01)
    assert light["macs_modules"] / glean["macs_modules"] == pytest.approx(0.35, abs=0.02)


@pytest.mark.slow
def test_info_cli_prints_parts_and_macs_for_both_families():
    for name in ("lightglean_ffhq_16x", "glean_ffhq_16x"):
        result = run_cli("info", name, "--json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert set(info["params"]) == {"encoder", "bank", "decoder", "total"}
        assert info["macs"] > info["macs_modules"] > 0
    assert info["model_type"] == "glean"


def test_pruned_bank_keeps_full_keys_and_computes_the_same_blocks():
    torch.manual_seed(0)
    cfg = StyleGAN2Config(resolution=32, style_channels=16, num_mlps=2)
    full = StyleGAN2Generator(cfg).eval()
    model = build_lightglean_from_bank(full, in_size=8, rrdb_channels=8, num_rrdbs=1)
    pruned = model.generator
    full_sd, pruned_sd = full.state_dict(), pruned.state_dict()
    assert set(pruned_sd) < set(full_sd)
    assert not any(k.startswith(("generator.conv1", "constant_input")) for k in pruned_sd)
    assert "convs.0.conv.weight_orig" in pruned_sd  # the block at in_size = 8 is kept
    for k, v in pruned_sd.items():
        assert torch.equal(v, full_sd[k]), k
    ws = torch.randn(2, cfg.num_latents, 16)
    x = torch.randn(2, 512, 4, 4)
    with torch.no_grad():
        for res in (8, 16, 32):
            a, b = full.style_block(res, x, ws), pruned.style_block(res, x, ws)
            assert torch.equal(a, b)
            x = a
    with pytest.raises(ValueError, match="needs the full generator"):
        pruned.generate(torch.randn(1, 16))


def test_forward_contract_frozen_bank_and_trainable_codes(tiny_light):
    lq = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        sr = tiny_light(lq)
    assert sr.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"input must be \[N, 3, 8, 8\]"):
        tiny_light(torch.zeros(1, 3, 16, 16))
    model = LightGLEAN(TINY_LIGHT).train()
    assert not model.generator.training
    model(lq).square().mean().backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert model.latent_codes.z.grad is not None and model.latent_codes.z.grad.abs().sum() > 0
    bank_ids = {id(p) for p in model.generator.parameters()}
    assert not any(id(p) in bank_ids for p in model.trainable_parameters())


def test_same_codes_for_every_input(tiny_light):
    """The latent codes do not depend on the input: batch items are independent."""
    lq = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        batch = tiny_light(lq)
        single = torch.cat([tiny_light(lq[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)


def test_saved_and_bare_files_load_without_sizes(tiny_light, tmp_path):
    tiny_light.save_pretrained(tmp_path / "light")
    again = load_model(tmp_path / "light")
    assert isinstance(again, LightGLEAN) and again.config == TINY_LIGHT
    torch.save(tiny_light.state_dict(), tmp_path / "light.pth")
    bare = load_model(tmp_path / "light.pth")
    assert bare.config == TINY_LIGHT
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(lq), tiny_light(lq))
        assert torch.equal(bare(lq), tiny_light(lq))


@pytest.mark.parametrize(
    "name", [n for n, p in PRESETS.items() if p.config.model_type == "lightglean"]
)
def test_presets_build_without_download_and_infer_back(name):
    model = build_model(PRESETS[name].config, device="meta")
    assert infer_config(model.state_dict()) == PRESETS[name].config
    assert PRESETS[name].url is None


def test_invalid_configs():
    with pytest.raises(ConfigError, match="power of two"):
        LightGLEANConfig(in_size=4, out_size=64)  # the bank's first block needs in_size / 2 >= 4
    with pytest.raises(ConfigError, match="decoder_reduction"):
        LightGLEANConfig(in_size=16, out_size=64, decoder_reduction=3)


@pytest.mark.slow
def test_upscale_cli_runs_a_lightglean(tiny_light, tmp_path):
    import numpy as np
    from PIL import Image
    from skimage import data

    tiny_light.save_pretrained(tmp_path / "light")
    Image.fromarray(data.chelsea()[:64, 100:164]).resize((8, 8), Image.BICUBIC).save(
        tmp_path / "cat.png"
    )
    result = run_cli(
        "upscale",
        str(tmp_path / "cat.png"),
        "-m",
        str(tmp_path / "light"),
        "-o",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "out" / "cat_x4.png"))
    assert out.shape == (32, 32, 3)


@pytest.mark.slow
def test_short_training_run_lowers_the_loss(tmp_path):
    """The training pipeline (glean-sr train's loop) on a tiny LightGLEAN and real photos."""
    from glean_sr.training.loop import train
    from glean_sr.training.recipe import recipe_from_dict
    from training_helpers import (
        make_image_set,
        read_log,
        tiny_recipe_dict,
        train_losses,
        write_bank_file,
    )

    bank = tmp_path / "stylegan2-tiny.pth"
    bank_sd = write_bank_file(bank)  # a 16 px StyleGAN2 with its discriminator
    train_set = make_image_set(tmp_path / "train", 12, gt_size=16, lq_size=8, seed=0)
    val_set = make_image_set(tmp_path / "val", 4, gt_size=16, lq_size=8, seed=1)
    data = tiny_recipe_dict(
        tmp_path,
        bank=bank,
        train_set=train_set,
        val_set=val_set,
        optim={"total_steps": 20},
        val={"interval": 20},
    )
    data["model"] = {
        "type": "lightglean",
        "in_size": 8,
        "out_size": 16,
        "rrdb_channels": 8,
        "num_rrdbs": 1,
        "style_channels": 16,
        "num_mlps": 2,
    }
    summary = train(recipe_from_dict(data))
    assert summary["finished"] and summary["step"] == 20
    events = read_log(tmp_path / "run")
    pix = [v["loss_pix"] for _, v in sorted(train_losses(events).items())]
    assert sum(pix[-3:]) / 3 < 0.8 * sum(pix[:3]) / 3, pix
    vals = [e for e in events if e["event"] == "val"]
    assert vals[-1]["psnr"] > vals[0]["psnr"], vals
    model = load_model(tmp_path / "run" / "final")
    assert isinstance(model, LightGLEAN)
    for key, value in model.generator.state_dict().items():  # the bank is the file's, untouched
        assert torch.equal(value, bank_sd[key]), key


def test_lightglean_recipe_is_glean_ffhq_16x_with_the_light_network():
    from glean_sr.training.recipe import load_recipe

    light, glean = load_recipe("lightglean_ffhq_16x"), load_recipe("glean_ffhq_16x")
    assert light.model == PRESETS["lightglean_ffhq_16x"].config
    for section in ("bank", "data", "val", "loss", "optim", "train"):
        assert getattr(light, section) == getattr(glean, section), section
