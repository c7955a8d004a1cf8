"""The layers both BigGAN generators are made of: spectrally normalised convolutions and linear
layers in the two conventions the released files use, self-attention and class-conditional
batch norm.

Spectral normalisation (Miyato et al., ICLR 2018) divides a weight by an estimate of its largest
singular value, kept up to date by power iteration on stored singular vectors. The two codes
differ in when they iterate, and a bank must reproduce its own:

* :class:`TorchSN` is ``torch.nn.utils.spectral_norm`` (pytorch-pretrained-biggan): buffers
  ``weight_u [out]``, ``weight_v [in]``; in training mode one power iteration per forward updates
  them, in eval mode ``sigma = u . (W v)`` is read off the stored vectors.
* :class:`BrockSN` is BigGAN-PyTorch's ``layers.SN``: buffers ``u{i} [1, out]`` and ``sv{i} [1]``
  for ``num_svs`` singular vectors; every forward, in eval mode too, runs ``num_itrs`` power
  iterations (Gram-Schmidt against the earlier vectors) from the stored ``u`` and divides by the
  first singular value it finds. Only training mode writes the new ``u`` and ``sv`` back, so in
  eval mode every call gives what the first call after loading gives. With ``variant="tfhub"``
  it is the ``SpectralNorm`` of BigGAN-PyTorch's ``TFHub/biggan.py`` (the generator TF Hub's
  BigGAN weights are converted into): one iteration that normalises by ``|x| + eps`` instead of
  ``max(|x|, eps)`` and never writes back, in training mode either.

The weights keep each code's own parameter names, so the released state_dicts load unrenamed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TorchSN(nn.Module):
    """A weight under ``torch.nn.utils.spectral_norm``: ``weight_orig`` (+ ``bias``),
    ``weight_u [out]``, ``weight_v [in * k * k]``. Subclasses apply :meth:`sn_weight`."""

    def __init__(self, shape: tuple[int, ...], *, bias: bool, eps: float):
        super().__init__()
        self.eps = eps
        # the scale of the weight does not matter (it is normalised); u and v are unit vectors
        self.weight_orig = nn.Parameter(torch.randn(shape))
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None
        u, v = torch.randn(shape[0]), torch.randn(math.prod(shape[1:]))
        if not u.is_meta:  # meta tensors (built to load weights into) have no values to scale
            u, v = F.normalize(u, dim=0, eps=eps), F.normalize(v, dim=0, eps=eps)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)

    def sn_weight(self) -> Tensor:
        mat = self.weight_orig.reshape(self.weight_orig.shape[0], -1)  # [out, in * k * k]
        u, v = self.weight_u, self.weight_v
        if self.training:
            with torch.no_grad():
                v = F.normalize(torch.mv(mat.t(), u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(mat, v), dim=0, eps=self.eps)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
        return self.weight_orig / torch.dot(u, torch.mv(mat, v))


class TorchSNConv2d(TorchSN):
    def __init__(self, c_in: int, c_out: int, k: int, *, bias: bool = True, eps: float = 1e-4):
        super().__init__((c_out, c_in, k, k), bias=bias, eps=eps)
        self.padding = k // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.sn_weight(), self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out, c_in, k, _ = self.weight_orig.shape
        return f"{c_in}, {out}, kernel_size={k}, bias={self.bias is not None}"


class TorchSNLinear(TorchSN):
    def __init__(self, c_in: int, c_out: int, *, bias: bool = True, eps: float = 1e-4):
        super().__init__((c_out, c_in), bias=bias, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sn_weight(), self.bias)

    def extra_repr(self) -> str:
        out, c_in = self.weight_orig.shape
        return f"{c_in}, {out}, bias={self.bias is not None}"


class BrockSN(nn.Module):
    """A weight under BigGAN-PyTorch's ``layers.SN``: ``weight`` (+ ``bias``), ``u{i} [1, out]``,
    ``sv{i} [1]`` for i < ``num_svs``. Subclasses apply :meth:`sn_weight`. ``variant`` is
    ``"biggan_pytorch"`` or ``"tfhub"`` (see the module docstring)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        bias: bool,
        num_svs: int,
        num_itrs: int,
        eps: float,
        variant: str = "biggan_pytorch",
    ):
        super().__init__()
        if variant not in ("biggan_pytorch", "tfhub"):
            raise ValueError(f"variant must be 'biggan_pytorch' or 'tfhub', got {variant!r}")
        self.num_svs, self.num_itrs, self.eps = num_svs, num_itrs, eps
        self.tfhub = variant == "tfhub"
        self.weight = nn.Parameter(torch.randn(shape))  # its scale is normalised away
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, shape[0]))
            self.register_buffer(f"sv{i}", torch.ones(1))

    def _normalise(self, x: Tensor) -> Tensor:
        if self.tfhub:
            return x / (x.norm() + self.eps)  # TFHub/biggan.py's l2normalize
        return F.normalize(x, eps=self.eps)

    def sn_weight(self) -> Tensor:
        mat = self.weight.reshape(self.weight.shape[0], -1)  # [out, in * k * k]
        stored = [getattr(self, f"u{i}") for i in range(self.num_svs)]
        write_back = self.training and not self.tfhub
        for _ in range(self.num_itrs):
            svs, us, vs = [], [], []
            for i, u in enumerate(stored):
                with torch.no_grad():
                    v = self._normalise(_orthogonalise(u @ mat, vs))  # [1, in]
                    vs.append(v)
                    u = self._normalise(_orthogonalise(v @ mat.t(), us))  # [1, out]
                    us.append(u)
                    if write_back:
                        stored[i].copy_(u)
                svs.append(((v @ mat.t()) @ u.t()).squeeze())
        if write_back:
            with torch.no_grad():
                for i, sv in enumerate(svs):
                    getattr(self, f"sv{i}").copy_(sv)
        return self.weight / svs[0]


