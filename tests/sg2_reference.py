"""Independent reference computations of StyleGAN2 generators and discriminators, one per file
format, written from the published equations and each format's conventions. Nothing here imports
glean_sr: these are what the converted banks are checked against.

StyleGAN2 (Karras et al., CVPR 2020): mapping = PixelNorm + ``L`` equalized-lr dense layers with
leaky ReLU x sqrt(2); synthesis layer = modulated conv (Eq. 1), demodulation (Eq. 3), noise,
bias + leaky ReLU x sqrt(2); up-sampling layers interpolate with the [1,3,3,1] FIR filter; the
RGB outputs are summed after FIR up-sampling (Fig. 7b). Each modulated convolution is computed
sample by sample here (no grouped convolution).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SQRT2 = math.sqrt(2.0)


def fir(gain: float = 1.0) -> Tensor:
    t = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = t[:, None] * t[None, :]
    return k / k.sum() * gain


def upfirdn(x: Tensor, k: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Literal upfirdn2d: zero insertion, zero padding (same on both axes), true convolution
    with ``k`` (flipped correlation), keep every ``down``-th sample."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kernel = k.flip(0, 1)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down]


def lrelu(x: Tensor, bias: Tensor, gain: float = SQRT2) -> Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.reshape(shape), 0.2) * gain


def modulate(weight: Tensor, styles: Tensor, demodulate: bool) -> list[Tensor]:
    """Per-sample weights ``w_n = weight * s_n`` (Eq. 1), divided by their norm (Eq. 3)."""
    out = []
    for s in styles:
        w = weight * s[None, :, None, None]
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        out.append(w)
    return out


# -- NVIDIA stylegan2-ada-pytorch ------------------------------------------------------------------


def nvidia_fc(x: Tensor, sd: dict, prefix: str, lr: float, act: bool) -> Tensor:
    w = sd[f"{prefix}.weight"]
    x = x @ (w * (lr / math.sqrt(w.shape[1]))).t()
    b = sd[f"{prefix}.bias"] * lr
    return lrelu(x, b) if act else x + b


def nvidia_mapping(sd: dict, z: Tensor, num_layers: int, lr: float = 0.01) -> Tensor:
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    for i in range(num_layers):
        x = nvidia_fc(x, sd, f"mapping.fc{i}", lr, act=True)
    return x


def nvidia_layer(sd: dict, p: str, x: Tensor, w: Tensor, up: bool, clamp: float | None) -> Tensor:
    styles = nvidia_fc(w, sd, f"{p}.affine", 1.0, act=False)
    outs = []
    for xn, wn in zip(x, modulate(sd[f"{p}.weight"], styles, True), strict=True):
        xn = xn[None]
        if up:  # conv2d_resample's generic path: up-sample + FIR (gain 4), then convolution
            xn = upfirdn(xn, fir(4.0), up=2, pad=(3, 2))
            outs.append(F.conv2d(xn, wn.flip(2, 3)))
        else:
            outs.append(F.conv2d(xn, wn, padding=1))
    x = torch.cat(outs) + sd[f"{p}.noise_const"] * sd[f"{p}.noise_strength"]
    x = lrelu(x, sd[f"{p}.bias"])
    return x.clamp(-clamp, clamp) if clamp is not None else x


def nvidia_torgb(sd: dict, p: str, x: Tensor, w: Tensor, clamp: float | None) -> Tensor:
    weight = sd[f"{p}.weight"]
    styles = nvidia_fc(w, sd, f"{p}.affine", 1.0, act=False) / math.sqrt(weight.shape[1])
    outs = [
        F.conv2d(xn[None], wn) for xn, wn in zip(x, modulate(weight, styles, False), strict=True)
    ]
    x = torch.cat(outs) + sd[f"{p}.bias"].reshape(1, -1, 1, 1)
    return x.clamp(-clamp, clamp) if clamp is not None else x


def nvidia_generator(
    sd: dict,
    z: Tensor,
    *,
    resolution: int,
    num_layers: int,
    truncation_psi: float = 1.0,
    clamp: float | None = None,
) -> Tensor:
    """``G(z, c=None, truncation_psi, noise_mode='const', force_fp32=True)``."""
    w = nvidia_mapping(sd, z, num_layers)
    if truncation_psi != 1:
        w = sd["mapping.w_avg"].lerp(w, truncation_psi)
    x = sd["synthesis.b4.const"][None].repeat(z.shape[0], 1, 1, 1)
    x = nvidia_layer(sd, "synthesis.b4.conv1", x, w, False, clamp)
    img = nvidia_torgb(sd, "synthesis.b4.torgb", x, w, clamp)
    res = 8
    while res <= resolution:
        b = f"synthesis.b{res}"
        x = nvidia_layer(sd, f"{b}.conv0", x, w, True, clamp)
        x = nvidia_layer(sd, f"{b}.conv1", x, w, False, clamp)
        img = upfirdn(img, fir(4.0), up=2, pad=(2, 1)) + nvidia_torgb(sd, f"{b}.torgb", x, w, clamp)
        res *= 2
    return img


def nvidia_conv(sd: dict, p: str, x: Tensor, *, down: bool = False, gain: float = 1.0, act=True):
    weight = sd[f"{p}.weight"]
    weight = weight / math.sqrt(weight[0].numel())
    k = weight.shape[-1]
    if down and k == 1:  # fast path: FIR-downsample first, then the 1x1 convolution
        x = F.conv2d(upfirdn(x, fir(), down=2, pad=(1, 1)), weight)
    elif down:  # generic path: pad, convolve, then FIR + keep every 2nd sample
        x = upfirdn(F.conv2d(F.pad(x, [2, 2, 2, 2]), weight), fir(), down=2)
    else:
        x = F.conv2d(x, weight, padding=k // 2)
    if act:
        return lrelu(x, sd[f"{p}.bias"], SQRT2 * gain)
    return x * gain


def mbstd_reference(x: Tensor, group_size: int, eps: float = 1e-8) -> Tensor:
    n, c, h, w = x.shape
    g = min(group_size, n)
    y = x.reshape(g, -1, 1, c, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + eps).sqrt().mean(dim=(2, 3, 4))  # [n/g, 1]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


def nvidia_discriminator(sd: dict, img: Tensor, *, resolution: int, group_size: int) -> Tensor:
    x = nvidia_conv(sd, f"b{resolution}.fromrgb", img)
    res = resolution
    while res >= 8:
        y = nvidia_conv(sd, f"b{res}.skip", x, down=True, gain=math.sqrt(0.5), act=False)
        x = nvidia_conv(sd, f"b{res}.conv0", x)
        x = nvidia_conv(sd, f"b{res}.conv1", x, down=True, gain=math.sqrt(0.5))
        x = y + x
        res //= 2
    x = nvidia_conv(sd, "b4.conv", mbstd_reference(x, group_size))
    x = nvidia_fc(x.flatten(1), sd, "b4.fc", 1.0, act=True)
    return nvidia_fc(x, sd, "b4.out", 1.0, act=False)


# -- rosinality and mmagic (same equations, different names and PixelNorm eps) ---------------------

#: where each format keeps the tensors of the same network
ROSINALITY_NAMES = {
    "mapping": "style.{i}.weight",
    "mapping_bias": "style.{i}.bias",
    "const": "input.input",
    "conv_weight": "conv.weight",
    "mod_weight": "conv.modulation.weight",
    "mod_bias": "conv.modulation.bias",
    "noise_weight": "noise.weight",
    "noise": "noises.noise_{i}",
    "d_weight": "weight",
}
MMAGIC_NAMES = {
    "mapping": "style_mapping.{i}.linear.weight_orig",
    "mapping_bias": "style_mapping.{i}.bias",
    "const": "constant_input.input",
    "conv_weight": "conv.weight_orig",
    "mod_weight": "conv.style_modulation.linear.weight_orig",
    "mod_bias": "conv.style_modulation.bias",
    "noise_weight": "noise_injector.weight",
    "noise": "injected_noise_{i}",
    "d_weight": "conv.weight_orig",
}


def _equal_linear(x: Tensor, weight: Tensor, bias: Tensor, lr: float, act: bool) -> Tensor:
    out = F.linear(x, weight * (lr / math.sqrt(weight.shape[1])))
    return lrelu(out, bias * lr) if act else out + bias * lr


def styled_generator(
    sd: dict,
    z: Tensor,
    *,
    names: dict,
    resolution: int,
    n_mlp: int,
    pixelnorm_eps: float,
    truncation_psi: float = 1.0,
    truncation_latent: Tensor | None = None,
    lr_mlp: float = 0.01,
) -> Tensor:
    """rosinality ``Generator.forward([z], randomize_noise=False)`` / mmagic
    ``StyleGANv2Generator(z, randomize_noise=False)``: stored noise, one latent for all layers."""
    n = names
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + pixelnorm_eps)
    for i in range(1, n_mlp + 1):
        w_key, b_key = n["mapping"].format(i=i), n["mapping_bias"].format(i=i)
        x = _equal_linear(x, sd[w_key], sd[b_key], lr_mlp, act=True)
    w = x
    if truncation_psi < 1:
        w = truncation_latent + truncation_psi * (w - truncation_latent)

    def conv(p: str, x: Tensor, noise_index: int, up: bool) -> Tensor:
        weight = sd[f"{p}.{n['conv_weight']}"][0]
        weight = weight / math.sqrt(weight[0].numel())
        styles = _equal_linear(
            w, sd[f"{p}.{n['mod_weight']}"], sd[f"{p}.{n['mod_bias']}"], 1, False
        )
        outs = []
        for xn, wn in zip(x, modulate(weight, styles, True), strict=True):
            if up:  # transposed convolution, stride 2, then the FIR filter (gain 4), pad (1, 1)
                out = F.conv_transpose2d(xn[None], wn.transpose(0, 1), stride=2)
                outs.append(upfirdn(out, fir(4.0), pad=(1, 1)))
            else:
                outs.append(F.conv2d(xn[None], wn, padding=1))
        out = torch.cat(outs)
        out = out + sd[f"{p}.{n['noise_weight']}"] * sd[n["noise"].format(i=noise_index)]
        return lrelu(out, sd[f"{p}.activate.bias"])

    def to_rgb(p: str, x: Tensor, skip: Tensor | None) -> Tensor:
        weight = sd[f"{p}.{n['conv_weight']}"][0]
        weight = weight / math.sqrt(weight[0].numel())
        styles = _equal_linear(
            w, sd[f"{p}.{n['mod_weight']}"], sd[f"{p}.{n['mod_bias']}"], 1, False
        )
        mods = modulate(weight, styles, False)
        out = torch.cat([F.conv2d(xn[None], wn) for xn, wn in zip(x, mods, strict=True)])
        out = out + sd[f"{p}.bias"]
        if skip is not None:
            out = out + upfirdn(skip, fir(4.0), up=2, pad=(2, 1))
        return out

    x = sd[n["const"]].repeat(z.shape[0], 1, 1, 1)
    x = conv("conv1", x, 0, up=False)
    img = to_rgb("to_rgb1", x, None)
    for b in range(int(math.log2(resolution)) - 2):
        x = conv(f"convs.{2 * b}", x, 2 * b + 1, up=True)
        x = conv(f"convs.{2 * b + 1}", x, 2 * b + 2, up=False)
        img = to_rgb(f"to_rgbs.{b}", x, img)
    return img


def styled_discriminator(sd: dict, img: Tensor, *, names: dict, resolution: int) -> Tensor:
    """rosinality ``Discriminator`` / mmagic ``StyleGAN2Discriminator`` (group size 4)."""
    wk = names["d_weight"]

    def conv(p: str, x: Tensor, *, down: bool = False, act: bool = True) -> Tensor:
        weight = sd[f"{p}.{wk}"]
        weight = weight / math.sqrt(weight[0].numel())
        k = weight.shape[-1]
        if down:
            pad = (2, 2) if k == 3 else (1, 1)
            x = F.conv2d(upfirdn(x, fir(), pad=pad), weight, stride=2)
        else:
            x = F.conv2d(x, weight, padding=k // 2)
        return x

    def layer(p: str, x: Tensor, down: bool = False) -> Tensor:
        conv_index = 1 if down else 0
        out = conv(f"{p}.{conv_index}", x, down=down)
        return lrelu(out, sd[f"{p}.{conv_index + 1}.bias"])

    x = layer("convs.0", img)
    for k in range(1, int(math.log2(resolution)) - 1):
        out = layer(f"convs.{k}.conv2", layer(f"convs.{k}.conv1", x), down=True)
        skip = conv(f"convs.{k}.skip.1", x, down=True)
        x = (out + skip) / SQRT2
    x = layer("final_conv", mbstd_reference(x, 4))
    lin = "linear.weight_orig" if wk == "conv.weight_orig" else "weight"
    x = _equal_linear(x.flatten(1), sd[f"final_linear.0.{lin}"], sd["final_linear.0.bias"], 1, True)
    return _equal_linear(x, sd[f"final_linear.1.{lin}"], sd["final_linear.1.bias"], 1, False)
