"""GLEAN with a BigGAN bank (BigGAN-PyTorch's or BigGAN-deep): the bank path is BigGAN's own
computation, the bank stays frozen, model directories work with upscale / eval / info, and the
training loop teaches a tiny one to restore real photos."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

import glean_sr
from biggan_helpers import TINY, TINY_DEEP, random_bank, random_deep_bank
from glean_sr.analysis import complexity
from glean_sr.config import config_from_dict, config_to_dict
from glean_sr.models.glean_biggan import GLEANBigGAN
from glean_sr.models.registry import build_model
from glean_sr.presets import PRESETS
from glean_sr.training.recipe import recipe_from_dict
from glean_sr.weights.biggan_banks import LoadedBigGAN, build_glean_biggan_from_bank
from training_helpers import make_image_set, read_log, tiny_recipe_dict, train_losses


def test_the_config_counts_the_network_it_describes():
    model = GLEANBigGAN(TINY, bank=random_bank())
    assert TINY.parameter_count() == sum(p.numel() for p in model.parameters())
    for name in ("glean_biggan_imagenet_8x", "glean_biggan_imagenet_4x"):
        config = PRESETS[name].config
        meta = build_model(config, device="meta")
        assert config.parameter_count() == sum(p.numel() for p in meta.parameters())


def test_the_bank_path_is_biggans_own_computation():
    """With fusions that pass the bank's half through, feeding the bank the conditioning
    vectors BigGAN derives from (z, class) gives BigGAN's image: GLEAN drives the very blocks
    the generator runs, in its order, with its conditioning."""
    model = GLEANBigGAN(TINY, bank=random_bank()).eval()
    with torch.no_grad():
        for conv in model.fusion:
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(conv.out_channels):
                conv.weight[c, c, 1, 1] = 1.0
        z = torch.randn(2, TINY.dim_z)
        labels = torch.tensor([1, 4])
        _, feats = model.encode(torch.randn(2, 3, 8, 8))
        conds = model.generator.conditions(z, labels)
        out = model.bank_features(conds, feats)
        assert sorted(out) == [16, 32]
        image = model.generator.to_rgb(out[32])
        torch.testing.assert_close(image, model.generator.generate(z, labels), atol=1e-6, rtol=0)


def test_a_deep_bank_path_is_the_packages_own_computation():
    """The same with a BigGAN-deep bank: its first layer, blocks and attention in the package's
    order, fusion once per resolution up to the input size, and the batch-norm statistics of
    the config's truncation (0.45: interpolated between two stored ones)."""
    bank = random_deep_bank()
    model = GLEANBigGAN(TINY_DEEP, bank=bank).eval()
    assert model.generator is bank
    with torch.no_grad():
        for conv in model.fusion:
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(conv.out_channels):
                conv.weight[c, c, 1, 1] = 1.0
        z = 0.45 * torch.randn(2, TINY_DEEP.z_dim)
        labels = torch.tensor([1, 4])
        _, feats = model.encode(torch.randn(2, 3, 16, 16))
        out = model.bank_features(bank.conditions(z, labels), feats)
        assert sorted(out) == [32, 64]
        image = bank.to_rgb(out[64], truncation=0.45)
        torch.testing.assert_close(image, bank.generate(z, labels, 0.45), atol=1e-6, rtol=0)
        other = bank.generate(z, labels, 1.0)
        assert (image - other).abs().max() > 1e-3  # the truncation is the config's


def test_fusion_comes_where_the_bank_first_reaches_each_size():
    from glean_sr.models.glean_biggan import bank_fusion_points

    assert bank_fusion_points([8, 16, 32], in_size=8) == [4, 8, 0]
    deep = TINY_DEEP.bank.block_resolutions
    assert deep == [4, 8, 8, 16, 16, 32, 32, 64]
    assert bank_fusion_points(deep, in_size=16) == [4, 0, 8, 0, 16, 0, 0, 0]
    model = GLEANBigGAN(TINY_DEEP, bank=random_deep_bank())
    assert TINY_DEEP.parameter_count() == sum(p.numel() for p in model.parameters())
    counts = model.parameter_counts()
    assert counts["bank"] == TINY_DEEP.bank.parameter_count()
    head = model.encoder[-1][-1]
    assert head.out_features == 9 * 2 * TINY_DEEP.z_dim  # first layer + 8 blocks, [z, y] each


