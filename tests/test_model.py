"""Properties of the network itself: contract, frozen bank, dead paths, op equivalences."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from conftest import SRC, TINY
from glean_sr.config import GLEANConfig
from glean_sr.errors import ConfigError
from glean_sr.models import GLEAN
from glean_sr.models.ops import blur2d, make_fir_kernel, upfirdn2d
from glean_sr.models.registry import build_model
from glean_sr.models.stylegan2 import ModulatedConv2d


def test_shapes_and_attributes(tiny_model):
    lq = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        sr = tiny_model(lq)
    assert sr.shape == (2, 3, 32, 32)
    assert (tiny_model.in_size, tiny_model.out_size, tiny_model.img_channels) == (8, 32, 3)


def test_wrong_input_shape_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"input must be \[N, 3, 8, 8\]"):
        tiny_model(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"in_size": 16, "out_size": 16}, "smaller than out_size"),
        ({"in_size": 12, "out_size": 64}, "power of two"),
        ({"in_size": 2, "out_size": 64}, "power of two"),
        ({"in_size": 64, "out_size": 2048}, "power of two"),
        ({"in_size": 8, "out_size": 64, "num_rrdbs": -1}, "num_rrdbs"),
    ],
)
def test_invalid_configs_name_the_problem(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GLEANConfig(**kwargs)


def test_smallest_and_odd_configs_run():
    for cfg in [
        GLEANConfig(
            in_size=4, out_size=8, rrdb_channels=4, num_rrdbs=0, style_channels=8, num_mlps=1
        ),
        GLEANConfig(
            in_size=4,
            out_size=64,
            rrdb_channels=4,
            num_rrdbs=1,
            style_channels=8,
            num_mlps=1,
            channel_multiplier=1,
            img_channels=1,
        ),
    ]:
        model = GLEAN(cfg).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, cfg.img_channels, cfg.in_size, cfg.in_size))
        assert out.shape == (1, cfg.img_channels, cfg.out_size, cfg.out_size)


def test_bank_is_frozen_and_stays_in_eval_mode():
    model = GLEAN(TINY)
    model.train()
    assert model.training and not model.generator.training
    assert all(not m.training for m in model.generator.modules())
    assert all(not p.requires_grad for p in model.generator.parameters())
    lq = torch.rand(2, 3, 8, 8)
    model(lq).square().mean().backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert model.encoder[0][0].conv_first.weight.grad is not None
    bank_ids = {id(p) for p in model.generator.parameters()}
    assert not any(id(p) in bank_ids for p in model.trainable_parameters())


def test_train_and_eval_mode_give_identical_outputs(tiny_model):
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        a = tiny_model.eval()(lq)
        b = tiny_model.train()(lq)
    tiny_model.eval()
    assert torch.equal(a, b)


def test_inference_is_deterministic(tiny_model):
    lq = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(tiny_model(lq), tiny_model(lq))


def test_dead_paths_do_not_affect_the_output():
    """RGB branch, fusion_skip and mapping MLP: perturbing them changes nothing (spec 1.2)."""
    torch.manual_seed(1)
    model = GLEAN(TINY).eval()
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        before = model(lq)
        for name, p in model.named_parameters():
            if name.startswith(("generator.to_rgb", "generator.style_mapping", "fusion_skip")):
                p.add_(torch.randn_like(p) * 10)
        after = model(lq)
    assert torch.equal(before, after)


def test_noise_path_is_live(tiny_model):
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        before = tiny_model(lq)
        tiny_model.generator.injected_noise_3.mul_(-1)
        after = tiny_model(lq)
        tiny_model.generator.injected_noise_3.mul_(-1)
    assert not torch.allclose(before, after)


def test_blur_matches_reference_upfirdn2d():
    x = torch.randn(2, 5, 9, 7)
    k = make_fir_kernel((1, 3, 3, 1), gain=4.0)
    torch.testing.assert_close(blur2d(x, k, (1, 1, 1, 1)), upfirdn2d(x, k, pad=(1, 1)))
    # an asymmetric kernel checks that both flip it (true convolution)
    k2 = torch.arange(1.0, 13.0).reshape(3, 4)
    torch.testing.assert_close(blur2d(x, k2, (2, 1, 1, 1)), upfirdn2d(x, k2, pad=(2, 1, 1, 1)))


def test_upfirdn2d_definition_on_a_tiny_signal():
    """Zero insertion, padding, true convolution and decimation, computed by hand."""
    x = torch.tensor([[[[1.0, 2.0]]]])  # [1, 1, 1, 2]
    k = torch.tensor([[1.0, 10.0]])  # [1, 2]: out[j] = k[0] * p[j + 1] + k[1] * p[j]
    y = upfirdn2d(x, k, up=2, pad=(1, 0, 0, 0))
    # rows: [1, 2] -> [[1, 0, 2, 0], [0, 0, 0, 0]]; left pad: [0, 1, 0, 2, 0]
    assert y.shape == (1, 1, 2, 4)
    assert y[0, 0, 0].tolist() == [1.0, 10.0, 2.0, 20.0]
    assert y[0, 0, 1].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert upfirdn2d(x, k, up=2, down=2, pad=(1, 0, 0, 0)).flatten().tolist() == [1.0, 2.0]


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_modulated_conv_paths_agree_with_the_equations(upsample, batch, fmt):
    """Both execution paths, in both memory formats, equal StyleGAN2 Eq. 1-3 written out with
    per-sample weights."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, 4, upsample=upsample)
    x, w = torch.randn(batch, 6, 4, 4).contiguous(memory_format=fmt), torch.randn(batch, 4)
    styles = conv.style_modulation(w)
    weight = conv.weight_orig[0] / (6 * 9) ** 0.5
    outs = []
    for i in range(batch):
        wi = weight * styles[i][None, :, None, None]
        wi = wi * torch.rsqrt(wi.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if upsample:
            y = F.conv_transpose2d(x[i : i + 1], wi.transpose(0, 1), stride=2)
            y = upfirdn2d(y, make_fir_kernel((1, 3, 3, 1), gain=4.0), pad=(1, 1))
        else:
            y = F.conv2d(x[i : i + 1], wi, padding=1)
        outs.append(y)
    ref = torch.cat(outs)
    outs = []
    with torch.no_grad():
        for fused in (None, True, False):
            conv.fused_modconv = fused
            outs.append(conv(x, w))
    for out in outs:
        torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)


