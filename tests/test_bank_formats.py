"""Latent banks from NVIDIA, rosinality and mmagic files: each file is written the way that
format's own code writes it (tests/sg2_files.py), converted, and its images and discriminator
logits are compared with an independent implementation of that format's equations
(tests/sg2_reference.py)."""

from __future__ import annotations

import re
import sys

import pytest
import torch

import sg2_files as files
import sg2_reference as ref
from glean_sr import load_bank
from glean_sr.errors import WeightsError

SIZE, STYLE, N_MLP = 16, 32, 2
#: independent fp32 implementations of the same equations agree to about 1e-5 (spec); observed
#: 4e-6 to 6e-6 for images (std 1), 2e-7 for logits. The logit tolerance is tight enough to see
#: a wrong minibatch-stddev group size (4.5e-4 on these weights).
ATOL = 1e-4
D_ATOL = 1e-5


def _z(n: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, STYLE, generator=torch.Generator().manual_seed(seed))


def _img(n: int = 4, seed: int = 6) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# -- NVIDIA ----------------------------------------------------------------------------------------

#: What the pickled module source would do if anything executed it.
MODULE_SRC = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nclass Generator: pass\n"


@pytest.fixture(scope="module")
def nvidia(tmp_path_factory):
    """A stylegan2-ada-pytorch training snapshot, written like ``training_loop.py`` does."""
    tmp = tmp_path_factory.mktemp("nvidia")
    marker = tmp / "module_src_ran"
    src = MODULE_SRC.format(marker=str(marker))
    g_ema = files.nvidia_generator_tensors(SIZE, STYLE, N_MLP, seed=40)
    g_raw = files.nvidia_generator_tensors(SIZE, STYLE, N_MLP, seed=41)
    d = files.nvidia_discriminator_tensors(SIZE, seed=42)
    snapshot = {
        "training_set_kwargs": files.EasyDict(
            class_name="training.dataset.ImageFolderDataset", path="cats.zip", resolution=SIZE,
            use_labels=False, max_size=1000, xflip=True,
        ),
        "G": files.nvidia_generator_object(g_raw, SIZE, STYLE, N_MLP, 2, src),
        "D": files.nvidia_discriminator_object(d, SIZE, 2, src, group_size=2),
        "G_ema": files.nvidia_generator_object(g_ema, SIZE, STYLE, N_MLP, 2, src),
        "augment_pipe": files.augment_pipe_object(src),
    }  # fmt: skip
    path = tmp / "network-snapshot-000100.pkl"
    files.write_nvidia_snapshot(path, snapshot)
    modules_before = set(sys.modules)
    bank = load_bank(path)
    new_modules = set(sys.modules) - modules_before
    return {
        "path": path,
        "G_ema": g_ema,
        "G": g_raw,
        "D": d,
        "marker": marker,
        "bank": bank,
        "new_modules": new_modules,
    }


def test_nvidia_snapshot_images_match_the_reference(nvidia):
    new_modules = nvidia["new_modules"]
    assert not {m for m in new_modules if m.split(".")[0] in ("torch_utils", "dnnlib")}
    assert not any(m.startswith("_imported_module_") for m in sys.modules)
    assert not nvidia["marker"].exists(), "the pickled module source was executed"

    bank = nvidia["bank"]
    c = bank.config
    assert (c.resolution, c.style_channels, c.num_mlps, c.channel_multiplier) == (16, 32, 2, 2)
    assert c.lr_mlp == pytest.approx(0.01)
    assert bank.ema is True and bank.format == "NVIDIA pickle"
    assert bank.source_channel_order == "RGB"
    assert any("conv_clamp" in note for note in bank.notes)
    z = _z()
    with torch.no_grad():
        ours = bank.generator.generate(z, noise_mode="const")
        expected = ref.nvidia_generator(
            nvidia["G_ema"], z, resolution=SIZE, num_layers=N_MLP, clamp=256
        )
    assert _max_err(ours, expected) < ATOL


