"""LightGLEAN with a BigGAN bank (BigGAN-PyTorch's or BigGAN-deep): the kept blocks compute what
the whole bank's do, the codes are shared by every input, the bank stays frozen, and the model
works with load_model, info, upscale and the training loop."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

import glean_sr
from biggan_helpers import TINY, TINY_DEEP, random_bank, random_deep_bank
from glean_sr.config import LightGLEANBigGANConfig, LightGLEANBigGANDeepConfig, config_to_dict
from glean_sr.errors import ConfigError
from glean_sr.models.light_glean_biggan import LightGLEANBigGAN
from glean_sr.models.registry import build_model
from glean_sr.presets import PRESETS
from glean_sr.training.recipe import load_recipe, recipe_from_dict
from glean_sr.weights.biggan_banks import LoadedBigGAN, build_lightglean_biggan_from_bank
from training_helpers import (
    make_image_set,
    read_log,
    tiny_recipe_dict,
    train_losses,
    write_recipe,
)


def light(config):
    """The LightGLEAN config of the same fields as a tiny GLEAN-BigGAN one."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if config.model_type == "glean_biggan_deep":
        return LightGLEANBigGANDeepConfig(**fields)
    return LightGLEANBigGANConfig(**fields)


LIGHT = light(TINY)  # 8 -> 32: keeps the blocks to 8, 16 and 32 px
LIGHT_DEEP = light(TINY_DEEP)  # 16 -> 64: keeps the blocks from 8 -> 16 on, and the attention
BANKS = {"biggan": (LIGHT, random_bank), "biggan_deep": (LIGHT_DEEP, random_deep_bank)}


@pytest.mark.parametrize("kind", list(BANKS))
def test_the_kept_blocks_compute_what_the_whole_banks_do(kind):
    """Eq. 10: the feature at in / 2 goes through the bank's blocks from in_size up, each with
    its own code; the model keeps exactly those blocks, under the whole bank's keys."""
    config, make_bank = BANKS[kind]
    whole = make_bank(1)
    model = LightGLEANBigGAN(config, bank=whole).eval()
    kept = model.generator.state_dict()
    assert set(kept) < set(whole.state_dict())
    assert all(torch.equal(v, whole.state_dict()[k]) for k, v in kept.items())
    assert model.parameter_counts()["bank"] == config.bank.parameter_count(config.in_size)
    assert config.parameter_count() == sum(p.numel() for p in model.parameters())
    lq = torch.rand(2, 3, config.in_size, config.in_size) * 2 - 1
    resolutions = config.bank.block_resolutions
    feats = {}
    with torch.no_grad():
        f0 = model.encoder(lq)
        x = mine = model.bank_input(f0)  # [N, C, in / 2, in / 2]
        for k, index in enumerate(config.bank_blocks):
            cond = model.latent_codes.conditions[k].expand(2, -1)
            x = whole.run_block(index, x, cond, config.truncation)
            mine = model.generator.run_block(index, mine, cond, config.truncation)
            assert torch.equal(mine, x) and x.shape[-1] == resolutions[index]
            if resolutions[index] > config.in_size:
                feats[resolutions[index]] = x
        torch.testing.assert_close(model(lq), model.decode(f0, feats), atol=1e-6, rtol=0)
    assert resolutions[config.bank_blocks[0]] == config.in_size
    with pytest.raises(ValueError, match="cannot sample images"):
        model.generator.generate(torch.zeros(1, 1), torch.tensor([0]))


