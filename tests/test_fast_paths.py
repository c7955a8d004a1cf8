"""The inference fast paths compute exactly what their plain definitions compute."""

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
from glean_sr.models.ops import (
    blur2d,
    conv_of_rows,
    conv_rows,
    conv_rows_by_taps,
    conv_transpose_blur,
    is_channels_last,
    make_fir_kernel,
    pixel_shuffle_cat,
    plain_ops,
    relayout_,
    shuffle_cat_head,
    shuffle_cat_rows,
    taps_pay,
    upfirdn2d,
)
from glean_sr.models.registry import build_model
from glean_sr.models.rrdb import RRDB
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


@pytest.mark.parametrize("out_channels", [1, 3, 4])
@pytest.mark.parametrize("batch", [1, 2])
def test_conv_rows_by_taps_equals_the_convolution(out_channels, batch):
    """Every band position: at the top border, inside, at the bottom, and the whole image."""
    torch.manual_seed(0)
    h, w = 11, 9
    image = torch.randn(batch, 6, h, w)
    weight, bias = torch.randn(out_channels, 6, 3, 3), torch.randn(out_channels)
    with torch.no_grad():
        ref = F.conv2d(image, weight, bias, padding=1)
        for lo, hi in ((0, 4), (2, 7), (5, 6), (8, 11), (0, 11)):
            start, stop = max(lo - 1, 0), min(hi + 1, h)
            x = image[:, :, start:stop].contiguous(memory_format=torch.channels_last)
            got = conv_rows_by_taps(x, start, lo, hi, h, weight, bias)
            torch.testing.assert_close(got, ref[:, :, lo:hi], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got, conv_rows(x, start, lo, hi, h, weight, bias))
            assert got.is_contiguous(memory_format=torch.channels_last)


def test_taps_only_where_they_pay():
    x = torch.randn(1, 8, 4, 5).contiguous(memory_format=torch.channels_last)
    assert taps_pay(x, torch.randn(3, 8, 3, 3))
    assert not taps_pay(x, torch.randn(16, 8, 3, 3))  # enough outputs for oneDNN's vectors
    assert not taps_pay(x.contiguous(), torch.randn(3, 8, 3, 3))
    assert not taps_pay(x.bfloat16(), torch.randn(3, 8, 3, 3))  # would sum in bfloat16


