"""BigGAN latent banks: tiny generators of the three formats read, written as each package's code
writes them, load inertly and generate what that code generates.

The three references below are compact re-statements of the published definitions (neither
package can be installed here): Hugging Face's pytorch-pretrained-biggan ``model.py`` (BigGAN-deep
on ``torch.nn.utils.spectral_norm``), ajbrock/BigGAN-PyTorch ``BigGAN.py`` + ``layers.py``
(its own ``SN`` with a power iteration on every forward) and the same repository's
``TFHub/biggan.py``, the generator its ``TFHub/converter.py`` fills from TF Hub's BigGAN (its
own ``SpectralNorm``). They share nothing with glean-sr's modules; each is filled with random
weights, buffers and statistics and saved the way the package saves it
(``torch.save(model.state_dict())``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glean_sr import load_bank
from glean_sr.config import BIGGAN_DEEP_LAYERS, BigGANConfig, BigGANDeepConfig, config_from_dict
from glean_sr.config import config_to_dict as to_dict
from glean_sr.errors import WeightsError
from glean_sr.models.biggan import BigGANGenerator
from glean_sr.weights.biggan_banks import LoadedBigGAN, truncated_noise

TRUNCATIONS = [1.0, 0.7, 0.4, 0.345]  # 0.345: between two stored statistics


def assert_close(got: torch.Tensor, ref: torch.Tensor, *, image: bool = True) -> None:
    """Within 1e-4 x max(1, |ref|), element by element."""
    assert got.shape == ref.shape
    if image:
        saturated = (ref.abs() > 0.99).float().mean()
        assert saturated < 0.05, "an image saturated by tanh would hide differences"
    bound = 1e-4 * ref.abs().clamp(min=1)
    worst = ((got - ref).abs() / bound).max().item()
    assert worst <= 1, f"off by {worst:.2f} x the tolerance"


# -- reference: pytorch-pretrained-biggan (model.py) -----------------------------------------------


def _sn(module: nn.Module, eps: float) -> nn.Module:
    return nn.utils.spectral_norm(module, eps=eps)


class HFSelfAttn(nn.Module):
    def __init__(self, ch, eps):
        super().__init__()
        self.snconv1x1_theta = _sn(nn.Conv2d(ch, ch // 8, 1, bias=False), eps)
        self.snconv1x1_phi = _sn(nn.Conv2d(ch, ch // 8, 1, bias=False), eps)
        self.snconv1x1_g = _sn(nn.Conv2d(ch, ch // 2, 1, bias=False), eps)
        self.snconv1x1_o_conv = _sn(nn.Conv2d(ch // 2, ch, 1, bias=False), eps)
        self.maxpool = nn.MaxPool2d(2, stride=2, padding=0)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        _, ch, h, w = x.size()
        theta = self.snconv1x1_theta(x).view(-1, ch // 8, h * w)
        phi = self.maxpool(self.snconv1x1_phi(x)).view(-1, ch // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = self.maxpool(self.snconv1x1_g(x)).view(-1, ch // 2, h * w // 4)
        attn_g = torch.bmm(g, attn.permute(0, 2, 1)).view(-1, ch // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(attn_g)


class HFBatchNorm(nn.Module):
    def __init__(self, nf, cond_dim=None, n_stats=51, eps=1e-4, conditional=True):
        super().__init__()
        self.eps, self.conditional = eps, conditional
        self.register_buffer("running_means", torch.zeros(n_stats, nf))
        self.register_buffer("running_vars", torch.ones(n_stats, nf))
        self.step_size = 1.0 / (n_stats - 1)
        if conditional:
            self.scale = _sn(nn.Linear(cond_dim, nf, bias=False), eps)
            self.offset = _sn(nn.Linear(cond_dim, nf, bias=False), eps)
        else:
            self.weight = nn.Parameter(torch.Tensor(nf))
            self.bias = nn.Parameter(torch.Tensor(nf))

    def forward(self, x, truncation, condition_vector=None):
        coef, start_idx = math.modf(truncation / self.step_size)
        start_idx = int(start_idx)
        if coef != 0.0:
            mean = self.running_means[start_idx] * coef + self.running_means[start_idx + 1] * (
                1 - coef
            )
            var = self.running_vars[start_idx] * coef + self.running_vars[start_idx + 1] * (
                1 - coef
            )
        else:
            mean, var = self.running_means[start_idx], self.running_vars[start_idx]
        if not self.conditional:
            return F.batch_norm(
                x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps
            )
        mean = mean.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        var = var.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        weight = 1 + self.scale(condition_vector).unsqueeze(-1).unsqueeze(-1)
        bias = self.offset(condition_vector).unsqueeze(-1).unsqueeze(-1)
        return (x - mean) / torch.sqrt(var + self.eps) * weight + bias


class HFGenBlock(nn.Module):
    def __init__(self, in_size, out_size, cond_dim, up_sample, n_stats, eps):
        super().__init__()
        self.up_sample, self.drop_channels = up_sample, in_size != out_size
        mid = in_size // 4
        kw = {"n_stats": n_stats, "eps": eps}
        self.bn_0 = HFBatchNorm(in_size, cond_dim, **kw)
        self.conv_0 = _sn(nn.Conv2d(in_size, mid, 1), eps)
        self.bn_1 = HFBatchNorm(mid, cond_dim, **kw)
        self.conv_1 = _sn(nn.Conv2d(mid, mid, 3, padding=1), eps)
        self.bn_2 = HFBatchNorm(mid, cond_dim, **kw)
        self.conv_2 = _sn(nn.Conv2d(mid, mid, 3, padding=1), eps)
        self.bn_3 = HFBatchNorm(mid, cond_dim, **kw)
        self.conv_3 = _sn(nn.Conv2d(mid, out_size, 1), eps)

    def forward(self, x, cond, truncation):
        x0 = x
        x = self.conv_0(torch.relu(self.bn_0(x, truncation, cond)))
        x = torch.relu(self.bn_1(x, truncation, cond))
        if self.up_sample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv_1(x)
        x = self.conv_2(torch.relu(self.bn_2(x, truncation, cond)))
        x = self.conv_3(torch.relu(self.bn_3(x, truncation, cond)))
        if self.drop_channels:
            x0 = x0[:, : x0.shape[1] // 2, ...]
        if self.up_sample:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return x + x0


class HFGenerator(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg, ch, cond = cfg, cfg["channel_width"], 2 * cfg["z_dim"]
        self.gen_z = _sn(nn.Linear(cond, 4 * 4 * 16 * ch), cfg["eps"])
        layers = []
        for i, (up, m_in, m_out) in enumerate(cfg["layers"]):
            if i == cfg["attention_layer_position"]:
                layers.append(HFSelfAttn(ch * m_in, cfg["eps"]))
            layers.append(HFGenBlock(ch * m_in, ch * m_out, cond, up, cfg["n_stats"], cfg["eps"]))
        self.layers = nn.ModuleList(layers)
        self.bn = HFBatchNorm(ch, n_stats=cfg["n_stats"], eps=cfg["eps"], conditional=False)
        self.conv_to_rgb = _sn(nn.Conv2d(ch, ch, 3, padding=1), cfg["eps"])

    def forward(self, cond_vector, truncation):
        z = self.gen_z(cond_vector)
        z = z.view(-1, 4, 4, 16 * self.cfg["channel_width"]).permute(0, 3, 1, 2).contiguous()
        for layer in self.layers:
            z = layer(z, cond_vector, truncation) if isinstance(layer, HFGenBlock) else layer(z)
        z = self.conv_to_rgb(torch.relu(self.bn(z, truncation)))
        return torch.tanh(z[:, :3, ...])


class HFBigGAN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.Linear(cfg["num_classes"], cfg["z_dim"], bias=False)
        self.generator = HFGenerator(cfg)

    def forward(self, z, class_label, truncation):
        assert 0 < truncation <= 1
        cond_vector = torch.cat((z, self.embeddings(class_label)), dim=1)
        return self.generator(cond_vector, truncation)


HF_TINY = {
    "output_dim": 64,
    "z_dim": 8,
    "class_embed_dim": 8,
    "channel_width": 4,
    "num_classes": 10,
    "layers": [  # as the released tables: a block at each size, then one that up-samples
        [False, 16, 16],
        [True, 16, 8],
        [False, 8, 8],
        [True, 8, 4],
        [False, 4, 4],
        [True, 4, 2],
        [False, 2, 2],
        [True, 2, 1],
    ],
    "attention_layer_position": 6,
    "eps": 1e-4,
    "n_stats": 51,
}


_QUIET = {  # small, to keep the activations, and the images off tanh's saturation
    "embeddings.weight",
    "generator.bn.weight",
    "generator.bn.bias",
    "generator.conv_to_rgb.bias",
    "output_layer.0.gain",
    "output_layer.0.bias",
}


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random values everywhere, with positive variances and singular vectors of the shapes the
    code keeps (attention gains non-zero, so that attention reaches the output)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            r = torch.randn(t.shape, generator=gen)
            if name.endswith("running_vars"):
                t.copy_(4 + r.abs())
            elif name.endswith("stored_var"):
                t.copy_(0.5 + r.abs())
            elif name.endswith("gamma"):
                t.copy_(0.5 + 0.1 * r)
            elif name.endswith("weight_v"):
                t.copy_(F.normalize(r, dim=0))
            elif name in _QUIET:
                t.copy_(0.05 * r)
            elif name.endswith(("running_means", "stored_mean")):
                t.copy_(0.1 * r)
            else:
                t.copy_(r * 0.3)
        for module in model.modules():  # as the released conversion left them: u = W v / |W v|
            if hasattr(module, "weight_u"):
                mat = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
                module.weight_u.copy_(F.normalize(mat @ module.weight_v, dim=0))
    return model


def save_hf(tmp_path, seed=0, legacy=False, cfg=HF_TINY):
    model = randomise(HFBigGAN(cfg), seed).eval()
    folder = tmp_path / f"hf{seed}{'legacy' if legacy else ''}"
    folder.mkdir()
    torch.save(
        model.state_dict(),
        folder / "pytorch_model.bin",
        _use_new_zipfile_serialization=not legacy,
    )
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return model, folder


def hf_inputs(n=3, seed=1, cfg=HF_TINY):
    z = torch.randn(n, cfg["z_dim"], generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor([0, 7, 3, 9, 1][:n])
    return z, labels, F.one_hot(labels, cfg["num_classes"]).float()


@pytest.mark.parametrize("legacy", [False, True])
def test_pytorch_pretrained_biggan_generates_what_its_code_generates(tmp_path, legacy):
    ref, folder = save_hf(tmp_path, legacy=legacy)
    bank = load_bank(folder)
    assert isinstance(bank, LoadedBigGAN) and bank.config.model_type == "biggan_deep"
    c = bank.config
    assert (c.resolution, c.z_dim, c.channel_width, c.num_classes) == (64, 8, 4, 10)
    assert c.attention_layer_position == 6 and c.n_stats == 51 and c.eps == 1e-4
    assert [list(layer) for layer in c.layers] == HF_TINY["layers"]
    z, labels, one_hot = hf_inputs()
    with torch.no_grad():
        for t in TRUNCATIONS:
            assert_close(bank.generate(t * z, labels, truncation=t), ref(t * z, one_hot, t))


def test_truncation_selects_and_interpolates_the_stored_statistics(tmp_path):
    """Between two stored truncations the code weights the lower entry by the fraction
    (math.modf); on a stored one it takes it as is. The outputs differ per truncation."""
    ref, folder = save_hf(tmp_path, seed=3)
    bank = load_bank(folder)
    z, labels, one_hot = hf_inputs(seed=4)
    outs = []
    with torch.no_grad():
        for t in (0.5, 0.51, 0.515, 1.0):
            got = bank.generate(0.5 * z, labels, truncation=t)
            assert_close(got, ref(0.5 * z, one_hot, t))
            outs.append(got)
    assert all((a - b).abs().max() > 1e-3 for a, b in itertools.pairwise(outs))


def test_the_weights_alone_load_with_the_released_layout(tmp_path):
    ref, folder = save_hf(tmp_path, seed=5)
    bank = load_bank(folder / "pytorch_model.bin")
    assert any("config.json" in n for n in bank.notes)
    z, labels, one_hot = hf_inputs()
    with torch.no_grad():
        assert_close(bank.generate(0.4 * z, labels, truncation=0.4), ref(0.4 * z, one_hot, 0.4))


def test_a_config_json_that_does_not_describe_the_weights_is_refused(tmp_path):
    _, folder = save_hf(tmp_path)
    wrong = dict(HF_TINY, attention_layer_position=4)
    (folder / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(WeightsError, match="attention_layer_position"):
        load_bank(folder)


def test_released_biggan_deep_sizes():
    """The layer tables give the published sizes (Brock et al., Table 7: 50.4 / 55.9 / 56.2 M)."""
    sizes = {
        res: BigGANDeepConfig(res, BIGGAN_DEEP_LAYERS[res]).parameter_count()
        for res in (128, 256, 512)
    }
    assert [round(n / 1e6, 1) for n in sizes.values()] == [50.4, 55.9, 56.2]


# -- reference: BigGAN-PyTorch (BigGAN.py, layers.py) ----------------------------------------------


def proj(x, y):
    return torch.mm(y, x.t()) * y / torch.mm(y, y.t())


def gram_schmidt(x, ys):
    for y in ys:
        x = x - proj(x, y)
    return x


def power_iteration(W, u_, update=True, eps=1e-12):
    us, vs, svs = [], [], []
    for i, u in enumerate(u_):
        with torch.no_grad():
            v = F.normalize(gram_schmidt(torch.matmul(u, W), vs), eps=eps)
            vs += [v]
            u = F.normalize(gram_schmidt(torch.matmul(v, W.t()), us), eps=eps)
            us += [u]
            if update:
                u_[i][:] = u
        svs += [torch.squeeze(torch.matmul(torch.matmul(v, W.t()), u.t()))]
    return svs, us, vs


class SN:
    def __init__(self, num_svs, num_itrs, num_outputs, eps=1e-12):
        self.num_itrs, self.num_svs, self.eps = num_itrs, num_svs, eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, num_outputs))
            self.register_buffer(f"sv{i}", torch.ones(1))

    def W_(self):
        W_mat = self.weight.view(self.weight.size(0), -1)
        u = [getattr(self, f"u{i}") for i in range(self.num_svs)]
        for _ in range(self.num_itrs):
            svs, _, _ = power_iteration(W_mat, u, update=self.training, eps=self.eps)
        if self.training:
            for i, sv in enumerate(svs):
                getattr(self, f"sv{i}")[:] = sv
        return self.weight / svs[0]


class SNConv2d(nn.Conv2d, SN):
    def __init__(self, c_in, c_out, kernel_size=3, padding=1, bias=True, **sn):
        nn.Conv2d.__init__(self, c_in, c_out, kernel_size, 1, padding, bias=bias)
        SN.__init__(self, sn["num_svs"], sn["num_itrs"], c_out, eps=sn["eps"])

    def forward(self, x):
        return F.conv2d(x, self.W_(), self.bias, self.stride, self.padding)


class SNLinear(nn.Linear, SN):
    def __init__(self, c_in, c_out, bias=True, **sn):
        nn.Linear.__init__(self, c_in, c_out, bias)
        SN.__init__(self, sn["num_svs"], sn["num_itrs"], c_out, eps=sn["eps"])

    def forward(self, x):
        return F.linear(x, self.W_(), self.bias)


class Attention(nn.Module):
    def __init__(self, ch, **sn):
        super().__init__()
        self.ch = ch
        self.theta = SNConv2d(ch, ch // 8, 1, 0, bias=False, **sn)
        self.phi = SNConv2d(ch, ch // 8, 1, 0, bias=False, **sn)
        self.g = SNConv2d(ch, ch // 2, 1, 0, bias=False, **sn)
        self.o = SNConv2d(ch // 2, ch, 1, 0, bias=False, **sn)
        self.gamma = nn.Parameter(torch.tensor(0.0), requires_grad=True)

    def forward(self, x, y=None):
        theta = self.theta(x)
        phi = F.max_pool2d(self.phi(x), [2, 2])
        g = F.max_pool2d(self.g(x), [2, 2])
        theta = theta.view(-1, self.ch // 8, x.shape[2] * x.shape[3])
        phi = phi.view(-1, self.ch // 8, x.shape[2] * x.shape[3] // 4)
        g = g.view(-1, self.ch // 2, x.shape[2] * x.shape[3] // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(-1, self.ch // 2, *x.shape[2:]))
        return self.gamma * o + x


class ccbn(nn.Module):
    def __init__(self, output_size, input_size, eps, sn):
        super().__init__()
        self.gain = SNLinear(input_size, output_size, bias=False, **sn)
        self.bias = SNLinear(input_size, output_size, bias=False, **sn)
        self.eps = eps
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(
            x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps
        )
        return out * gain + bias


class bn(nn.Module):
    def __init__(self, output_size, eps=1e-5, momentum=0.1):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(output_size))
        self.bias = nn.Parameter(torch.zeros(output_size))
        self.eps, self.momentum = eps, momentum
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))

    def forward(self, x, y=None):
        return F.batch_norm(
            x,
            self.stored_mean,
            self.stored_var,
            self.gain,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )


class GBlock(nn.Module):
    def __init__(self, c_in, c_out, bn_in, bn_eps, sn):
        super().__init__()
        self.conv1 = SNConv2d(c_in, c_out, **sn)
        self.conv2 = SNConv2d(c_out, c_out, **sn)
        self.conv_sc = SNConv2d(c_in, c_out, kernel_size=1, padding=0, **sn)
        self.bn1 = ccbn(c_in, bn_in, bn_eps, sn)
        self.bn2 = ccbn(c_out, bn_in, bn_eps, sn)

    def forward(self, x, y):
        h = F.relu(self.bn1(x, y))
        h = F.interpolate(h, scale_factor=2)
        x = F.interpolate(x, scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(x)


G_ARCH = {  # BigGAN.py's G_arch, the entries the tests use
    32: ([4, 4, 4], [4, 4, 4]),
    64: ([16, 16, 8, 4], [16, 8, 4, 2]),
}


class Generator(nn.Module):
    def __init__(
        self,
        G_ch=4,
        dim_z=20,
        resolution=64,
        G_attn="32",
        n_classes=10,
        num_G_SVs=1,
        num_G_SV_itrs=1,
        shared_dim=8,
        hier=True,
        BN_eps=1e-5,
        SN_eps=1e-6,
    ):
        super().__init__()
        ins, outs = ([G_ch * m for m in ms] for ms in G_ARCH[resolution])
        res = [8 * 2**i for i in range(len(ins))]
        attn = [int(a) for a in G_attn.split("_")]
        self.num_slots = len(ins) + 1 if hier else 1
        self.z_chunk_size = dim_z // self.num_slots if hier else 0
        self.dim_z, self.hier = (self.z_chunk_size * self.num_slots if hier else dim_z), hier
        sn = {"num_svs": num_G_SVs, "num_itrs": num_G_SV_itrs, "eps": SN_eps}
        bn_in = shared_dim + self.z_chunk_size
        self.shared = nn.Embedding(n_classes, shared_dim)
        self.linear = SNLinear(self.dim_z // self.num_slots, ins[0] * 16, **sn)
        self.blocks = nn.ModuleList()
        for i in range(len(outs)):
            block = [GBlock(ins[i], outs[i], bn_in, BN_eps, sn)]
            if res[i] in attn:
                block.append(Attention(outs[i], **sn))
            self.blocks.append(nn.ModuleList(block))
        self.output_layer = nn.Sequential(bn(outs[-1]), nn.ReLU(), SNConv2d(outs[-1], 3, **sn))

    def forward(self, z, y):
        if self.hier:
            zs = torch.split(z, self.z_chunk_size, 1)
            z = zs[0]
            ys = [torch.cat([y, item], 1) for item in zs[1:]]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z)
        h = h.view(h.size(0), -1, 4, 4)
        for index, blocklist in enumerate(self.blocks):
            for block in blocklist:
                h = block(h, ys[index])
        return torch.tanh(self.output_layer(h))


def save_brock(tmp_path, seed=0, legacy=False, name="G_ema.pth", **kwargs):
    model = randomise(Generator(**kwargs), seed).eval()
    path = tmp_path / f"{seed}{'legacy' if legacy else ''}{name}"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return model, path


def brock_inputs(model, n=3, seed=1, truncation=1.0):
    z = truncated_noise(n, model.dim_z, truncation, seed=seed)
    return z, torch.tensor([0, 7, 3, 9, 1][:n])


BROCK_VARIANTS = {
    "hier": {},
    "plain z": {"hier": False, "dim_z": 12},
    "two singular vectors": {"num_G_SVs": 2},
    "32 px, attention at 8 and 16": {"resolution": 32, "G_attn": "8_16", "G_ch": 8},
}


@pytest.mark.parametrize("variant", list(BROCK_VARIANTS))
@pytest.mark.parametrize("legacy", [False, True])
def test_biggan_pytorch_generates_what_its_code_generates(tmp_path, variant, legacy):
    kwargs = BROCK_VARIANTS[variant]
    ref, path = save_brock(tmp_path, legacy=legacy, **kwargs)
    bank = load_bank(path)
    c = bank.config
    assert c.model_type == "biggan" and c.dim_z == ref.dim_z and c.hier == ref.hier
    assert c.resolution == kwargs.get("resolution", 64) and c.num_classes == 10
    assert c.num_svs == kwargs.get("num_G_SVs", 1)
    assert c.attention == tuple(int(a) for a in kwargs.get("G_attn", "32").split("_"))
    before = {k: v.clone() for k, v in bank.generator.state_dict().items()}
    with torch.no_grad():
        for t in TRUNCATIONS:
            z, labels = brock_inputs(ref, truncation=t)
            expected = ref(z, ref.shared(labels))
            assert_close(bank.generate(z, labels, truncation=t), expected)
            # eval mode: the power iteration runs on every call and never writes back
            assert_close(bank.generate(z, labels, truncation=t), expected)
    after = bank.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_mode_updates_the_singular_vectors_as_the_code_does(tmp_path):
    """In training mode both write the new ``u`` and ``sv`` back and normalise with the batch's
    statistics: three calls in a row stay equal, and so do the buffers."""
    ref, path = save_brock(tmp_path, seed=2)
    bank = load_bank(path)
    ref.train(), bank.generator.train()
    z, labels = brock_inputs(ref, n=4)
    with torch.no_grad():
        for _ in range(3):
            got = bank.generator(z, bank.generator.shared(labels))
            assert_close(got, ref(z, ref.shared(labels)))
    theirs = ref.state_dict()
    for key, value in bank.generator.state_dict().items():
        assert_close(value, theirs[key], image=False)


# -- reference: TF Hub's BigGAN as BigGAN-PyTorch's TFHub/biggan.py defines it ---------------------
# (TFHub/converter.py builds biggan.Generator{128,256,512}, fills its state_dict from TF Hub's
# variables and saves it with torch.save.)


def tf_l2normalize(v, eps=1e-4):
    return v / (v.norm() + eps)


class TFSpectralNorm(nn.Module):
    """Wraps a module whose weight becomes weight_u, weight_v (sized like u) and weight_bar;
    every call derives the weight from u by one power iteration, never storing it back."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        w = module.weight
        del module._parameters["weight"]
        for name in ("weight_u", "weight_v"):
            unit = tf_l2normalize(torch.randn(w.shape[0]))
            module.register_parameter(name, nn.Parameter(unit, requires_grad=False))
        module.register_parameter("weight_bar", nn.Parameter(w.data))

    def forward(self, *args):
        w = self.module.weight_bar
        mat = w.view(w.shape[0], -1)
        v = tf_l2normalize(mat.t() @ self.module.weight_u)
        u = tf_l2normalize(mat @ v)
        self.module.weight = w / u.dot(mat @ v)
        return self.module.forward(*args)


