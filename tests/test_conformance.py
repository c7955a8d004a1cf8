"""Released-style checkpoints built from the fixtures' fill rule reproduce the reference outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixture_rule import CONFORMANCE, fill_state_dict, fixture_input, read_keys, released_checkpoint
from glean_sr import load_model

FIXTURES = ["fixture_a", "fixture_b"]


@pytest.fixture(scope="module", params=FIXTURES)
def released_file(request, tmp_path_factory):
    name = request.param
    sd = fill_state_dict(read_keys(CONFORMANCE / name / "keys.txt"))
    path = tmp_path_factory.mktemp(name) / f"{name}_20210101-00000000.pth"
    # mmediting's publish_model writes the legacy (non-zip) serialization
    torch.save(released_checkpoint(sd), path, _use_new_zipfile_serialization=False)
    return name, path


def test_fill_rule_matches_fixture_checksums():
    import json

    name = "fixture_b"
    sd = fill_state_dict(read_keys(CONFORMANCE / name / "keys.txt"))
    for entry in json.loads((CONFORMANCE / name / "fill_checksums.json").read_text()):
        t = sd[entry["key"]].double()
        assert t.sum().item() == pytest.approx(entry["sum"], rel=1e-9, abs=1e-9)
        assert t.flatten()[:4].tolist() == pytest.approx(entry["first4"], rel=1e-6)


def test_input_rule_matches_stored_input():
    for name in FIXTURES:
        stored = np.load(CONFORMANCE / name / "input.npy")
        np.testing.assert_array_equal(fixture_input(name).numpy(), stored)


def test_released_checkpoint_reproduces_reference(released_file):
    name, path = released_file
    model = load_model(path)  # no size argument: the architecture comes from the tensors
    lq = torch.from_numpy(np.load(CONFORMANCE / name / "input.npy"))
    with torch.no_grad():
        sr = model(lq)
        latents, _ = model.encode(lq)
    ref = np.load(CONFORMANCE / name / "output.npy")
    assert sr.shape == ref.shape
    np.testing.assert_allclose(sr.numpy(), ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(
        latents.numpy(), np.load(CONFORMANCE / name / "latent.npy"), atol=1e-5
    )


def test_intermediate_statistics_match(released_file):
    """Block outputs agree with the reference's recorded statistics, not only the final image."""
    import json

    name, path = released_file
    model = load_model(path)
    stats = json.loads((CONFORMANCE / name / "intermediates.json").read_text())
    lq = torch.from_numpy(np.load(CONFORMANCE / name / "input.npy"))
    with torch.no_grad():
        _, feats = model.encode(lq)
    for res, feat in feats.items():
        idx = model.config.encoder_resolutions.index(res)
        ref = stats[f"encoder.{idx}"]
        assert list(feat.shape) == ref["shape"]
        assert feat.double().mean().item() == pytest.approx(ref["mean"], abs=1e-5)
        assert feat.double().std().item() == pytest.approx(ref["std"], rel=1e-4)


@pytest.mark.slow
def test_model_directory_round_trip_is_exact(released_file, tmp_path):
    _, path = released_file
    model = load_model(path)
    model.save_pretrained(tmp_path / "converted")
    again = load_model(tmp_path / "converted")
    assert again.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2
        assert torch.equal(a, b), k