def test_nvidia_truncation_uses_the_files_w_avg(nvidia):
    bank = nvidia["bank"]
    w_avg = nvidia["G_ema"]["mapping.w_avg"]
    assert torch.equal(bank.generator.stored_w_avg, w_avg)
    z = _z()
    with torch.no_grad():
        ours = bank.generator.generate(z, truncation_psi=0.5)
        expected = ref.nvidia_generator(
            nvidia["G_ema"], z, resolution=SIZE, num_layers=N_MLP, truncation_psi=0.5, clamp=256
        )
        estimated = bank.generator.generate(
            z, truncation_psi=0.5, w_avg=bank.generator.mean_latent()
        )
    assert _max_err(ours, expected) < ATOL
    assert _max_err(estimated, expected) > 100 * ATOL  # the file's w_avg was used, not a mean


def test_nvidia_raw_generator_on_request(nvidia):
    bank = load_bank(nvidia["path"], ema=False)
    assert bank.ema is False
    z = _z()
    with torch.no_grad():
        ours = bank.generator.generate(z)
        expected = ref.nvidia_generator(
            nvidia["G"], z, resolution=SIZE, num_layers=N_MLP, clamp=256
        )
    assert _max_err(ours, expected) < ATOL


def test_nvidia_discriminator_matches_the_reference(nvidia):
    d = nvidia["bank"].discriminator
    assert d is not None and d.config.mbstd_group_size == 2  # read from the pickled layer
    img = _img()
    with torch.no_grad():
        ours = d(img)
        expected = ref.nvidia_discriminator(nvidia["D"], img, resolution=SIZE, group_size=2)
    assert ours.shape == (4, 1)
    assert _max_err(ours, expected) < D_ATOL


def test_nvidia_pickle_protocol_4_and_a_bare_generator(tmp_path, nvidia):
    """Python >= 3.8 writes protocol 4 (EMPTY_SET, ...); a pickle may hold ``G_ema`` alone."""
    obj = files.nvidia_generator_object(nvidia["G_ema"], SIZE, STYLE, N_MLP, 2, "")
    path = tmp_path / "G.pkl"
    files.write_nvidia_snapshot(path, obj, protocol=4)
    bank = load_bank(path)
    assert bank.discriminator is None and bank.ema is None
    z = _z()
    with torch.no_grad():
        expected = ref.nvidia_generator(nvidia["G_ema"], z, resolution=SIZE, num_layers=N_MLP)
        assert _max_err(bank.generator.generate(z), expected) < ATOL


# -- rosinality ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rosinality(tmp_path_factory):
    path = tmp_path_factory.mktemp("rosinality") / "000100.pt"
    ckpt = files.write_rosinality_train_checkpoint(path, size=SIZE, style_dim=STYLE, n_mlp=N_MLP)
    return {"path": path, "bank": load_bank(path), **ckpt}


def _rosinality_ref(g, z, **kw):
    return ref.styled_generator(
        g, z, names=ref.ROSINALITY_NAMES, resolution=SIZE, n_mlp=N_MLP, pixelnorm_eps=1e-8, **kw
    )


def test_rosinality_train_checkpoint_images_match_the_reference(rosinality):
    bank = rosinality["bank"]
    assert bank.ema is True and bank.format == "rosinality"
    assert bank.generator.stored_w_avg is None
    z = _z()
    with torch.no_grad():
        assert _max_err(bank.generator.generate(z), _rosinality_ref(rosinality["g_ema"], z)) < ATOL
    raw = load_bank(rosinality["path"], ema=False)
    with torch.no_grad():
        assert _max_err(raw.generator.generate(z), _rosinality_ref(rosinality["g"], z)) < ATOL


def test_rosinality_discriminator_matches_the_reference(rosinality):
    bank = rosinality["bank"]
    img = _img()
    with torch.no_grad():
        expected = ref.styled_discriminator(
            rosinality["d"], img, names=ref.ROSINALITY_NAMES, resolution=SIZE
        )
        assert _max_err(bank.discriminator(img), expected) < D_ATOL


