"""Models and banks on the Hugging Face Hub, through huggingface_hub against a Hub endpoint on
127.0.0.1 (:mod:`hf_server`): model repos and foreign files, revisions, the Hub cache and
offline mode, preset copies checked by SHA-256, and ``glean-sr publish``'s folder and card."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import SRC, TINY, set_noise_strengths
from glean_sr import load_bank, load_model, presets
from glean_sr.cli import main
from glean_sr.errors import DownloadError, WeightsError
from glean_sr.models.glean import GLEAN
from glean_sr.weights.hf_hub import HubRef, parse_hub_source
from hf_server import FakeHub

hf = pytest.importorskip("huggingface_hub", reason="the hub extra is not installed")
pytest.importorskip("huggingface_hub.constants")  # a submodule: an attribute once imported


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _model(seed: int) -> GLEAN:
    torch.manual_seed(seed)
    return set_noise_strengths(GLEAN(TINY).eval(), 0.1)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hub on 127.0.0.1 as huggingface_hub's endpoint, with its cache under tmp_path."""
    with FakeHub() as server:
        monkeypatch.setattr(hf.constants, "ENDPOINT", server.url)
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(hf.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(hf.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
        monkeypatch.setattr(hf.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


@pytest.fixture
def model_repo(hub, tmp_path):
    """alice/tiny-glean: two commits (v1 tagged), each a glean-sr model folder."""
    repo = hub.repo("alice/tiny-glean")
    shas = []
    for seed in (1, 2):
        folder = _model(seed).save_pretrained(tmp_path / f"m{seed}")
        (folder / "README.md").write_text("---\nlibrary_name: glean-sr\n---\n# tiny\n")
        shas.append(repo.commit(_folder_files(folder)))
    repo.refs["v1"] = shas[0]
    return shas


def test_sources_are_parsed_as_the_hub_writes_them(tmp_path):
    assert parse_hub_source("alice/tiny") == HubRef("alice/tiny", None, None, bare=True)
    assert parse_hub_source("alice/tiny@v1") == HubRef("alice/tiny", "v1", None, bare=True)
    assert parse_hub_source("hf://alice/tiny@v1/sub/w.pth") == HubRef(
        "alice/tiny", "v1", "sub/w.pth"
    )
    assert parse_hub_source("hf://alice/tiny") == HubRef("alice/tiny")
    assert str(HubRef("alice/tiny", "v1", "w.pth")) == "hf://alice/tiny@v1/w.pth"
    for local in ("glean_ffhq_16x", "runs/a/b", "./a/b", "/abs/path", "w.pth"):
        assert parse_hub_source(local) is None, local
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "tiny").mkdir()
    assert parse_hub_source(str(tmp_path / "alice" / "tiny")) is None  # a local folder wins
    with pytest.raises(DownloadError, match="not a Hub address"):
        parse_hub_source("hf://alice/tiny/../../etc/passwd")


def test_model_repo_loads_at_each_revision_into_the_hub_cache(model_repo, tmp_path):
    v1, v2 = model_repo
    latest = load_model("alice/tiny-glean", progress=False)
    assert _same(latest, _model(2))
    for rev in ("v1", v1):
        assert _same(load_model(f"alice/tiny-glean@{rev}", progress=False), _model(1))
    assert _same(load_model(f"hf://alice/tiny-glean@{v2}", progress=False), _model(2))
    snapshots = tmp_path / "hf" / "hub" / "models--alice--tiny-glean" / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == sorted([v1, v2])
    assert (snapshots / v1 / "README.md").is_file()  # the card comes along


def test_offline_uses_the_cache_and_says_when_it_is_empty(model_repo, hub, monkeypatch):
    load_model("alice/tiny-glean@v1", progress=False)
    monkeypatch.setattr(hf.constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    assert _same(load_model("alice/tiny-glean@v1", progress=False), _model(1))
    assert len(hub.requests) == before  # nothing asked of the Hub
    with pytest.raises(DownloadError) as info:
        load_model("alice/other", progress=False)
    msg = str(info.value)
    assert "HF_HUB_OFFLINE is set" in msg and "not in the Hub cache" in msg
    assert "\n" not in msg


def test_missing_repo_revision_and_file_are_one_line_each(model_repo, tmp_path, capsys):
    cases = [
        ("nobody/nothing", "neither a local file or folder nor a repository"),
        ("hf://nobody/nothing/w.pth", "no repository nobody/nothing"),
        ("alice/tiny-glean@v9", "has no revision 'v9'"),
        ("hf://alice/tiny-glean/missing.pth", "has no file missing.pth"),
    ]
    for source, expected in cases:
        assert main(["info", source]) != 0
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (source, err)


def test_released_format_file_in_a_repo_loads_and_is_checked_as_a_preset(hub, monkeypatch, capsys):
    model = _model(3)
    buf = io.BytesIO()
    body = {f"generator.{k}": v for k, v in model.state_dict().items()}
    torch.save({"meta": {}, "state_dict": body}, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    hub.repo("bob/glean-copies").commit({"released/glean_tiny.pth": data})
    source = "hf://bob/glean-copies/released/glean_tiny.pth"
    assert _same(load_model(source, progress=False), model)
    assert main(["info", source, "--json"]) == 0  # and through the command line
    assert json.loads(capsys.readouterr().out)["format"].endswith(f"from {source}")

    preset = presets.Preset(
        "glean_tiny", TINY, "test", "tiny", "https://gone.example/glean_tiny.pth", digest[:8]
    )
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", preset)
    assert _same(load_model(f"glean_tiny={source}", progress=False), model)
    wrong = presets.Preset(preset.name, TINY, "t", "t", preset.url, "00000000")
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", wrong)
    with pytest.raises(WeightsError) as info:
        load_model(f"glean_tiny={source}", progress=False)
    assert "is not that of glean_tiny's original file" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_preset_tries_its_hub_copies_and_names_every_way_out(hub, monkeypatch):
    model = _model(4)
    buf = io.BytesIO()
    torch.save({"state_dict": {f"generator.{k}": v for k, v in model.state_dict().items()}}, buf)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    hub.repo("carol/mirror").commit({"glean_tiny.pth": buf.getvalue()})
    monkeypatch.setenv("GLEAN_SR_MIRROR", "http://127.0.0.1:9")  # the released server: refused
    monkeypatch.setenv("GLEAN_SR_OFFLINE", "0")
    preset = presets.Preset(
        "glean_tiny",
        TINY,
        "test",
        "tiny",
        "https://gone.example/glean_tiny.pth",
        digest[:8],
        hub_copies=("hf://carol/mirror/glean_tiny.pth",),
    )
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", preset)
    assert _same(load_model("glean_tiny", progress=False), model)

    gone = presets.Preset(
        "glean_tiny", TINY, "t", "t", preset.url, digest[:8], hub_copies=("hf://carol/none/w.pth",)
    )
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", gone)
    with pytest.raises(DownloadError) as info:
        load_model("glean_tiny", progress=False)
    msg = str(info.value)
    assert "https://gone.example/glean_tiny.pth" in msg and "hf://carol/none/w.pth" in msg
    assert "-m glean_tiny=path/to/glean_tiny.pth" in msg and "hf://owner/repo" in msg
    assert "\n" not in msg


def test_bank_repo_and_foreign_bank_file_load(hub, tmp_path):
    from glean_sr.config import StyleGAN2Config
    from glean_sr.models.stylegan2 import StyleGAN2Generator
    from glean_sr.weights.banks import LoadedBank
    from sg2_files import write_rosinality_train_checkpoint

    torch.manual_seed(0)
    cfg = StyleGAN2Config(
        resolution=16, style_channels=16, num_mlps=2, channel_table={4: 16, 8: 16, 16: 8}
    )
    G = StyleGAN2Generator(cfg).eval()
    folder = LoadedBank(G, None, "test", "glean-sr train-bank", "RGB", True).save(tmp_path / "b")
    hub.repo("dan/bank16").commit(_folder_files(folder))
    assert _same(load_bank("dan/bank16", progress=False).generator, G)

    ckpt = tmp_path / "rosinality.pt"
    write_rosinality_train_checkpoint(ckpt, size=16, style_dim=16, n_mlp=2)
    hub.repo("dan/files").commit({"ckpt/010000.pt": ckpt.read_bytes()})
    from_hub = load_bank("hf://dan/files/ckpt/010000.pt", progress=False)
    assert _same(from_hub.generator, load_bank(ckpt, progress=False).generator)


def test_publish_writes_a_card_the_hub_parses_and_a_copy_that_stands_for_its_preset(
    hub, tmp_path, monkeypatch, capsys
):
    model = _model(5)
    original = tmp_path / "glean_tiny_20210101.pth"
    torch.save(
        {"state_dict": {f"generator.{k}": v for k, v in model.state_dict().items()}}, original
    )
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    preset = presets.Preset(
        "glean_tiny", TINY, "test", "tiny", "https://gone.example/x.pth", digest[:8]
    )
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", preset)
    summary = {
        "gt_dir": "gt",
        "num_images": 3,
        "models": [{"name": "mine", "source": f"glean_tiny={original}"}],
        "columns": ["psnr_rgb", "ssim_rgb"],
        "results": {
            "bicubic": {"psnr_rgb": 20.0, "ssim_rgb": 0.5},
            "mine": {"psnr_rgb": 25.5, "ssim_rgb": 0.75},
        },
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "pub"
    argv = [
        "publish",
        f"glean_tiny={original}",
        str(out),
        "--eval-summary",
        str(tmp_path / "summary.json"),
    ]
    assert main(argv) == 0
    card = hf.ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "glean-sr"
    assert data["pipeline_tag"] == "image-to-image" and "super-resolution" in data["tags"]
    assert original.name in card.text and digest in card.text
    assert "| this model | 25.5 | 0.75 |" in card.text and "| bicubic | 20 | 0.5 |" in card.text
    assert main(argv) != 0 and "--overwrite" in capsys.readouterr().err

    # the folder on the Hub loads, and stands for the preset: its tensors are the original's
    hub.repo("erin/glean-tiny").commit(_folder_files(out))
    assert _same(load_model("erin/glean-tiny", progress=False), model)
    assert _same(load_model("glean_tiny=erin/glean-tiny", progress=False), model)
    assert main(["convert", str(out), str(tmp_path / "half"), "--dtype", "fp16"]) == 0
    with pytest.raises(WeightsError, match="not those converted from glean_tiny's original"):
        load_model(f"glean_tiny={tmp_path / 'half'}", progress=False)
    other = _model(6).save_pretrained(tmp_path / "other")
    with pytest.raises(WeightsError, match="not a converted copy of glean_tiny"):
        load_model(f"glean_tiny={other}", progress=False)


def test_publish_upload_needs_a_login(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    _model(7).save_pretrained(tmp_path / "m")
    assert main(["publish", str(tmp_path / "m"), str(tmp_path / "pub"), "--repo", "me/x"]) != 0
    err = capsys.readouterr().err
    assert "not logged in" in err and err.count("\n") == 1
    assert (tmp_path / "pub" / "README.md").is_file()  # the folder is written first


@pytest.mark.slow
def test_cli_honours_hf_endpoint_hf_home_and_offline(model_repo, hub, tmp_path):
    """The real environment variables, read by huggingface_hub at import in a fresh process."""
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "0",
    }
    env.pop("HF_HUB_CACHE", None)
    cmd = [sys.executable, "-m", "glean_sr", "info", "alice/tiny-glean@v1"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "home" / "hub" / "models--alice--tiny-glean").is_dir()
    asked = len(hub.requests)
    offline = subprocess.run(
        cmd, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300
    )
    assert offline.returncode == 0, offline.stderr
    assert len(hub.requests) == asked
    missing = subprocess.run(
        [sys.executable, "-m", "glean_sr", "info", "alice/elsewhere"],
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0 and "HF_HUB_OFFLINE is set" in missing.stderr


def test_publish_uploads_one_commit_that_loads_back(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    model = _model(8)
    model.save_pretrained(tmp_path / "m")
    argv = ["publish", str(tmp_path / "m"), str(tmp_path / "pub"), "--repo", "frank/glean-tiny"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "uploaded to" in out and "frank/glean-tiny" in out
    assert hub.tokens and all(t == "Bearer hf_test_token" for t in hub.tokens)
    repo = hub.repos["frank/glean-tiny"]
    assert len(repo.commits) == 1  # config, weights and card in one commit
    files = repo.commits[repo.refs["main"]]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert files["README.md"] == (tmp_path / "pub" / "README.md").read_bytes()
    assert "frank/glean-tiny" in files["README.md"].decode()  # the card's usage names the repo
    assert _same(load_model("frank/glean-tiny", progress=False), model)


def test_publish_describes_a_model_of_any_input_size(tmp_path):
    from glean_sr.config import RealESRGANConfig
    from glean_sr.models.registry import build_model

    cfg = RealESRGANConfig(rrdb_channels=8, num_rrdbs=1, growth_channels=8, scale=2)
    build_model(cfg).save_pretrained(tmp_path / "m")
    assert main(["publish", str(tmp_path / "m"), str(tmp_path / "pub")]) == 0
    card = hf.ModelCard.load(tmp_path / "pub" / "README.md")
    assert "Real-ESRGAN" in card.text and "any size in, x2 out" in card.text
    assert "[N, 3, 2H, 2W]" in card.text
