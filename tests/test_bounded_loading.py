"""Untrusted files stay cheap: what a weight file, a config or an image declares is checked
against a budget before anything is decompressed, allocated, built or decoded.

The hostile files are made here, small on disk: a torch zip whose deflated entry inflates a
thousandfold, one whose central directory claims gigabytes, a safetensors header declaring a
64 GiB tensor, a legacy ``torch.save`` file declaring 32 GiB of storages, a ``config.json`` with
a million RRDBs, JSON nested 100 000 deep, and a 9000 x 9000 PNG of 240 kB (243 MB decoded).
Time and peak memory of a refusal are measured in a fresh interpreter, where ``ru_maxrss`` is
the peak of this one load and not of the tests before it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SRC, TINY
from glean_sr.cli import main
from glean_sr.config import (
    GLEANConfig,
    GLEANNoBankConfig,
    LightGLEANConfig,
    StyleGAN2Config,
    StyleGAN2DiscriminatorConfig,
    config_from_dict,
    config_to_dict,
)
from glean_sr.errors import ConfigError, ImageError, WeightsError
from glean_sr.evaluation.evaluate import EvalOptions, evaluate
from glean_sr.io import read_image, read_image_size
from glean_sr.limits import JSONLimitError, loads_json
from glean_sr.models.discriminator import StyleGAN2Discriminator
from glean_sr.models.registry import build_model
from glean_sr.models.stylegan2 import StyleGAN2Generator
from glean_sr.presets import PRESETS
from glean_sr.weights.safe_load import read_weights_file

MIB = 1 << 20

# --------------------------------------------------------------------------------------------
# hostile files, made without the code under test


def _repeated_deflate(block: bytes, copies: int) -> bytes:
    """Raw deflate data of ``block * copies``, compressing ``block`` once: after a full flush the
    compressor starts afresh, so each copy compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    once = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    return once * copies + c.flush()


def _repeated_checksum(fn, block: bytes, copies: int, start: int) -> int:
    value = start
    for _ in range(copies):
        value = fn(block, value)
    return value


def _zip(entries: list[tuple[str, bytes, int, int, int, int]]) -> bytes:
    """A zip file of ``(name, stored bytes, method, crc, declared size, size in the central
    directory)`` entries, written by hand so that sizes can be declared as anything."""
    local, central = b"", b""
    for name, data, method, crc, size, claimed in entries:
        n = name.encode()
        common = struct.pack("<HHHHI", 0, method, 0, 0x21, crc)  # flags, method, time, date, crc
        central += struct.pack("<IHH", 0x02014B50, 20, 20) + common
        central += struct.pack("<IIHHHHHII", len(data), claimed, len(n), 0, 0, 0, 0, 0, len(local))
        central += n
        local += struct.pack("<IH", 0x04034B50, 20) + common
        local += struct.pack("<IIHH", len(data), size, len(n), 0) + n + data
    count = len(entries)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(local), 0)
    return local + central + end


def _torch_zip_entries(tensors: dict[str, torch.Tensor]) -> list[tuple[str, bytes]]:
    """The entries torch.save writes for ``tensors`` (its own zip, read back)."""
    import zipfile

    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    with zipfile.ZipFile(buffer) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def deflated_bomb(path: Path, inflated: int = 256 * MIB) -> Path:
    """A real torch.save file whose storage entry is ``inflated`` bytes of zeros deflated about
    1000 : 1: torch.load would inflate all of it (257 MiB and 5 s when tried) before refusing."""
    block = bytes(MIB)
    entries = []
    for name, data in _torch_zip_entries({"w": torch.zeros(1)}):
        if name.endswith("/data/0"):
            packed = _repeated_deflate(block, inflated // MIB)
            crc = _repeated_checksum(zlib.crc32, block, inflated // MIB, 0)
            entries.append((name, packed, 8, crc, inflated, inflated))
        else:
            entries.append((name, data, 0, zlib.crc32(data), len(data), len(data)))
    path.write_bytes(_zip(entries))
    return path


def forged_zip(path: Path) -> Path:
    """A torch.save file whose central directory declares 3.75 GiB for each of its two storage
    entries (they hold 16 bytes each)."""
    entries = []
    for name, data in _torch_zip_entries({"a": torch.zeros(4), "b": torch.ones(4)}):
        claimed = 0xF000_0000 if "/data/" in name and "/.data/" not in name else len(data)
        entries.append((name, data, 0, zlib.crc32(data), len(data), claimed))
    path.write_bytes(_zip(entries))
    return path


def safetensors_file(path: Path, header: dict, data: bytes = b"") -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def oversized_safetensors(path: Path) -> Path:
    """A 120-byte safetensors file whose header declares a 64 GiB float32 tensor."""
    n = 1 << 17
    entry = {"dtype": "F32", "shape": [n, n], "data_offsets": [0, 4 * n * n]}
    return safetensors_file(path, {"w": entry}, bytes(16))


class _Storage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel, None)
        return None


def legacy_declaring(path: Path, numel: int) -> Path:
    """A legacy torch.save file whose one storage declares ``numel`` floats (and holds none)."""
    parts = [pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {})]
    main_pickle = io.BytesIO()
    _LegacyPickler(main_pickle, protocol=2).dump({"w": _Storage("0", numel)})
    keys = pickle.dumps(["0"], protocol=2)
    path.write_bytes(b"".join(parts) + main_pickle.getvalue() + keys + struct.pack("<q", numel))
    return path