def _orthogonalise(x: Tensor, ys: list[Tensor]) -> Tensor:
    """Gram-Schmidt: ``x [1, n]`` minus its projections onto each of ``ys`` (``[1, n]``)."""
    for y in ys:
        x = x - (y @ x.t()) * y / (y @ y.t())
    return x


class BrockSNConv2d(BrockSN):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int,
        *,
        bias: bool = True,
        num_svs: int = 1,
        num_itrs: int = 1,
        eps: float = 1e-6,
        variant: str = "biggan_pytorch",
    ):
        shape = (c_out, c_in, k, k)
        sn = {"num_svs": num_svs, "num_itrs": num_itrs, "eps": eps, "variant": variant}
        super().__init__(shape, bias=bias, **sn)
        self.padding = k // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.sn_weight(), self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out, c_in, k, _ = self.weight.shape
        return f"{c_in}, {out}, kernel_size={k}, bias={self.bias is not None}"


class BrockSNLinear(BrockSN):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        bias: bool = True,
        num_svs: int = 1,
        num_itrs: int = 1,
        eps: float = 1e-6,
        variant: str = "biggan_pytorch",
    ):
        sn = {"num_svs": num_svs, "num_itrs": num_itrs, "eps": eps, "variant": variant}
        super().__init__((c_out, c_in), bias=bias, **sn)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sn_weight(), self.bias)

    def extra_repr(self) -> str:
        out, c_in = self.weight.shape
        return f"{c_in}, {out}, bias={self.bias is not None}"


def self_attention(
    x: Tensor, theta: nn.Module, phi: nn.Module, g: nn.Module, o: nn.Module, gamma: Tensor
) -> Tensor:
    """SAGAN's non-local block (Zhang et al., ICML 2019), as both BigGAN codes compute it:
    keys and values max-pooled 2x2, ``x + gamma * o(values @ softmax(queries^T keys)^T)``.

    ``x: [N, C, H, W]`` (H, W even) -> ``[N, C, H, W]``.
    """
    n, c, h, w = x.shape
    queries = theta(x).reshape(n, c // 8, h * w)  # [N, C/8, HW]
    keys = F.max_pool2d(phi(x), 2).reshape(n, c // 8, h * w // 4)  # [N, C/8, HW/4]
    values = F.max_pool2d(g(x), 2).reshape(n, c // 2, h * w // 4)  # [N, C/2, HW/4]
    beta = F.softmax(torch.bmm(queries.transpose(1, 2), keys), -1)  # [N, HW, HW/4]
    out = torch.bmm(values, beta.transpose(1, 2)).reshape(n, c // 2, h, w)  # [N, C/2, H, W]
    return x + gamma * o(out)


__all__ = [
    "BrockSN",
    "BrockSNConv2d",
    "BrockSNLinear",
    "TorchSN",
    "TorchSNConv2d",
    "TorchSNLinear",
    "self_attention",
]
