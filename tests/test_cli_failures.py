"""Failures a user's machine causes are one line naming the file and the fix, not an
"internal error": a full disk while converting or training, a forbidden folder, a file whose
name lies about its format."""

from __future__ import annotations

import errno
import io
import pickle

import torch

from glean_sr.cli import main


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "out/model.safetensors")


def test_disk_full_in_convert_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import glean_sr.serialization

    monkeypatch.setattr(glean_sr.serialization, "atomic_write_bytes", _disk_full)
    assert main(["convert", str(tiny_model_dir), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert "No space left on device" in err and "free some space" in err


def test_disk_full_while_training_is_one_line(tmp_path, monkeypatch, capsys):
    from glean_sr.training import checkpoint
    from training_helpers import make_image_set, tiny_recipe_dict, write_bank_file, write_recipe

    bank = tmp_path / "bank.pth"
    write_bank_file(bank)
    train_set = make_image_set(tmp_path / "train", 4, gt_size=16, lq_size=8, seed=0)
    data = tiny_recipe_dict(
        tmp_path,
        bank=bank,
        train_set=train_set,
        val_set=None,
        optim={"total_steps": 2},
        train={"checkpoint_interval": 1},
    )
    recipe = write_recipe(tmp_path / "r.toml", data)

    def full(state, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "save_checkpoint", full)
    assert main(["train", str(recipe)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "internal error" not in err and "No space left on device" in err and "last.pt" in err


def test_a_real_bug_is_still_an_internal_error(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import glean_sr.serialization

    def bug(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")  # not the user's to fix

    monkeypatch.setattr(glean_sr.serialization, "atomic_write_bytes", bug)
    assert main(["convert", str(tiny_model_dir), str(tmp_path / "out")]) == 1
    assert "internal error" in capsys.readouterr().err


def test_a_pickle_named_safetensors_is_one_line(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "glean", "in_size": 8, "out_size": 32}')
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)
    (folder / "model.safetensors").write_bytes(buf.getvalue())
    assert main(["info", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err and "model.safetensors" in err
    (folder / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    assert main(["info", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err


def test_a_forbidden_output_folder_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import glean_sr.serialization

    def forbidden(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(glean_sr.serialization, "atomic_write_bytes", forbidden)
    assert main(["convert", str(tiny_model_dir), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert "Permission denied" in err and "permissions" in err


def test_convert_clears_what_an_interrupted_convert_left(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".model.safetensors.k1ll3d.tmp", out / ".config.json.k1ll3d.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    keep = out / "notes.txt.tmp"  # not a temporary of this command's targets
    keep.write_text("mine")
    assert main(["convert", str(tiny_model_dir), str(out)]) == 0
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "notes.txt.tmp",
    ]


def test_commands_for_fixed_size_restorers_refuse_an_any_size_model(tmp_path, capsys):
    from glean_sr.config import RealESRGANConfig
    from glean_sr.models.registry import build_model

    cfg = RealESRGANConfig(rrdb_channels=8, num_rrdbs=1, growth_channels=8, scale=2)
    model = build_model(cfg).save_pretrained(tmp_path / "m")
    (tmp_path / "gt").mkdir()
    for argv, expected in [
        (
            ["eval", "-m", str(model), "--gt", str(tmp_path / "gt"), "-o", str(tmp_path / "r")],
            "takes any size",
        ),
        (["export-onnx", str(model), str(tmp_path / "m.onnx")], "takes any size"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "internal error" not in err and expected in err, err
