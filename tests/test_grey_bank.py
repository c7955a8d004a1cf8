"""GLEAN around a bank trained on grey images (``img_channels = 1``), as the glyph demo's."""

from __future__ import annotations

import torch

from glean_sr.config import StyleGAN2Config, config_from_dict, config_to_dict
from glean_sr.models.stylegan2 import StyleGAN2Generator
from glean_sr.weights.banks import build_glean_from_bank
from glean_sr.weights.glean_format import infer_config
from glean_sr.weights.pretrained import load_model

TABLE = ((4, 32), (8, 32), (16, 16), (32, 16))


def _grey_bank() -> StyleGAN2Generator:
    torch.manual_seed(0)
    cfg = StyleGAN2Config(
        resolution=32, style_channels=32, num_mlps=2, channel_table=TABLE, img_channels=1
    )
    return StyleGAN2Generator(cfg).eval()


def test_glean_around_a_grey_bank_restores_rgb(tmp_path):
    bank = _grey_bank()
    model = build_glean_from_bank(bank, 8, rrdb_channels=16, num_rrdbs=1).eval()
    assert model.config.bank_img_channels == 1 and model.config.img_channels == 3
    lq = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        sr = model(lq)
    assert sr.shape == (2, 3, 32, 32)
    # the config says so on disk, and the tensors say so without it
    data = config_to_dict(model.config)
    assert data["bank_img_channels"] == 1
    assert config_from_dict(data) == model.config
    assert infer_config(model.state_dict(), "grey") == model.config
    model.save_pretrained(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(load_model(str(tmp_path / "m"))(lq), sr)


def test_rgb_banks_keep_their_config_files_unchanged():
    torch.manual_seed(0)
    cfg = StyleGAN2Config(resolution=32, style_channels=32, num_mlps=2, channel_table=TABLE)
    model = build_glean_from_bank(StyleGAN2Generator(cfg), 8, rrdb_channels=16, num_rrdbs=1)
    assert "bank_img_channels" not in config_to_dict(model.config)
    assert model.config.bank_img_channels == 3


def test_load_bank_takes_the_bank_inside_a_restorer(tmp_path):
    from glean_sr import load_bank

    bank = _grey_bank()
    model = build_glean_from_bank(bank, 8, rrdb_channels=16, num_rrdbs=1).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = load_bank(str(tmp_path / "m"))
    assert loaded.discriminator is None and loaded.config == bank.config
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded.generator.generate(z), bank.generate(z))
