"""ONNX export: the exported graph gives PyTorch's outputs under onnxruntime, any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run_cli

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.mark.slow
def test_export_onnx_cli_and_onnxruntime_agree(tiny_model, tiny_model_dir, tmp_path):
    out = tmp_path / "tiny.onnx"
    result = run_cli("export-onnx", str(tiny_model_dir), str(out))
    assert result.returncode == 0, result.stderr
    assert "onnxruntime matches PyTorch" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["lq"]
    for batch in (1, 3):  # one graph for every batch size
        lq = torch.rand(batch, 3, 8, 8, generator=torch.Generator().manual_seed(batch)) * 2 - 1
        with torch.no_grad():
            ref = tiny_model(lq).numpy()
        got = session.run(["sr"], {"lq": lq.numpy()})[0]
        assert got.shape == (batch, 3, 32, 32)
        np.testing.assert_allclose(got, ref, atol=1e-4)
    again = run_cli("export-onnx", str(tiny_model_dir), str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr
