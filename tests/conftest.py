from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import glean_sr
from glean_sr.config import GLEANConfig

SRC = Path(glean_sr.__file__).resolve().parents[1]

#: The smallest GLEAN that still has every kind of part: 2 fusions, 2 bank features, 1 RRDB.
TINY = GLEANConfig(
    in_size=8,
    out_size=32,
    rrdb_channels=8,
    num_rrdbs=1,
    style_channels=16,
    num_mlps=2,
    channel_multiplier=2,  # has no effect below 64 px; inference from tensors assumes 2 there
)


def set_noise_strengths(model: torch.nn.Module, value: float) -> torch.nn.Module:
    """Set every StyleGAN2 noise strength of ``model`` to ``value``: they are zero at init, so
    freshly built banks would never exercise their noise inputs. Returns ``model``."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("noise_injector.weight"):
                p.fill_(value)
    return model


def run_cli(*args: str, cwd: str | Path | None = None, env: dict | None = None, timeout=600):
    """Run ``glean-sr ARGS`` in a fresh interpreter; returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(SRC) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("GLEAN_SR_OFFLINE", "1")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "glean_sr", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the tests marked slow (torchrun, SIGKILL resume, full-size models, ...)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``slow`` tests, with a reason that says how to run them, unless --run-slow."""
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache and never reach the network from tests."""
    monkeypatch.setenv("GLEAN_SR_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("GLEAN_SR_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model():
    from glean_sr.models import GLEAN

    torch.manual_seed(0)
    return set_noise_strengths(GLEAN(TINY).eval(), 0.1)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_model")
    tiny_model.save_pretrained(out)
    return out