def solid_png(path: Path, width: int, height: int) -> Path:
    """A valid, fully decodable black RGB PNG, streamed (never held decoded): 9000 x 9000 is
    about 240 kB on disk and 243 MB of samples."""
    row = bytes(1 + 3 * width)  # filter byte 0, then black samples
    rows_per_block = 100
    assert height % rows_per_block == 0
    block, copies = row * rows_per_block, height // rows_per_block
    adler = _repeated_checksum(zlib.adler32, block, copies, 1)
    idat = b"\x78\xda" + _repeated_deflate(block, copies) + struct.pack(">I", adler)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    return solid_png(tmp_path_factory.mktemp("big") / "big.png", 9000, 9000)


# --------------------------------------------------------------------------------------------
# time and peak memory of a refusal, in a fresh interpreter

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path

import numpy as np
import torch  # imported before measuring: only the loads count

from glean_sr.errors import GleanError
from glean_sr.io import read_image
from glean_sr.weights.safe_load import read_weights_file

reader = {"weights": read_weights_file, "image": read_image}[sys.argv[1]]
scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = []
for path in sys.argv[2:]:
    start = time.perf_counter()
    try:
        reader(Path(path))
        error = None
    except GleanError as exc:
        error = str(exc)
    results.append({"path": path, "error": error, "seconds": time.perf_counter() - start})
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / scale
print(json.dumps({"results": results, "grown_mib": grown}))
"""


def measure(reader: str, paths: list[Path]) -> tuple[list[dict], float]:
    """``([{path, error, seconds}], peak memory growth in MiB over all loads)``."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, reader, *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["results"], out["grown_mib"]


# --------------------------------------------------------------------------------------------
# weight files


def test_hostile_weight_files_are_refused_in_a_second_and_little_memory(tmp_path):
    files = {
        "deflated": deflated_bomb(tmp_path / "deflated.pth"),
        "forged": forged_zip(tmp_path / "forged.pth"),
        "safetensors": oversized_safetensors(tmp_path / "huge.safetensors"),
        "legacy": legacy_declaring(tmp_path / "legacy.pth", 1 << 33),
    }
    assert all(p.stat().st_size < 300_000 for p in files.values())
    results, grown_mib = measure("weights", list(files.values()))
    expected = {
        "deflated": r"zip entry 'archive/data/0' inflates \d[\d,]* bytes to 256\.0 MiB \(more",
        "forged": re.escape("its zip entries declare 7.5 GiB, more than the budget of 4.0 GiB"),
        "safetensors": re.escape("entry 'w' declares bytes 0 to 68,719,476,736 (64.0 GiB"),
        "legacy": re.escape("its tensor storages declare 32.0 GiB, more than the budget of 4.0"),
    }
    for (kind, path), result in zip(files.items(), results, strict=True):
        error = result["error"]
        assert error is not None and "\n" not in error, (kind, error)
        assert error.startswith(f"{path}: "), error
        assert re.search(expected[kind], error), (kind, error)
        assert result["seconds"] < 1.0, (kind, result)
    assert grown_mib < 200, grown_mib