def test_modulated_conv_follows_a_changed_weight():
    """Nothing derived from the weight is kept between calls: an in-place change (an optimiser
    step, ``load_state_dict``) is seen by the next call."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, 4)
    x, w = torch.randn(1, 6, 4, 4), torch.randn(1, 4)
    with torch.no_grad():
        conv(x, w)
        conv.weight_orig.mul_(torch.rand_like(conv.weight_orig) + 0.5)
        kept = conv(x, w)
    fresh = ModulatedConv2d(6, 5, 3, 4)
    fresh.load_state_dict(conv.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(kept, fresh(x, w))


def test_style_conv_is_noise_bias_and_scaled_leaky_relu():
    """One synthesis layer: conv, then noise, bias, leaky ReLU(0.2) x sqrt(2)."""
    from glean_sr.models.stylegan2 import ModulatedStyleConv

    torch.manual_seed(0)
    for upsample in (False, True):
        layer = ModulatedStyleConv(6, 5, 4, upsample=upsample).eval()
        with torch.no_grad():
            layer.noise_injector.weight.fill_(0.3)
            layer.activate.bias.normal_()
        x, w = torch.randn(2, 6, 8, 8), torch.randn(2, 4)
        noise = torch.randn(1, 1, 16 if upsample else 8, 16 if upsample else 8)
        with torch.no_grad():
            y = layer.conv(x, w) + 0.3 * noise + layer.activate.bias[None, :, None, None]
            expected = F.leaky_relu(y, 0.2) * 2**0.5
            got = layer(x, w, noise)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_bank_generates_images_on_its_own(tiny_model):
    bank = tiny_model.generator
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = bank.generate(z, noise_mode="const")
        b = bank.generate(z, noise_mode="const")
        c = bank.generate(z, noise_mode="none")
        t = bank.generate(z, truncation_psi=0.5)
    assert a.shape == (2, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, t)


def test_custom_bank_decides_the_architecture():
    from glean_sr.models import StyleGAN2Generator

    bank = StyleGAN2Generator(TINY.bank)
    model = GLEAN(TINY, bank=bank)
    assert model.generator is bank
    other = GLEANConfig(
        in_size=8,
        out_size=64,
        rrdb_channels=8,
        num_rrdbs=1,
        style_channels=16,
        num_mlps=2,
        channel_multiplier=1,
    )
    with pytest.raises(ValueError, match="bank does not fit"):
        GLEAN(other, bank=bank)


@pytest.mark.slow
def test_meta_build_matches_a_real_one_and_stays_lean():
    """``build_model(config, device="meta")`` (how weights are loaded) gives the tensors a real
    build has, and runs no PyTorch meta function: their first use imports sympy and
    torch._dynamo, about 75 MB resident for the rest of the process."""
    script = textwrap.dedent(
        """
        import sys
        import torch
        from glean_sr import PRESETS
        from glean_sr.models.registry import build_model
        for name in PRESETS:
            build_model(PRESETS[name].config, device="meta")
        print(sorted(m for m in ("sympy", "torch._dynamo") if m in sys.modules))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

    torch.manual_seed(0)
    real = build_model(TINY)
    meta = build_model(TINY, device="meta")
    layout = {k: (v.shape, v.dtype) for k, v in real.state_dict().items()}
    assert {k: (v.shape, v.dtype) for k, v in meta.state_dict().items()} == layout
    assert all(v.is_meta for v in meta.state_dict().values())
    # a real build is still initialised: random weights, the FIR kernels' values
    assert real.generator.convs[0].conv.weight_orig.std() > 0.5
    assert torch.equal(real.generator.convs[0].conv.blur.kernel, make_fir_kernel([1, 3, 3, 1], 4))
