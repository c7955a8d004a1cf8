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


# -- the shipped files -------------------------------------------------------------------------


def _readme_first_command() -> list[str]:
    """The glean-sr part of the README's install-and-run command."""
    from conftest import SRC

    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    first = block.strip().splitlines()[0]
    return first.split("&& .venv/bin/glean-sr", 1)[1].split()


def test_the_shipped_demo_is_small_and_complete():
    demo = presets.PRESETS[presets.DEMO_MODEL].packaged_path
    files = sorted(p.name for p in demo.iterdir())
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    total = sum(p.stat().st_size for p in presets.DEMO_DIR.rglob("*") if p.is_file())
    assert total < 20 * 2**20, f"the demo's files take {total / 2**20:.1f} MiB"
    model = load_model(presets.DEMO_MODEL)
    assert model.config == presets.PRESETS[presets.DEMO_MODEL].config


@pytest.mark.slow
def test_the_readme_first_command_runs_offline(tmp_path):
    from conftest import SRC, run_cli

    args = _readme_first_command()
    assert "-m" not in args and "--model" not in args, "the first command uses the demo"
    root = SRC.parent
    out = tmp_path / "restored"
    args = [str(out) if a.rstrip("/") == "restored" else a for a in args]
    proc = run_cli(*args, cwd=root, env={"GLEAN_SR_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    inputs = sorted(p.name for p in (root / "examples" / "glyphs").iterdir())
    written = sorted(out.iterdir())
    assert len(written) == len(inputs) > 0
    for path in written:
        assert np.asarray(Image.open(path)).shape[:2] == (32, 32)


def test_the_demo_restores_held_out_glyphs_better_than_bicubic():
    """examples/glyphs holds 8 px reductions of glyphs of a held-out font family,
    examples/glyphs-original the 32 px glyphs they were made from."""
    from conftest import SRC
    from glean_sr.data.imresize import imresize
    from glean_sr.evaluation.metrics import psnr

    model = load_model(presets.DEMO_MODEL)
    root = SRC.parent / "examples"
    names = sorted(p.name for p in (root / "glyphs").iterdir())
    lqs = [np.asarray(Image.open(root / "glyphs" / n).convert("RGB")) for n in names]
    gts = [np.asarray(Image.open(root / "glyphs-original" / n).convert("RGB")) for n in names]
    x = torch.from_numpy(np.stack(lqs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        sr = ((model(x).clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    ours = np.mean([psnr(a, b, data_range=255) for a, b in zip(sr, gts, strict=True)])
    bicubic = np.mean(
        [psnr(imresize(lq, 4.0), b, data_range=255) for lq, b in zip(lqs, gts, strict=True)]
    )
    assert ours > bicubic + 2.0, (ours, bicubic)