def test_refusals_over_the_budget_say_how_to_raise_it(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    sd = {"a": torch.zeros(1000), "b": torch.ones(24)}
    save_file(sd, tmp_path / "m.safetensors")
    torch.save(sd, tmp_path / "m.pth")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("m.safetensors", "m.pth", "legacy.pth"):  # within the default budget
        back = read_weights_file(tmp_path / name)
        assert all(torch.equal(back[k], v) for k, v in sd.items()), name
    monkeypatch.setenv("GLEAN_SR_MAX_WEIGHTS_BYTES", "4000")
    for name in ("m.safetensors", "m.pth", "legacy.pth"):
        with pytest.raises(WeightsError) as info:
            read_weights_file(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name}: refused: ") and "\n" not in message
        assert "more than the budget of 3.9 KiB" in message
        assert "set GLEAN_SR_MAX_WEIGHTS_BYTES to raise it" in message
    monkeypatch.setenv("GLEAN_SR_MAX_WEIGHTS_BYTES", "lots")
    with pytest.raises(ConfigError, match="GLEAN_SR_MAX_WEIGHTS_BYTES must be a positive integer"):
        read_weights_file(tmp_path / "m.safetensors")


def test_safetensors_entries_must_not_share_bytes(tmp_path):
    f32 = {"dtype": "F32", "shape": [4]}
    path = safetensors_file(
        tmp_path / "shared.safetensors",
        {"a": {**f32, "data_offsets": [0, 16]}, "b": {**f32, "data_offsets": [8, 24]}},
        bytes(24),
    )
    with pytest.raises(WeightsError, match=r"entries 'a' and 'b' share bytes"):
        read_weights_file(path)
    empty = {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}
    path = safetensors_file(
        tmp_path / "ok.safetensors",
        {"a": {**f32, "data_offsets": [0, 16]}, "e": empty, "b": {**f32, "data_offsets": [16, 32]}},
        bytes(32),
    )
    assert sorted(read_weights_file(path)) == ["a", "b", "e"]


def test_deep_json_header_is_one_line(tmp_path):
    path = tmp_path / "deep.safetensors"
    text = b'{"w": ' + b"[" * 100_000
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(WeightsError) as info:
        read_weights_file(path)
    assert "nested deeper than 64 levels" in str(info.value) and "\n" not in str(info.value)


def test_loads_json_limits_depth_not_strings():
    with pytest.raises(JSONLimitError, match="nested deeper than 64 levels"):
        loads_json("[" * 100_000)
    assert loads_json('{"a": "[[[[' + "[" * 200 + '", "b": [[1]]}')["b"] == [[1]]
    assert loads_json("[" * 64 + "]" * 64) is not None
    assert loads_json(b'{"k": "\\"[[[["}') == {"k": '"[[[['}
    with pytest.raises(json.JSONDecodeError, match="4300 digits"):
        loads_json("1" * 5000)
    with pytest.raises(json.JSONDecodeError):
        loads_json('{"a": ')


# --------------------------------------------------------------------------------------------
# configs


def _model_dir(path: Path, **fields) -> Path:
    path.mkdir()
    config = {**config_to_dict(TINY), **fields}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"never read")
    return path


def test_a_million_rrdbs_are_refused_by_info_in_under_a_second(tmp_path, capsys):
    import glean_sr.weights.pretrained  # noqa: F401  (the imports are not what is timed)

    model_dir = _model_dir(tmp_path / "m", num_rrdbs=1_000_000)
    start = time.perf_counter()
    status = main(["info", str(model_dir)])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert status != 0 and seconds < 1.0, (status, seconds)
    assert err.count("\n") == 1, err
    assert "num_rrdbs must be an integer in [0, 64], got 1000000" in err
    assert str(model_dir / "config.json") in err