def test_rosinality_converted_tf_weights_keep_latent_avg(tmp_path):
    """``convert_weight.py`` output: ``{"g_ema", "latent_avg"}``, used as truncation centre."""
    g = files.rosinality_generator(SIZE, STYLE, N_MLP, seed=3)
    latent_avg = torch.randn(STYLE, generator=torch.Generator().manual_seed(9))
    path = tmp_path / "stylegan2-cat-config-f.pt"
    torch.save({"g_ema": g, "latent_avg": latent_avg}, path)
    bank = load_bank(path)
    assert bank.discriminator is None
    z = _z()
    with torch.no_grad():
        ours = bank.generator.generate(z, truncation_psi=0.7)
        expected = _rosinality_ref(g, z, truncation_psi=0.7, truncation_latent=latent_avg)
    assert _max_err(ours, expected) < ATOL


def test_rosinality_bare_generator_with_channel_multiplier_1_at_64px(tmp_path):
    """The multiplier is read from the widths: 256 channels at 64 px means multiplier 1."""
    g = files.rosinality_generator(64, STYLE, 1, multiplier=1, seed=4)
    path = tmp_path / "g.pt"
    torch.save(g, path)
    bank = load_bank(path)
    assert (bank.config.resolution, bank.config.channel_multiplier) == (64, 1)
    assert bank.config.num_mlps == 1 and bank.ema is None
    z = _z(1)
    with torch.no_grad():
        expected = ref.styled_generator(
            g, z, names=ref.ROSINALITY_NAMES, resolution=64, n_mlp=1, pixelnorm_eps=1e-8
        )
        assert _max_err(bank.generator.generate(z), expected) < ATOL


# -- mmagic / mmgeneration -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mmagic1(tmp_path_factory):
    path = tmp_path_factory.mktemp("mmagic") / "iter_1000.pth"
    ckpt = files.write_mmagic1_checkpoint(path, size=SIZE, style_dim=STYLE, n_mlp=N_MLP)
    bank = load_bank(path, channel_order="rgb")
    return {"path": path, "state_dict": ckpt["state_dict"], "bank": bank}


def _prefixed(sd, prefix):
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _mmagic_ref(g, z):
    return ref.styled_generator(
        g, z, names=ref.MMAGIC_NAMES, resolution=SIZE, n_mlp=N_MLP, pixelnorm_eps=1e-6
    )


def test_mmagic1_checkpoint_images_and_logits_match_the_reference(mmagic1):
    with pytest.raises(Exception, match="HistoryBuffer|Unsupported global"):
        torch.load(mmagic1["path"], weights_only=True)  # why the inert unpickler is needed
    bank = mmagic1["bank"]
    assert bank.ema is True and bank.notes == []
    sd = mmagic1["state_dict"]
    z = _z()
    img = _img()
    with torch.no_grad():
        g_ema = _prefixed(sd, "generator_ema.module.")
        assert _max_err(bank.generator.generate(z), _mmagic_ref(g_ema, z)) < ATOL
        d = _prefixed(sd, "discriminator.")
        expected = ref.styled_discriminator(d, img, names=ref.MMAGIC_NAMES, resolution=SIZE)
        assert _max_err(bank.discriminator(img), expected) < D_ATOL
    raw = load_bank(mmagic1["path"], ema=False, channel_order="rgb")
    with torch.no_grad():
        expected = _mmagic_ref(_prefixed(sd, "generator."), z)
        assert _max_err(raw.generator.generate(z), expected) < ATOL


def test_mmgen_checkpoint_uses_generator_ema(tmp_path):
    path = tmp_path / "stylegan2_official.pth"
    sd = files.write_mmgen_checkpoint(path, size=SIZE, style_dim=STYLE, n_mlp=N_MLP)["state_dict"]
    bank = load_bank(path)
    assert bank.ema is True and bank.discriminator is not None
    assert any("does not record its channel order" in n for n in bank.notes)
    z = _z()
    with torch.no_grad():
        expected = _mmagic_ref(_prefixed(sd, "generator_ema."), z)
        assert _max_err(bank.generator.generate(z), expected) < ATOL


