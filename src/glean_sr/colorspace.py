"""CIE L*a*b* and sRGB in PyTorch, differentiable, with scikit-image's numerics.

The conversion is scikit-image's ``rgb2lab`` / ``lab2rgb`` (illuminant D65, 2° observer),
term for term, so that results agree with it to float rounding:

* sRGB companding (IEC 61966-2-1): ``c <= 0.04045 -> c / 12.92``, else
  ``((c + 0.055) / 1.055) ** 2.4``; back: ``v <= 0.0031308 -> 12.92 v``, else
  ``1.055 v ** (1 / 2.4) - 0.055``.
* linear sRGB -> XYZ by the matrix ``XYZ_FROM_RGB`` (and its inverse back), white point
  ``D65 = (0.95047, 1, 1.08883)``.
* ``f(t) = t ** (1/3)`` above ``0.008856``, else ``7.787 t + 16 / 116`` (the CIE 1976 constants
  as scikit-image rounds them); ``L = 116 f(Y) - 16``, ``a = 500 (f(X) - f(Y))``,
  ``b = 200 (f(Y) - f(Z))``. Back, ``f^-1(u) = u ** 3`` above ``0.2068966``, else
  ``(u - 16 / 116) / 7.787``, and a negative ``Z`` is clipped to 0 (scikit-image does the same,
  with a warning).

Tensors are channels-first: ``[..., 3, H, W]`` (``[N, 3, H, W]`` or ``[3, H, W]``). RGB is in
``[0, 1]``; ``L`` in ``[0, 100]``, ``a`` and ``b`` in about ``[-128, 127]``. Every branch takes a
clamped argument, so gradients stay finite everywhere (no ``0 ** (1/3)`` and no power of a
negative number).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: linear sRGB -> CIE XYZ (scikit-image's ``xyz_from_rgb``)
XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
#: CIE XYZ of the D65 white, 2° observer (scikit-image's ``xyz_tristimulus_values``)
D65_WHITE = (0.95047, 1.0, 1.08883)

_F_THRESHOLD = 0.008856
_F_INVERSE_THRESHOLD = 0.2068966
_F_SLOPE = 7.787
_F_OFFSET = 16.0 / 116.0


def _check(x: Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must be [..., 3, H, W], got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}")


_XYZ_FROM_RGB = torch.tensor(XYZ_FROM_RGB, dtype=torch.float64)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)  # as scikit-image: the inverse in float64


def _matrix(matrix: Tensor, like: Tensor) -> Tensor:
    return matrix.to(like.device, like.dtype)


def _apply(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix [K, 3]`` applied to the channel axis of ``x [..., 3, H, W]`` -> ``[..., K, H, W]``.

    Written as products and sums, not a matrix product: under ``torch.autocast`` (mixed-precision
    training and inference) a matrix product would run in bf16 / fp16, an error of about 1 in
    L* and 0.08 in RGB; elementwise arithmetic keeps the inputs' precision."""
    channels = x.unbind(-3)
    rows = [sum(matrix[i, j] * channels[j] for j in range(3)) for i in range(matrix.shape[0])]
    return torch.stack(rows, dim=-3)


def _white(like: Tensor) -> Tensor:
    return torch.tensor(D65_WHITE, dtype=like.dtype, device=like.device).view(3, 1, 1)


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """sRGB companding undone: ``[..., 3, H, W]`` in [0, 1] -> linear light."""
    power = ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > 0.04045, power, rgb / 12.92)


def linear_to_srgb(linear: Tensor) -> Tensor:
    """sRGB companding: linear light -> sRGB values (not clipped)."""
    power = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(linear > 0.0031308, power, linear * 12.92)


def _f(t: Tensor) -> Tensor:
    """CIE 1976's companding of white-relative XYZ."""
    return torch.where(
        t > _F_THRESHOLD, t.clamp(min=_F_THRESHOLD) ** (1 / 3), _F_SLOPE * t + _F_OFFSET
    )


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB ``[..., 3, H, W]`` in [0, 1] -> CIE L*a*b* ``[..., 3, H, W]`` (D65): L in
    [0, 100], a and b in about [-128, 127]. scikit-image's ``rgb2lab``."""
    _check(rgb, "rgb")
    xyz = _apply(_matrix(_XYZ_FROM_RGB, rgb), srgb_to_linear(rgb)) / _white(rgb)
    fx, fy, fz = _f(xyz).unbind(-3)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=-3)


def lab_to_rgb(lab: Tensor, *, clip: bool = False) -> Tensor:
    """CIE L*a*b* ``[..., 3, H, W]`` (D65) -> sRGB ``[..., 3, H, W]``.

    Colours outside the sRGB gamut give values outside [0, 1]; ``clip=True`` clips them, which
    is scikit-image's ``lab2rgb``. Training keeps them (``clip=False``): a loss on the clipped
    values would give no gradient to a prediction once it leaves the gamut.
    """
    _check(lab, "lab")
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16) / 116
    fx = fy + a / 500
    fz = (fy - b / 200).clamp(min=0)  # Z < 0 is no colour; scikit-image clips it too
    f = torch.stack((fx, fy, fz), dim=-3)
    xyz = torch.where(
        f > _F_INVERSE_THRESHOLD,
        f.clamp(min=_F_INVERSE_THRESHOLD) ** 3,
        (f - _F_OFFSET) / _F_SLOPE,
    )
    rgb = linear_to_srgb(_apply(_matrix(_RGB_FROM_XYZ, xyz), xyz * _white(xyz)))
    return rgb.clamp(0, 1) if clip else rgb


def rgb_to_lightness(rgb: Tensor) -> Tensor:
    """sRGB ``[..., 3, H, W]`` in [0, 1] -> L* ``[..., 1, H, W]`` in [0, 100]: the L channel
    of :func:`rgb_to_lab`, from Y alone (D65's Y is 1)."""
    _check(rgb, "rgb")
    luminance = _apply(_matrix(_XYZ_FROM_RGB[1:2], rgb), srgb_to_linear(rgb))  # [..., 1, H, W]
    return 116 * _f(luminance) - 16


__all__ = [
    "D65_WHITE",
    "XYZ_FROM_RGB",
    "lab_to_rgb",
    "linear_to_srgb",
    "rgb_to_lab",
    "rgb_to_lightness",
    "srgb_to_linear",
]
