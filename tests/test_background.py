"""Real-ESRGAN's RRDBNet as the general upscaler: released key layouts load strictly, the outputs
are BasicSR's, tiles leave no seam, and ``upscale`` / ``faces --background`` use it.

References, computed without the code under test: BasicSR's own ``RRDBNet`` (its
``rrdbnet_arch.py`` loaded from an installed ``basicsr`` package without running the package's
``__init__``, which imports torchvision; install it with
``pip install basicsr==1.4.2 --no-deps --no-build-isolation``), and a functional
re-implementation of BasicSR's published definition written here (always run). Checkpoints are
written as BasicSR writes them: ``torch.save({"params_ema": state_dict})``.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from glean_sr.cli import main
from glean_sr.config import RealESRGANConfig, config_from_dict, config_to_dict
from glean_sr.data.imresize import imresize, lanczos_resize
from glean_sr.errors import ConfigError, WeightsError
from glean_sr.inference.tiling import run_tiled, spans
from glean_sr.inference.upscaler import Upscaler
from glean_sr.models.realesrgan import RRDBNet
from glean_sr.models.registry import build_model
from glean_sr.presets import PRESETS
from glean_sr.weights.pretrained import load_model

#: RealESRGAN_x4plus / x2plus, as Real-ESRGAN's inference script builds them
RELEASED = {scale: dict(num_feat=64, num_block=23, num_grow_ch=32) for scale in (4, 2)}


# ----------------------------------------------------------------------------------------------
# references


def reference_shapes(scale: int, nf: int, nb: int, gc: int, channels: int = 3) -> dict:
    """Key -> shape of BasicSR's ``RRDBNet(channels, channels, scale, nf, nb, gc)``, from its
    published definition."""
    fold = {4: 1, 2: 4, 1: 16}[scale]
    shapes = {"conv_first.weight": (nf, channels * fold, 3, 3), "conv_first.bias": (nf,)}
    for k in range(nb):
        for r in (1, 2, 3):
            for i in range(1, 6):
                out = nf if i == 5 else gc
                name = f"body.{k}.rdb{r}.conv{i}"
                shapes[f"{name}.weight"] = (out, nf + (i - 1) * gc, 3, 3)
                shapes[f"{name}.bias"] = (out,)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (nf, nf, 3, 3), (nf,)
    shapes["conv_last.weight"], shapes["conv_last.bias"] = (channels, nf, 3, 3), (channels,)
    return shapes


def reference_state_dict(scale: int, nf: int, nb: int, gc: int, seed: int) -> dict:
    """Random weights in BasicSR's layout, scaled so that outputs stay inside [0, 1] (no
    clamping hides a difference): He-like weights, small biases, ``conv_last`` around 0.5."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in reference_shapes(scale, nf, nb, gc).items():
        if key.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=gen) / fan_in**0.5
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.05
    sd["conv_last.weight"] *= 0.3
    sd["conv_last.bias"] += 0.5
    return sd


