"""Every released checkpoint layout (tests/data/glean_keys) loads with no size argument."""

from __future__ import annotations

import pytest
import torch

from fixture_rule import KEY_LAYOUTS, read_keys
from glean_sr import PRESETS, load_model
from glean_sr.models.registry import build_model
from glean_sr.weights.glean_format import infer_config, unwrap_restorer_checkpoint

LAYOUTS = sorted(p.stem for p in KEY_LAYOUTS.glob("*.txt"))


def test_all_four_released_layouts_are_present():
    assert (
        sorted(
            [
                "glean_cat_8x",
                "glean_cat_16x",
                "glean_ffhq_16x",
                "glean_in128out1024_4x2_300k_ffhq_celebahq",
            ]
        )
        == LAYOUTS
    )


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_infers_preset_architecture_exactly(name):
    keys = read_keys(KEY_LAYOUTS / f"{name}.txt")
    container = {"state_dict": {k: torch.empty(s, device="meta") for k, s in keys}}
    unwrapped = unwrap_restorer_checkpoint(container, name)
    assert unwrapped.unexpected == []
    config = infer_config(unwrapped.state_dict, name)
    assert config == PRESETS[name].config
    model = build_model(config, device="meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in unwrapped.state_dict.items()}
    assert expected == found


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_file_loads_through_load_model(name, tmp_path):
    """A full-size file with this exact layout (zeros) goes through the real loading path."""
    keys = read_keys(KEY_LAYOUTS / f"{name}.txt")
    path = tmp_path / f"{name}.pth"
    sd = {k: torch.zeros(s) for k, s in keys}
    torch.save({"meta": {"iter": 1}, "state_dict": sd}, path, _use_new_zipfile_serialization=False)
    del sd
    model = load_model(path)
    assert model.config == PRESETS[name].config
    assert (model.in_size, model.out_size, model.img_channels) == (
        PRESETS[name].config.in_size,
        PRESETS[name].config.out_size,
        3,
    )
    path.unlink()