def test_deep_json_config_is_one_line_for_info(tmp_path, capsys):
    model_dir = tmp_path / "deep"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("[" * 100_000)
    (model_dir / "model.safetensors").write_bytes(b"never read")
    assert main(["info", str(model_dir)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert "nested deeper than 64 levels" in err and "config.json" in err


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "0", "1e400", '"0.01"'])
def test_lr_mlp_must_be_a_finite_positive_number(value):
    text = json.dumps(config_to_dict(TINY)).replace('"lr_mlp": 0.01', f'"lr_mlp": {value}')
    with pytest.raises(ConfigError, match=r"lr_mlp must be a finite number > 0, got"):
        config_from_dict(loads_json(text))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_rrdbs": 65}, r"num_rrdbs must be an integer in \[0, 64\], got 65"),
        ({"num_mlps": 1000}, r"num_mlps must be an integer in \[0, 64\], got 1000"),
        ({"rrdb_channels": 5000}, r"rrdb_channels must be an integer in \[1, 4096\], got 5000"),
        ({"style_channels": 10**6}, r"style_channels must be an integer in \[1, 4096\]"),
        ({"img_channels": 5}, r"img_channels must be an integer in \[1, 4\], got 5"),
        ({"bank_img_channels": 0}, r"img_channels must be an integer >= 1, got 0"),
        ({"channel_multiplier": 10**9}, r"channel_multiplier must be an integer in \[1, 64\]"),
        ({"channel_base": 1 << 30, "channel_max": 64}, r"channel_base must be an integer in"),
        ({"channel_base": 1 << 14, "channel_max": 10**5}, r"channel_max must be .* \[1, 4096\]"),
        (
            {"channel_table": {4: 64, 8: 64, 16: 5000, 32: 64}},
            r"the width at 16 px must be an integer in \[1, 4096\], got 5000",
        ),
        ({"out_size": 2048}, r"out_size must be a power of two in \[4, 1024\], got 2048"),
        ({"in_size": 12}, r"in_size must be a power of two in \[4, 1024\], got 12"),
    ],
)
def test_config_fields_are_refused_outside_their_ranges(fields, message):
    data = {**config_to_dict(TINY), **fields}
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(data)
    assert "\n" not in str(info.value)


def test_other_config_ranges():
    with pytest.raises(ConfigError, match=r"decoder_reduction must be a power of two in \[1, 4096"):
        LightGLEANConfig(in_size=8, out_size=32, decoder_reduction=8192)
    with pytest.raises(ConfigError, match=r"head_channels must be an integer in \[1, 4096\]"):
        LightGLEANConfig(in_size=8, out_size=32, head_channels=5000)
    with pytest.raises(ConfigError, match=r"mbstd_group_size must be an integer in \[1, 4096\]"):
        StyleGAN2DiscriminatorConfig(resolution=32, mbstd_group_size=10**6)


def test_parameter_budget_is_checked_before_building(monkeypatch):
    wide = dict.fromkeys((2**k for k in range(2, 11)), 4096)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        GLEANConfig(in_size=64, out_size=1024, channel_table=wide)
    assert time.perf_counter() - start < 0.1
    message = str(info.value)
    assert "parameters, more than the budget of 1,000,000,000" in message, message
    assert "set GLEAN_SR_MAX_PARAMS to raise it" in message
    data = config_to_dict(TINY)
    monkeypatch.setenv("GLEAN_SR_MAX_PARAMS", str(TINY.parameter_count() - 1))
    with pytest.raises(ConfigError, match=f"{TINY.parameter_count():,} parameters, more than"):
        config_from_dict(data)
    monkeypatch.setenv("GLEAN_SR_MAX_PARAMS", str(TINY.parameter_count()))
    assert config_from_dict(data) == TINY


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("preset", ["glean_ffhq_16x", "lightglean_cat_8x", "glyphs_demo_4x"])
def test_parameter_count_is_the_built_models(preset):
    config = PRESETS[preset].config
    assert config.parameter_count() == _count(build_model(config, device="meta"))