def test_the_bank_is_frozen_and_every_trainable_part_learns():
    model = GLEANBigGAN(TINY, bank=random_bank()).train()
    assert not model.generator.training  # stays in eval mode: stored statistics, u unchanged
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    sr = model(torch.randn(2, 3, 8, 8))
    assert sr.shape == (2, 3, 32, 32)
    sr.square().mean().backward()
    assert all(p.grad is None for p in model.generator.parameters())
    trainable = {id(p) for p in model.trainable_parameters()}
    for name, p in model.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    after = model.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    counts = model.parameter_counts()
    assert counts["bank"] == TINY.bank.parameter_count()
    assert counts["encoder"] + counts["bank"] + counts["decoder"] == counts["total"]


def test_a_model_is_built_around_a_loaded_bank_and_saved_as_a_directory(tmp_path):
    bank = random_bank(1)
    source = tmp_path / "G_ema.pth"
    torch.save(bank.state_dict(), source)  # as BigGAN-PyTorch's utils.save_weights writes it
    loaded = glean_sr.load_bank(source)
    assert isinstance(loaded, LoadedBigGAN) and loaded.config == TINY.bank
    model = build_glean_biggan_from_bank(loaded, 8, rrdb_channels=8, num_rrdbs=1)
    assert model.config == TINY and model.generator is loaded.generator
    model.save_pretrained(tmp_path / "model")
    again = glean_sr.load_model(tmp_path / "model")
    lq = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.eval()(lq), again(lq))
    loaded.save(tmp_path / "bank")
    with pytest.raises(glean_sr.GleanError, match="BigGAN latent bank, not a restorer"):
        glean_sr.load_model(tmp_path / "bank")


def test_a_deep_model_is_built_around_a_bank_directory_and_saved(tmp_path):
    """config.json records the bank type, so load_model rebuilds the BigGAN-deep model."""
    loaded = LoadedBigGAN(generator=random_deep_bank(3), source="test", format="test")
    loaded.save(tmp_path / "bank")
    again_bank = glean_sr.load_bank(tmp_path / "bank")
    model = build_glean_biggan_from_bank(
        again_bank, 16, rrdb_channels=8, num_rrdbs=1, truncation=0.45
    )
    assert model.config == TINY_DEEP
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["model_type"] == "glean_biggan_deep" and saved["truncation"] == 0.45
    again = glean_sr.load_model(tmp_path / "model")
    assert isinstance(again, GLEANBigGAN) and again.config == TINY_DEEP
    lq = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.eval()(lq), again(lq))
    with pytest.raises(glean_sr.GleanError, match="BigGAN-PyTorch bank keeps one set"):
        build_glean_biggan_from_bank(random_bank(), 8, truncation=0.5)


def test_sample_bank_reads_the_bank_inside_a_model_directory(tmp_path, capsys):
    from glean_sr.cli import main

    model = GLEANBigGAN(TINY_DEEP, bank=random_deep_bank(8))
    model.save_pretrained(tmp_path / "model")
    inside = glean_sr.load_bank(tmp_path / "model")
    assert isinstance(inside, LoadedBigGAN) and inside.config == TINY_DEEP.bank
    out = tmp_path / "grid.png"
    args = ["sample-bank", str(tmp_path / "model"), "-o", str(out), "--num", "2", "--class", "3"]
    assert main(args) == 0
    assert Image.open(out).size == (2 * 64, 64)
    assert "the bank inside the restorer" in capsys.readouterr().out


