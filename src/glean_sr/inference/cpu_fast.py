"""The CPU execution strategy for GLEAN and LightGLEAN inference: the same function as the
networks' plain definitions (:mod:`glean_sr.models`), computed faster and in less memory.

:func:`accelerate` wraps a loaded model in :class:`CPUFastPath`; :class:`glean_sr.Upscaler`,
:func:`glean_sr.evaluate` and the ``glean-sr`` commands do so on CPU devices unless told not
to (``fast=False``, ``--plain``). The wrapper holds no weights of its own: it reads the model's
modules and parameters, so the model stays what it was (trainable, savable, exportable). It only
runs inference (no gradients), one image at a time.

What it does, and what each part is worth. Figures: ``python benchmarks/inference.py
--ablate --rounds 3`` (each variant in its own process, taking turns; median latency, peak
RSS), fp32, batch 1, 2-core x86-64 CPU, torch 2.13; GLEAN 64 -> 1024 (``glean_ffhq_16x``) and
32 -> 256 (``glean_cat_8x``). Against the plain definition the whole path takes 0.45x and 0.81x
the time and 0.62x and 0.88x the peak memory (benchmarks/README.md has the table).

* Channels-last (NHWC) activations throughout, oneDNN's fast layout; the per-sample modulated
  weights are written straight into that layout. Switched off (NCHW): 1.64x the time at
  64 -> 1024, 1.08x at 32 -> 256.
* Banding of the large stages (outputs taller than ``Options.rows``): the transposed
  up-sampling convolution with its FIR filter, the bank's last block (:func:`block_rows`) and
  the decoder's last two stages (:func:`shuffle_cat_head`) are computed in row bands, so their
  full-size intermediates never exist whole. Switched off: 1.64x the peak memory (2259 against
  1379 MiB) and 1.20x the time at 64 -> 1024; 1.07x and 1.11x at 32 -> 256.
* The bank's modulated convolutions with the next layer's gain and bias folded into the
  weights and the convolution's bias, noise and leaky ReLU in place: two passes over each
  output instead of five. Part of every variant above (no switch).
* A batch runs one image at a time: at 256-1024 px one image keeps the CPU busy, and the bands
  are per image.

Left out, being within the spread of repeated runs: storing the convolution weights
channels-last, caching the demodulation's squared weights and in-place RRDB activations
(together, at most a few per cent), and computing the 64 -> 3 head convolution by its nine taps
(-1 % to +6 % over runs). Nothing here changes process-wide state; the allocator setting
measured in benchmarks/README.md is the user's opt-in.

Every function here has an equivalence test against the plain definition
(tests/test_fast_paths.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.base import BankRestorer
from ..models.glean import GLEAN
from ..models.layers import NoiseInjection
from ..models.light_glean import LightGLEAN
from ..models.ops import LRELU_GAIN, LRELU_SLOPE
from ..models.stylegan2 import ModulatedConv2d, ModulatedStyleConv, StyleGAN2Generator

# -- layout and banded operations ------------------------------------------------------------


def is_channels_last(x: Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last (NHWC) and not also plain contiguous."""
    return (
        x.ndim == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (x.is_contiguous())
    )


def keep_format(y: Tensor, x: Tensor) -> Tensor:
    """``y`` in ``x``'s memory format (oneDNN sometimes returns NCHW for channels-last input)."""
    return as_format(y, is_channels_last(x))


def as_format(y: Tensor, channels_last: bool) -> Tensor:
    """``y`` channels-last if asked and not already (a copy only when needed).

    A single-sample channels-last tensor can carry any stride on its batch axis (oneDNN passes
    on its input's, e.g. after a grouped-convolution reshape). PyTorch ignores that stride when
    asked whether the tensor is channels-last, but ``torch.cat`` and the element-wise ops pick
    their output layout from all strides and fall back to NCHW, after which every later
    convolution runs on the slow layout; so the batch stride is made canonical (a view, no copy).
    """
    if channels_last and not is_channels_last(y):
        return y.contiguous(memory_format=torch.channels_last)
    if channels_last and y.shape[0] == 1 and y.stride(0) != y[0].numel():
        return y.as_strided(y.shape, (y[0].numel(), *y.stride()[1:]), y.storage_offset())
    return y