def test_bgr_file_is_turned_into_the_same_bank_in_rgb(mmagic1):
    rgb = mmagic1["bank"]
    bgr = load_bank(mmagic1["path"], channel_order="bgr")
    assert bgr.source_channel_order == "BGR"
    z, img = _z(), _img()
    with torch.no_grad():
        assert torch.allclose(bgr.generator.generate(z), rgb.generator.generate(z).flip(1))
        assert torch.allclose(bgr.discriminator(img), rgb.discriminator(img.flip(1)))


# -- the rule tables and strictness ----------------------------------------------------------------


def test_every_target_key_matches_exactly_one_rule_at_every_resolution():
    from glean_sr.config import StyleGAN2Config, StyleGAN2DiscriminatorConfig
    from glean_sr.weights import stylegan2_mmagic, stylegan2_nvidia, stylegan2_rosinality
    from glean_sr.weights.stylegan2_common import discriminator_target, generator_target

    generator_tables = [
        stylegan2_mmagic.GENERATOR_RULES,
        stylegan2_rosinality.GENERATOR_RULES,
        stylegan2_nvidia.GENERATOR_RULES,
    ]
    for res in [8, 16, 32, 64, 128, 256, 512, 1024]:
        d_tables = [
            stylegan2_mmagic.DISCRIMINATOR_RULES,
            stylegan2_rosinality.DISCRIMINATOR_RULES,
            stylegan2_nvidia.discriminator_rules(res),
        ]
        g_keys = generator_target(StyleGAN2Config(resolution=res))
        d_keys = discriminator_target(StyleGAN2DiscriminatorConfig(resolution=res))
        for keys, tables in ((g_keys, generator_tables), (d_keys, d_tables)):
            for table in tables:
                for key in keys:
                    hits = [r for r in table if re.fullmatch(r.target, key)]
                    assert len(hits) == 1, (res, key, len(hits))


def test_missing_unexpected_and_misshaped_foreign_keys_are_named(tmp_path):
    g = files.rosinality_generator(SIZE, STYLE, N_MLP, seed=3)
    del g["convs.1.noise.weight"]
    g["convs.9.surprise"] = torch.zeros(1)
    g["to_rgb1.bias"] = torch.zeros(1, 3, 2, 1)
    path = tmp_path / "g.pt"
    torch.save({"g_ema": g}, path)
    with pytest.raises(WeightsError) as info:
        load_bank(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "1 missing (convs.1.noise.weight)" in msg
    assert "1 unexpected (convs.9.surprise)" in msg
    assert "to_rgb1.bias: file [1, 3, 2, 1] vs model [1, 3, 1, 1]" in msg


def test_a_different_fir_filter_is_refused(tmp_path):
    g = files.rosinality_generator(SIZE, STYLE, N_MLP, seed=3)
    g["convs.0.conv.blur.kernel"] = torch.ones(4, 4) / 4
    path = tmp_path / "g.pt"
    torch.save(g, path)
    with pytest.raises(WeightsError, match=r"convs\.0\.conv\.blur\.kernel.*\[1, 3, 3, 1\]"):
        load_bank(path)


def test_asking_for_a_missing_ema_generator_names_the_fix(tmp_path):
    g = files.rosinality_generator(SIZE, STYLE, N_MLP, seed=3)
    path = tmp_path / "g.pt"
    torch.save({"g": g}, path)
    bank = load_bank(path)
    assert bank.ema is False and any("no EMA generator" in n for n in bank.notes)
    with pytest.raises(WeightsError, match=r"has no EMA generator \('g_ema'\).*--no-ema"):
        load_bank(path, ema=True)


def test_glean_checkpoints_and_unknown_files_are_told_apart(tmp_path, tiny_model):
    path = tmp_path / "glean.pth"
    sd = {f"generator.{k}": v for k, v in tiny_model.state_dict().items()}
    torch.save({"state_dict": sd}, path)
    with pytest.raises(WeightsError, match="GLEAN restorer checkpoint.*load_model"):
        load_bank(path)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="not a StyleGAN2 file"):
        load_bank(other)
