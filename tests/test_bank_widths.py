"""StyleGAN2 of any width: the three width descriptions of the configs (rosinality's channel
multiplier, NVIDIA's ``min(channel_base // res, channel_max)``, an explicit table), their JSON
round trip and validation; NVIDIA, rosinality and mmagic files of narrow widths, written the way
each format's own code writes them (tests/sg2_files.py), loaded and compared with an independent
implementation of that format's equations (tests/sg2_reference.py); GLEAN and LightGLEAN around
such banks."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest
import torch

import sg2_files as files
import sg2_reference as ref
from glean_sr import cli, load_bank
from glean_sr.config import (
    GLEANConfig,
    LightGLEANConfig,
    StyleGAN2Config,
    StyleGAN2DiscriminatorConfig,
    config_from_dict,
    config_to_dict,
)
from glean_sr.errors import ConfigError, WeightsError
from glean_sr.training.bank import load_training_bank
from glean_sr.training.recipe import load_recipe, recipe_from_dict
from glean_sr.weights.banks import build_glean_from_bank, build_lightglean_from_bank
from glean_sr.weights.glean_format import infer_glean_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SIZE, STYLE, N_MLP = 32, 16, 2
#: see test_bank_formats.py: independent fp32 implementations agree to about 1e-5
ATOL, D_ATOL = 1e-4, 1e-5
#: NVIDIA ``--cbase 1024 --cmax 64`` at 32 px: widths {4: 64, 8: 64, 16: 64, 32: 32}
NVIDIA_RULE = (1024, 64)
#: a narrow explicit table no multiplier and no NVIDIA rule gives
TABLE = {4: 32, 8: 24, 16: 16, 32: 8}


def _z(n: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, STYLE, generator=torch.Generator().manual_seed(seed))


def _img(n: int = 4, seed: int = 6) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# -- configs ---------------------------------------------------------------------------------------


def test_nvidia_rule_and_table_resolve_to_the_widths_every_network_reads():
    rule = StyleGAN2Config(resolution=SIZE, channel_base=1024, channel_max=64)
    assert rule.channels == {4: 64, 8: 64, 16: 64, 32: 32}
    assert StyleGAN2Config(resolution=SIZE, channel_table=TABLE).channels == TABLE
    # NVIDIA's config-f rule is rosinality's multiplier 2 at every resolution
    nvidia_f = StyleGAN2Config(resolution=1024, channel_base=32768, channel_max=512)
    assert nvidia_f.channels == StyleGAN2Config(resolution=1024).channels
    d = StyleGAN2DiscriminatorConfig(resolution=SIZE, channel_table=TABLE)
    assert d.channels == TABLE


@pytest.mark.parametrize(
    "widths",
    [
        {},
        {"channel_multiplier": 1},
        {"channel_base": 1024, "channel_max": 64},
        {"channel_table": TABLE},
    ],
    ids=["default", "multiplier", "nvidia-rule", "table"],
)
def test_configs_round_trip_through_json(widths):
    for config in (
        StyleGAN2Config(resolution=SIZE, style_channels=STYLE, **widths),
        StyleGAN2DiscriminatorConfig(resolution=SIZE, **widths),
        GLEANConfig(in_size=8, out_size=SIZE, **widths),
        LightGLEANConfig(in_size=8, out_size=SIZE, **widths),
    ):
        text = json.dumps(config_to_dict(config))
        back = config_from_dict(json.loads(text))
        assert back == config and back.channels == config.channels


def test_config_json_without_the_width_fields_reads_back_unchanged():
    """config.json files written before the NVIDIA rule and tables existed."""
    old = {
        "model_type": "stylegan2", "resolution": 256, "style_channels": 512, "num_mlps": 8,
        "channel_multiplier": 2, "blur_kernel": [1, 3, 3, 1], "lr_mlp": 0.01, "img_channels": 3,
    }  # fmt: skip
    config = config_from_dict(old)
    assert config == StyleGAN2Config(resolution=256)
    assert config_to_dict(config) == old  # unset width fields are not written


@pytest.mark.parametrize(
    ("widths", "message"),
    [
        ({"channel_table": {4: 32, 8: 24}}, r"channel_table .* \[4, 8, 16, 32\], got \[4, 8\]"),
        ({"channel_table": {**TABLE, 64: 4}}, r"channel_table .* got \[4, 8, 16, 32, 64\]"),
        ({"channel_table": {**TABLE, 16: 0}}, r"width at 16 px must be an integer >= 1, got 0"),
        ({"channel_table": {**TABLE, 8: 2.5}}, r"width at 8 px .* got 2.5"),
        ({"channel_table": [4, 8]}, r"channel_table must map resolutions to widths"),
        ({"channel_base": 1024}, r"channel_max must be an integer >= 1, got None"),
        ({"channel_base": 0, "channel_max": 64}, r"channel_base must be an integer >= 1, got 0"),
        ({"channel_base": 1024, "channel_max": 64, "channel_table": TABLE}, r"not both"),
        ({"channel_table": TABLE, "channel_multiplier": 1}, r"channel_multiplier must stay 2"),
        ({"channel_base": 16, "channel_max": 64}, r"width at 32 px must be an integer >= 1, got 0"),
    ],
)
def test_invalid_width_descriptions_are_refused(widths, message):
    with pytest.raises(ConfigError, match=message):
        StyleGAN2Config(resolution=SIZE, **widths)


def test_json_table_keys_must_be_resolutions():
    data = config_to_dict(StyleGAN2Config(resolution=SIZE, channel_table=TABLE))
    data["channel_table"] = {"four": 32}
    with pytest.raises(ConfigError, match="channel_table keys must be resolutions"):
        config_from_dict(data)


# -- NVIDIA ----------------------------------------------------------------------------------------


def _nvidia_snapshot(path, rule, *, recorded=None, seed=60):
    """A ``--cbase/--cmax`` training snapshot; ``recorded`` overrides the rule it records."""
    widths = files.nvidia_widths(*rule, SIZE)
    g = files.nvidia_generator_tensors(SIZE, STYLE, N_MLP, widths, seed=seed)
    d = files.nvidia_discriminator_tensors(SIZE, widths, seed=seed + 1)
    rec = recorded or rule
    snapshot = {
        "G_ema": files.nvidia_generator_object(g, SIZE, STYLE, N_MLP, widths, "", rule=rec),
        "D": files.nvidia_discriminator_object(d, SIZE, widths, "", rule=rec),
    }
    files.write_nvidia_snapshot(path, snapshot)
    return g, d


@pytest.fixture(scope="module")
def nvidia_narrow(tmp_path_factory):
    path = tmp_path_factory.mktemp("nvidia_narrow") / "network-snapshot-000040.pkl"
    g, d = _nvidia_snapshot(path, NVIDIA_RULE)
    return {"path": path, "G_ema": g, "D": d, "bank": load_bank(path)}


def test_nvidia_cbase_cmax_snapshot_loads_and_reproduces_its_images(nvidia_narrow):
    bank = nvidia_narrow["bank"]
    c = bank.config
    assert (c.channel_base, c.channel_max, c.channel_table) == (*NVIDIA_RULE, None)
    assert c.channels == files.nvidia_widths(*NVIDIA_RULE, SIZE)
    assert bank.discriminator.config.channels == c.channels
    assert "channel_base 1024, channel_max 64" in bank.describe()
    z, img = _z(), _img()
    with torch.no_grad():
        ours = bank.generator.generate(z, noise_mode="const")
        expected = ref.nvidia_generator(
            nvidia_narrow["G_ema"], z, resolution=SIZE, num_layers=N_MLP, clamp=256
        )
        assert _max_err(ours, expected) < ATOL
        logits = ref.nvidia_discriminator(nvidia_narrow["D"], img, resolution=SIZE, group_size=4)
        assert _max_err(bank.discriminator(img), logits) < D_ATOL


def test_nvidia_paper256_widths_are_channel_multiplier_1(tmp_path):
    """``--cfg paper256`` (channel_base 16384) has rosinality's multiplier-1 widths: the same
    config as a rosinality file of those widths."""
    path = tmp_path / "paper256.pkl"
    _nvidia_snapshot(path, (16384, 512))
    bank = load_bank(path)
    expected = StyleGAN2Config(resolution=SIZE, style_channels=STYLE, num_mlps=N_MLP)
    assert bank.config == expected  # below 64 px multiplier 1 and 2 are the same widths
    assert bank.config.channels == files.nvidia_widths(16384, 512, SIZE)


def test_nvidia_recorded_rule_must_agree_with_the_tensors(tmp_path):
    path = tmp_path / "lying.pkl"
    _nvidia_snapshot(path, NVIDIA_RULE, recorded=(2048, 64))
    with pytest.raises(WeightsError, match=r"recorded channel_base 2048 and channel_max 64"):
        load_bank(path)


def test_nvidia_narrow_snapshot_converts_and_samples(nvidia_narrow, tmp_path, capsys):
    out = tmp_path / "bank"
    assert cli.main(["convert-bank", str(nvidia_narrow["path"]), str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["channel_base"], saved["channel_max"]) == NVIDIA_RULE
    converted = load_bank(out)
    assert converted.config == nvidia_narrow["bank"].config
    assert converted.discriminator.config == nvidia_narrow["bank"].discriminator.config
    grid = tmp_path / "grid.png"
    assert cli.main(["sample-bank", str(out), "-o", str(grid), "--num", "2"]) == 0
    assert grid.stat().st_size > 0


# -- rosinality and mmagic -------------------------------------------------------------------------


def test_rosinality_explicit_table_loads_and_reproduces_its_images(tmp_path):
    g = files.rosinality_generator(SIZE, STYLE, N_MLP, multiplier=TABLE, seed=70)
    d = files.styled_discriminator_dict(SIZE, TABLE, seed=71)
    path = tmp_path / "narrow.pt"
    torch.save({"g_ema": g, "d": d}, path)
    bank = load_bank(path)
    assert bank.config.channel_table == tuple(TABLE.items())
    assert bank.config.channels == TABLE == bank.discriminator.config.channels
    z, img = _z(), _img()
    with torch.no_grad():
        expected = ref.styled_generator(
            g, z, names=ref.ROSINALITY_NAMES, resolution=SIZE, n_mlp=N_MLP, pixelnorm_eps=1e-8
        )
        assert _max_err(bank.generator.generate(z), expected) < ATOL
        logits = ref.styled_discriminator(d, img, names=ref.ROSINALITY_NAMES, resolution=SIZE)
        assert _max_err(bank.discriminator(img), logits) < D_ATOL


def test_rosinality_bank_directory_keeps_an_explicit_table(tmp_path):
    g = files.rosinality_generator(SIZE, STYLE, N_MLP, multiplier=TABLE, seed=72)
    torch.save(g, tmp_path / "g.pt")
    bank = load_bank(tmp_path / "g.pt")
    bank.save(tmp_path / "bank")
    saved = json.loads((tmp_path / "bank" / "config.json").read_text())
    assert saved["channel_table"] == {str(r): w for r, w in TABLE.items()}
    again = load_bank(tmp_path / "bank")
    assert again.config == bank.config
    z = _z()
    with torch.no_grad():
        assert torch.equal(again.generator.generate(z), bank.generator.generate(z))


def test_mmgen_checkpoint_of_a_narrow_table_reproduces_its_images(tmp_path):
    path = tmp_path / "narrow_mmgen.pth"
    sd = files.write_mmgen_checkpoint(
        path, size=SIZE, style_dim=STYLE, n_mlp=N_MLP, multiplier=TABLE
    )["state_dict"]
    bank = load_bank(path, channel_order="rgb")
    assert bank.config.channels == TABLE == bank.discriminator.config.channels
    g = {k[len("generator_ema.") :]: v for k, v in sd.items() if k.startswith("generator_ema.")}
    d = {k[len("discriminator.") :]: v for k, v in sd.items() if k.startswith("discriminator.")}
    z, img = _z(), _img()
    with torch.no_grad():
        expected = ref.styled_generator(
            g, z, names=ref.MMAGIC_NAMES, resolution=SIZE, n_mlp=N_MLP, pixelnorm_eps=1e-6
        )
        assert _max_err(bank.generator.generate(z), expected) < ATOL
        logits = ref.styled_discriminator(d, img, names=ref.MMAGIC_NAMES, resolution=SIZE)
        assert _max_err(bank.discriminator(img), logits) < D_ATOL


# -- GLEAN and LightGLEAN around a narrow bank -----------------------------------------------------


def _conv_widths(module: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_glean_around_a_narrow_bank_takes_the_banks_widths(nvidia_narrow):
    bank = nvidia_narrow["bank"]
    ch = bank.config.channels
    model = build_glean_from_bank(bank, 8, rrdb_channels=8, num_rrdbs=1)
    assert model.config.channels == ch and model.config.bank == bank.config
    c = model.config
    assert _conv_widths(model.encoder[0])[-1] == ch[c.in_size]  # the first encoder features
    for block, res in zip(model.encoder[1:], c.encoder_resolutions, strict=True):
        out = _conv_widths(block)[-1] if res > 4 else block[-1].in_features // 16
        assert out == ch[max(res // 2, 4)]
    fusions = [m.out_channels for m in model.fusion_out]
    assert fusions == [ch[res] for res in c.fusion_resolutions]
    lq = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        sr = model(lq)
    assert sr.shape == (1, 3, SIZE, SIZE) and torch.isfinite(sr).all()
    # the architecture reads back from the tensors alone, the widths as an explicit table
    as_table = {"channel_base": None, "channel_max": None, "channel_table": ch}
    assert infer_glean_config(model.state_dict()) == dataclasses.replace(c, **as_table)


def test_lightglean_around_a_narrow_bank_takes_the_banks_widths(nvidia_narrow):
    bank = nvidia_narrow["bank"]
    ch = bank.config.channels
    model = build_lightglean_from_bank(bank, 8, rrdb_channels=8, num_rrdbs=1)
    c = model.config
    assert c.channels == ch
    assert _conv_widths(model.encoder)[-1] == ch[c.in_size]
    assert _conv_widths(model.bank_input)[-1] == ch[c.in_size // 2]
    for block, res in zip(model.decoder[:-1], c.decoder_resolutions[:-1], strict=True):
        width = max(ch[2 * res] // c.decoder_reduction, 1)
        assert block.upsample_conv.out_channels == 4 * width  # pixel shuffle: 4 * width -> width
    assert model.decoder[-1][0].in_channels == width + ch[c.out_size]
    with torch.no_grad():
        sr = model(torch.rand(1, 3, 8, 8) * 2 - 1)
    assert sr.shape == (1, 3, SIZE, SIZE) and torch.isfinite(sr).all()


def test_training_names_the_banks_table_as_an_override_that_round_trips(tmp_path):
    """A recipe around a narrow bank: the refusal's ``model.channel_table=...`` is valid override
    syntax, and the recipe keeps the table through TOML."""
    path = tmp_path / "g.pt"
    torch.save(files.rosinality_generator(SIZE, STYLE, N_MLP, multiplier=TABLE, seed=73), path)
    model = GLEANConfig(in_size=8, out_size=SIZE, style_channels=STYLE, num_mlps=N_MLP)
    with pytest.raises(WeightsError, match="channel_table") as info:
        load_training_bank(str(path), model, need_discriminator=False, progress=False)
    overrides = re.findall(r"model\.\S+=\S+", str(info.value))
    assert overrides == ["model.channel_table=[[4,32],[8,24],[16,16],[32,8]]"]
    sizes = ["model.in_size=8", f"model.out_size={SIZE}", f"model.style_channels={STYLE}"]
    recipe = load_recipe("glean_cat_8x", [*sizes, f"model.num_mlps={N_MLP}", *overrides])
    assert recipe.model.channels == TABLE
    assert recipe_from_dict(tomllib.loads(recipe.to_toml())) == recipe
    generator, _, _ = load_training_bank(
        str(path), recipe.model, need_discriminator=False, progress=False
    )
    assert generator.config == recipe.model.bank