def test_rrdb_inference_path_equals_the_definition_and_training_is_untouched():
    torch.manual_seed(0)
    block = RRDB(8, 4)
    for conv in block.modules():
        if isinstance(conv, nn.Conv2d):  # O(1) branches, so that the residuals matter
            nn.init.normal_(conv.weight, 0.0, 1.0 / math.sqrt(conv.weight[0].numel()))
    x = torch.randn(2, 8, 6, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = block(x)
        with plain_ops():
            ref = block(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # with autograd recording, the plain definition runs (no in-place writes) and trains
    x.requires_grad_(True)
    out = block(x)
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    assert x.grad is not None and block.rdb1.conv1.weight.grad is not None
    # an input that needs no gradient, weights that do (a frozen layer before): still plain
    block.zero_grad()
    out = block(x.detach())
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    assert block.rdb3.conv5.weight.grad is not None


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


@pytest.mark.parametrize("channels_last", [True, False])
def test_both_memory_formats_conform(fixture_model, channels_last):
    model, lq, ref = fixture_model
    model.channels_last = channels_last
    try:
        with torch.no_grad():
            sr = model(lq)
    finally:
        model.channels_last = True
    assert sr.is_contiguous()
    np.testing.assert_allclose(sr.numpy(), ref, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_stays_within_45_db_of_fp32(fixture_model, dtype):
    """bf16 / fp16 autocast against fp32 on the conformance fixture: PSNR over the output's
    nominal [-1, 1] range (peak-to-peak 2). Measured: bf16 55.5 dB, fp16 73 dB."""
    model, lq, ref = fixture_model
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        sr = model(lq).float().numpy()
    psnr = 10 * math.log10(4 / float(np.mean((sr - ref) ** 2)))
    assert psnr >= 45.0, psnr


@pytest.mark.slow
def test_inference_benchmark_writes_its_rows(tmp_path):
    """The benchmark script runs a preset end to end and writes every documented column."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
    out = tmp_path / "rows.json"
    args = "--preset lightglean_cat_16x --batch 1 --precision fp32 --warmup 0 --repeats 1"
    cmd = [sys.executable, str(script), *args.split(), "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())
    for key in ("preset", "batch", "precision", "latency_s", "peak_rss_bytes", "gflops",
                "achieved_gflops_per_s", "conv_peak_gflops_per_s"):  # fmt: skip
        assert key in row, key
    assert row["preset"] == "lightglean_cat_16x" and row["latency_s"] > 0
    from glean_sr import PRESETS
    from glean_sr.analysis import count_macs

    model = build_model(PRESETS["lightglean_cat_16x"].config, device="meta")
    assert row["gflops"] == pytest.approx(2 * count_macs(model)["macs"] / 1e9)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_block_rows_equal_the_whole_block(fmt, batch, noise_mode):
    """Any partition into bands, including bands of one row and odd starts, gives the block."""
    from glean_sr.config import StyleGAN2Config
    from glean_sr.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    bank = StyleGAN2Generator(StyleGAN2Config(32, style_channels=16, num_mlps=1)).eval()
    set_noise_strengths(bank, 0.5)
    x = torch.randn(batch, 512, 16, 16).contiguous(memory_format=fmt)
    ws = torch.randn(batch, bank.config.num_latents, 16)
    with torch.no_grad():
        ref = bank.style_block(32, x, ws, noise_mode)
        rows = bank.block_rows(32, x, ws, noise_mode)
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
def test_banded_last_block_model_equals_plain_ops(kind):
    """A 256 px model, whose bank's last block reaches the decoder as row bands, computes what
    the plain definition computes."""
    model, lq = _banded_model(kind)
    with torch.no_grad():
        assert model.band_last_block(lq)
        got = model(lq)
        with plain_ops():
            ref = model(lq)
    assert got.is_contiguous() and got.shape == (1, 3, 256, 256)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def _weight_layouts(model) -> dict[str, bool]:
    """For each convolution weight: is it stored as a channels-last convolution reads it?"""
    from glean_sr.models.stylegan2 import ModulatedConv2d

    cl = torch.channels_last
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, ModulatedConv2d) and module.kernel_size > 1:
            w = module.weight_orig[0]  # [out, in, k, k]; up-sampling reads it transposed
            w = w.transpose(0, 1) if module.upsample else w
            found[name] = w.is_contiguous(memory_format=cl)
        elif isinstance(module, nn.Conv2d) and module.kernel_size[0] > 1:
            found[name] = module.weight.is_contiguous(memory_format=cl)
    return found


def test_channels_last_weights_keep_values_and_conform(fixture_model, tmp_path):
    """The Upscaler's weight layout on the CPU: every convolution weight laid out as the
    channels-last convolutions read it (no copy per call), same values, same outputs, and a
    saved directory that loads back into an ordinary model."""
    import copy

    from glean_sr.weights.pretrained import load_model

    model, lq, ref = fixture_model
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not all(_weight_layouts(model).values())
    model.store_weights_channels_last()
    layouts = _weight_layouts(model)
    assert len(layouts) > 20 and all(layouts.values()), layouts
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    with torch.no_grad():
        sr = model(lq)
    np.testing.assert_allclose(sr.numpy(), ref, atol=1e-4)
    loaded = load_model(model.save_pretrained(tmp_path / "m"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("kind", ["glean", "lightglean"])
def test_channels_last_weights_in_the_banded_model(kind):
    """With the weights stored channels-last, the banded 256 px model, whose bank reads its
    up-sampling weights transposed, still computes the plain definition."""
    model, lq = _banded_model(kind)
    with torch.no_grad(), plain_ops():
        ref = model(lq)
    model.store_weights_channels_last()
    assert all(_weight_layouts(model).values())
    with torch.no_grad():
        got = model(lq)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_upscaler_relays_out_only_the_models_it_loads(tiny_model, tiny_model_dir, tmp_path):
    """Upscaler.from_pretrained owns the model it loads and stores its weights channels-last
    on the CPU; a model passed in keeps its layout, so the caller can still save its
    state_dict with savers that want contiguous tensors."""
    from safetensors.torch import save_file

    import glean_sr

    loaded = glean_sr.Upscaler.from_pretrained(tiny_model_dir, device="cpu").model
    assert all(_weight_layouts(loaded).values())
    glean_sr.Upscaler(tiny_model, device="cpu")
    glean_sr.Upscaler.from_pretrained(tiny_model, device="cpu")
    assert not any(_weight_layouts(tiny_model).values())
    save_file(tiny_model.state_dict(), str(tmp_path / "w.safetensors"))


def test_relayout_keeps_values_and_storage():
    t = torch.randn(1, 5, 6, 3, 3)
    ref, ptr = t.clone(), t.data_ptr()
    view = relayout_(t, (0, 2, 3, 4, 1))  # stored [1, in, k, k, out]
    assert torch.equal(view, ref) and view.data_ptr() == ptr
    assert view.stride() == (270, 1, 45, 15, 5)
    assert relayout_(view, (0, 2, 3, 4, 1)) is view  # already so: nothing to do
    strided = torch.randn(6, 5, 3, 3).transpose(0, 1)  # not contiguous: a copy
    cl = relayout_(strided, (0, 2, 3, 1))
    assert torch.equal(cl, strided) and cl.is_contiguous(memory_format=torch.channels_last)
