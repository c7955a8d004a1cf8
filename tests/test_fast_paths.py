"""The CPU fast path (glean_sr.inference.cpu_fast) computes what the plain definitions compute."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import set_noise_strengths
from fixture_rule import CONFORMANCE, fill_state_dict, read_keys
from glean_sr.inference.cpu_fast import (
    CPUFastPath,
    Options,
    accelerate,
    block_rows,
    conv_of_rows,
    conv_transpose_blur,
    is_channels_last,
    modulated_conv,
    pixel_shuffle_cat,
    shuffle_cat_head,
    shuffle_cat_rows,
    style_conv,
)
from glean_sr.models.ops import blur2d, make_fir_kernel, upfirdn2d
from glean_sr.models.registry import build_model
from glean_sr.models.stylegan2 import ModulatedConv2d, ModulatedStyleConv
from glean_sr.weights.glean_format import infer_config

FORMATS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch", [1, 2])
def test_pixel_shuffle_cat(fmt, batch):
    x = torch.randn(batch, 16 * 4, 5, 6).contiguous(memory_format=fmt)
    extra = torch.randn(batch, 3, 10, 12)
    with torch.no_grad():
        got = pixel_shuffle_cat(x, extra, 2)
    assert torch.equal(got, torch.cat((F.pixel_shuffle(x, 2), extra), 1))
    assert is_channels_last(got) == (fmt == torch.channels_last)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("rows", [2, 4, 6, 1000])
def test_banded_transposed_conv_and_blur_equal_the_definition(fmt, groups, rows):
    """Bands of every size, including ones that touch both image borders."""
    torch.manual_seed(0)
    kernel = make_fir_kernel((1, 3, 3, 1), gain=4.0)
    for h in (1, 3, 8, 13):
        x = torch.randn(1, 4 * groups, h, 7).contiguous(memory_format=fmt)
        w, b = torch.randn(4 * groups, 3, 3, 3), torch.randn(3 * groups)
        with torch.no_grad():
            z = F.conv_transpose2d(x, w, stride=2, groups=groups)
            ref = upfirdn2d(z, kernel, pad=(1, 1)) + b[None, :, None, None]
            got = conv_transpose_blur(x, w, kernel, b, groups=groups, rows=rows)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 1000])
def test_banded_last_stage_equals_the_definition(fmt, rows):
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(6, 5, 3, 1, 1), nn.Conv2d(5, 3, 3, 1, 1)
    for h, batch in ((4, 1), (9, 2)):
        y = torch.randn(batch, 16, h, 5).contiguous(memory_format=fmt)
        extra = torch.randn(batch, 2, 2 * h, 10).contiguous(memory_format=fmt)
        with torch.no_grad():
            x = torch.cat((F.pixel_shuffle(y, 2), extra), 1)
            ref = conv2(F.leaky_relu(conv1(x), 0.2))
            got = shuffle_cat_head(y, extra, 2, conv1, 0.2, conv2, rows=rows)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rows", [1, 2, 3, 6, 1000])
def test_streamed_last_two_stages_equal_the_definition(fmt, rows):
    """The decoder's last two stages with every input a row function, as GLEAN runs them when
    the bank's largest block is banded: stage one (shuffle + concat + conv) and the head."""
    torch.manual_seed(0)
    up = nn.Conv2d(6, 16, 3, 1, 1)  # the stage before the last: 6 = 4 shuffled + 2 extra
    conv1, conv2 = nn.Conv2d(7, 5, 3, 1, 1), nn.Conv2d(5, 3, 3, 1, 1)
    for h in (2, 5, 8):
        u = torch.randn(1, 16, h, 4).contiguous(memory_format=fmt)
        extra1 = torch.randn(1, 2, 2 * h, 8).contiguous(memory_format=fmt)
        extra2 = torch.randn(1, 3, 4 * h, 16).contiguous(memory_format=fmt)
        with torch.no_grad():
            y = up(torch.cat((F.pixel_shuffle(u, 2), extra1), 1))
            ref = conv2(F.leaky_relu(conv1(torch.cat((F.pixel_shuffle(y, 2), extra2), 1)), 0.2))
            y_rows = conv_of_rows(shuffle_cat_rows(u, extra1, 2), 2 * h, up)
            torch.testing.assert_close(y_rows(0, 2 * h), y, rtol=1e-5, atol=1e-6)
            extra_rows = lambda a, b, e=extra2: e[:, :, a:b]  # noqa: E731
            got = shuffle_cat_head(y_rows, extra_rows, 2, conv1, 0.2, conv2, rows, 4 * h)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        assert is_channels_last(got) == (fmt == torch.channels_last)