def reference_forward(sd: dict, x: torch.Tensor, scale: int) -> torch.Tensor:
    """BasicSR's ``RRDBNet.forward`` written out with functional ops: ``x`` in [0, 1]."""

    def conv(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t >= 0, t, 0.2 * t)

    def nearest2(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    s = {4: 1, 2: 2, 1: 4}[scale]
    if s > 1:  # BasicSR's pixel_unshuffle: view, permute, reshape
        b, c, hh, ww = x.shape
        x = x.view(b, c, hh // s, s, ww // s, s).permute(0, 1, 3, 5, 2, 4)
        x = x.reshape(b, c * s * s, hh // s, ww // s)
    feat = conv("conv_first", x)
    body = feat
    blocks = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    for k in range(blocks):
        rrdb_in = body
        for r in (1, 2, 3):
            xs = [body]
            for i in range(1, 5):
                xs.append(lrelu(conv(f"body.{k}.rdb{r}.conv{i}", torch.cat(xs, 1))))
            body = conv(f"body.{k}.rdb{r}.conv5", torch.cat(xs, 1)) * 0.2 + xs[0]
        body = body * 0.2 + rrdb_in
    feat = feat + conv("conv_body", body)
    feat = lrelu(conv("conv_up1", nearest2(feat)))
    feat = lrelu(conv("conv_up2", nearest2(feat)))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


@pytest.fixture()
def basicsr_rrdbnet(monkeypatch):
    """BasicSR's own ``RRDBNet`` class. Its ``rrdbnet_arch.py`` is loaded as it is; of
    ``arch_util`` (which imports torchvision) only BasicSR's ``make_layer``, ``pixel_unshuffle``
    and ``default_init_weights`` are taken, compiled from its source."""
    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("BasicSR is not installed: pip install basicsr==1.4.2 --no-deps "
                    "--no-build-isolation")  # fmt: skip
    root = Path(spec.submodule_search_locations[0])
    wanted = {"make_layer", "pixel_unshuffle", "default_init_weights"}
    tree = ast.parse((root / "archs" / "arch_util.py").read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    arch_util = types.ModuleType("basicsr.archs.arch_util")
    arch_util.__dict__.update(
        torch=torch, nn=torch.nn, init=torch.nn.init,
        _BatchNorm=torch.nn.modules.batchnorm._BatchNorm,
    )  # fmt: skip
    source = compile(ast.Module(body, []), str(root / "archs" / "arch_util.py"), "exec")
    exec(source, arch_util.__dict__)
    registry_spec = importlib.util.spec_from_file_location(
        "basicsr.utils.registry", root / "utils" / "registry.py"
    )
    registry = importlib.util.module_from_spec(registry_spec)
    registry_spec.loader.exec_module(registry)
    for name in ("basicsr", "basicsr.archs", "basicsr.utils"):
        package = types.ModuleType(name)
        package.__path__ = []
        monkeypatch.setitem(sys.modules, name, package)
    monkeypatch.setitem(sys.modules, "basicsr.archs.arch_util", arch_util)
    monkeypatch.setitem(sys.modules, "basicsr.utils.registry", registry)
    arch_spec = importlib.util.spec_from_file_location(
        "basicsr.archs.rrdbnet_arch", root / "archs" / "rrdbnet_arch.py"
    )
    arch = importlib.util.module_from_spec(arch_spec)
    monkeypatch.setitem(sys.modules, "basicsr.archs.rrdbnet_arch", arch)
    arch_spec.loader.exec_module(arch)
    return arch.RRDBNet


def write_basicsr(path: Path, sd: dict, key: str = "params_ema", **extra) -> Path:
    torch.save({key: sd, **extra}, path)
    return path


TINY = dict(nf=8, nb=1, gc=4)


def tiny_config(scale: int) -> RealESRGANConfig:
    return RealESRGANConfig(scale=scale, rrdb_channels=8, num_rrdbs=1, growth_channels=4)


def rrdb(scale: int, seed: int = 0) -> RRDBNet:
    model = RRDBNet(tiny_config(scale)).eval()
    model.load_state_dict(reference_state_dict(scale, **TINY, seed=seed))
    return model


# ----------------------------------------------------------------------------------------------
# the released layouts, strictly


@pytest.mark.parametrize("scale", [4, 2])
def test_released_architectures_have_basicsrs_keys_and_shapes(scale, basicsr_rrdbnet):
    ours = build_model(PRESETS[f"realesrgan_x{scale}plus"].config, device="meta").state_dict()
    with torch.device("meta"):
        theirs = basicsr_rrdbnet(num_in_ch=3, num_out_ch=3, scale=scale, **RELEASED[scale])
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    assert expected == reference_shapes(scale, 64, 23, 32)
    total = sum(int(np.prod(s)) for s in expected.values())
    assert total == PRESETS[f"realesrgan_x{scale}plus"].config.parameter_count()
    assert total == {4: 16_697_987, 2: 16_703_171}[scale]


@pytest.mark.parametrize("scale", [4, 2, 1])
@pytest.mark.parametrize("key", ["params_ema", "params"])
def test_basicsr_files_load_strictly_and_match_the_reference(tmp_path, scale, key):
    sd = reference_state_dict(scale, **TINY, seed=scale)
    path = write_basicsr(tmp_path / "net.pth", sd, key)
    model = load_model(path)
    assert isinstance(model, RRDBNet) and model.config == tiny_config(scale)
    for name, value in model.state_dict().items():
        assert torch.equal(value, sd[name]), name
    x = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sr = model(x * 2 - 1)  # glean-sr's contract: [-1, 1] in and out
        expected = reference_forward(sd, x, scale)
    assert sr.shape == (2, 3, 12 * scale, 16 * scale)
    torch.testing.assert_close((sr + 1) / 2, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(model.forward_unit(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale", [4, 2])
def test_outputs_equal_basicsrs_own_rrdbnet(scale, basicsr_rrdbnet):
    sd = reference_state_dict(scale, nf=16, nb=2, gc=8, seed=10 + scale)
    theirs = basicsr_rrdbnet(3, 3, scale=scale, num_feat=16, num_block=2, num_grow_ch=8).eval()
    theirs.load_state_dict(sd, strict=True)
    ours = RRDBNet(RealESRGANConfig(scale=scale, rrdb_channels=16, num_rrdbs=2, growth_channels=8))
    ours.load_state_dict(sd, strict=True)
    x = torch.rand(2, 3, 20, 14, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(x)
        got = (ours.eval()(x * 2 - 1) + 1) / 2
        torch.testing.assert_close(reference_forward(sd, x, scale), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_params_ema_is_preferred_and_mismatches_are_listed(tmp_path):
    ema = reference_state_dict(2, **TINY, seed=0)
    raw = reference_state_dict(2, **TINY, seed=1)
    model = load_model(write_basicsr(tmp_path / "both.pth", ema, params=raw))
    assert torch.equal(model.conv_first.weight, ema["conv_first.weight"])

    broken = dict(ema)
    del broken["body.0.rdb2.conv3.bias"]
    broken["conv_extra.weight"] = torch.zeros(1)
    broken["conv_hr.weight"] = torch.zeros(8, 8, 1, 1)
    with pytest.raises(WeightsError) as err:
        load_model(write_basicsr(tmp_path / "broken.pth", broken), config=tiny_config(2))
    text = str(err.value)
    assert "1 missing (body.0.rdb2.conv3.bias)" in text and "conv_extra.weight" in text
    assert "conv_hr.weight: file [8, 8, 1, 1] vs model [8, 8, 3, 3]" in text
    assert "RRDBNet x2, any size" in text

    with pytest.raises(WeightsError, match="unexpected .*optimizer"):
        load_model(write_basicsr(tmp_path / "extra.pth", ema, optimizer={"lr": torch.ones(1)}))
    odd = dict(ema, **{"conv_first.weight": torch.zeros(8, 5, 3, 3)})
    with pytest.raises(WeightsError, match="not a pixel-unshuffle"):
        load_model(write_basicsr(tmp_path / "odd.pth", odd))


def test_a_preset_refuses_a_file_that_is_not_its_release(tmp_path):
    path = write_basicsr(
        tmp_path / "RealESRGAN_x4plus.pth", reference_state_dict(4, **TINY, seed=0)
    )
    with pytest.raises(WeightsError, match="is not that of realesrgan_x4plus's original file"):
        load_model(f"realesrgan_x4plus={path}")
    for name in ("realesrgan_x4plus", "realesrgan_x2plus"):
        preset = PRESETS[name]
        assert preset.url.startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/")
        assert len(preset.sha256_prefix) == 64 and preset.config.scale == int(name[-5])


def test_model_directory_round_trip_and_the_input_contract(tmp_path):
    model = rrdb(2)
    folder = model.save_pretrained(tmp_path / "x2")
    config = config_to_dict(model.config)
    assert config["model_type"] == "realesrgan_rrdbnet"
    assert config_from_dict(config) == model.config
    loaded = load_model(folder)
    x = torch.rand(1, 3, 8, 10) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match=r"multiples of 2"):
        model(torch.zeros(1, 3, 7, 8))
    with pytest.raises(ConfigError, match="scale must be one of"):
        RealESRGANConfig(scale=3)
    assert "x2, 1 RRDBs of 8 channels" in repr(model)


# ----------------------------------------------------------------------------------------------
# tiles


def test_tile_layout_partitions_the_axis_and_weights_sum_to_one():
    for length, tile, pad, m in [
        (301, 48, 40, 1),
        (150, 32, 10, 2),
        (64, 16, 4, 4),
        (50, 64, 8, 1),
    ]:
        padded = -(-length // m) * m
        layout = spans(padded, tile, pad, m)
        assert layout[0].start == 0 and layout[-1].stop == padded
        assert all(a.stop == b.start for a, b in itertools.pairwise(layout))
        sizes = {s.window_stop - s.window_start for s in layout}
        assert len(sizes) == 1  # one window size: the tiles batch
        for s in layout:
            assert 0 <= s.window_start <= s.start - min(pad, s.start) or s.window_start == 0
            assert s.window_start % m == 0 and s.window_stop <= padded
            assert s.window_stop >= min(s.stop + pad, padded) or s.window_stop == padded
        for scale in (1, 4):
            total = np.zeros(padded * scale)
            for s in layout:
                first, stop, weights = s.output_weights(scale, padded * scale)
                assert (weights >= 0).all() and (weights <= 1).all()
                total[first:stop] += weights
            np.testing.assert_allclose(total, 1, atol=1e-6)


@pytest.mark.parametrize("scale,tile,pad,hw", [(4, 48, 40, (150, 173)), (2, 48, 80, (301, 263))])
def test_tiled_output_equals_the_untiled_one(scale, tile, pad, hw):
    """The seam test: with the pad covering the receptive field (1 RRDB: 19 input pixels at x4,
    37 at x2 through the unshuffle), the tiles give the untiled output, borders included."""
    model = rrdb(scale)
    photo = np.random.default_rng(0).random((*hw, 3)).astype(np.float32)
    whole = Upscaler(model, device="cpu")(photo)
    seen = []

    def forward(lq):
        seen.append(tuple(lq.shape))
        with torch.no_grad():
            return model(lq)

    tiled = run_tiled(photo, forward, scale=scale, model_channels=3, tile=tile, tile_pad=pad,
                      batch_size=3, multiple=model.size_multiple)  # fmt: skip
    assert tiled.tiles > 4 and whole.data.pixels.shape == (hw[0] * scale, hw[1] * scale, 3)
    pixels = whole.data.pixels  # a tamed model: nothing is clamped, nothing hides a difference
    assert pixels.std() > 0.02 and 0 < pixels.min() < pixels.max() < 1
    assert np.abs(tiled.pixels - whole.data.pixels).max() < 1e-4
    # one batch of equal windows at a time, never the whole photo
    assert {s[0] for s in seen} <= {1, 2, 3} and len({s[1:] for s in seen}) == 1
    assert seen[0][2] * seen[0][3] < hw[0] * hw[1]
    # too little context: the tiles differ from the whole photo (the test above can fail)
    short = run_tiled(photo, forward, scale=scale, model_channels=3, tile=tile, tile_pad=0,
                      multiple=model.size_multiple)  # fmt: skip
    assert np.abs(short.pixels - whole.data.pixels).max() > 1e-3


def test_upscaler_any_size_grey_alpha_outscale_and_refusals():
    model = rrdb(4)
    rgba = np.random.default_rng(1).integers(0, 256, (21, 30, 4), dtype=np.uint8)
    up = Upscaler(model, device="cpu", tile=16, tile_pad=8, outscale=2.5)
    result = up(rgba)
    assert result.image.shape == (52, 75, 4) and result.image.dtype == np.uint8
    record = result.record.describe()
    assert "restored 30x21 -> 120x84 (x4, 4 tiles (2 x 2) of 16 px" in record
    assert "resized 120x84 -> 75x52 (Lanczos, outscale 2.5)" in record
    full = Upscaler(model, device="cpu", tile=16, tile_pad=8)(rgba[..., :3]).data.pixels
    np.testing.assert_allclose(
        result.data.pixels, np.clip(lanczos_resize(full, (52, 75)), 0, 1), atol=1e-6
    )
    grey = Upscaler(model, device="cpu")(rgba[..., 0])
    assert grey.image.shape == (84, 120) and "grayscale" in grey.record.describe()
    assert "any size" in up.describe() and up.in_size is None and up.scale == 4
    with pytest.raises(ConfigError, match="takes images of any size"):
        Upscaler(model, device="cpu", resize="bicubic")
    with pytest.raises(ConfigError, match="tile must be an integer >= 16"):
        Upscaler(model, device="cpu", tile=8)
    x2 = Upscaler(rrdb(2), device="cpu", tile=33, tile_pad=9)
    assert (x2.tile, x2.tile_pad) == (34, 10)  # on the unshuffle grid


def test_tile_refused_for_glean(tiny_model):
    with pytest.raises(ConfigError, match="--tile .* takes exactly 8x8"):
        Upscaler(tiny_model, device="cpu", tile=64)


# ----------------------------------------------------------------------------------------------
# the commands


@pytest.fixture(scope="module")
def rrdb_sources(tmp_path_factory):
    """An x4 RRDBNet as a BasicSR .pth and an x2 one as a glean-sr model directory."""
    folder = tmp_path_factory.mktemp("rrdb")
    x4 = write_basicsr(folder / "tiny_x4.pth", reference_state_dict(4, **TINY, seed=4))
    x2 = rrdb(2, seed=2).save_pretrained(folder / "tiny_x2")
    return x4, x2


def test_upscale_command_tiles_and_outscale(rrdb_sources, tmp_path, capsys):
    x4, _ = rrdb_sources
    photo = tmp_path / "photo.png"
    Image.fromarray(imresize(data.chelsea(), size=(45, 61))).save(photo)
    common = ["upscale", str(photo), "-m", str(x4), "--device", "cpu", "--outscale", "3"]
    assert main([*common, "-o", str(tmp_path / "tiled"), "--tile", "16", "--tile-pad", "40"]) == 0
    out = capsys.readouterr().out
    assert "RRDBNet x4, any size, tiles of 16 + 40 px, output x3 (Lanczos)" in out
    assert "tiles (3 x 4) of 16 px" in out and "resized 244x180 -> 183x135 (Lanczos" in out
    assert main([*common, "-o", str(tmp_path / "whole")]) == 0
    with (
        Image.open(tmp_path / "tiled" / "photo_x3.png") as a,
        Image.open(tmp_path / "whole" / "photo_x3.png") as b,
    ):
        assert a.size == (183, 135)
        diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    assert diff.max() <= 1 and diff.mean() < 0.01  # equal but for rounding ties


def test_upscale_command_refuses_options_that_do_not_apply(rrdb_sources, tmp_path, capsys):
    x4, _ = rrdb_sources
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    args = ["upscale", str(photo), "-o", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*args, "-m", str(x4), "--resize", "bicubic"]) == 1
    assert "takes images of any size: --resize and --fit" in capsys.readouterr().err
    assert main([*args, "--tile", "64"]) == 1  # the GLEAN demo
    assert "applies to models that take any size" in capsys.readouterr().err


def test_face_restorer_background_upscaler(tiny_model, rrdb_sources):
    pytest.importorskip("dlib", reason="needs the faces extra: pip install 'glean-sr[faces]'")
    from glean_sr.inference.faces import DlibFaceDetector, FaceRestorer

    _, x2_dir = rrdb_sources
    x2, detector = load_model(x2_dir), DlibFaceDetector()
    photo = imresize(data.coffee(), size=(100, 150))  # no face: the background alone
    restorer = FaceRestorer(tiny_model, background=x2, tile=32, tile_pad=8, detector=detector,
                            device="cpu")  # fmt: skip
    result = restorer(photo)
    expected = Upscaler(x2, device="cpu", tile=32, tile_pad=8)(photo).data.pixels
    np.testing.assert_array_equal(result.data.pixels, expected)
    assert "background x2 (RRDBNet x2, any size, tiles of 32 + 8 px" in result.record.describe()
    # an x4 upscaler behind photos enlarged x2: its result resized with Lanczos
    x4 = rrdb(4, seed=7)
    half = FaceRestorer(tiny_model, upscale=2, background=x4, detector=detector, device="cpu")
    result = half(photo)
    full = Upscaler(x4, device="cpu")(photo).data.pixels
    np.testing.assert_allclose(
        result.data.pixels, np.clip(lanczos_resize(full, (200, 300)), 0, 1), atol=1e-6
    )
    with pytest.raises(ConfigError, match="pass it as the background"):
        FaceRestorer(x2, detector=detector, device="cpu")
    with pytest.raises(ConfigError, match="applies to a background upscaler"):
        FaceRestorer(tiny_model, tile=64, detector=detector, device="cpu")


@pytest.mark.slow
def test_faces_command_background_and_boxes(tiny_model_dir, rrdb_sources, tmp_path, capsys):
    pytest.importorskip("dlib", reason="needs the faces extra: pip install 'glean-sr[faces]'")
    _, x2_dir = rrdb_sources
    photo = tmp_path / "astronaut.png"
    Image.fromarray(imresize(data.astronaut(), size=(200, 200))).save(photo)
    out = tmp_path / "out"
    args = ["faces", str(photo), "-m", str(tiny_model_dir), "-o", str(out), "--background",
            str(x2_dir), "--tile", "64", "--draw-boxes", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "1 face found" in text and "background x2 (RRDBNet x2, any size, tiles of 64" in text
    assert "; 16 tiles)" in text and "astronaut_faces_boxes.png" in text
    with Image.open(out / "astronaut_faces.png") as im:
        restored = np.asarray(im)
    with Image.open(out / "astronaut_faces_boxes.png") as im:
        boxes = np.asarray(im)
    assert restored.shape == boxes.shape == (400, 400, 3)
    changed = np.any(boxes != restored, axis=2)
    green = np.all(boxes == (0, 255, 0), axis=2)
    assert green.sum() > 200 and (changed & ~green).sum() < changed.sum() / 2
    ys, xs = np.nonzero(changed)  # the face square of the astronaut: upper middle
    assert 100 < xs.mean() < 300 and ys.mean() < 250


def test_info_describes_a_model_that_takes_any_size(capsys):
    assert main(["info", "realesrgan_x2plus"]) == 0
    out = capsys.readouterr().out
    assert "realesrgan_rrdbnet x2, any size (MACs at 64 x 64 px in)" in out
    assert "total 16.70 M" in out and "RealESRGAN_x2plus.pth" in out
