"""The demo model that ships inside the package: found with no download, used when no -m is given,
named as a demo wherever a user meets it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import glean_sr.presets as presets
from glean_sr.cli import build_parser, main
from glean_sr.errors import WeightsError
from glean_sr.weights.pretrained import load_model


@pytest.fixture
def shipped(tmp_path, monkeypatch, tiny_model_dir):
    """The package's demo folder replaced by one holding the tiny model as the demo."""
    demo = tmp_path / "demo"
    shutil.copytree(tiny_model_dir, demo / presets.PRESETS[presets.DEMO_MODEL].packaged)
    monkeypatch.setattr(presets, "DEMO_DIR", demo)
    return demo


def test_the_demo_loads_from_the_package_without_the_network(shipped, tiny_model, monkeypatch):
    monkeypatch.setenv("GLEAN_SR_OFFLINE", "1")
    model = load_model(presets.DEMO_MODEL)
    x = torch.rand(1, 3, tiny_model.in_size, tiny_model.in_size) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), tiny_model.eval()(x))


def test_missing_demo_files_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "DEMO_DIR", tmp_path / "nothing")
    with pytest.raises(WeightsError, match="reinstall glean-sr"):
        load_model(presets.DEMO_MODEL)


def test_upscale_without_model_uses_the_demo(shipped, tiny_model, tmp_path, capsys):
    size = tiny_model.in_size
    img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out")]) == 0
    assert presets.DEMO_MODEL in capsys.readouterr().out
    out = np.asarray(Image.open(tmp_path / "out" / f"in_x{tiny_model.scale}.png"))
    assert out.shape == (tiny_model.out_size, tiny_model.out_size, 3)


@pytest.mark.parametrize("command", ["upscale", "faces", "eval", "info", "convert", "export-onnx"])
def test_every_command_taking_a_model_names_the_demo(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(a.help or "" for a in sub.choices[command]._actions)
    assert presets.DEMO_MODEL in text
    assert "demo" in text


def test_convert_stores_weights_in_half_precision(tiny_model_dir, tiny_model, tmp_path, capsys):
    from safetensors import safe_open

    out = tmp_path / "half"
    assert main(["convert", str(tiny_model_dir), str(out), "--dtype", "fp16"]) == 0
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    assert dtypes == {torch.float16}
    full = (tiny_model_dir / "model.safetensors").stat().st_size
    assert (out / "model.safetensors").stat().st_size < 0.55 * full
    model = load_model(str(out))
    assert next(model.parameters()).dtype == torch.float32
    x = torch.rand(2, 3, tiny_model.in_size, tiny_model.in_size) * 2 - 1
    with torch.no_grad():
        assert (model(x) - tiny_model.eval()(x)).abs().max() < 1e-2