def pixel_shuffle_cat(x: Tensor, extra: Tensor | None, scale: int) -> Tensor:
    """``cat(pixel_shuffle(x, scale), extra)`` along channels, written once into one buffer.

    ``x: [N, C * s * s, H, W]``, ``extra: [N, E, sH, sW]`` -> ``[N, C + E, sH, sW]`` in ``x``'s
    memory format. For channels-last ``x`` this is one strided copy per input instead of the
    three passes (shuffle, concatenate, re-layout) of the plain ops.
    """
    if not is_channels_last(x):
        y = F.pixel_shuffle(x, scale)
        return y if extra is None else torch.cat((y, extra), 1)
    n, cs, h, w = x.shape
    c = cs // (scale * scale)
    e = 0 if extra is None else extra.shape[1]
    out = x.new_empty(n, h * scale, w * scale, c + e)  # NHWC storage
    blocks = out.view(n, h, scale, w, scale, c + e)
    # pixel_shuffle: out[n, c, h*s + i, w*s + j] = x[n, c*s*s + i*s + j, h, w]
    src = x.permute(0, 2, 3, 1).reshape(n, h, w, c, scale, scale)  # a view for channels-last x
    blocks[..., :c].copy_(src.permute(0, 1, 4, 2, 5, 3))
    if extra is not None:
        out[..., c:].copy_(extra.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)  # [N, C + E, sH, sW], channels-last


#: rows ``[a, b)`` of an image, ``(a, b) -> [N, C, b - a, W]``
RowFunction = Callable[[int, int], Tensor]


def shuffle_cat_rows(
    y: Tensor | RowFunction, extra: Tensor | RowFunction, scale: int
) -> RowFunction:
    """Rows ``[a, b)`` of ``cat(pixel_shuffle(y, scale), extra)``, as a function ``(a, b) ->
    [N, C + E, b - a, W]``; ``y`` and ``extra`` may themselves be tensors or row functions.

    Each call reads only the rows of ``y`` (and ``extra``) the wanted rows come from.
    """

    def rows(a: int, b: int) -> Tensor:
        ya, yb = a // scale, -(-b // scale)
        y_band = y(ya, yb) if callable(y) else y[:, :, ya:yb]
        e = (
            extra(ya * scale, yb * scale)
            if callable(extra)
            else extra[:, :, ya * scale : yb * scale]
        )
        band = pixel_shuffle_cat(y_band, e, scale)
        return band[:, :, a - ya * scale : b - ya * scale]

    return rows


def conv_of_rows(x: RowFunction, height: int, conv: torch.nn.Conv2d) -> RowFunction:
    """Rows ``[a, b)`` of ``conv(X)`` for a 3x3, padding-1 ``conv`` and an image ``X`` of
    ``height`` rows given by the row function ``x``; each call reads one row more on each side
    (clipped at the border, where the convolution's padding is applied)."""

    def rows(a: int, b: int) -> Tensor:
        lo = max(a - 1, 0)
        return conv_rows(x(lo, min(b + 1, height)), lo, a, b, height, conv.weight, conv.bias)

    return rows


