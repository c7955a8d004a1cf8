"""``glean-sr serve``: the web page in headless Chromium, the HTTP API through gradio_client and
curl, the limits, and what is left on disk.

The server runs the shipped demo model (8 -> 32 px) in a subprocess on 127.0.0.1 with small
limits (1,024 pixels, 51.2 KiB uploads); every result is compared with ``glean-sr upscale``'s
output for the same file, byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SRC, run_cli
from headless_browser import Browser, chromium

pytest.importorskip("gradio", reason="needs the web extra: pip install 'glean-sr[web]'")

LIMIT_PIXELS = 1024
LIMIT_MB = "0.05"  # 51.2 KiB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``glean-sr serve`` in a subprocess whose temporary folder is ``tmp``."""

    def __init__(self, tmp: Path, log: Path):
        self.tmp, self.log = tmp, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, TMPDIR=str(tmp), GLEAN_SR_OFFLINE="1", OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "glean_sr", "serve", "--port", str(self.port),
                 "--device", "cpu", "--max-pixels", str(LIMIT_PIXELS),
                 "--max-upload-mb", LIMIT_MB],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited ({self.proc.returncode}): {log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"serve did not answer in 600 s: {log.read_text()}")

    def leftovers(self) -> list[str]:
        """What the server left in its temporary folder (its cache, request folders)."""
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("glean-sr-"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server_tmp")
    srv = Server(tmp, tmp_path_factory.mktemp("server_log") / "serve.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An 8 x 8 image, the command's result for it, a 40 x 40 one (over the pixel limit) and
    one of 192 KiB (over the upload limit)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for name, side in (("small.png", 8), ("many_pixels.png", 40), ("large_file.png", 256)):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / name)
    result = run_cli("upscale", str(folder / "small.png"), "-o", str(folder / "cli"))
    assert result.returncode == 0, result.stderr
    return folder


def _expected(images: Path) -> bytes:
    return (images / "cli" / "small_x4.png").read_bytes()


# ----------------------------------------------------------------------------------------------
# the library behind the page, in this process


@pytest.fixture(scope="module")
def restorers():
    from glean_sr.serve import Restorers, ServeOptions

    return Restorers(ServeOptions(device="cpu", max_pixels=LIMIT_PIXELS), progress=False)


def test_options_are_checked():
    from glean_sr.errors import ConfigError
    from glean_sr.serve import ServeOptions

    for bad in ({"models": ()}, {"models": ("a", "a")}, {"concurrency": 0}, {"max_queue": 1.5}):
        with pytest.raises(ConfigError):
            ServeOptions(**bad)
    assert ServeOptions(max_upload_bytes=3 << 20).describe_limits() == (
        "uploads up to 3.0 MiB and 4,194,304 pixels; 1 request(s) at a time, up to 16 waiting"
    )


def test_each_model_is_offered_where_it_fits(restorers):
    assert restorers.upscale_names == restorers.face_names == ["glyphs_demo_4x"]
    assert restorers.colorize_names == []
    from glean_sr.errors import ConfigError

    with pytest.raises(ConfigError, match="not served for colorize"):
        restorers.colorize("x.png", "glyphs_demo_4x")


def test_a_request_writes_what_the_upscaler_gives_and_removes_its_folder(
    restorers, images, tmp_path
):
    from glean_sr import Upscaler, write_image
    from glean_sr.serve import run_request

    work = lambda: restorers.upscale(images / "small.png", "glyphs_demo_4x")  # noqa: E731
    requests = run_request(work, str(images / "small.png"))
    (before, after), result, text = next(requests)
    folder = Path(result).parent
    assert folder.name.startswith("glean-sr-request-")
    assert Path(result).name == "small_x4.png"
    assert Path(result).read_bytes() == _expected(images)
    want = Upscaler.from_pretrained("glyphs_demo_4x", device="cpu")(images / "small.png").data
    write_image(want, tmp_path / "want.png")
    assert Path(result).read_bytes() == (tmp_path / "want.png").read_bytes()
    with Image.open(before) as b, Image.open(after) as a:
        assert b.size == a.size == (32, 32)
        # the input, enlarged with its pixels kept (nearest)
        small = np.asarray(Image.open(images / "small.png"))
        np.testing.assert_array_equal(np.asarray(b)[::4, ::4], small)
    assert text == "8x8 RGB 8-bit PNG; restored 8x8 -> 32x32 (x4)"
    with pytest.raises(StopIteration):
        next(requests)  # gradio has taken the files: the folder goes
    assert not folder.exists()


def test_an_error_is_the_commands_line_without_the_servers_path(restorers, images):
    import gradio as gr

    from glean_sr.serve import run_request

    upload = str(images / "many_pixels.png")
    with pytest.raises(gr.Error) as caught:
        next(run_request(lambda: restorers.upscale(upload, "glyphs_demo_4x"), upload))
    assert caught.value.message == (
        "many_pixels.png: 40x40 = 1,600 pixels is more than the limit of 1,024 (a decompression "
        "bomb?); raise it (--max-pixels or GLEAN_SR_MAX_PIXELS) only if you trust the file"
    )
    with pytest.raises(gr.Error, match="upload an image first"):
        next(run_request(lambda: None, None))


def test_a_colorizer_gets_the_colorize_tab(images, tmp_path):
    import torch

    from glean_sr import Colorizer, read_image, write_image
    from glean_sr.config import GLEANColorizerConfig
    from glean_sr.models.colorizer import GLEANColorizer
    from glean_sr.serve import Restorers, ServeOptions, build_app, run_request

    config = GLEANColorizerConfig(
        out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=32, num_mlps=2,
        channel_table={4: 32, 8: 32, 16: 16, 32: 16}, decoder_channels=16,
    )  # fmt: skip
    torch.manual_seed(0)
    GLEANColorizer(config).save_pretrained(tmp_path / "colorizer")
    source = str(tmp_path / "colorizer")
    served = Restorers(ServeOptions(models=("glyphs_demo_4x", source), device="cpu"))
    assert served.colorize_names == [source] and served.upscale_names == ["glyphs_demo_4x"]
    photo = str(images / "many_pixels.png")
    request = run_request(lambda: served.colorize(photo, source), photo)
    _, result, _ = next(request)  # the folder lives as long as the request
    data, _ = Colorizer.from_pretrained(source, device="cpu").colorize_data(read_image(photo))
    write_image(data, tmp_path / "want.png")
    assert Path(result).read_bytes() == (tmp_path / "want.png").read_bytes()
    app = build_app(served)
    assert {f.api_name for f in app.fns.values()} == {"upscale", "faces", "colorize"}


@pytest.mark.slow
def test_the_faces_tab_gives_the_faces_commands_result(tiny_model_dir, tmp_path):
    pytest.importorskip("dlib", reason="needs the faces extra: pip install 'glean-sr[faces]'")
    from skimage import data

    from glean_sr.data.imresize import imresize
    from glean_sr.serve import Restorers, ServeOptions, run_request

    photo = tmp_path / "astronaut.png"
    Image.fromarray(imresize(data.astronaut(), size=(200, 200))).save(photo)
    cli = run_cli("faces", str(photo), "-m", str(tiny_model_dir), "-o", str(tmp_path / "cli"))
    assert cli.returncode == 0, cli.stderr
    served = Restorers(ServeOptions(models=(str(tiny_model_dir),), device="cpu"))
    request = run_request(lambda: served.faces(photo, str(tiny_model_dir)), str(photo))
    (before, after), result, text = next(request)
    assert Path(result).name == "astronaut_faces.png"
    assert Path(result).read_bytes() == (tmp_path / "cli" / "astronaut_faces.png").read_bytes()
    assert "1 face found" in text
    with Image.open(before) as b, Image.open(after) as a:
        assert b.size == a.size == (400, 400)


def test_without_gradio_the_error_names_the_extra(monkeypatch):
    from glean_sr.errors import MissingDependencyError
    from glean_sr.serve import serve

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    with pytest.raises(MissingDependencyError, match=r"glean-sr\[web\]"):
        serve(None)


# ----------------------------------------------------------------------------------------------
# the server


@pytest.fixture
def browser(tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it; CI has it)")
    b = Browser(binary, tmp_path / "profile", tmp_path / "chromium.log")
    yield b
    b.close()


CLICK = """(() => {{
    const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() == {0!r});
    b.click();
    return true;
}})()"""
RESULT_LINK = "[...document.querySelectorAll('a')].map(a => a.href).find(h => h.includes({0!r}))"


@pytest.mark.slow
def test_the_page_renders_in_headless_chromium(server, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it; CI has it)")
    proc = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=60000", "--dump-dom", server.url],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    dom = proc.stdout
    assert "<title>glean-sr</title>" in dom, proc.stderr[-2000:]
    # the app itself was rendered by its scripts: the tabs, the button, the stated limits
    for text in (">upscale<", ">faces<", "Restore", "Use via API", "1,024 pixels", "51.2 KiB"):
        assert text in dom, text


@pytest.mark.slow
def test_an_upload_in_the_page_gives_the_commands_result(server, images, browser):
    browser.open(server.url)
    browser.wait_for("document.querySelector('input[type=file]') !== null")
    browser.upload("input[type=file]", images / "small.png")
    browser.wait_for("document.querySelector('img[src*=\"small.png\"]') !== null")  # uploaded
    browser.evaluate(CLICK.format("Restore"))
    link = browser.wait_for(RESULT_LINK.format("small_x4.png"))
    with urllib.request.urlopen(link, timeout=60) as r:
        data = r.read()
    assert data == _expected(images)
    # the comparison slider shows both, and the line says what was done
    assert browser.wait_for("document.querySelector('img[src*=\"after.png\"]') !== null")
    assert "restored 8x8 -> 32x32 (x4)" in browser.evaluate(
        "[...document.querySelectorAll('textarea')].map(t => t.value).join(' ')"
    )


@pytest.mark.slow
def test_the_page_shows_the_error_line_of_an_image_over_the_pixel_limit(server, images, browser):
    browser.open(server.url)
    browser.wait_for("document.querySelector('input[type=file]') !== null")
    browser.upload("input[type=file]", images / "many_pixels.png")
    browser.wait_for("document.querySelector('img[src*=\"many_pixels.png\"]') !== null")
    browser.evaluate(CLICK.format("Restore"))
    line = (
        "many_pixels.png: 40x40 = 1,600 pixels is more than the limit of 1,024 (a decompression "
        "bomb?)"
    )
    assert browser.wait_for(f"document.body.innerText.includes({line!r})")
    assert "/tmp" not in browser.evaluate("document.body.innerText")  # no server paths


@pytest.mark.slow
def test_gradio_client_gets_the_commands_result(server, images, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False, download_files=str(tmp_path))
    (before, after), result, text = client.predict(
        handle_file(str(images / "small.png")), "glyphs_demo_4x", "bicubic", "pad", 0, 0,
        api_name="/upscale",
    )  # fmt: skip
    assert Path(result).read_bytes() == _expected(images)
    with Image.open(result) as im:
        assert im.size == (32, 32)
    with Image.open(before) as b, Image.open(after) as a:  # side by side: the same size
        assert b.size == a.size == (32, 32)
    assert text == "8x8 RGB 8-bit PNG; restored 8x8 -> 32x32 (x4)"
    # the request's own folder is gone; the server's cache folder remains while it runs
    assert [n for n in server.leftovers() if not n.startswith("glean-sr-serve-")] == []


@pytest.mark.slow
def test_oversized_uploads_get_the_error_line(server, images):
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server.url, verbose=False)
    with pytest.raises(AppError) as caught:
        client.predict(
            handle_file(str(images / "many_pixels.png")), "glyphs_demo_4x", "bicubic", "pad", 0,
            0, api_name="/upscale",
        )  # fmt: skip
    assert str(caught.value).startswith(
        "many_pixels.png: 40x40 = 1,600 pixels is more than the limit of 1,024"
    )
    # a file over the upload limit is refused by the server as it arrives (gradio_client checks
    # the limit itself before sending, so the upload is made directly)
    with open(images / "large_file.png", "rb") as f:
        reply = httpx.post(f"{server.url}/gradio_api/upload", files={"files": f}, timeout=60)
    assert reply.status_code == 413
    assert "maximum allowed size" in reply.text