class TFSelfAttention(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.theta = TFSpectralNorm(nn.Conv2d(ch, ch // 8, 1, bias=False))
        self.phi = TFSpectralNorm(nn.Conv2d(ch, ch // 8, 1, bias=False))
        self.g = TFSpectralNorm(nn.Conv2d(ch, ch // 2, 1, bias=False))
        self.o_conv = TFSpectralNorm(nn.Conv2d(ch // 2, ch, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, _, h, w = x.shape
        theta = self.theta(x).view(n, -1, h * w).permute(0, 2, 1)
        phi = F.max_pool2d(self.phi(x), 2).view(n, -1, h * w // 4)
        attention = torch.softmax(torch.bmm(theta, phi), dim=-1)
        g = F.max_pool2d(self.g(x), 2).view(n, -1, h * w // 4)
        out = self.o_conv(torch.bmm(g, attention.permute(0, 2, 1)).view(n, -1, h, w))
        return self.gamma * out + x


class TFConditionalBatchNorm2d(nn.Module):
    def __init__(self, channels, cond_dim):
        super().__init__()
        self.channels = channels
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=1e-4)
        self.gamma_embed = TFSpectralNorm(nn.Linear(cond_dim, channels, bias=False))
        self.beta_embed = TFSpectralNorm(nn.Linear(cond_dim, channels, bias=False))

    def forward(self, x, y):
        gamma = (self.gamma_embed(y) + 1).view(-1, self.channels, 1, 1)
        return gamma * self.bn(x) + self.beta_embed(y).view(-1, self.channels, 1, 1)


class TFGBlock(nn.Module):
    def __init__(self, c_in, c_out, cond_dim):
        super().__init__()
        self.conv0 = TFSpectralNorm(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv1 = TFSpectralNorm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.conv_sc = TFSpectralNorm(nn.Conv2d(c_in, c_out, 1, 1, 0))
        self.HyperBN = TFConditionalBatchNorm2d(c_in, cond_dim)
        self.HyperBN_1 = TFConditionalBatchNorm2d(c_out, cond_dim)

    def forward(self, x, cond):
        out = F.interpolate(F.relu(self.HyperBN(x, cond)), scale_factor=2)
        out = self.conv1(F.relu(self.HyperBN_1(self.conv0(out), cond)))
        return out + self.conv_sc(F.interpolate(x, scale_factor=2))


#: TFHub/biggan.py's three generators: z size, width multipliers (input of block 0, then each
#: block's output), the GBlock the attention precedes, its width, the output BN's epsilon
TF_GENERATORS = {
    128: (120, (16, 16, 8, 4, 2, 1), 4, 2, 1e-4),
    256: (140, (16, 16, 8, 8, 4, 2, 1), 5, 2, 1e-4),
    512: (128, (16, 16, 8, 8, 4, 2, 1, 1), 4, 4, 1e-5),
}


class TFGenerator(nn.Module):
    def __init__(self, resolution, chn=4, n_class=10):
        super().__init__()
        code_dim, mults, self.sa_id, attn, eps = TF_GENERATORS[resolution]
        self.num_split = len(mults)
        self.first_view = 16 * chn
        chunk = code_dim // self.num_split
        self.linear = nn.Linear(n_class, 128, bias=False)
        self.G_linear = TFSpectralNorm(nn.Linear(chunk, 4 * 4 * 16 * chn))
        widths = [m * chn for m in mults]
        self.GBlock = nn.ModuleList(
            TFGBlock(c_in, c_out, chunk + 128) for c_in, c_out in itertools.pairwise(widths)
        )
        self.attention = TFSelfAttention(attn * chn)
        self.ScaledCrossReplicaBN = nn.BatchNorm2d(chn, eps=eps)
        self.colorize = TFSpectralNorm(nn.Conv2d(chn, 3, 3, padding=1))

    def forward(self, z, one_hot):
        codes = torch.chunk(z, self.num_split, 1)
        class_emb = self.linear(one_hot)
        out = self.G_linear(codes[0]).view(-1, 4, 4, self.first_view).permute(0, 3, 1, 2)
        for i, (code, block) in enumerate(zip(codes[1:], self.GBlock, strict=True)):
            if i == self.sa_id:
                out = self.attention(out)
            out = block(out, torch.cat([code, class_emb], 1))
        return torch.tanh(self.colorize(F.relu(self.ScaledCrossReplicaBN(out))))


def save_tfhub(tmp_path, resolution, seed=0, scale=0.3, chn=4):
    """A TFGenerator with random weights (``scale`` x normal) and statistics, saved as
    TFHub/converter.py saves it (the state_dict, counters as float32 tensors); u near each
    weight's top singular vector, as TF's stored estimate is."""
    model = TFGenerator(resolution, chn).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            r = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + r.abs())
            elif name.endswith("running_mean"):
                t.copy_(0.1 * r)
            elif name.endswith("gamma"):
                t.copy_(0.5 + 0.1 * r)
            elif name == "ScaledCrossReplicaBN.weight":
                t.copy_(1 + 0.1 * r)
            elif name.startswith(("linear.", "ScaledCrossReplicaBN.", "colorize.module.bias")):
                t.copy_(0.05 * r)
            elif not name.endswith(("num_batches_tracked", "weight_u")):
                t.copy_(scale * r)
        for module in model.modules():
            if hasattr(module, "weight_bar"):
                mat = module.weight_bar.reshape(module.weight_bar.shape[0], -1)
                u = F.normalize(torch.randn(mat.shape[0], generator=gen), dim=0)
                for _ in range(3):
                    u = F.normalize(mat @ F.normalize(mat.t() @ u, dim=0), dim=0)
                module.weight_u.copy_(u)
    sd = model.state_dict()
    for key in sd:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000.0)
    path = tmp_path / f"biggan-{resolution}.pth"
    torch.save(sd, path)
    return model, path


@pytest.mark.parametrize(
    "resolution",
    [128, pytest.param(256, marks=pytest.mark.slow), 512],  # 256: attention at 128 px
)
def test_tfhub_converter_files_generate_what_tfhub_biggan_py_generates(tmp_path, resolution):
    ref, path = save_tfhub(tmp_path, resolution)
    bank = load_bank(path)
    c = bank.config
    code_dim, _, sa_id, _, _ = TF_GENERATORS[resolution]
    assert c.model_type == "biggan" and c.resolution == resolution and "TFHub" in bank.format
    assert (c.ch, c.dim_z, c.shared_dim, c.num_classes, c.hier) == (4, code_dim, 128, 10, True)
    assert c.attention == (8 * 2 ** (sa_id - 1),)  # after the block before GBlock sa_id
    assert (c.bn_eps, c.sn_eps, c.sn_variant) == (1e-4, 1e-4, "tfhub")
    labels = torch.tensor([0, 7])
    one_hot = F.one_hot(labels, 10).float()
    with torch.no_grad():
        for t in (1.0, 0.5):
            z = truncated_noise(2, code_dim, t, seed=1)
            expected = ref(z, one_hot)
            assert_close(bank.generate(z, labels, truncation=t), expected)
    assert expected.std() > 0.1  # images with content, not a flat colour
    again = load_bank(bank.save(tmp_path / "bank"))  # the bank directory keeps the variant
    assert again.config == c
    with torch.no_grad():
        assert torch.equal(again.generate(z, labels), bank.generate(z, labels))


def test_tfhubs_spectral_norm_is_its_own(tmp_path):
    """TFHub/biggan.py normalises by ``|x| + 1e-4``: with weights small enough for that to
    show, the file still gives the code's images, and BigGAN-PyTorch's ``layers.SN`` would not."""
    ref, path = save_tfhub(tmp_path, 128, seed=3, scale=3e-4)
    bank = load_bank(path)
    labels = torch.tensor([2, 5])
    z = truncated_noise(2, 120, 1.0, seed=4)
    plain = BigGANGenerator(dataclasses.replace(bank.config, sn_variant="biggan_pytorch"))
    plain.load_state_dict(bank.generator.state_dict())
    with torch.no_grad():
        expected = ref(z, F.one_hot(labels, 10).float())
        assert_close(bank.generate(z, labels), expected)
        assert (plain.eval().generate(z, labels) - expected).abs().max() > 1e-2


def test_tfhub_files_are_mapped_key_by_key(tmp_path):
    """Every key of the file matches a rule; a stray one, or epsilons the code fixes, is named
    in one line."""
    _, path = save_tfhub(tmp_path, 128, seed=2)
    sd = torch.load(path, weights_only=True)
    sd["GBlock.0.extra.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="GBlock.0.extra.weight") as info:
        load_bank(path)
    assert "\n" not in str(info.value)
    from glean_sr.weights.biggan_banks import load_biggan

    del sd["GBlock.0.extra.weight"]
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="fixed by TFHub/biggan.py"):
        load_biggan(path, bn_eps=1e-5)


def test_a_tfhub_bank_trains_a_glean_biggan_of_its_fields(tmp_path):
    """A recipe's model must carry the bank's TF Hub fields; the mismatch names the overrides.
    The discriminator, from scratch, uses BigGAN-PyTorch's spectral norm (which updates u)."""
    from glean_sr.config import GLEANBigGANConfig
    from glean_sr.training.bank import load_training_bank

    _, path = save_tfhub(tmp_path, 128, seed=5, chn=8)  # attention needs 8 channels in D
    fields = {"rrdb_channels": 8, "num_rrdbs": 1, "ch": 8, "dim_z": 120, "num_classes": 10}
    plain = GLEANBigGANConfig(in_size=32, out_size=128, **fields)
    with pytest.raises(WeightsError) as info:
        load_training_bank(str(path), plain, need_discriminator=False)
    assert "model.bn_eps=0.0001 model.sn_eps=0.0001 model.sn_variant=tfhub" in str(info.value)
    config = dataclasses.replace(plain, bn_eps=1e-4, sn_eps=1e-4, sn_variant="tfhub")
    bank, disc, _ = load_training_bank(str(path), config, need_discriminator=True)
    assert bank.config == config.bank and disc.config.sn_variant == "biggan_pytorch"
    u = disc.linear.u0.clone()
    disc.train()(torch.randn(2, 3, 128, 128))
    assert not torch.equal(u, disc.linear.u0)


# -- loading is strict and inert -------------------------------------------------------------------


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["hf", "hf-legacy", "brock", "brock-legacy"])
def test_code_inside_a_biggan_file_is_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "ran"
    if kind.startswith("hf"):
        model = HFBigGAN(HF_TINY)
        folder = tmp_path / "hf"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(HF_TINY))
        path, target = folder / "pytorch_model.bin", folder
    else:
        model = Generator()
        path = target = tmp_path / "G.pth"
    sd = dict(model.state_dict())
    sd["extra"] = _System(marker)
    torch.save(sd, path, _use_new_zipfile_serialization=not kind.endswith("legacy"))
    with pytest.raises(WeightsError, match="system") as info:
        load_bank(target)
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["hf", "brock"])
def test_mismatches_are_named(tmp_path, kind):
    if kind == "hf":
        model, folder = save_hf(tmp_path)
        path, target = folder / "pytorch_model.bin", folder
        missing, resized = "generator.layers.6.snconv1x1_g.weight_v", "generator.bn.weight"
    else:
        model, path = save_brock(tmp_path)
        target = path
        missing, resized = "blocks.1.0.conv2.u0", "output_layer.0.gain"
    sd = dict(model.state_dict())
    del sd[missing]
    sd[resized] = torch.zeros(3)
    sd["stray.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        load_bank(target)
    msg = str(info.value)
    assert missing in msg and resized in msg and "stray.weight" in msg


def test_layouts_that_are_not_read_are_refused_by_name(tmp_path):
    sd = dict(Generator().state_dict())
    sd["blocks.0.0.conv4.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "G.pth")
    with pytest.raises(WeightsError, match="BigGANdeep.py"):
        load_bank(tmp_path / "G.pth")


def test_the_epsilons_a_g_pth_does_not_record_can_be_given(tmp_path):
    from glean_sr.weights.biggan_banks import load_biggan

    ref, path = save_brock(tmp_path, BN_eps=1e-2, SN_eps=1e-8)
    given = load_biggan(str(path), bn_eps=1e-2, sn_eps=1e-8)
    assumed = load_bank(path)
    assert given.config.bn_eps == 1e-2 and not given.notes
    assert any("bn_eps and sn_eps" in n for n in assumed.notes)
    z, labels = brock_inputs(ref)
    with torch.no_grad():
        expected = ref(z, ref.shared(labels))
        assert_close(given.generate(z, labels), expected)
        assert (assumed.generate(z, labels) - expected).abs().max() > 1e-3


def test_options_that_only_stylegan2_files_have_are_refused(tmp_path):
    _, path = save_brock(tmp_path)
    with pytest.raises(WeightsError, match="ema and channel_order"):
        load_bank(path, ema=True)


# -- the bank directory ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hf", "brock"])
def test_the_bank_directory_round_trips_exactly(tmp_path, kind):
    if kind == "hf":
        _, source = save_hf(tmp_path)
    else:
        _, source = save_brock(tmp_path, num_G_SVs=2)
    bank = load_bank(source)
    out = bank.save(tmp_path / "bank")
    again = load_bank(out)
    assert again.config == bank.config and again.format == bank.format
    mine, theirs = bank.generator.state_dict(), again.generator.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    z = truncated_noise(2, 8 if kind == "hf" else 20, 0.5, seed=0)
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(bank.generate(z, labels, 0.5), again.generate(z, labels, 0.5))
    config = json.loads((out / "config.json").read_text())
    assert config_from_dict(config) == bank.config == config_from_dict(to_dict(bank.config))
    with pytest.raises(Exception, match="--overwrite"):
        bank.save(out)


def test_generate_checks_its_inputs(tmp_path):
    _, path = save_brock(tmp_path)
    bank = load_bank(path)
    z = torch.zeros(2, 20)
    with pytest.raises(ValueError, match="int64"):
        bank.generate(z, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        bank.generate(z, torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="truncation"):
        bank.generate(z, torch.tensor([1, 2]), truncation=1.5)
    with pytest.raises(ValueError, match="z must be"):
        bank.generate(torch.zeros(2, 19), torch.tensor([1, 2]))


def test_released_biggan_pytorch_size():
    """BigGAN.py's G at 128 px (G_ch 96, hierarchical z 120, shared 128, attention 64): the
    70,433,988 parameters its released G_ema.pth holds."""
    assert BigGANConfig(resolution=128).parameter_count() == 70_433_988


def test_truncated_noise_is_seeded_and_bounded():
    a = truncated_noise(64, 20, 0.5, seed=3)
    assert torch.equal(a, truncated_noise(64, 20, 0.5, seed=3))
    assert a.abs().max() <= 1.0 and a.std() > 0.3


# -- the commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hf", "brock"])
def test_convert_bank_and_sample_bank_with_classes(tmp_path, kind, capsys):
    from glean_sr import cli
    from glean_sr.io import read_image

    if kind == "hf":
        _, source = save_hf(tmp_path)
        side = 64
    else:
        _, source = save_brock(tmp_path, resolution=32, G_attn="16", G_ch=8)
        side = 32
    out = tmp_path / "bank"
    assert cli.main(["convert-bank", str(source), str(out)]) == 0
    assert "classes" in capsys.readouterr().out
    grids = {}
    for name, src in (("original", source), ("converted", out)):
        path = tmp_path / f"{name}.png"
        args = ["sample-bank", str(src), "-o", str(path), "--num", "3", "--truncation", "0.5"]
        assert cli.main([*args, "--class", "4", "--class", "9"]) == 0
        grids[name] = read_image(path).pixels
    assert grids["original"].shape == (2 * side, 3 * side, 3)
    assert (grids["original"] == grids["converted"]).all()
    assert cli.main(["sample-bank", str(out), "-o", str(tmp_path / "any.png"), "--num", "4"]) == 0
    assert "4 images" in capsys.readouterr().out
    assert cli.main(["convert-bank", str(source), str(tmp_path / "b2"), "--ema"]) != 0
    assert "ema and channel_order apply to StyleGAN2 files" in capsys.readouterr().err
