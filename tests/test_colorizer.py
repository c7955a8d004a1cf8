"""GLEAN colorizer (TPAMI 2023, Sec. 5.4): the network, its config and files, its training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glean_sr import PRESETS, load_model
from glean_sr.colorspace import lab_to_rgb, rgb_to_lab
from glean_sr.config import GLEANColorizerConfig, config_from_dict, config_to_dict
from glean_sr.data.colorization import ColorizationDataset, shorter_side_to
from glean_sr.errors import ConfigError
from glean_sr.evaluation.metrics import psnr
from glean_sr.io import quantize
from glean_sr.models.colorizer import AB_SCALE, GLEANColorizer
from glean_sr.models.registry import build_model
from glean_sr.models.stylegan2 import StyleGAN2Generator
from glean_sr.training.recipe import read_recipe_dict, recipe_from_dict

#: every part at a size a 2-core CPU trains at a few steps per second
TINY = GLEANColorizerConfig(
    out_size=32,
    rrdb_channels=8,
    num_rrdbs=1,
    style_channels=32,
    num_mlps=2,
    channel_table={4: 32, 8: 32, 16: 16, 32: 16},
    decoder_channels=16,
)


def _lq(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_architecture_is_the_papers():
    torch.manual_seed(0)
    model = GLEANColorizer(TINY)
    first = model.encoder[0][0].conv_first
    assert first.in_channels == 1  # the L channel (Appendix A, change 1)
    convs = [m for m in model.decoder if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and convs[-1].out_channels == 2  # four convs ending in ab (change 2)
    assert convs[0].in_channels == 2 * TINY.channels[32]  # encoder + bank feature at 32 px
    assert TINY.fusion_resolutions == [4, 8, 16]
    assert sum(p.numel() for p in model.parameters()) == TINY.parameter_count()
    assert model.parameter_counts()["total"] == TINY.parameter_count()
    assert not any(p.requires_grad for p in model.generator.parameters())
    assert (model.in_size, model.out_size, model.img_channels, model.scale) == (32, 32, 1, 1)


def test_output_is_the_input_l_with_the_predicted_ab():
    torch.manual_seed(0)
    model = GLEANColorizer(TINY).eval()
    lq = _lq()
    with torch.no_grad():
        grey = model(lq)
    # the last convolution starts at zero: an untrained colorizer returns its input in grey
    assert grey.shape == (2, 3, 32, 32)
    assert torch.equal(model.predict_ab(lq), torch.zeros(2, 2, 32, 32))
    assert (grey.max(1).values - grey.min(1).values).max() < 1e-3
    torch.nn.init.normal_(model.decoder[-1].weight, std=0.05)
    with torch.no_grad():
        sr = model(lq)
        ab = model.predict_ab(lq)
    assert ab.abs().max() > 1  # colour now
    lab = rgb_to_lab((sr.double() + 1) / 2)
    assert torch.allclose(lab[:, :1], (lq.double() + 1) * 50, atol=1e-3)
    assert torch.allclose(lab[:, 1:], ab.double(), atol=1e-2)
    want = lab_to_rgb(torch.cat([(lq + 1) * 50, ab], 1)) * 2 - 1
    assert torch.allclose(sr, want, atol=1e-6)
    assert AB_SCALE == 110.0


def test_input_shape_is_checked():
    model = GLEANColorizer(TINY)
    with pytest.raises(ValueError, match=r"\[N, 1, 32, 32\] \(CIE L\*"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="bank does not fit"):
        GLEANColorizer(TINY, bank=StyleGAN2Generator(GLEANColorizerConfig(out_size=64).bank))
    with pytest.raises(ValueError, match="fused_features"):
        GLEANColorizer(TINY, bank=torch.nn.Linear(2, 2))


def test_any_bank_with_the_feature_interface_plugs_in():
    """The seam for other banks (BigGAN): a module with fused_features(latents, fuse)."""

    class ConstantBank(torch.nn.Module):
        config = TINY.bank

        def __init__(self):
            super().__init__()
            self.seen: list[int] = []
            self.weight = torch.nn.Parameter(torch.ones(()))

        def fused_features(self, latents, fuse):
            x = torch.zeros(latents.shape[0], 32, 4, 4)
            for res in (4, 8, 16):
                x = fuse(res, x)
                self.seen.append(res)
                x = torch.nn.functional.interpolate(x, scale_factor=2)
                x = x[:, :1].expand(-1, TINY.channels[2 * res], -1, -1) * self.weight
            return x

    bank = ConstantBank()
    model = GLEANColorizer(TINY, bank=bank)
    assert model(_lq()).shape == (2, 3, 32, 32)
    assert bank.seen == [4, 8, 16] and not bank.weight.requires_grad


def test_config_round_trip_and_errors(tmp_path):
    data = config_to_dict(TINY)
    assert data["model_type"] == "glean_colorizer" and "in_size" not in data
    assert config_from_dict(data) == TINY
    with pytest.raises(ConfigError, match="out_size must be a power of two"):
        GLEANColorizerConfig(out_size=48)
    with pytest.raises(ConfigError, match="decoder_channels"):
        GLEANColorizerConfig(out_size=32, decoder_channels=0)


def test_save_pretrained_and_load_model_round_trip(tmp_path):
    torch.manual_seed(1)
    model = GLEANColorizer(TINY).eval()
    torch.nn.init.normal_(model.decoder[-1].weight, std=0.05)
    model.save_pretrained(tmp_path / "colorizer")
    loaded = load_model(tmp_path / "colorizer")
    assert type(loaded) is GLEANColorizer and loaded.config == TINY
    lq = _lq(1)
    with torch.no_grad():
        assert torch.equal(loaded(lq), model(lq))
    assert not any(p.requires_grad for p in loaded.generator.parameters())


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("glean_colorizer_")])
def test_presets_are_architectures_without_weights(name):
    preset = PRESETS[name]
    assert preset.url is None and preset.config.out_size == 256
    model = build_model(preset.config, device="meta")
    assert sum(p.numel() for p in model.parameters()) == preset.config.parameter_count()
    assert preset.config.bank == PRESETS["glean_cat_8x"].config.bank  # a 256 px config-f bank


def test_colorization_data_resizes_crops_and_gives_l(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    (tmp_path / "n01" / "deep").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "n01" / "deep" / "a.png")
    Image.fromarray(photo[:, :40]).save(tmp_path / "n01" / "b.png")
    data = ColorizationDataset(gt_dir=str(tmp_path), size=32, flip=True, seed=3)
    assert data.names == ["n01/b.png", "n01/deep/a.png"]  # ImageNet's nested layout
    sample = data[(1, 0)]
    assert sample["lq"].shape == (1, 32, 32) and sample["gt"].shape == (3, 32, 32)
    gt = (sample["gt"].double() + 1) / 2
    assert torch.allclose((sample["lq"].double() + 1) * 50, rgb_to_lab(gt)[:1], atol=1e-3)
    assert torch.equal(data[(1, 0)]["gt"], sample["gt"])  # seeded by (seed, epoch, index)
    centre = ColorizationDataset(gt_dir=str(tmp_path), size=32, crop="centre")[1]["gt"]
    resized = shorter_side_to(photo.astype(np.float32) / 255, 32)
    assert resized.shape == (32, 53, 3)
    assert torch.allclose(centre, torch.from_numpy(resized[:, 10:42]).permute(2, 0, 1) * 2 - 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="contains no images"):
        ColorizationDataset(gt_dir=str(tmp_path / "empty"), size=32)
    with pytest.raises(ConfigError, match="does not exist"):
        ColorizationDataset(gt_dir=str(tmp_path / "none"), size=32)


def _recipe(tmp_path: Path, **data_section) -> dict:
    cfg = config_to_dict(TINY)
    cfg.pop("model_type")
    cfg["channel_table"] = [[int(r), w] for r, w in cfg["channel_table"].items()]
    return {
        "name": "tiny_colorizer",
        "out_dir": str(tmp_path / "run"),
        "model": {"type": "glean_colorizer", **cfg},
        "bank": {"source": str(tmp_path / "bank.pth"), "channel_order": "rgb"},
        "data": {"gt_dir": str(tmp_path / "train"), "num_workers": 0, **data_section},
        "train": {"batch_size": 8, "tensorboard": False, "progress_bar": False},
    }


def test_recipes_pair_colorizers_with_grayscale_data(tmp_path):
    recipe = recipe_from_dict(_recipe(tmp_path, degradation="grayscale"))
    assert recipe.model == TINY
    with pytest.raises(ConfigError, match="trains with data.degradation = 'grayscale'"):
        recipe_from_dict(_recipe(tmp_path))
    with pytest.raises(ConfigError, match="leave data.lq_dir and val.lq_dir empty"):
        recipe_from_dict(_recipe(tmp_path, degradation="grayscale", lq_dir="x"))
    glean = _recipe(tmp_path, degradation="grayscale")
    glean["model"] = {"type": "glean", "in_size": 8, "out_size": 32}
    with pytest.raises(ConfigError, match="and only a colorizer does"):
        recipe_from_dict(glean)
    shipped = recipe_from_dict(read_recipe_dict("glean_colorizer_church_256"))
    assert shipped.model == PRESETS["glean_colorizer_church_256"].config


def _photo_crops(root: Path, size: int) -> None:
    """Crops of scikit-image's bundled colour photos, ``size`` px: each photo is cut into a
    4 x 4 grid; a quarter of the cells (``(i + j) % 4 == 0``) give the held-out crops
    (``root/val``), the others the training crops (``root/train``)."""
    import skimage.data as data

    from glean_sr.data.imresize import imresize

    photos = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.stereo_motorcycle()[0],
        data.immunohistochemistry(),
    ]
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
    for p, photo in enumerate(photos):
        ch, cw = photo.shape[0] // 4, photo.shape[1] // 4
        for i in range(4):
            for j in range(4):
                split = "val" if (i + j) % 4 == 0 else "train"
                cell = photo[i * ch : (i + 1) * ch, j * cw : (j + 1) * cw, :3]
                for k in range(4 if split == "train" else 1):
                    side = int(rng.integers(min(ch, cw) // 2, min(ch, cw) + 1))
                    y, x = int(rng.integers(0, ch - side + 1)), int(rng.integers(0, cw - side + 1))
                    crop = np.ascontiguousarray(cell[y : y + side, x : x + side])
                    path = root / split / f"{p}_{i}{j}_{k}.png"
                    Image.fromarray(imresize(crop, size=(size, size))).save(path)


@pytest.mark.slow
def test_a_trained_tiny_colorizer_beats_zero_chroma_on_held_out_crops(tmp_path):
    """`glean-sr train`'s loop on real photos: 120 steps of the SR recipe's pixel loss on the
    RGB result lift the held-out PSNR above predicting no colour at all."""
    pytest.importorskip("skimage")
    from glean_sr.training.loop import train
    from training_helpers import write_bank_file

    _photo_crops(tmp_path, 32)
    write_bank_file(tmp_path / "bank.pth", TINY.bank)
    recipe = _recipe(tmp_path, degradation="grayscale")
    recipe["val"] = {"gt_dir": str(tmp_path / "val"), "interval": 1000}
    recipe["loss"] = {"perceptual_weight": 0.0, "gan_weight": 0.0}
    recipe["optim"] = {"total_steps": 120, "lr_g": 1e-3, "min_lr": 1e-6}
    recipe["train"].update(device="cpu", log_interval=20, checkpoint_interval=1000)
    summary = train(recipe_from_dict(recipe))
    assert summary["finished"]

    model = load_model(tmp_path / "run" / "final")
    val = ColorizationDataset(gt_dir=str(tmp_path / "val"), size=32, crop="centre")
    ours, grey = [], []
    for index in range(len(val)):
        sample = val[index]
        gt = quantize(((sample["gt"] + 1) / 2).permute(1, 2, 0).numpy(), 8)
        with torch.no_grad():
            sr = model(sample["lq"][None])[0]
        lightness = (sample["lq"] + 1) * 50
        zero = lab_to_rgb(torch.cat([lightness, torch.zeros(2, 32, 32)]), clip=True)
        ours.append(psnr(quantize(((sr + 1) / 2).permute(1, 2, 0).numpy(), 8), gt, data_range=255))
        grey.append(psnr(quantize(zero.permute(1, 2, 0).numpy(), 8), gt, data_range=255))
    assert len(ours) == 24 and all(math.isfinite(v) for v in ours + grey)
    print(f"held-out PSNR: colorizer {np.mean(ours):.2f} dB, zero chroma {np.mean(grey):.2f} dB")
    assert np.mean(ours) > np.mean(grey) + 0.5


def test_info_describes_a_colorizer_preset(capsys):
    from glean_sr.cli import main

    assert main(["info", "glean_colorizer_church_256"]) == 0
    out = capsys.readouterr().out
    assert "model:      glean_colorizer 256 -> 256, L* in, RGB out" in out
    total = PRESETS["glean_colorizer_church_256"].config.parameter_count()
    assert f"total {total / 1e6:.2f} M" in out