@pytest.mark.slow
def test_the_readme_curl_example_works(server, images, tmp_path):
    """The README's two-step HTTP call: upload, call, read the result from the event stream."""
    curl = ["curl", "-sS", "--max-time", "300"]
    upload = subprocess.run(
        [*curl, "-F", f"files=@{images / 'small.png'}", f"{server.url}/gradio_api/upload"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    [path] = json.loads(upload.stdout)
    body = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "glyphs_demo_4x"]}
    body["data"] += ["bicubic", "pad", 0, 0]
    call = subprocess.run(
        [*curl, "-X", "POST", f"{server.url}/gradio_api/call/upscale",
         "-H", "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    event = json.loads(call.stdout)["event_id"]
    stream = subprocess.run(
        [*curl, "-N", f"{server.url}/gradio_api/call/upscale/{event}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    complete = stream.split("event: complete\ndata: ", 1)[1].splitlines()[0]
    _, result, text = json.loads(complete)
    got = subprocess.run([*curl, result["url"]], capture_output=True, check=True).stdout
    assert got == _expected(images)
    assert text.endswith("restored 8x8 -> 32x32 (x4)")


@pytest.mark.slow
def test_stopping_the_server_removes_its_files(server):
    """Run last in this module: SIGTERM stops the server cleanly, and its cache (uploads and
    results) goes with it."""
    assert server.stop() == 0, server.log.read_text()[-3000:]
    assert server.leftovers() == []