def test_glean_biggan_configs_keep_their_keys():
    """A GLEAN-BigGAN config.json holds the keys it always held; one written so reads back."""
    saved = config_to_dict(TINY)
    assert list(saved) == [
        "model_type",
        *("in_size", "out_size", "img_channels", "rrdb_channels", "num_rrdbs", "ch", "dim_z"),
        *("shared_dim", "hier", "num_classes", "attention", "num_svs", "num_itrs", "bn_eps"),
        "sn_eps",
    ]
    assert config_from_dict(saved) == TINY
    tfhub = config_to_dict(dataclasses.replace(TINY, sn_variant="tfhub"))
    assert tfhub["sn_variant"] == "tfhub" and config_from_dict(tfhub).sn_variant == "tfhub"


def test_upscale_eval_and_info_with_a_model_directory(tmp_path, capsys):
    from glean_sr.cli import main

    model = GLEANBigGAN(TINY, bank=random_bank(2))
    model.save_pretrained(tmp_path / "model")
    photos = make_image_set(tmp_path / "set", 2, gt_size=32, lq_size=8, seed=3)
    out = tmp_path / "out"
    assert main(["upscale", photos["lq_dir"], "-m", str(tmp_path / "model"), "-o", str(out)]) == 0
    results = sorted(out.iterdir())
    assert len(results) == 2 and Image.open(results[0]).size == (32, 32)
    report = tmp_path / "report"
    args = ["eval", "-m", str(tmp_path / "model"), "--gt", photos["gt_dir"], "-o", str(report)]
    assert main([*args, "--device", "cpu"]) == 0
    assert (report / "report.html").is_file()
    capsys.readouterr()
    assert main(["info", "glean_biggan_imagenet_8x"]) == 0
    text = capsys.readouterr().out
    assert "glean_biggan 32 -> 256 (x8)" in text and "MACs:" in text
    assert "encoder 251.69 M, bank 82.24 M, decoder 17.37 M" in text


def test_info_reports_parts_and_macs_for_both_presets():
    for name, in_size in (("glean_biggan_imagenet_8x", 32), ("glean_biggan_imagenet_4x", 64)):
        info = complexity(build_model(PRESETS[name].config, device="meta"))
        assert set(info["params"]) == {"encoder", "bank", "decoder", "total"}
        assert info["params"]["bank"] == 82_235_844  # BigGAN-PyTorch's G at 256 px
        assert info["macs"] > info["macs_modules"] > 0
        assert PRESETS[name].config.in_size == in_size and PRESETS[name].url is None


def _train(tmp_path, steps: int, interval: int) -> list[dict]:
    from glean_sr.training.loop import train

    bank = LoadedBigGAN(generator=random_bank(4), source="test", format="test")
    bank.save(tmp_path / "bank")
    train_set = make_image_set(tmp_path / "train", 16, gt_size=32, lq_size=8, seed=0)
    val_set = make_image_set(tmp_path / "val", 4, gt_size=32, lq_size=8, seed=1)
    cfg = config_to_dict(TINY)
    cfg.pop("model_type")
    data = tiny_recipe_dict(
        tmp_path,
        bank=tmp_path / "bank",
        train_set=train_set,
        val_set=val_set,
        optim={"total_steps": steps, "lr_g": 4e-4},
        val={"interval": interval},
        loss={"gan_weight": 0.0},
    )
    data["model"] = {"type": "glean_biggan", **cfg}
    data["bank"]["channel_order"] = ""
    summary = train(recipe_from_dict(data))
    assert summary["finished"] and summary["step"] == steps
    events = read_log(tmp_path / "run")
    model = glean_sr.load_model(tmp_path / "run" / "final")
    reference = random_bank(4).state_dict()
    for key, value in model.generator.state_dict().items():  # the bank left as it was
        assert torch.equal(value, reference[key]), key
    return events


def test_a_short_run_on_real_photos_learns(tmp_path):
    events = _train(tmp_path, steps=20, interval=20)
    losses = train_losses(events)
    pix = [losses[s]["loss_pix"] for s in sorted(losses)]
    assert sum(pix[-4:]) < 0.8 * sum(pix[:4]), pix
    vals = [e for e in events if e["event"] == "val"]
    assert [v["step"] for v in vals] == [0, 20]
    assert vals[1]["psnr"] > vals[0]["psnr"] + 1.0, vals


