"""Low-level operations of StyleGAN2, in plain PyTorch.

Each op has a reference implementation that follows the published definition literally
(``upfirdn2d``: upsample by zero insertion, pad, FIR-filter, downsample; StyleGAN2 paper, App. B)
and, where it pays, a faster equivalent used by the networks. Tests compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

_PLAIN = False


@contextmanager
def plain_ops() -> Iterator[None]:
    """Run the networks on their plain definitions: no banding, fused buffers or memory release,
    and modulation always on the activations (one shared convolution, any batch size).

    For graph export (ONNX, ``torch.export``) and for counting the model's own operations
    (:func:`glean_sr.analysis.count_macs`); results equal the fast paths' to float rounding.
    """
    global _PLAIN
    previous, _PLAIN = _PLAIN, True
    try:
        yield
    finally:
        _PLAIN = previous


def fast_paths_enabled(*tensors: Tensor) -> bool:
    """True when inference-only fast paths may run: not in :func:`plain_ops` and no autograd
    graph is being recorded through ``tensors``."""
    if _PLAIN:
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


#: Gain of StyleGAN2's bias + leaky ReLU (``fused_bias_leakyrelu`` in mmcv, ``lrelu`` in NVIDIA's
#: ``bias_act``): keeps the activation variance at 1 for unit-variance inputs.
LRELU_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2


def make_fir_kernel(taps: tuple[int, ...] | list[int], gain: float = 1.0) -> Tensor:
    """2-D separable FIR kernel ``outer(taps, taps) / sum * gain`` (float32, ``[k, k]``), on the
    default device (computed on the CPU: no arithmetic on meta tensors, see
    :func:`glean_sr.models.registry.build_model`)."""
    t = torch.tensor(taps, dtype=torch.float32, device="cpu")
    k = t[None, :] * t[:, None]
    return torch.tensor((k / k.sum() * gain).tolist(), dtype=torch.float32)  # exact values


def _pad4(pad: int | tuple[int, ...]) -> tuple[int, int, int, int]:
    """Normalise padding to ``(x0, x1, y0, y1)``; a 2-tuple ``(p0, p1)`` applies to both axes."""
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return (pad[0], pad[1], pad[2], pad[3])
    raise ValueError(f"pad must be an int, a 2-tuple or a 4-tuple, got {pad!r}")


def upfirdn2d(
    x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: int | tuple[int, ...] = 0
) -> Tensor:
    """Reference up-sample, FIR-filter, down-sample.

    ``x: [N, C, H, W]``; ``kernel: [kh, kw]``. Steps: insert ``up - 1`` zeros after every sample,
    pad by ``(x0, x1, y0, y1)`` (negative values crop), convolve with ``kernel`` (a true
    convolution: the kernel is flipped), keep every ``down``-th sample. Output size per axis:
    ``(H * up + y0 + y1 - kh) // down + 1``.
    """
    x0, x1, y0, y1 = _pad4(pad)
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    if up > 1:
        x = x.reshape(n * c, 1, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n * c, 1, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[
        :,
        :,
        max(-y0, 0) : x.shape[2] - max(-y1, 0),
        max(-x0, 0) : x.shape[3] - max(-x1, 0),
    ]
    weight = kernel.flip(0, 1)[None, None].to(x.dtype)
    x = F.conv2d(x, weight)
    x = x[:, :, ::down, ::down]
    return x.reshape(n, c, x.shape[2], x.shape[3])  # [N, C, H', W']


def blur2d(
    x: Tensor, kernel: Tensor, pad: tuple[int, int, int, int], bias: Tensor | None = None
) -> Tensor:
    """``upfirdn2d(x, kernel, pad=pad) + bias`` with ``up = down = 1`` as one depthwise
    convolution; symmetric padding is left to the convolution (no padded copy of ``x``).

    ``x: [N, C, H, W]``; ``pad = (x0, x1, y0, y1)``, all >= 0; ``bias: [C]`` or None.
    """
    c = x.shape[1]
    weight = kernel.flip(0, 1).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    if is_channels_last(x):
        weight = weight.contiguous(memory_format=torch.channels_last)
    b = None if bias is None else bias.to(x.dtype)
    x0, x1, y0, y1 = pad
    if x0 == x1 and y0 == y1:
        return keep_format(F.conv2d(x, weight, b, padding=(y0, x0), groups=c), x)
    return keep_format(F.conv2d(F.pad(x, list(pad)), weight, b, groups=c), x)


def bias_lrelu(x: Tensor, bias: Tensor, inplace: bool = False) -> Tensor:
    """StyleGAN2's fused activation: ``leaky_relu(x + bias, 0.2) * sqrt(2)``; ``x: [N, C, ...]``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    b = bias.to(x.dtype).reshape(shape)
    if inplace:
        x.add_(b)
        F.leaky_relu_(x, LRELU_SLOPE)
        return x.mul_(LRELU_GAIN)
    return F.leaky_relu(x + b, LRELU_SLOPE) * LRELU_GAIN


