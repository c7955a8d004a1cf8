"""Parameter counts and MACs against the paper (TPAMI Table 1) and the spec's measurements."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from glean_sr import PRESETS
from glean_sr.analysis import complexity
from glean_sr.models.registry import build_model


def test_glean_ffhq_16x_parts_match_table_1():
    info = complexity(build_model(PRESETS["glean_ffhq_16x"].config, device="meta"))
    params = info["params"]
    assert params["encoder"] / 1e6 == pytest.approx(137.3, abs=0.05)
    assert params["bank"] / 1e6 == pytest.approx(30.4, abs=0.05)
    assert params["decoder"] / 1e6 == pytest.approx(7.9, abs=0.05)
    assert params["total"] == 175_516_723  # the reference's exact parameter count
    # all convolutions incl. modulated, without the dead RGB branch: 705.16 - 0.53 - 0.15 GFLOPs
    assert 2 * info["macs"] / 1e9 == pytest.approx(705.16 - 0.53 - 0.15, abs=0.02)
    # nn.Conv2d / nn.Linear only: the convention of the paper's 277.5 G
    assert info["macs_modules"] / 1e9 == pytest.approx(277.5, rel=0.005)


@pytest.mark.parametrize(
    "name,total",
    [
        ("glean_cat_8x", 162_479_861),
        ("glean_cat_16x", 171_903_649),
        ("glean_in128out1024_4x2_300k_ffhq_celebahq", 174_196_615),
    ],
)
def test_other_presets_total_parameters(name, total):
    model = build_model(PRESETS[name].config, device="meta")
    assert model.parameter_counts()["total"] == total


@pytest.mark.slow
def test_info_cli_on_preset_needs_no_download():
    result = run_cli("info", "glean_ffhq_16x", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "preset"
    assert set(info["params"]) == {"encoder", "bank", "decoder", "total"}
    assert info["config"]["in_size"] == 64 and info["config"]["out_size"] == 1024