@pytest.mark.parametrize("kind", list(BANKS))
def test_one_set_of_codes_for_every_input_and_a_frozen_bank(kind):
    config, make_bank = BANKS[kind]
    model = LightGLEANBigGAN(config, bank=make_bank(2)).train()
    assert not model.generator.training
    lq = torch.rand(3, 3, config.in_size, config.in_size) * 2 - 1
    sr = model(lq)
    assert sr.shape == (3, 3, config.out_size, config.out_size)
    with torch.no_grad():  # each input restored alone gives what it gets in the batch
        model.eval()
        alone = torch.cat([model(lq[i : i + 1]) for i in range(3)])
        together = model(lq)
        assert (alone - together).abs().max() <= 1e-4 * together.abs().max()  # float noise
        model.train()
    sr.square().mean().backward()
    assert all(p.grad is None for p in model.generator.parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.latent_codes.conditions.shape == (len(config.bank_blocks), config.bank.cond_dim)
    counts = model.parameter_counts()
    assert counts["encoder"] + counts["bank"] + counts["decoder"] == counts["total"]


def test_configs_and_presets():
    with pytest.raises(ConfigError, match=r"power of two in \[8, 1024\]"):
        dataclasses.replace(LIGHT, in_size=4)
    with pytest.raises(ConfigError, match="decoder_reduction"):
        dataclasses.replace(LIGHT_DEEP, decoder_reduction=3)
    with pytest.raises(ConfigError, match="truncation"):
        dataclasses.replace(LIGHT_DEEP, truncation=0)
    for x, in_size in ((8, 32), (4, 64)):
        preset = PRESETS[f"lightglean_biggan_imagenet_{x}x"]
        assert preset.url is None and preset.config.in_size == in_size
        glean = PRESETS[f"glean_biggan_imagenet_{x}x"].config
        assert preset.config.bank == glean.bank  # the same BigGAN 256 bank
        meta = build_model(preset.config, device="meta")
        assert preset.config.parameter_count() == sum(p.numel() for p in meta.parameters())
        r = load_recipe(f"lightglean_biggan_imagenet_{x}x")
        assert r.model == preset.config and r.data.photos and r.train.batch_size == 32
        base = load_recipe(f"glean_biggan_imagenet_{x}x")
        assert (r.loss, r.optim, r.data, r.bank) == (base.loss, base.optim, base.data, base.bank)


@pytest.mark.parametrize("kind", list(BANKS))
def test_built_around_a_loaded_bank_saved_and_loaded_back(tmp_path, kind):
    config, make_bank = BANKS[kind]
    LoadedBigGAN(generator=make_bank(3), source="test", format="test").save(tmp_path / "bank")
    bank = glean_sr.load_bank(tmp_path / "bank")
    truncation = {"truncation": config.truncation} if kind == "biggan_deep" else {}
    model = build_lightglean_biggan_from_bank(
        bank, config.in_size, rrdb_channels=8, num_rrdbs=1, **truncation
    )
    assert model.config == config and model.generator is not bank.generator
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["model_type"] == config.model_type
    again = glean_sr.load_model(tmp_path / "model")
    assert isinstance(again, LightGLEANBigGAN) and again.config == config
    lq = torch.rand(1, 3, config.in_size, config.in_size) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.eval()(lq), again(lq))
    with pytest.raises(glean_sr.GleanError, match="keeps only some blocks"):
        glean_sr.load_bank(tmp_path / "model")


def test_info_and_upscale(tmp_path, capsys):
    from glean_sr.cli import main

    LightGLEANBigGAN(LIGHT, bank=random_bank(4)).save_pretrained(tmp_path / "model")
    photos = make_image_set(tmp_path / "set", 2, gt_size=32, lq_size=8, seed=3)
    out = tmp_path / "out"
    assert main(["upscale", photos["lq_dir"], "-m", str(tmp_path / "model"), "-o", str(out)]) == 0
    results = sorted(out.iterdir())
    assert len(results) == 2 and Image.open(results[0]).size == (32, 32)
    capsys.readouterr()
    assert main(["info", "lightglean_biggan_imagenet_8x", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "lightglean_biggan" and info["config"]["in_size"] == 32
    assert set(info["params"]) == {"encoder", "bank", "decoder", "total"}
    assert 0 < info["macs_modules"] < info["macs"]
    glean = build_model(PRESETS["glean_biggan_imagenet_8x"].config, "meta").parameter_counts()
    for part in ("encoder", "bank", "decoder", "total"):  # lighter in every part
        assert info["params"][part] < glean[part], part


def test_a_short_run_on_real_photos_learns(tmp_path):
    """``glean-sr train RECIPE`` around a bank directory, GAN loss included: the discriminator
    starts from scratch, the codes and encoder learn, the bank stays."""
    from glean_sr.cli import main

    LoadedBigGAN(generator=random_bank(5), source="test", format="test").save(tmp_path / "bank")
    train_set = make_image_set(tmp_path / "train", 8, gt_size=32, lq_size=8, seed=0)
    val_set = make_image_set(tmp_path / "val", 2, gt_size=32, lq_size=8, seed=1)
    cfg = config_to_dict(LIGHT)
    data = tiny_recipe_dict(
        tmp_path,
        bank=tmp_path / "bank",
        train_set=train_set,
        val_set=val_set,
        optim={"total_steps": 12, "lr_g": 1e-3},
        val={"interval": 12},
        loss={"gan_weight": 0.01},
    )
    data["model"] = {"type": cfg.pop("model_type"), **cfg}
    data["bank"]["channel_order"] = ""
    assert recipe_from_dict(data).model == LIGHT
    assert main(["train", str(write_recipe(tmp_path / "light.toml", data))]) == 0
    events = read_log(tmp_path / "run")
    assert events[-1]["event"] == "final" and events[-1]["step"] == 12
    assert any("starts from scratch" in n for n in events[0]["bank_notes"])
    pix = [train_losses(events)[s]["loss_pix"] for s in range(1, 13)]
    assert sum(pix[-3:]) < 0.8 * sum(pix[:3]), pix
    model = glean_sr.load_model(tmp_path / "run" / "final")
    whole = random_bank(5).state_dict()
    for key, value in model.generator.state_dict().items():  # the kept blocks as they were
        assert torch.equal(value, whole[key]), key
    bank = random_bank(5)
    torch.manual_seed(0)  # the recipe's seed, as the run built its model
    first = LightGLEANBigGAN(LIGHT, bank=bank)
    assert not torch.equal(model.latent_codes.conditions, first.latent_codes.conditions)