def shuffle_cat_head(
    y: Tensor | RowFunction,
    extra: Tensor | RowFunction,
    scale: int,
    conv1: torch.nn.Conv2d,
    slope: float,
    conv2: torch.nn.Conv2d,
    rows: int = 128,
    height: int | None = None,
) -> Tensor:
    """``conv2(leaky_relu(conv1(cat(pixel_shuffle(y, scale), extra)), slope))`` for two 3x3,
    padding-1 convolutions: the decoders' last stage, computed in bands of ``rows`` output rows.

    ``y: [N, C * s * s, H, W]``, ``extra: [N, E, sH, sW]`` -> ``[N, C2, sH, sW]``. Neither the
    concatenated input (256 MB at 1024 x 1024 for GLEAN) nor ``conv1``'s output ever exists
    whole: each band builds the input rows it depends on (two more on each side) and zero-pads
    only at the image border, so every output value is the same sum as untiled.

    ``y`` and ``extra`` may also be row functions ``(a, b) -> rows [a, b)`` (inference only,
    always banded; then ``height``, the output's height, is required): they never exist whole
    either. The decoders pass the bank's largest block this way
    (:func:`block_rows`), and the stage before
    the last as :func:`conv_of_rows` of :func:`shuffle_cat_rows`.
    """
    if callable(y) or callable(extra):
        if height is None:
            raise ValueError("height is required when y or extra is a row function")
        h = height
    else:
        h = y.shape[2] * scale
        if h <= rows:
            x = pixel_shuffle_cat(y, extra, scale)
            return conv2(F.leaky_relu(conv1(x), slope))
    input_rows = shuffle_cat_rows(y, extra, scale)
    out: Tensor | None = None
    for top in range(0, h, rows):
        bottom = min(top + rows, h)
        a, b = max(top - 1, 0), min(bottom + 1, h)  # the conv1 rows conv2 needs
        x = input_rows(max(a - 1, 0), min(b + 1, h))
        fmt = _format_of(x)
        z = conv_rows(x, max(a - 1, 0), a, b, h, conv1.weight, conv1.bias)
        del x  # (34 MB for GLEAN at 1024 px) not held through conv2 and the next band's input
        z = F.leaky_relu_(z, slope)
        z = conv_rows(z, a, top, bottom, h, conv2.weight, conv2.bias)
        if out is None:
            n, c, _, w = z.shape
            out = torch.empty(n, c, h, w, dtype=z.dtype, device=z.device, memory_format=fmt)
        out[:, :, top:bottom] = z
    assert out is not None
    return out


def conv_rows(
    x: Tensor,
    start: int,
    lo: int,
    hi: int,
    height: int,
    weight: Tensor,
    bias: Tensor | None,
    groups: int = 1,
    pad: int = 1,
) -> Tensor:
    """Rows ``[lo, hi)`` of ``conv2d(image, weight, bias, padding=pad)`` (padding ``pad`` in both
    directions, ``weight`` of height ``2 * pad + 1`` or ``2 * pad + 2``) from ``x``, the rows
    ``[start, start + x.shape[2])`` of an image ``height`` rows tall.

    ``x`` must hold every row the wanted outputs read, except rows outside the image: those are
    the convolution's zero padding, which is applied only where the band touches the image
    border. Rows computed next to padding that is not at the border are dropped, so no padded
    copy of ``x`` is ever made.
    """
    p = pad if (lo == 0 or hi == height) else 0
    y = F.conv2d(x, weight, bias, padding=(p, pad), groups=groups)
    first = start - p + pad  # the image row of y's first output row
    return y[:, :, lo - first : hi - first]


def _format_of(x: Tensor) -> torch.memory_format:
    return torch.channels_last if is_channels_last(x) else torch.contiguous_format


def conv_transpose_blur(
    x: Tensor,
    weight: Tensor,
    kernel: Tensor,
    bias: Tensor | None = None,
    groups: int = 1,
    rows: int = 128,
) -> Tensor:
    """``blur2d(conv_transpose2d(x, weight, stride=2, groups), kernel, pad 1) + bias``: StyleGAN2's
    up-sampling convolution followed by its 4x4 FIR filter, ``[N, Ci, H, W] -> [N, Co, 2H, 2W]``.

    For outputs taller than ``rows`` it runs in bands of ``rows`` output rows so
    that the transposed convolution's ``(2H + 1)``-row intermediate never exists whole (134 MB
    at 1024 px for GLEAN). Band ``[i0, i1)`` needs intermediate rows ``[i0 - 1, i1 + 2)``, which
    input rows ``[i0 / 2 - 1, i1 / 2]`` produce completely; missing rows at the image border are
    the filter's zero padding, so the result equals the unbanded one.
    """
    n, _, h, w = x.shape
    taps = fir_taps(kernel, weight.shape[1] * groups, x)
    b = None if bias is None else bias.to(x.dtype)
    if 2 * h <= rows:
        z = F.conv_transpose2d(x, weight, stride=2, groups=groups)
        return keep_format(conv_rows(z, 0, 0, 2 * h, 2 * h, taps, b, groups=taps.shape[0]), x)
    out = torch.empty(n, taps.shape[0], 2 * h, 2 * w, dtype=x.dtype, device=x.device,
                      memory_format=_format_of(x))  # fmt: skip
    rows -= rows % 2
    for i0 in range(0, 2 * h, rows):
        i1 = min(i0 + rows, 2 * h)
        out[:, :, i0:i1] = conv_transpose_blur_rows(x, weight, taps, b, groups, i0, i1)
    return out