@pytest.mark.slow
def test_200_steps_on_real_photos_lower_the_validation_loss(tmp_path):
    """Validation every 50 steps: the error on held-out crops (PSNR up = MSE down) improves from
    the start to the end and ends at its best."""
    events = _train(tmp_path, steps=200, interval=50)
    psnr = [e["psnr"] for e in events if e["event"] == "val"]
    assert len(psnr) == 5 and psnr[-1] > psnr[0] + 3.0, psnr
    assert psnr[-1] >= max(psnr[1:-1]) - 0.2, psnr


# -- ImageNet: recipes, photo folders, the discriminator ----------------------------------------


def test_the_imagenet_recipes_train_the_presets():
    from glean_sr.training.recipe import load_recipe

    for x in (4, 8):
        r = load_recipe(f"glean_biggan_imagenet_{x}x")
        assert r.model == PRESETS[f"glean_biggan_imagenet_{x}x"].config
        assert r.model.out_size // r.model.in_size == x
        assert r.data.photos and r.data.degradation == "bicubic" and not r.data.lq_dir
        assert r.train.batch_size == 32 and r.optim.total_steps == 300_000
        assert (r.loss.pixel_weight, r.loss.perceptual_weight, r.loss.gan_weight) == (1, 0.01, 0.01)


def imagenet_layout(root, seed: int, per_class: int = 3):
    """``root/<wnid>/*.JPEG``: crops of scikit-image's photos in several sizes and aspect
    ratios, as ImageNet's are."""
    import numpy as np
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    rng = np.random.default_rng(seed)
    for k, wnid in enumerate(["n01440764", "n02123045", "n07747607"]):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            photo = photos[(k + i) % len(photos)]
            y, x = int(rng.integers(0, photo.shape[0] - 200)), int(rng.integers(0, 150))
            w, h = (48 + 16 * i, 48) if (i + k) % 2 else (48, 40 + 8 * i)
            crop = Image.fromarray(photo[y : y + 200, x : x + 200, :3]).resize((w, h))
            crop.save(root / wnid / f"{wnid}_{i}.JPEG")
    return root


def test_photo_folders_give_bicubic_pairs_of_squares(tmp_path):
    import numpy as np

    from glean_sr.data.datasets import bicubic_lq
    from glean_sr.data.photo_sr import PhotoSRDataset

    root = imagenet_layout(tmp_path / "train", seed=0)
    train = PhotoSRDataset(gt_dir=str(root), in_size=8, out_size=32, flip=True, seed=0)
    val = PhotoSRDataset(gt_dir=str(root), in_size=8, out_size=32, crop="centre")
    assert len(train) == 9 and train.names[0].startswith("n01440764/")
    sample = train[(3, 0)]
    assert sample["lq"].shape == (3, 8, 8) and sample["gt"].shape == (3, 32, 32)
    assert torch.equal(sample["gt"], train[(3, 0)]["gt"])  # seeded by (seed, epoch, index)
    lq, gt = val.load(4, None)
    assert gt.dtype == np.uint8 and np.array_equal(lq, bicubic_lq(gt, 8))
    assert torch.equal(val[4]["lq"], val[4]["lq"])


def test_the_discriminator_is_biggan_pytorchs_for_the_generator():
    """D_arch at 128 px, D_ch 96, attention at 64: with its class projection (1000 x 1536)
    BigGAN-PyTorch's D has 87,982,370 parameters; the restorer's leaves the projection out."""
    from glean_sr.config import BigGANConfig
    from glean_sr.models.biggan_discriminator import BigGANDiscriminator

    with torch.device("meta"):
        full = BigGANDiscriminator(BigGANConfig(resolution=128))
    assert sum(p.numel() for p in full.parameters()) + 1000 * 1536 == 87_982_370
    d = BigGANDiscriminator(TINY.bank).train()
    u = d.linear.u0.clone()
    assert d(torch.randn(3, 3, 32, 32)).shape == (3, 1)
    assert not torch.equal(u, d.linear.u0)  # training mode writes the power iteration back


