"""The one device resolver: names to available devices, one-line errors for the rest."""

from __future__ import annotations

import pytest
import torch

from glean_sr.devices import resolve_device
from glean_sr.errors import ConfigError


def test_names_resolve_to_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_devices_are_one_line_errors(name):
    with pytest.raises(ConfigError, match="cpu, cuda, cuda:N or mps") as caught:
        resolve_device(name)
    assert "\n" not in str(caught.value)


def test_unavailable_devices_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")


def test_local_rank_picks_the_process_gpu(monkeypatch):
    """Under torchrun, "auto" and a bare "cuda" mean the GPU of the process's LOCAL_RANK."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_device("auto", local_rank=2) == torch.device("cuda", 2)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda", 1)  # named: kept
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu", local_rank=2) == torch.device("cpu")
    with pytest.raises(ConfigError, match="no cuda:5: this machine has 4 CUDA device"):
        resolve_device("cuda", local_rank=5)