def is_channels_last(x: Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last (NHWC) and not also plain contiguous."""
    return (
        x.ndim == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (x.is_contiguous())
    )


def relayout_(t: Tensor, order: tuple[int, ...]) -> Tensor:
    """``t``'s values stored with its dimensions in ``order`` (outermost first), in ``t``'s own
    memory: returns the re-strided view, same shape and values; ``t`` itself is left holding
    the rearranged bytes, so use the result in its place.

    Rewriting in place keeps a model's weights where loading put them (one temporary copy at a
    time, freed at once), instead of a second set of weights allocated while the first is
    still held. Falls back to a copy when ``t`` is not contiguous.
    """
    strides = [0] * t.ndim
    step = 1
    for dim in reversed(order):
        strides[dim] = step
        step *= t.shape[dim]
    if tuple(strides) == t.stride():
        return t
    if not t.is_contiguous():
        return t.permute(order).contiguous().as_strided(t.shape, strides)
    values = t.clone()
    view = t.as_strided(t.shape, strides)
    view.copy_(values)
    return view


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
    if not is_channels_last(x) or not fast_paths_enabled(x):
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
    (:meth:`~glean_sr.models.stylegan2.StyleGAN2Generator.block_rows`), and the stage before
    the last as :func:`conv_of_rows` of :func:`shuffle_cat_rows`.
    """
    if callable(y) or callable(extra):
        if height is None:
            raise ValueError("height is required when y or extra is a row function")
        h = height
    else:
        h = y.shape[2] * scale
        if h <= rows or not fast_paths_enabled(y, extra):
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
        if taps_pay(z, conv2.weight):
            z = conv_rows_by_taps(z, a, top, bottom, h, conv2.weight, conv2.bias)
        else:
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


#: up to this many output channels, :func:`conv_rows_by_taps` beats oneDNN's 3x3 convolution
FEW_OUTPUTS = 4


def taps_pay(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`conv_rows_by_taps` is the faster way to convolve ``x`` with ``weight``:
    few outputs, float32 channels-last on the CPU. Not in bfloat16, where oneDNN's convolution
    is fast (4.7 ms per 1024 x 128 band against 11) and the nine sums would round in bfloat16
    (3x the error); not on GPUs, whose convolutions have no 16-lane output vector."""
    return (
        weight.shape[0] <= FEW_OUTPUTS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and is_channels_last(x)
    )


def conv_rows_by_taps(
    x: Tensor, start: int, lo: int, hi: int, height: int, weight: Tensor, bias: Tensor | None
) -> Tensor:
    """:func:`conv_rows` (3x3, padding 1) for a channels-last ``x`` and a convolution with few
    output channels, such as the decoders' last, 64 -> 3 at 1024 px.

    oneDNN computes a few output channels in a vector of 16, so there it runs at a fifth of its
    speed (70-80 GFLOP/s on AVX-512). Here one 1x1 convolution computes all nine taps' products
    at once (``9 * out`` channels, a width it runs well), and nine shifted sums over the small
    result add them up; every output is the same sum, in another order.
    """
    c, rows = x.shape[1], x.shape[2]
    out_ch = weight.shape[0]
    p = 1 if (lo == 0 or hi == height) else 0
    first = start - p + 1  # the image row of the untrimmed output's first row
    # [9 * out, in, 1, 1], tap-major: channel t * out + o holds weight[o, :, t // 3, t % 3]
    taps = weight.permute(2, 3, 0, 1).reshape(9 * out_ch, c, 1, 1).to(x.dtype)
    z = F.conv2d(x, taps.contiguous(memory_format=torch.channels_last))
    z = as_format(z, True).permute(0, 2, 3, 1)  # [N, rows, W, 9 * out]: a view
    r0, r1 = lo - first, hi - first  # output rows wanted, in the untrimmed output's numbering
    # output row r reads x rows r + ky - p; center tap first: it covers every output
    out = z[:, r0 + 1 - p : r1 + 1 - p, :, 4 * out_ch : 5 * out_ch].clone()
    if bias is not None:
        out += bias.to(x.dtype)
    for t in range(9):
        if t == 4:
            continue
        ky, kx = divmod(t, 3)
        # rows: x row r + ky - p for output rows [r0, r1), clipped to x's rows (the rest is
        # the image border's zero padding)
        a = max(r0, p - ky)
        b = min(r1, rows - ky + p)
        src_rows = slice(a + ky - p, b + ky - p)
        dst_rows = slice(a - r0, b - r0)
        cols = slice(t * out_ch, (t + 1) * out_ch)
        if kx == 0:
            out[:, dst_rows, 1:] += z[:, src_rows, :-1, cols]
        elif kx == 1:
            out[:, dst_rows] += z[:, src_rows, :, cols]
        else:
            out[:, dst_rows, :-1] += z[:, src_rows, 1:, cols]
    return out.permute(0, 3, 1, 2)  # [N, out, hi - lo, W], channels-last


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

    For outputs taller than ``rows`` (inference only) it runs in bands of ``rows`` output rows so
    that the transposed convolution's ``(2H + 1)``-row intermediate never exists whole (134 MB
    at 1024 px for GLEAN). Band ``[i0, i1)`` needs intermediate rows ``[i0 - 1, i1 + 2)``, which
    input rows ``[i0 / 2 - 1, i1 / 2]`` produce completely; missing rows at the image border are
    the filter's zero padding, so the result equals the unbanded one.
    """
    n, _, h, w = x.shape
    if 2 * h <= rows or not fast_paths_enabled(x, weight):
        z = F.conv_transpose2d(x, weight, stride=2, groups=groups)
        return blur2d(z, kernel, (1, 1, 1, 1), bias)
    taps = fir_taps(kernel, weight.shape[1] * groups, x)
    b = None if bias is None else bias.to(x.dtype)
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