def test_a_deep_bank_trains_against_biggan_pytorchs_discriminator_of_its_size(tmp_path):
    """BigGAN-deep files hold no discriminator either: BigGAN-PyTorch's at the bank's
    resolution, D_ch = channel_width, attention at the size of the bank's attention layer."""
    from glean_sr.training.bank import load_training_bank

    config = dataclasses.replace(TINY_DEEP, channel_width=8)  # attention needs 8 channels
    generator = random_deep_bank(7, config.bank)
    LoadedBigGAN(generator=generator, source="test", format="test").save(tmp_path / "bank")
    bank, disc, notes = load_training_bank(str(tmp_path / "bank"), config, need_discriminator=True)
    assert bank.config == config.bank
    assert (disc.config.resolution, disc.config.ch, disc.config.attention) == (64, 8, (32,))
    assert disc(torch.randn(2, 3, 64, 64)).shape == (2, 1)
    assert any("channel_width = 8" in n for n in notes)


def test_gan_training_on_an_imagenet_layout_starts_the_discriminator_from_scratch(tmp_path):
    from glean_sr.training.loop import train

    bank = LoadedBigGAN(generator=random_bank(5), source="test", format="test")
    bank.save(tmp_path / "bank")
    imagenet_layout(tmp_path / "imagenet" / "train", seed=0)
    imagenet_layout(tmp_path / "imagenet" / "val", seed=1, per_class=1)
    cfg = config_to_dict(TINY)
    cfg.pop("model_type")
    data = tiny_recipe_dict(
        tmp_path,
        bank=tmp_path / "bank",
        train_set={"gt_dir": str(tmp_path / "imagenet" / "train"), "photos": True},
        val_set={"gt_dir": str(tmp_path / "imagenet" / "val")},
        optim={"total_steps": 4},
        val={"interval": 4},
        loss={"gan_weight": 0.01},
    )
    data["model"] = {"type": "glean_biggan", **cfg}
    data["bank"]["channel_order"] = ""
    summary = train(recipe_from_dict(data))
    assert summary["finished"] and summary["step"] == 4
    events = read_log(tmp_path / "run")
    assert any("starts from scratch" in n for n in events[0]["bank_notes"])
    losses = train_losses(events)
    for step in (1, 4):
        for key in ("loss_gan", "loss_d_real", "loss_d_fake"):
            assert 0 < losses[step][key] < 100, (step, key, losses[step])
    vals = [e for e in events if e["event"] == "val"]
    assert [v["images"] for v in vals] == [3, 3]


@pytest.mark.slow
def test_two_process_torchrun_keeps_the_replicas_and_their_discriminators_identical(tmp_path):
    """Under torchrun both processes end with the same restorer and the same discriminator,
    its spectral-norm vectors included (they follow the synchronised weights), and the bank
    as it was."""
    import os
    import subprocess
    import sys

    from conftest import SRC
    from glean_sr.training.checkpoint import load_checkpoint
    from training_helpers import write_recipe

    bank = LoadedBigGAN(generator=random_bank(6), source="test", format="test")
    bank.save(tmp_path / "bank")
    photos = make_image_set(tmp_path / "train", 8, gt_size=32, lq_size=8, seed=0)
    cfg = config_to_dict(TINY)
    cfg.pop("model_type")
    data = tiny_recipe_dict(
        tmp_path,
        bank=tmp_path / "bank",
        train_set=photos,
        val_set=None,
        optim={"total_steps": 2},
        loss={"gan_weight": 0.01},
    )
    data["model"] = {"type": "glean_biggan", **cfg}
    data["bank"]["channel_order"] = ""
    recipe = write_recipe(tmp_path / "ddp.toml", data)
    env = {**os.environ, "PYTHONPATH": str(SRC), "GLEAN_SR_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*cmd, "-m", "glean_sr", "train", str(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["world_size"] == 2 and state["step"] == 2
    prints = state["fingerprints"]
    assert len(prints) == 2 and prints[0] == prints[1]
    reference = random_bank(6).state_dict()
    for key, value in reference.items():
        assert torch.equal(state["model"][f"generator.{key}"], value), key
