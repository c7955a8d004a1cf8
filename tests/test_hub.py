"""Downloading presets: cache, checksum, atomic write, offline message; against 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

from conftest import TINY
from glean_sr import load_model, presets
from glean_sr.errors import DownloadError
from glean_sr.weights import hub


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def served_preset(server, tiny_model, monkeypatch):
    """A tiny released-style checkpoint served locally under a preset name."""
    root, base = server
    (root / "restorers").mkdir()
    body = {f"generator.{k}": v for k, v in tiny_model.state_dict().items()}
    tmp = root / "restorers" / "tmp.pth"
    torch.save({"meta": {}, "state_dict": body}, tmp, _use_new_zipfile_serialization=False)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"glean_tiny_20210101-{digest[:8]}.pth"
    tmp.rename(root / "restorers" / name)
    preset = presets.Preset(
        "glean_tiny",
        TINY,
        "test",
        "tiny",
        f"https://download.example.org/restorers/{name}",
        digest[:8],
    )
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", preset)
    monkeypatch.setenv("GLEAN_SR_MIRROR", base)
    monkeypatch.setenv("GLEAN_SR_OFFLINE", "0")
    return root / "restorers" / name, preset


def test_preset_downloads_once_verifies_and_loads(served_preset, tiny_model):
    path, preset = served_preset
    model = load_model("glean_tiny", progress=False)
    cached = hub.cache_dir() / preset.filename
    assert cached.read_bytes() == path.read_bytes()
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(lq), tiny_model(lq))
    path.unlink()  # the server no longer has it: the cache must be used
    load_model("glean_tiny", progress=False)
    assert not list(hub.cache_dir().glob("*.part"))


def test_checksum_mismatch_leaves_nothing_behind(served_preset, monkeypatch):
    _, preset = served_preset
    bad = presets.Preset(preset.name, preset.config, "t", "t", preset.url, "00000000")
    monkeypatch.setitem(presets.PRESETS, "glean_tiny", bad)
    with pytest.raises(DownloadError, match="does not match the expected 00000000"):
        load_model("glean_tiny", progress=False)
    assert list(hub.cache_dir().iterdir()) == []


def test_corrupt_cached_file_is_fetched_again(served_preset):
    path, preset = served_preset
    cached = hub.download(preset.url, sha256_prefix=preset.sha256_prefix, progress=False)
    cached.write_bytes(b"damaged")
    hub._verified_marker(cached).unlink()
    again = hub.download(preset.url, sha256_prefix=preset.sha256_prefix, progress=False)
    assert again.read_bytes() == path.read_bytes()


def test_offline_error_names_url_and_local_alternative(monkeypatch):
    monkeypatch.setenv("GLEAN_SR_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        load_model("glean_ffhq_16x")
    msg = str(info.value)
    assert "glean_ffhq_16x_20210527-61a3afad.pth" in msg
    assert "pass the local file path" in msg


def test_unreachable_server_error_names_url(monkeypatch):
    monkeypatch.setenv("GLEAN_SR_OFFLINE", "0")
    monkeypatch.setenv("GLEAN_SR_MIRROR", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(DownloadError, match=r"could not download glean_cat_8x .*127\.0\.0\.1:9"):
        load_model("glean_cat_8x", progress=False)
