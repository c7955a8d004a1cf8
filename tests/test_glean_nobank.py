"""The no-bank ablation: GLEAN's encoder-decoder with the bank's features discarded."""

from __future__ import annotations

import torch

from glean_sr.config import GLEANConfig, GLEANNoBankConfig, config_from_dict, config_to_dict
from glean_sr.models.glean import GLEAN, GLEANNoBank
from glean_sr.training.parts import freeze_unreachable_parameters
from glean_sr.weights.pretrained import load_model

TABLE = ((4, 32), (8, 32), (16, 16), (32, 16))


def _config(cls=GLEANNoBankConfig):
    return cls(
        in_size=8,
        out_size=32,
        rrdb_channels=16,
        num_rrdbs=1,
        style_channels=32,
        num_mlps=2,
        channel_table=TABLE,
    )


def _lq(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_same_tree_as_glean_and_config_round_trip():
    torch.manual_seed(0)
    ablation = GLEANNoBank(_config())
    glean = GLEAN(_config(GLEANConfig))
    assert ablation.state_dict().keys() == glean.state_dict().keys()
    assert config_from_dict(config_to_dict(ablation.config)) == ablation.config


def test_output_ignores_the_bank_and_the_coarse_encoder():
    torch.manual_seed(0)
    model = GLEANNoBank(_config()).eval()
    with torch.no_grad():
        before = model(_lq())
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p))
        for p in model.encoder[1:].parameters():
            p.add_(torch.randn_like(p))
        after = model(_lq())
    assert before.shape == (2, 3, 32, 32)
    assert torch.equal(before, after)


def test_decoder_sees_zeros_in_place_of_bank_features():
    torch.manual_seed(0)
    model = GLEANNoBank(_config()).eval()
    with torch.no_grad():
        feat = model.encoder[0](_lq())
        zeros = {16: torch.zeros(2, 16, 16, 16), 32: torch.zeros(2, 16, 32, 32)}
        assert torch.equal(model(_lq()), model.decode(feat, zeros))


def test_trainer_freezes_what_cannot_reach_the_output():
    torch.manual_seed(0)
    model = GLEANNoBank(_config())
    frozen = freeze_unreachable_parameters(model, (1, 3, 8, 8))
    assert any(name.startswith("encoder.1.") for name in frozen)
    assert any(name.startswith("fusion_out.") for name in frozen)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.0.", "decoder.")) for n in trainable)


def test_save_and_load_model_directory(tmp_path):
    torch.manual_seed(0)
    model = GLEANNoBank(_config()).eval()
    model.save_pretrained(tmp_path / "nobank")
    loaded = load_model(str(tmp_path / "nobank"))
    assert isinstance(loaded, GLEANNoBank)
    with torch.no_grad():
        assert torch.equal(model(_lq()), loaded(_lq()))


def test_the_cpu_fast_path_leaves_the_ablation_alone():
    from glean_sr.inference.cpu_fast import CPUFastPath, accelerate

    torch.manual_seed(0)
    model = GLEANNoBank(_config()).eval()
    assert accelerate(model, "cpu") is model
    assert isinstance(accelerate(GLEAN(_config(GLEANConfig)).eval(), "cpu"), CPUFastPath)
