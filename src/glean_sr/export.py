"""ONNX export of a restorer, checked against onnxruntime.

The graph is exported with the bank's modulation on the activations
(``ModulatedConv2d.fused_modconv = False``: one graph serves every batch size) and a dynamic batch
dimension and the fixed ``in_size x in_size`` input. Input ``lq``: ``[N, C, in, in]`` float32 RGB
in [-1, 1]; output ``sr``: ``[N, C, out, out]``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, GleanError, missing_extra
from .models.stylegan2 import ModulatedConv2d

#: the largest difference to PyTorch accepted by :func:`verify_onnx` (float32, outputs O(1))
ONNX_TOLERANCE = 1e-3


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise missing_extra(module, "onnx") from None


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int | None = None) -> Path:
    """Write ``model`` as one ONNX file (weights included), atomically. Returns the path."""
    _require("onnx")
    _require("onnxscript")
    out = Path(path)
    if not hasattr(model, "in_size"):
        raise ConfigError(
            f"export-onnx writes graphs of restorers with one input size (GLEAN, LightGLEAN); a "
            f"{model.config.model_type} takes any size, which export-onnx does not export"
        )
    model = model.eval().to("cpu")
    # an example batch of 2: with 1 the tracer would tie the batch to the noise maps' size 1
    lq = torch.zeros(2, model.img_channels, model.in_size, model.in_size)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp.onnx", dir=out.parent)
    os.close(fd)
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch", "onnxscript")]
    levels = [lg.level for lg in loggers]
    modconvs = [m for m in model.modules() if isinstance(m, ModulatedConv2d)]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)  # the exporter's progress and tracebacks
        for m in modconvs:
            m.fused_modconv = False
        with (
            torch.no_grad(),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (lq,),
                tmp,
                input_names=["lq"],
                output_names=["sr"],
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                opset_version=opset,
            )
        os.replace(tmp, out)
    except Exception as exc:  # the exporter raises many types; the message is what matters
        first = (str(exc).strip().splitlines() or [""])[0]
        raise GleanError(f"ONNX export failed: {type(exc).__name__}: {first}") from None
    finally:
        for m in modconvs:
            del m.fused_modconv  # back to the class default
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def verify_onnx(
    model: nn.Module, path: str | os.PathLike, *, batch: int = 2, seed: int = 0
) -> float:
    """Max absolute difference between onnxruntime and PyTorch on a seeded random batch; raises
    :class:`GleanError` above :data:`ONNX_TOLERANCE`."""
    ort = _require("onnxruntime")
    g = torch.Generator().manual_seed(seed)
    lq = torch.rand(batch, model.img_channels, model.in_size, model.in_size, generator=g) * 2 - 1
    with torch.no_grad():
        ref = model.eval()(lq).numpy()
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = runtime.run(["sr"], {"lq": lq.numpy()})[0]
    if got.shape != ref.shape:
        raise GleanError(f"{path}: onnxruntime returned shape {got.shape}, PyTorch {ref.shape}")
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= ONNX_TOLERANCE:
        raise GleanError(
            f"{path}: onnxruntime differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE})"
        )
    return diff