def test_parameter_count_of_every_kind_of_config():
    configs = [
        TINY,
        GLEANNoBankConfig(
            in_size=4,
            out_size=16,
            rrdb_channels=4,
            num_rrdbs=0,
            style_channels=8,
            num_mlps=1,
            img_channels=1,
        ),
        LightGLEANConfig(
            in_size=8,
            out_size=64,
            rrdb_channels=8,
            num_rrdbs=2,
            style_channels=16,
            num_mlps=1,
            channel_table={4: 32, 8: 16, 16: 16, 32: 8, 64: 4},
            decoder_reduction=2,
            head_channels=4,
            bank_img_channels=1,
        ),
    ]
    for config in configs:
        assert config.parameter_count() == _count(build_model(config, device="meta")), config
    bank = StyleGAN2Config(
        resolution=64,
        style_channels=16,
        num_mlps=2,
        channel_base=2048,
        channel_max=64,
        img_channels=1,
    )
    with torch.device("meta"):
        assert bank.parameter_count() == _count(StyleGAN2Generator(bank))
        assert bank.parameter_count(16) == _count(StyleGAN2Generator(bank, first_resolution=16))
        for disc in (
            StyleGAN2DiscriminatorConfig(resolution=64, mbstd_channels=2, img_channels=1),
            StyleGAN2DiscriminatorConfig(resolution=32, channel_base=1024, channel_max=32),
        ):
            assert disc.parameter_count() == _count(StyleGAN2Discriminator(disc))


# --------------------------------------------------------------------------------------------
# images


def test_a_9000_px_png_is_refused_from_its_header(big_png):
    assert big_png.stat().st_size < 400_000
    with Image.open(big_png) as im:  # a real PNG of that size (decoding it is what is avoided)
        assert (im.size, im.mode) == ((9000, 9000), "RGB")
    (result,), grown_mib = measure("image", [big_png])
    error = result["error"]
    assert error == (
        f"{big_png}: 9000x9000 = 81,000,000 pixels is more than the limit of 67,108,864 "
        "(a decompression bomb?); raise it (--max-pixels or GLEAN_SR_MAX_PIXELS) only if you "
        "trust the file"
    )
    assert result["seconds"] < 1.0, result
    assert grown_mib < 40, grown_mib  # decoded, it would take 243 MB (324 MB inside Pillow)


def test_the_pixel_limit_follows_the_environment(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "s.png")
    assert read_image_size(tmp_path / "s.png") == (40, 30)
    monkeypatch.setenv("GLEAN_SR_MAX_PIXELS", "1199")
    with pytest.raises(ImageError, match="40x30 = 1,200 pixels is more than the limit of 1,199"):
        read_image(tmp_path / "s.png")
    with pytest.raises(ImageError, match="more than the limit of 1,199"):
        read_image_size(tmp_path / "s.png")
    monkeypatch.setenv("GLEAN_SR_MAX_PIXELS", "1200")
    assert read_image(tmp_path / "s.png").width == 40


def test_pillows_own_refusal_is_our_one_line(tmp_path, monkeypatch):
    """Over twice Pillow's ``MAX_IMAGE_PIXELS`` Pillow refuses as it opens the file; that is
    reported as our limit, and a limit above Pillow's raises Pillow's."""
    path = solid_png(tmp_path / "wide.png", 3000, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(ImageError) as info:
        read_image(path, max_pixels=50_000)
    assert str(info.value).startswith(f"{path}: 300,000 pixels is more than the limit of 50,000")
    assert read_image(path, max_pixels=300_000).width == 3000
    assert Image.MAX_IMAGE_PIXELS == 300_000


def test_upscale_skips_the_big_image_with_one_line_and_restores_the_rest(
    big_png, tiny_model_dir, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "big.png").write_bytes(big_png.read_bytes())
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / "small.png")
    out = tmp_path / "out"
    status = main(["upscale", str(folder), "-m", str(tiny_model_dir), "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 1  # one input failed
    assert sorted(p.name for p in out.iterdir()) == ["small_x4.png"]
    with Image.open(out / "small_x4.png") as im:
        assert im.size == (32, 32)
    lines = [line for line in (captured.out + captured.err).splitlines() if "big.png" in line]
    assert len(lines) == 1 and "is more than the limit of 67,108,864" in lines[0], lines
    assert "internal error" not in captured.err


def test_eval_skips_the_big_gt_image_and_scores_the_rest(big_png, tiny_model, tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(gt / name)
    (gt / "big.png").write_bytes(big_png.read_bytes())
    summary = evaluate(
        [tiny_model], gt, tmp_path / "report", options=EvalOptions(device="cpu"), progress=False
    )
    assert summary["num_images"] == 2
    (skipped,) = summary["skipped"]
    assert skipped["image"] == "big.png" and "more than the limit" in skipped["reason"]
