"""Strict and safe loading: containers, mismatch reports, refusing code, model directories."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from conftest import TINY, run_cli
from glean_sr import load_model
from glean_sr.errors import WeightsError
from glean_sr.models import GLEAN


def _released(model) -> dict:
    sd = {f"generator.{k}": v for k, v in model.state_dict().items()}
    sd["discriminator.final_linear.1.bias"] = torch.zeros(1)
    sd["perceptual_loss.vgg.mean"] = torch.zeros(1, 3, 1, 1)
    return {"meta": {"iter": 10}, "state_dict": sd}


def _same_output(a, b):
    lq = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return torch.equal(a(lq), b(lq))


@pytest.mark.parametrize("container", ["released-legacy", "released-zip", "bare", "safetensors"])
def test_every_container_loads_without_sizes(tiny_model, tmp_path, container):
    if container == "released-legacy":
        path = tmp_path / "m.pth"
        torch.save(_released(tiny_model), path, _use_new_zipfile_serialization=False)
    elif container == "released-zip":
        path = tmp_path / "m.pth"
        torch.save(_released(tiny_model), path)
    elif container == "bare":
        path = tmp_path / "m.pt"
        torch.save(tiny_model.state_dict(), path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "m.safetensors"
        save_file(tiny_model.state_dict(), str(path))
    model = load_model(path)
    assert model.config == TINY
    assert _same_output(model, tiny_model)
    assert not model.training


def test_missing_unexpected_and_misshaped_keys_are_all_named(tiny_model, tmp_path):
    sd = dict(tiny_model.state_dict())
    del sd["decoder.0.upsample_conv.bias"]
    sd["encoder.99.weight"] = torch.zeros(1)
    sd["fusion_out.0.bias"] = torch.zeros(7)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "1 missing (decoder.0.upsample_conv.bias)" in msg
    assert "1 unexpected (encoder.99.weight)" in msg
    assert "fusion_out.0.bias: file [7] vs model [512]" in msg


def test_unknown_extra_in_released_container_is_unexpected(tiny_model, tmp_path):
    ckpt = _released(tiny_model)
    ckpt["state_dict"]["optimizer_state.foo"] = torch.zeros(1)
    path = tmp_path / "m.pth"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match="unexpected .*optimizer_state.foo"):
        load_model(path)


@pytest.mark.slow
def test_file_of_another_preset_names_it(tmp_path):
    """Insisting on one preset while the file is another: the error says which it fits."""
    from glean_sr import PRESETS

    model = GLEAN(PRESETS["glean_cat_16x"].config, bank=None)
    path = tmp_path / "cat16.pth"
    torch.save(model.state_dict(), path)
    del model
    with pytest.raises(WeightsError, match="fits preset 'glean_cat_16x' \\(16 -> 256\\)"):
        load_model(path, config="glean_cat_8x")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_file_is_one_clear_error(tiny_model, tmp_path, cut):
    path = tmp_path / "m.pth"
    torch.save(_released(tiny_model), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(WeightsError) as info:
        load_model(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"\x89PNG\r\n\x1a\n" + b"0" * 64])
def test_non_weight_files_are_refused(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=str(path)):
        load_model(path)


class _Payload:
    """Unpickling this object would create a marker file (stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_code_executing_pickle_is_refused_and_runs_nothing(tiny_model, tmp_path, legacy):
    marker = tmp_path / "pwned"
    ckpt = _released(tiny_model)
    ckpt["meta"]["payload"] = _Payload(marker)
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="refused|code"):
        load_model(path)
    assert not marker.exists()


def test_plain_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned2"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2))
    with pytest.raises(WeightsError):
        load_model(path)
    assert not marker.exists()


def test_model_directory_config_is_strict(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["surprise"] = 1
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="unknown key.*surprise"):
        load_model(broken)
    (broken / "config.json").unlink()
    with pytest.raises(WeightsError, match="config.json is missing"):
        load_model(broken)


def test_unknown_source_lists_presets():
    with pytest.raises(WeightsError, match="glean_ffhq_16x"):
        load_model("no_such_model")


@pytest.mark.slow
def test_convert_and_info_cli(tiny_model, tmp_path):
    src = tmp_path / "m.pth"
    torch.save(_released(tiny_model), src, _use_new_zipfile_serialization=False)
    out = tmp_path / "converted"
    result = run_cli("convert", str(src), str(out))
    assert result.returncode == 0, result.stderr
    assert _same_output(load_model(out), tiny_model)
    again = run_cli("convert", str(src), str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert again.stderr.count("\n") == 1
    info = run_cli("info", str(src), "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["format"] == "mmediting/mmagic checkpoint"
    assert data["config"]["in_size"] == 8 and data["config"]["out_size"] == 32
    assert data["params"]["total"] == sum(p.numel() for p in tiny_model.parameters())


@pytest.mark.slow
def test_cli_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    result = run_cli("info", str(bad))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
