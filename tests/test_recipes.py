"""Recipes: the shipped ones reproduce the reference configurations; reading and overriding are
strict and typed."""

from __future__ import annotations

import math
import sys

import pytest

from conftest import run_cli
from glean_sr.config import GLEANConfig
from glean_sr.errors import ConfigError
from glean_sr.training.recipe import (
    apply_overrides,
    load_recipe,
    read_recipe_dict,
    recipe_changes,
    recipe_from_dict,
    recipe_names,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: the mmediting 0.x configurations that trained the released weights (spec section 5 and 6):
#: in, out, bank, global batch (GPUs x images per GPU), perceptual norm_img, LQ source
REFERENCE = {
    "glean_cat_8x": (32, 256, "stylegan2_cat_256", 2 * 8, False, "data/cat_train/BIx8_down"),
    "glean_ffhq_16x": (64, 1024, "stylegan2_ffhq_1024", 2 * 4, False, "data/FFHQ/BIx16_down"),
    "glean_cat_16x": (16, 256, "stylegan2_cat_256", 2 * 8, False, "data/cat_train/BIx16_down"),
    "glean_in128out1024_4x2_300k_ffhq_celebahq": (
        128,
        1024,
        "stylegan2_ffhq_1024",
        4 * 2,
        True,
        "",
    ),
}


def test_the_four_released_configurations_are_shipped():
    assert set(REFERENCE) <= set(recipe_names())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_recipe_matches_the_reference_config(name):
    in_size, out_size, bank, batch, norm_img, lq_dir = REFERENCE[name]
    r = load_recipe(name)
    assert r.model == GLEANConfig(in_size=in_size, out_size=out_size)  # all else default
    assert r.bank.source == bank
    assert r.train.batch_size == batch and r.train.grad_accum == 1
    assert r.loss.pixel_weight == 1.0
    assert r.loss.perceptual_weight == 1e-2 and r.loss.gan_weight == 1e-2
    assert r.loss.perceptual_norm_img is norm_img
    assert (r.optim.lr_g, r.optim.lr_d, r.optim.betas) == (1e-4, 1e-4, (0.9, 0.99))
    assert (r.optim.min_lr, r.optim.total_steps) == (1e-7, 300_000)
    assert r.val.interval == r.train.checkpoint_interval == 5000
    assert r.data.lq_dir == lq_dir and r.data.flip
    assert r.data.degradation == ("blind_face" if name.startswith("glean_in128") else "bicubic")
    assert r.train.precision == "fp32" and r.train.ema_decay == 0.0
    from glean_sr.presets import BANK_PRESETS, PRESETS

    # the architecture is the released model's, and the bank the one it was trained from
    assert PRESETS[name].config == r.model
    assert BANK_PRESETS[bank].config == r.model.bank


def test_recipe_round_trips_through_dict_and_toml():
    r = load_recipe("glean_cat_8x", ["train.grad_accum=2", "optim.betas=[0.5, 0.999]"])
    assert recipe_from_dict(r.to_dict()) == r
    assert recipe_from_dict(tomllib.loads(r.to_toml())) == r


def test_overrides_are_typed():
    r = load_recipe(
        "glean_cat_8x",
        [
            "train.batch_size=4",
            "loss.gan_weight=0",  # an integer where a float goes is fine
            "data.gt_dir=/data/my cats/GT",  # a bare string
            "name=123",  # a string key keeps the text
            "train.tensorboard=false",
            "model.num_rrdbs=10",
            "train.precision=bf16",
        ],
    )
    assert r.train.batch_size == 4 and r.loss.gan_weight == 0.0
    assert isinstance(r.loss.gan_weight, float)
    assert r.data.gt_dir == "/data/my cats/GT" and r.name == "123"
    assert r.train.tensorboard is False and r.model.num_rrdbs == 10
    assert r.train.precision == "bf16"


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.batchsize=4", r"unknown recipe key 'train.batchsize' \(\[train\] has: batch_size"),
        ("trian.batch_size=4", "unknown recipe section 'trian'"),
        ("train.batch_size=4.5", "train.batch_size must be an integer, got 4.5"),
        ("train.batch_size=true", "train.batch_size must be an integer"),
        ("train.tensorboard=1", "train.tensorboard must be true or false"),
        ("train.precision=fp8", "train.precision must be one of 'fp32' | 'bf16' | 'fp16'"),
        ("optim.betas=[0.9]", "optim.betas must have 2 entries"),
        ("loss.gan_weight=-1", "loss.gan_weight must be >= 0"),
        ("model.in_size=48", "in_size must be a power of two"),
        ("model.depth=3", "unknown recipe key 'model.depth'"),
        ("train.batch_size", "must look like section.key=value"),
        ("train.ema_decay=1", r"train.ema_decay must be in \[0, 1\)"),
        ("train.grad_accum=3", "must be a multiple of train.grad_accum"),
    ],
)
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_recipe("glean_cat_8x", [override])
    assert "\n" not in str(info.value)


def test_unknown_and_missing_keys_in_files_are_errors(tmp_path):
    base = read_recipe_dict("glean_cat_8x")
    for _where, edit, match in [
        ("top", lambda d: d.update(epochs=3), r"unknown key\(s\) in recipe: epochs"),
        ("data", lambda d: d["data"].update(crop=64), r"unknown key\(s\) in \[data\]: crop"),
        ("model", lambda d: d["model"].update(depth=2), r"unknown key\(s\) in \[model\]: depth"),
        ("model", lambda d: d["model"].pop("type"), 'needs type = "glean"'),
        ("train", lambda d: d["train"].pop("batch_size"), r"missing key\(s\) in \[train\]"),
        ("bank", lambda d: d.pop("bank"), r"recipe is missing \[bank\]"),
        ("type", lambda d: d["model"].update(type="vqgan"), "unknown model type 'vqgan'"),
    ]:
        data = apply_overrides(base, [])
        edit(data)
        with pytest.raises(ConfigError, match=match):
            recipe_from_dict(data)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="neither a recipe file nor a shipped recipe"):
        load_recipe("no_such_recipe")


def test_recipe_changes_lists_dotted_keys():
    a = load_recipe("glean_cat_8x").to_dict()
    b = load_recipe("glean_cat_8x", ["train.log_interval=1", "model.num_rrdbs=3"]).to_dict()
    assert recipe_changes(a, b) == ["model.num_rrdbs", "train.log_interval"]


@pytest.mark.slow
def test_cli_lists_and_prints_recipes():
    listed = run_cli("train", "--list")
    assert listed.returncode == 0 and set(REFERENCE) <= set(listed.stdout.split())
    shown = run_cli("train", "glean_ffhq_16x", "--print-recipe", "train.batch_size=4")
    assert shown.returncode == 0, shown.stderr
    data = tomllib.loads(shown.stdout)
    assert data["train"]["batch_size"] == 4 and data["model"]["in_size"] == 64
    assert math.isclose(data["optim"]["min_lr"], 1e-7)
    bad = run_cli("train", "glean_ffhq_16x", "--print-recipe", "train.batchsize=4")
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "train.batchsize" in bad.stderr
