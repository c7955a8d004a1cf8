"""The glyph classifier: strict save/load, features for a domain FID, seeded training, the CLI.

A synthetic set of five shapes (box, ring, bar, pillar, cross) drawn at jittered places and sizes
stands in for rendered glyphs: separable, so a tiny network must learn it almost perfectly.
"""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from glean_sr.cli import main
from glean_sr.commands import train_glyph_classifier as command
from glean_sr.errors import ConfigError, DataError, WeightsError
from glean_sr.evaluation.domain_features import load_feature_network
from glean_sr.evaluation.glyph_classifier import (
    CHARS,
    GlyphClassifier,
    GlyphClassifierConfig,
    accuracy,
    augment_glyphs,
    predict,
    train_glyph_classifier,
)

SIZE = 16
TINY = GlyphClassifierConfig(
    image_size=SIZE, num_classes=5, widths=(8, 16), feature_dim=32, chars="BOHIX"
)


def shape_glyphs(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` glyphs of each of the 5 shapes: uint8 ``[5 * per_class, 16, 16]``, ink 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    images, labels = [], []
    for label in range(5):
        for _ in range(per_class):
            cy, cx = rng.uniform(6.5, 8.5, 2)
            r = rng.uniform(4.0, 6.0)
            dy, dx = yy - cy, xx - cx
            if label == 0:  # filled box
                ink = (abs(dy) < r * 0.8) & (abs(dx) < r * 0.8)
            elif label == 1:  # ring
                ink = abs(np.hypot(dy, dx) - r) < 1.0
            elif label == 2:  # horizontal bar
                ink = (abs(dy) < 1.2) & (abs(dx) < r)
            elif label == 3:  # vertical bar
                ink = (abs(dx) < 1.2) & (abs(dy) < r)
            else:  # cross
                ink = ((abs(dy - dx) < 1.2) | (abs(dy + dx) < 1.2)) & (np.hypot(dy, dx) < r)
            images.append(np.where(ink, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int16)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("glyphs")
    for split, per_class, seed in (("train", 40, 1), ("val", 16, 2)):
        images, labels = shape_glyphs(per_class, seed)
        families = np.array(["synthetic"] * len(labels))
        np.savez(directory / f"{split}.npz", images=images, labels=labels, families=families)
    return directory


def train(data_dir, out_dir, **kwargs):
    options = dict(config=TINY, epochs=12, batch_size=32, seed=0, progress=False)
    return train_glyph_classifier(
        data_dir / "train.npz", data_dir / "val.npz", out_dir, **{**options, **kwargs}
    )


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    return train(data_dir, out), out


def random_glyphs(n: int, seed: int, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, SIZE, SIZE, generator=g)


def test_config_checks_its_fields():
    assert GlyphClassifierConfig().chars == CHARS and len(CHARS) == 62
    with pytest.raises(ConfigError, match="num_classes = 5"):
        GlyphClassifierConfig(num_classes=5)
    with pytest.raises(ConfigError, match="divisible by 2 \\*\\* len\\(widths\\) = 8"):
        GlyphClassifierConfig(image_size=20)
    with pytest.raises(ConfigError, match="repeat"):
        GlyphClassifierConfig(num_classes=3, chars="AAB")


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = GlyphClassifier(TINY).eval()
    with torch.no_grad():  # BN statistics that differ from the initial ones
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "glyph_classifier" and config["widths"] == [8, 16]
    loaded = GlyphClassifier.from_pretrained(tmp_path)
    assert loaded.config == TINY and not loaded.training
    img = random_glyphs(4, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded(img), model(img))
    assert loaded.feature_extractor().name == model.feature_extractor().name


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_a_missing_or_wrong_config_is_a_one_line_error(tmp_path):
    GlyphClassifier(TINY).save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    good = json.loads(config_path.read_text())

    config_path.write_text(json.dumps({**good, "model_type": "glean"}))
    with pytest.raises(ConfigError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "expected a 'glyph_classifier' config" in one_line(exc)

    config_path.write_text(json.dumps({**good, "depth": 3}))
    with pytest.raises(ConfigError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "unknown key(s) in glyph_classifier config: depth" in one_line(exc)

    config_path.write_text(json.dumps({k: v for k, v in good.items() if k != "chars"}))
    with pytest.raises(ConfigError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "missing key(s) in glyph_classifier config: chars" in one_line(exc)

    config_path.write_text("{not json")
    with pytest.raises(ConfigError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "not valid JSON" in one_line(exc)

    config_path.write_text(json.dumps({**good, "widths": [8, 24]}))  # weights of other widths
    with pytest.raises(WeightsError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "does not fit its config.json: shape: " in (text := one_line(exc))
    assert "stages.10.weight (16, 16, 3, 3) != (24, 24, 3, 3)" in text

    config_path.write_text(json.dumps(good))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(WeightsError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "unreadable safetensors file" in one_line(exc)

    config_path.unlink()
    with pytest.raises(WeightsError) as exc:
        GlyphClassifier.from_pretrained(tmp_path)
    assert "config.json is missing" in one_line(exc)


def test_inputs_are_checked_and_grey_rgb_and_size_are_normalised():
    model = GlyphClassifier(TINY).eval()
    grey = random_glyphs(3, seed=2)
    with torch.no_grad():
        a = model.features(grey)
        b = model.features(grey.expand(-1, 3, -1, -1))
        assert a.shape == (3, TINY.feature_dim)
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
        big = torch.nn.functional.interpolate(grey, scale_factor=2, mode="nearest")
        assert model(big).shape == (3, TINY.num_classes)
    with pytest.raises(ValueError, match="expected images"):
        model(grey[:, 0])
    with pytest.raises(ValueError, match="expected float images"):
        model((grey * 255).to(torch.uint8))


def test_augmentation_is_seeded_bounded_and_identity_when_off():
    img = random_glyphs(16, seed=3)
    a = augment_glyphs(img, torch.Generator().manual_seed(5))
    b = augment_glyphs(img, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == img.shape
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, img)
    same = augment_glyphs(img, torch.Generator(), max_shift=0, scale_jitter=0.0, degrade_prob=0.0)
    torch.testing.assert_close(same, img, rtol=0, atol=1e-6)


def test_training_learns_separable_shapes_and_is_deterministic(data_dir, trained, tmp_path):
    summary, out = trained
    assert summary["val_accuracy"] > 0.9
    assert summary["val_glyphs"] == 80 and summary["train_glyphs"] == 200
    assert len(summary["history"]) == 12
    best = max(h["val_accuracy"] for h in summary["history"])
    assert summary["val_accuracy"] == best
    assert json.loads((out / "training.json").read_text())["val_accuracy"] == best

    model = GlyphClassifier.from_pretrained(out)
    with np.load(data_dir / "val.npz") as val:
        images, labels = val["images"], val["labels"]
    assert accuracy(model, images, labels) == summary["val_accuracy"]
    assert np.array_equal(predict(model, images), predict(model, images / 255.0))

    again = train(data_dir, tmp_path / "again")
    first = load_file(str(out / "model.safetensors"))
    second = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again["history"] == summary["history"]

    other = train(data_dir, tmp_path / "other", seed=1, epochs=1)
    third = load_file(str(tmp_path / "other" / "model.safetensors"))
    assert not torch.equal(third["embed.weight"], first["embed.weight"])
    assert other["epochs"] == 1


def test_training_rejects_labels_outside_the_classes(data_dir, tmp_path):
    images, labels = shape_glyphs(2, seed=0)
    np.savez(tmp_path / "bad.npz", images=images, labels=labels + 3)
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.4"):
        train_glyph_classifier(tmp_path / "bad.npz", data_dir / "val.npz", tmp_path, config=TINY)
    np.savez(tmp_path / "nolabels.npz", images=images)
    with pytest.raises(DataError, match="needs 'images' and 'labels'"):
        train_glyph_classifier(tmp_path / "nolabels.npz", data_dir / "val.npz", tmp_path)


def test_feature_extractor_is_what_the_domain_fid_loads(trained):
    _, out = trained
    model = GlyphClassifier.from_pretrained(out)
    extractor = model.feature_extractor()
    assert re.fullmatch(r"glyph-classifier-[0-9a-f]{8}", extractor.name)
    assert extractor.name == f"glyph-classifier-{model.weights_digest()[:8]}"
    img = random_glyphs(5, seed=4, channels=3)
    with torch.no_grad():
        feats = extractor(img)
        assert feats.shape == (5, TINY.feature_dim) and feats.min() >= 0
        loaded = load_feature_network(out)
        assert loaded.name == extractor.name
        assert torch.equal(loaded(img), feats)


def test_cli_trains_and_prints_one_summary_line(data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "clf"
    argv = ["train-glyph-classifier", str(data_dir), "-o", str(out), "--epochs", "12"]
    with monkeypatch.context() as patch:  # the tiny network, on the command's real path
        patch.setattr("glean_sr.evaluation.glyph_classifier.GlyphClassifierConfig", lambda: TINY)
        assert main([*argv, "--batch-size", "32", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    accuracy_text = re.search(r"val accuracy (\d\.\d{4}) \(epoch \d+ of 12, 80 glyphs\)", lines[0])
    assert accuracy_text and float(accuracy_text.group(1)) > 0.9
    assert lines[0].endswith(f"classifier in {out}")
    assert GlyphClassifier.from_pretrained(out).config == TINY

    assert main(["train-glyph-classifier", str(tmp_path / "none"), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("glean-sr train-glyph-classifier: error: ") and "train.npz" in err
    assert "\n" not in err


def test_cli_defaults_are_the_library_defaults():
    defaults = inspect.signature(train_glyph_classifier).parameters
    assert defaults["epochs"].default == command.EPOCHS
    assert defaults["batch_size"].default == command.BATCH_SIZE
    assert defaults["lr"].default == command.LR


def test_eval_chars_scores_accuracy_against_the_names_and_a_glyph_fid(
    trained, tiny_model_dir, tmp_path
):
    """``glean-sr eval --metrics chars``: the GT row is the classifier's own accuracy on the
    originals (labels from the ``_uXXXX`` names), every method gets ``char_acc`` and a
    ``fid_glyph``, and a file without a label gets a note instead of a value."""
    from PIL import Image

    from glean_sr.evaluation.evaluate import EvalOptions, evaluate

    _, out = trained
    images, labels = shape_glyphs(4, seed=5)
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        big = np.kron(img, np.ones((2, 2), np.uint8))  # 32 px, the tiny model's output size
        Image.fromarray(big).save(gt_dir / f"{i:06d}_u{ord(TINY.chars[label]):04x}.png")
    Image.fromarray(np.kron(images[0], np.ones((2, 2), np.uint8))).save(gt_dir / "plain.png")
    options = EvalOptions(metrics=("psnr", "chars"), glyph_classifier=str(out), batch_size=8)
    summary = evaluate(
        [str(tiny_model_dir)], gt_dir, tmp_path / "report", options=options, progress=False
    )
    results = summary["results"]
    model = GlyphClassifier.from_pretrained(out)
    expected = float((predict(model, images) == labels).mean())
    assert results["gt"]["char_acc"] == pytest.approx(expected)
    for method in ("bicubic", *[m for m in results if m not in ("bicubic", "gt")]):
        assert 0 <= results[method]["char_acc"] <= 1
        assert results[method]["fid_glyph"] >= 0
    rows = (tmp_path / "report" / "per_image.csv").read_text().splitlines()
    plain = [r for r in rows if r.startswith("plain.png")]
    assert plain and all("no character label" in r for r in plain)