def fir_taps(kernel: Tensor, channels: int, like: Tensor) -> Tensor:
    """``kernel [k, k]`` as the weight of a depthwise convolution over ``channels`` channels
    (flipped: upfirdn2d convolves), in ``like``'s dtype and memory format."""
    taps = kernel.flip(0, 1).to(like.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return taps.contiguous(memory_format=_format_of(like))


def conv_transpose_blur_rows(
    x: Tensor, weight: Tensor, taps: Tensor, bias: Tensor | None, groups: int, i0: int, i1: int
) -> Tensor:
    """Rows ``[i0, i1)`` of ``conv_transpose_blur(x, weight, kernel, bias, groups)``, reading only
    the input rows they depend on; ``taps`` is the filter as :func:`fir_taps` makes it.

    Output row ``i`` sums rows ``i - 1 .. i + 2`` of the transposed convolution ``z``, whose row
    ``r`` gathers input rows ``ceil((r - 2) / 2) .. floor(r / 2)``: so input rows
    ``[(i0 - 2) // 2, (i1 + 1) // 2]`` make every needed row of ``z`` complete.
    """
    h = x.shape[2]
    m_lo, m_hi = max((i0 - 2) // 2, 0), min((i1 + 1) // 2, h - 1)
    z = F.conv_transpose2d(x[:, :, m_lo : m_hi + 1], weight, stride=2, groups=groups)
    return conv_rows(z, 2 * m_lo, i0, i1, 2 * h, taps, bias, groups=taps.shape[0])


# -- the bank's modulated convolutions -------------------------------------------------------


def _match_format(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` in ``x``'s memory format: convolutions keep channels-last activations
    channels-last only when their weights are channels-last too (transposed ones at least)."""
    if is_channels_last(x):
        return weight.contiguous(memory_format=torch.channels_last)
    return weight


def grouped_weight(
    mod: ModulatedConv2d, w: Tensor, like: Tensor, *, gain: float = 1.0, bias: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """``mod``'s per-sample modulated weights, times ``gain``, as one grouped convolution
    (``groups = N``) takes them: ``[N * out, in, k, k]``, or ``[N * in, out, k, k]`` for the
    transposed up-sampling convolution, and ``bias`` repeated, ``[N * out]``; in ``like``'s
    dtype and memory format. ``w: [N, style_channels]``."""
    weight, styles, factor = mod.modulation(w)
    return _grouped(mod, weight, styles, factor * gain, bias, like)


def _grouped(
    mod: ModulatedConv2d,
    weight: Tensor,
    styles: Tensor,
    factor: Tensor,
    bias: Tensor | None,
    like: Tensor,
) -> tuple[Tensor, Tensor | None]:
    n, c, k = styles.shape[0], mod.in_channels, mod.kernel_size
    b = None if bias is None else bias.to(like.dtype).repeat(n)  # [N*out]
    if is_channels_last(like):
        # one pass straight into the channels-last layout oneDNN wants. The grouped weight is
        # [N * a, b, k, k], stored [N, a, k, k, b]: (a, b) = (out, in) for the convolution,
        # (in, out) for the transposed one
        pair = styles[:, None, :] * factor[:, :, None]  # [N, out, in]
        base = weight  # [out, in, k, k]
        if mod.upsample:
            pair, base = pair.transpose(1, 2), weight.transpose(0, 1)
        a, bb = base.shape[:2]
        w = torch.empty(n, a, k, k, bb, dtype=like.dtype, device=like.device)
        torch.mul(base.permute(0, 2, 3, 1)[None], pair[:, :, None, None, :], out=w)
        return w.permute(0, 1, 4, 2, 3).reshape(n * a, bb, k, k), b
    w = weight[None] * styles[:, None, :, None, None] * factor[:, :, None, None, None]
    w = w.to(like.dtype)  # [N, out, in, k, k]
    if mod.upsample:
        w = w.transpose(1, 2).reshape(n * c, mod.out_channels, k, k)  # [N*in, out, k, k]
    else:
        w = w.reshape(n * mod.out_channels, c, k, k)
    return _match_format(w, like), b


def modulated_conv(
    mod: ModulatedConv2d,
    x: Tensor,
    w: Tensor,
    *,
    gain: float = 1.0,
    bias: Tensor | None = None,
    rows: int = 128,
) -> Tensor:
    """``gain * mod(x, w) + bias``: ``x: [N, in, H, W]``, ``w: [N, S]``, ``bias: [out]``.

    The gain and bias of the layer that follows ride on the modulated weights and on the
    convolution's own bias (no extra pass over the output). The modulation goes where the
    plain layer puts it (``ModulatedConv2d.modulates_weights``); the up-sampling
    convolution runs banded (:func:`conv_transpose_blur`).
    """
    n, c, h, wd = x.shape
    weight, styles, factor = mod.modulation(w)
    factor = factor * gain
    if mod.modulates_weights(h, wd):
        xg = x.reshape(1, n * c, h, wd)  # [1, N*in, H, W]
        wg, b = _grouped(mod, weight, styles, factor, bias, xg)
        if mod.upsample:
            y = conv_transpose_blur(xg, wg, mod.blur.kernel, b, groups=n, rows=rows)
        else:
            y = F.conv2d(xg, wg, b, padding=mod.kernel_size // 2, groups=n)
        return keep_format(y.reshape(n, mod.out_channels, *y.shape[-2:]), x)
    y = x * styles[:, :, None, None].to(x.dtype)
    weight = weight.to(x.dtype)
    if mod.upsample:  # the FIR filter is linear per channel: scale after it
        wt = _match_format(weight.transpose(0, 1), y)
        y = conv_transpose_blur(y, wt, mod.blur.kernel, rows=rows)
    else:
        y = F.conv2d(y, _match_format(weight, y), padding=mod.kernel_size // 2)
    y = y.mul_(factor[:, :, None, None].to(y.dtype))
    if bias is not None:
        y = y.add_(bias.to(y.dtype)[None, :, None, None])
    return keep_format(y, x)


def _noise_act_(injector: NoiseInjection, x: Tensor, noise: Tensor | None, gain: float) -> Tensor:
    """``lrelu(x + gain * noise_weight * noise)``, in place."""
    if noise is not None:
        x = x.add_(noise.to(x.dtype) * (injector.weight.to(x.dtype) * gain))
    return F.leaky_relu_(x, LRELU_SLOPE)


def style_conv(
    layer: ModulatedStyleConv, x: Tensor, w: Tensor, noise: Tensor | None, rows: int = 128
) -> Tensor:
    """``layer(x, w, noise)``: ``lrelu(conv + noise + bias) * sqrt(2)`` computed as
    ``lrelu(sqrt(2) * conv + sqrt(2) * noise + sqrt(2) * bias)`` (leaky ReLU is positively
    homogeneous), the gain and bias folded into the convolution."""
    gain = LRELU_GAIN
    x = modulated_conv(layer.conv, x, w, gain=gain, bias=layer.activate.bias * gain, rows=rows)
    return _noise_act_(layer.noise_injector, x, noise, gain)


def style_block(
    bank: StyleGAN2Generator, res: int, x: Tensor, ws: Tensor, rows: int = 128
) -> Tensor:
    """``bank.style_block(res, x, ws)`` with stored noise: ``[N, C, res/2, res/2]`` ->
    ``[N, C_res, res, res]``."""
    up, conv, _ = bank.block(res)
    layer = bank.first_layer(res)
    x = style_conv(up, x, ws[:, layer], bank.noise(layer, x, "const"), rows)
    return style_conv(conv, x, ws[:, layer + 1], bank.noise(layer + 1, x, "const"), rows)


def block_rows(bank: StyleGAN2Generator, res: int, x: Tensor, ws: Tensor) -> RowFunction:
    """:func:`style_block` as a function ``(a, b) -> rows [a, b)`` of its output, computed from
    the rows of ``x`` they depend on.

    The decoder consumes the bank's largest block this way, in row bands, so that neither of
    its two full-size activations (2 x 134 MB at 1024 px for GLEAN) ever exists whole. The
    modulated weights are made once, here; each call recomputes one row above and below its
    band of the up-sampling layer, which the second layer's 3x3 window needs.
    """
    up, conv, _ = bank.block(res)
    layer = bank.first_layer(res)
    n, _, h, w = x.shape
    x = x.reshape(1, -1, h, w)  # [1, N * C, h, w]: one grouped convolution per layer
    gain = LRELU_GAIN
    w_up, b_up = grouped_weight(up.conv, ws[:, layer], x, gain=gain, bias=up.activate.bias * gain)
    w_cv, b_cv = grouped_weight(
        conv.conv, ws[:, layer + 1], x, gain=gain, bias=conv.activate.bias * gain
    )
    taps = fir_taps(up.conv.blur.kernel, w_up.shape[1] * n, x)
    noise_up = bank.noise(layer, x, "const")
    noise_cv = bank.noise(layer + 1, x, "const")

    def activate(layer: ModulatedStyleConv, t: Tensor, noise: Tensor, a: int) -> Tensor:
        t = t.reshape(n, -1, *t.shape[2:])
        return _noise_act_(layer.noise_injector, t, noise[:, :, a : a + t.shape[2]], gain)

    def rows(a: int, b: int) -> Tensor:
        a1, b1 = max(a - 1, 0), min(b + 1, res)
        u = conv_transpose_blur_rows(x, w_up, taps, b_up, n, a1, b1)
        u = activate(up, u, noise_up, a1).reshape(1, -1, b1 - a1, res)
        return activate(conv, conv_rows(u, a1, a, b, res, w_cv, b_cv, groups=n), noise_cv, a)

    return rows


# -- the restorers ---------------------------------------------------------------------------


def decode(
    model: BankRestorer,
    hr: Tensor,
    bank_feats: dict[int, Tensor | RowFunction],
    opts: Options | None = None,
) -> Tensor:
    """``model.decode(hr, bank_feats)``, written for memory: the last stage runs with the head
    in row bands (:func:`shuffle_cat_head`), so its wide tensors never exist whole. When the
    bank's feature at ``out_size`` comes as a row function (:func:`block_rows`), the stage before
    the last joins the bands too: its concatenated input and its convolution's output
    (2 x 134 MB at 512 px for GLEAN) are made band by band (:func:`shuffle_cat_rows`,
    :func:`conv_of_rows`), one row of overlap recomputed per side.
    """
    opts = opts or Options()
    out_size = model.config.out_size
    resolutions = model.config.decoder_resolutions
    stream = callable(bank_feats.get(out_size)) and len(resolutions) > 2
    penultimate = resolutions[-2]
    conv1, act, conv2 = model.decoder[-1]
    hr_rows: RowFunction | None = None  # the streamed stage's input
    for block, res in zip(model.decoder[:-1], resolutions[1:], strict=True):
        if res == out_size:  # the last stage runs fused with the head
            y: Tensor | RowFunction
            if hr_rows is not None:
                y = conv_of_rows(hr_rows, res // block.scale, block.upsample_conv)
            else:
                y = block.upsample_conv(hr)
            extra = bank_feats.pop(res)
            slope = act.negative_slope
            return shuffle_cat_head(y, extra, block.scale, conv1, slope, conv2, opts.rows, res)
        hr = block.upsample_conv(hr)
        if stream and res == penultimate:
            hr_rows = shuffle_cat_rows(hr, bank_feats.pop(res), block.scale)
        else:
            hr = pixel_shuffle_cat(hr, bank_feats.pop(res), block.scale)  # [N, C + C_res, ..]
    raise AssertionError("the decoder ends with a pixel-shuffle stage at out_size")


def _glean(model: GLEAN, lq: Tensor, opts: Options) -> Tensor:
    """``model(lq)`` for one image."""
    latents, feats = model.encode(lq)
    bank = model.generator
    in_size = model.config.in_size
    fusion = dict(zip(model.config.fusion_resolutions, model.fusion_out, strict=True))
    x = as_format(bank.constant_input(1), opts.channels_last)
    x = style_conv(bank.conv1, x, latents[:, 0], bank.noise(0, x, "const"))
    bank_feats: dict[int, Tensor | RowFunction] = {}
    for res in bank.config.resolutions:
        prev = res // 2
        if prev <= in_size:  # fusion; each encoder feature is released once fused
            feat = feats[prev] if prev == in_size else feats.pop(prev)
            x = fusion[prev](torch.cat((x, feat), 1))
            del feat
        if res == bank.config.resolution and res > opts.rows:
            bank_feats[res] = block_rows(bank, res, x, latents)
            break
        x = style_block(bank, res, x, latents, opts.rows)
        if res > in_size:
            bank_feats[res] = x
    del x
    return decode(model, feats.pop(in_size), bank_feats, opts)


def _light_glean(model: LightGLEAN, lq: Tensor, opts: Options) -> Tensor:
    """``model(lq)`` for one image."""
    bank = model.generator
    f0 = model.encoder(lq)
    x = model.bank_input(f0)
    ws = model.latent_codes(bank.style_mapping, 1)
    feats: dict[int, Tensor | RowFunction] = {}
    for res in model.config.bank_resolutions:
        if res == model.config.out_size and res > opts.rows:
            feats[res] = block_rows(bank, res, x, ws)
            break
        x = style_block(bank, res, x, ws, opts.rows)
        if res > model.config.in_size:
            feats[res] = x
    del x
    return decode(model, f0, feats, opts)


@dataclass(frozen=True)
class Options:
    """Switches for the parts of the strategy (all on by default; for measuring each part).

    ``rows``: band height of the banded stages (outputs taller than this run in bands; a
    value of at least the output size switches banding off). ``channels_last``: NHWC
    activations (off: NCHW).
    """

    rows: int = 128
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.rows < 2:
            raise ValueError(f"rows must be at least 2, got {self.rows}")


#: the networks this module runs, each by its own function
_RUNS = {GLEAN: _glean, LightGLEAN: _light_glean}


class CPUFastPath(nn.Module):
    """A GLEAN or LightGLEAN ``model`` run by this module's execution strategy.

    ``forward(lq: [N, C, in_size, in_size])`` returns what ``model(lq)`` returns (to float
    rounding), without gradients; ``in_size``, ``out_size``, ``img_channels``, ``scale`` and
    ``config`` are the model's. ``options`` switches parts off (:class:`Options`).
    """

    def __init__(self, model: BankRestorer, options: Options | None = None):
        super().__init__()
        if type(model) not in _RUNS:  # a subclass (e.g. the no-bank ablation) computes otherwise
            raise TypeError(f"CPUFastPath runs GLEAN and LightGLEAN, got {type(model).__name__}")
        self.model = model
        self.options = options or Options()

    config = property(lambda self: self.model.config)
    in_size = property(lambda self: self.model.in_size)
    out_size = property(lambda self: self.model.out_size)
    img_channels = property(lambda self: self.model.img_channels)
    scale = property(lambda self: self.model.scale)

    @torch.no_grad()
    def forward(self, lq: Tensor) -> Tensor:
        """``lq: [N, img_channels, in_size, in_size]``, RGB in [-1, 1] ->
        ``[N, img_channels, out_size, out_size]``, contiguous (NCHW)."""
        self.model.check_input(lq)
        run = _RUNS[type(self.model)]
        fmt = torch.channels_last if self.options.channels_last else torch.contiguous_format
        outs = [
            run(self.model, lq[i : i + 1].contiguous(memory_format=fmt), self.options)
            for i in range(lq.shape[0])
        ]
        return torch.cat(outs).contiguous()

    def extra_repr(self) -> str:
        return repr(self.options)


def accelerate(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """``model`` wrapped in :class:`CPUFastPath` when it is a GLEAN or LightGLEAN on the CPU
    (``device``, default: where its parameters are); any other model, subclasses that change
    the computation included (``GLEANNoBank``), is returned as it is."""
    if type(model) not in _RUNS:
        return model
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    return CPUFastPath(model) if dev.type == "cpu" else model
