"""VGG16 features and the perceptual loss. The real ImageNet weights (torchvision's
vgg16-397923af.pth) cannot be downloaded here, so every test uses deterministic weights written
in that file's exact layout; the layout itself is checked against the published architecture."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glean_sr.errors import WeightsError
from glean_sr.models.vgg import CONV4_3, VGG16Features
from glean_sr.training.losses import PerceptualLoss
from glean_sr.weights.hub import sha256_file
from glean_sr.weights.vgg import load_vgg16_features
from training_helpers import TORCHVISION_CONVS, torchvision_layout_state_dict


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16-test.pth"
    sd = torchvision_layout_state_dict()
    torch.save(sd, path)
    return path, sd


def test_full_structure_matches_torchvision_keys_and_shapes():
    full = VGG16Features(num_layers=31).state_dict()
    expected = {}
    for i, (out_c, in_c) in TORCHVISION_CONVS.items():
        expected[f"features.{i}.weight"] = (out_c, in_c, 3, 3)
        expected[f"features.{i}.bias"] = (out_c,)
    assert {k: tuple(v.shape) for k, v in full.items()} == expected
    model = VGG16Features(num_layers=31)
    pools = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [4, 9, 16, 23, 30]
    assert isinstance(model.features[CONV4_3], torch.nn.Conv2d)
    assert len(VGG16Features().features) == 22  # up to conv4_3, before its ReLU


def reference_conv4_3(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """VGG16 up to conv4_3 written directly from the paper: 3x3 convs (pad 1) with ReLU between
    them, 2x2 max-pooling after blocks 1-3, and no ReLU after the last conv."""
    blocks = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21]]
    for b, convs in enumerate(blocks):
        for i in convs:
            x = F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
            if i != 21:
                x = F.relu(x)
        if b < 3:
            x = F.max_pool2d(x, 2)
    return x


def test_loads_the_torchvision_layout_and_computes_conv4_3_before_relu(vgg_file):
    path, sd = vgg_file
    vgg = load_vgg16_features(path, sha256=sha256_file(path)[:8])
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = vgg(x)
    expected = reference_conv4_3(x, sd)
    assert out.shape == (2, 512, 4, 5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert (out < 0).any()  # pre-activation: a ReLU would have removed these


def test_loads_the_mmagic_perceptual_loss_layout(tmp_path, vgg_file):
    _, sd = vgg_file
    mm = {
        f"perceptual_loss.vgg.vgg_layers.{k.split('.', 1)[1]}": v
        for k, v in sd.items()
        if k.startswith("features.") and int(k.split(".")[1]) <= CONV4_3
    }
    mm["perceptual_loss.vgg.mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    mm["perceptual_loss.vgg.std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    mm["generator.encoder.0.weight"] = torch.zeros(1)  # a released GLEAN checkpoint holds both
    path = tmp_path / "glean_released_like.pth"
    torch.save({"meta": {}, "state_dict": mm}, path)
    vgg = load_vgg16_features(path)
    for k, v in vgg.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_bad_files_are_one_line_errors(tmp_path, vgg_file):
    path, sd = vgg_file
    with pytest.raises(WeightsError, match="does not exist"):
        load_vgg16_features(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="SHA-256 does not start with 00000000"):
        load_vgg16_features(path, sha256="00000000")
    partial = {k: v for k, v in sd.items() if k != "features.21.weight"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="missing features.21.weight"):
        load_vgg16_features(tmp_path / "partial.pth")
    torch.save({**sd, "head.fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a VGG16 file: unexpected keys head.fc.weight"):
        load_vgg16_features(tmp_path / "other.pth")
    with pytest.raises(Exception, match="GLEAN_SR_OFFLINE") as info:
        load_vgg16_features("https://download.pytorch.org/models/vgg16-397923af.pth")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("norm_img", [False, True])
def test_perceptual_loss_normalisation_quirk(vgg_file, norm_img):
    """norm_img=False (the three bicubic recipes) feeds [-1, 1] images to the ImageNet
    statistics as they are; norm_img=True maps them to [0, 1] first (in128out1024)."""
    path, sd = vgg_file
    loss = PerceptualLoss(load_vgg16_features(path), norm_img=norm_img)
    g = torch.Generator().manual_seed(2)
    sr = (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1).requires_grad_(True)
    gt = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prep(x):
        return (((x + 1) / 2 if norm_img else x) - mean) / std

    expected = F.mse_loss(reference_conv4_3(prep(sr), sd), reference_conv4_3(prep(gt), sd))
    value = loss(sr, gt)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