def test_blur_with_bias_and_asymmetric_padding():
    x = torch.randn(2, 3, 9, 8)
    k = torch.arange(1.0, 17.0).reshape(4, 4)
    b = torch.randn(3)
    for pad in ((1, 1, 1, 1), (2, 1, 0, 2)):
        torch.testing.assert_close(
            blur2d(x, k, pad, b), upfirdn2d(x, k, pad=pad) + b[None, :, None, None]
        )


@pytest.fixture(scope="module")
def fixture_model():
    sd = fill_state_dict(read_keys(CONFORMANCE / "fixture_a" / "keys.txt"))
    model = build_model(infer_config(sd))
    model.load_state_dict(sd)
    lq = torch.from_numpy(np.load(CONFORMANCE / "fixture_a" / "input.npy"))
    return model.eval(), lq, np.load(CONFORMANCE / "fixture_a" / "output.npy")


@pytest.mark.parametrize("fast", [True, False])
def test_fast_and_plain_paths_conform(fixture_model, fast):
    model, lq, ref = fixture_model
    run = CPUFastPath(model) if fast else model
    with torch.no_grad():
        sr = run(torch.cat((lq, lq)))  # a batch: the fast path runs it image by image
    assert sr.is_contiguous() and not sr.requires_grad
    np.testing.assert_allclose(sr[:1].numpy(), ref, atol=1e-4)
    np.testing.assert_allclose(sr[1:].numpy(), ref, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_stays_within_45_db_of_fp32(fixture_model, dtype):
    """bf16 / fp16 autocast against fp32 on the conformance fixture: PSNR over the output's
    nominal [-1, 1] range (peak-to-peak 2). Measured: bf16 55.5 dB, fp16 73 dB."""
    model, lq, ref = fixture_model
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        sr = CPUFastPath(model)(lq).float().numpy()
    psnr = 10 * math.log10(4 / float(np.mean((sr - ref) ** 2)))
    assert psnr >= 45.0, psnr


@pytest.mark.slow
def test_inference_benchmark_writes_its_rows(tmp_path):
    """The benchmark runs the plain and the fast variant of a preset and writes every
    documented column, the ratios to the plain row included."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
    out = tmp_path / "rows.json"
    args = "--preset lightglean_cat_16x --rounds 1 --warmup 0 --repeats 1"
    cmd = [sys.executable, str(script), *args.split(), "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == ["plain", "fast"]
    for row in rows:
        for key in ("preset", "batch", "precision", "latency_s", "peak_rss_bytes", "gflops",
                    "latency_x_plain", "peak_rss_x_plain"):  # fmt: skip
            assert key in row, key
        assert row["latency_s"] > 0 and row["peak_rss_bytes"] > 0
    assert rows[0]["latency_x_plain"] == 1.0
    from glean_sr import PRESETS
    from glean_sr.analysis import count_macs

    model = build_model(PRESETS["lightglean_cat_16x"].config, device="meta")
    assert rows[1]["gflops"] == pytest.approx(2 * count_macs(model)["macs"] / 1e9)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch", [1, 2])
def test_block_rows_equal_the_whole_block(fmt, batch):
    """Any partition into bands, including bands of one row and odd starts, gives the block."""
    from glean_sr.config import StyleGAN2Config
    from glean_sr.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    bank = StyleGAN2Generator(StyleGAN2Config(32, style_channels=16, num_mlps=1)).eval()
    set_noise_strengths(bank, 0.5)
    x = torch.randn(batch, 512, 16, 16).contiguous(memory_format=fmt)
    ws = torch.randn(batch, bank.config.num_latents, 16)
    with torch.no_grad():
        ref = bank.style_block(32, x, ws)
        rows = block_rows(bank, 32, x, ws)
        for cuts in ([0, 32], [0, 1, 2, 5, 12, 13, 31, 32], [0, 7, 20, 32]):
            got = torch.cat([rows(a, b) for a, b in itertools.pairwise(cuts)], 2)
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def _banded_model(kind: str):
    """A 256 px GLEAN or LightGLEAN (seeded, noise on) whose bank's last block reaches the
    decoder as row bands, and an input for it."""
    from glean_sr.config import GLEANConfig, LightGLEANConfig

    cls = GLEANConfig if kind == "glean" else LightGLEANConfig
    cfg = cls(in_size=16, out_size=256, rrdb_channels=16, num_rrdbs=1, style_channels=16,
              num_mlps=1, channel_multiplier=1)  # fmt: skip
    torch.manual_seed(0)
    model = set_noise_strengths(build_model(cfg), 0.5).eval()
    return model, torch.rand(1, 3, 16, 16) * 2 - 1


@pytest.mark.parametrize("kind", ["glean", "lightglean"])
def test_banded_last_block_model_equals_plain_definition(kind):
    """A 256 px model, whose bank's last block reaches the decoder as row bands, computes what
    the plain definition computes."""
    model, lq = _banded_model(kind)
    fast = accelerate(model, "cpu")
    assert isinstance(fast, CPUFastPath) and fast.out_size > fast.options.rows
    with torch.no_grad():
        got = fast(lq)
        ref = model(lq)
    assert got.is_contiguous() and got.shape == (1, 3, 256, 256)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [2, 12])  # activation- and weight-modulated
def test_modulated_conv_with_folded_gain_and_bias(upsample, batch, fmt, size):
    torch.manual_seed(0)
    mod = ModulatedConv2d(6, 5, 3, 8, upsample=upsample)
    x = torch.randn(batch, 6, size, size).contiguous(memory_format=fmt)
    w, bias = torch.randn(batch, 8), torch.randn(5)
    with torch.no_grad():
        ref = 1.7 * mod(x, w) + bias[None, :, None, None]
        got = modulated_conv(mod, x, w, gain=1.7, bias=bias)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert is_channels_last(got) == (fmt == torch.channels_last)


@pytest.mark.parametrize("upsample", [False, True])
def test_style_conv_fused_epilogue_equals_the_layer(upsample):
    torch.manual_seed(0)
    layer = ModulatedStyleConv(6, 5, 8, upsample=upsample)
    layer.noise_injector.weight.data.fill_(0.7)
    torch.nn.init.normal_(layer.activate.bias)
    x = torch.randn(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(2, 8)
    noise = torch.randn(1, 1, *(10, 10) if upsample else (5, 5))
    with torch.no_grad():
        torch.testing.assert_close(style_conv(layer, x, w, noise), layer(x, w, noise))


def test_accelerate_only_wraps_bank_restorers_on_the_cpu(tiny_model):
    assert isinstance(accelerate(tiny_model), CPUFastPath)
    assert accelerate(tiny_model, "meta") is tiny_model
    other = nn.Conv2d(3, 3, 1)
    assert accelerate(other) is other
    fast = accelerate(tiny_model)
    assert (fast.in_size, fast.out_size, fast.scale) == (
        tiny_model.in_size, tiny_model.out_size, tiny_model.scale,
    )  # fmt: skip
    with pytest.raises(TypeError, match="GLEAN and LightGLEAN"):
        CPUFastPath(other)


def test_upscaler_fast_path_is_optional_and_equal(tiny_model):
    import glean_sr

    image = np.random.default_rng(0).random((tiny_model.in_size,) * 2 + (3,), dtype=np.float32)
    fast = glean_sr.Upscaler(tiny_model, device="cpu")
    plain = glean_sr.Upscaler(tiny_model, device="cpu", fast=False)
    assert isinstance(fast._run, CPUFastPath) and plain._run is tiny_model
    a, b = fast(image).image, plain(image).image
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [Options(rows=1024), Options(rows=6), Options(channels_last=False)],
    ids=["unbanded", "thin-bands", "nchw"],
)
@pytest.mark.slow
def test_each_part_can_be_switched_off(options):
    """Every variant the benchmark's ablation measures computes the plain definition."""
    model, lq = _banded_model("glean")
    with torch.no_grad():
        got = CPUFastPath(model, options)(lq)
        ref = model(lq)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
