"""LPIPS, FID and ArcFace networks (deterministic weights built here) and dlib identity.

The tests run without the real released weights (they are not downloaded), so they check what
can be checked without them: the key layouts and shapes those files use, parameter counts against
torchvision's published totals, the metric formulas against independent computations, and the
loading errors. Values with the real weights are not verified here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from glean_sr.errors import WeightsError
from glean_sr.evaluation.arcface import IResNet
from glean_sr.evaluation.fid import FeatureStats, FIDInceptionV3, frechet_distance
from glean_sr.evaluation.lpips import BACKBONES, LPIPS


def _randn(shape, g):
    return torch.randn(shape, generator=g) * 0.1


# ---------------------------------------------------------------- LPIPS


def _torchvision_features(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A backbone file in torchvision's layout (``features.N.*`` + classifier), random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for idx, cin, cout, k, _, _ in BACKBONES[net]["convs"]:
        sd[f"features.{idx}.weight"] = _randn((cout, cin, k, k), g) / (cin * k * k) ** 0.5 * 10
        sd[f"features.{idx}.bias"] = _randn((cout,), g)
    sd["classifier.1.weight"] = torch.zeros(10, 4)  # present in torchvision files, unused
    return sd


def _lin_file(net: str, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        f"lin{k}.model.1.weight": torch.rand((1, ch, 1, 1), generator=g)
        for k, ch in enumerate(BACKBONES[net]["channels"])
    }


def _reference_lpips(x, y, backbone: dict, lins: dict, net: str) -> torch.Tensor:
    """LPIPS written from the paper's Eq. 1 with plain functional ops on torchvision keys."""
    spec = BACKBONES[net]
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    convs = {c[0]: c for c in spec["convs"]}
    ends = [stop for _, stop in spec["stages"]]

    def feats(img):
        h, out = (img - shift) / scale, []
        for i in range(ends[-1]):
            if i in convs:
                _, _, _, _, stride, pad = convs[i]
                w, b = backbone[f"features.{i}.weight"], backbone[f"features.{i}.bias"]
                h = F.conv2d(h, w, b, stride=stride, padding=pad)
            elif i in spec["pools"]:
                h = F.max_pool2d(h, *spec["pool"])
            else:
                h = F.relu(h)
            if i + 1 in ends:
                out.append(h)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = lins[f"lin{k}.model.1.weight"]
        total = total + ((a - b) ** 2 * w.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


@pytest.mark.parametrize(("net", "torchvision_total"), [("alex", 61_100_840), ("vgg", 138_357_544)])
def test_lpips_backbone_matches_torchvision_layout(net, torchvision_total):
    """Parameter count = torchvision's published total minus its classifier, plus the lins."""
    model = LPIPS(net)
    spec = BACKBONES[net]
    classifier = (
        256 * 6 * 6 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
        if net == "alex"
        else 512 * 7 * 7 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    )
    lins = sum(spec["channels"])
    assert sum(p.numel() for p in model.parameters()) == torchvision_total - classifier + lins
    keys = set(model.state_dict())
    for idx, *_ in spec["convs"]:
        stage = next(k for k, (a, b) in enumerate(spec["stages"], 1) if a <= idx < b)
        assert f"net.slice{stage}.{idx}.weight" in keys  # lpips.LPIPS's own key names


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_independent_formula(net, tmp_path):
    backbone, lins = _torchvision_features(net), _lin_file(net)
    torch.save(backbone, tmp_path / "backbone.pth")
    torch.save(lins, tmp_path / "lin.pth")
    model = LPIPS.from_files(tmp_path / "lin.pth", tmp_path / "backbone.pth")
    assert model.net.net == net
    g = torch.Generator().manual_seed(3)
    x = torch.rand((2, 3, 64, 64), generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn((2, 3, 64, 64), generator=g)).clamp(-1, 1)
    d = model(x, y)
    assert d.shape == (2,)
    assert torch.allclose(d, _reference_lpips(x, y, backbone, lins, net), rtol=1e-4, atol=1e-6)
    assert torch.allclose(model(x, x), torch.zeros(2))
    assert torch.allclose(model(y, x), d, rtol=1e-5)
    # the same network saved as one lpips.LPIPS-style state_dict (net.* + lins.*) loads equal
    full = {k: v for k, v in model.state_dict().items() if k.startswith("net.")}
    full.update({k.replace("lin", "lins.", 1): v for k, v in lins.items()})
    torch.save(full, tmp_path / "full.pth")
    again = LPIPS.from_files(tmp_path / "full.pth")
    assert torch.equal(again(x, y), d)


def test_lpips_loading_errors(tmp_path):
    torch.save(_lin_file("alex"), tmp_path / "lin.pth")
    with pytest.raises(WeightsError, match="pass --lpips-backbone FILE"):
        LPIPS.from_files(tmp_path / "lin.pth")
    vgg = _torchvision_features("vgg")
    torch.save(vgg, tmp_path / "vgg16.pth")
    with pytest.raises(WeightsError, match="does not fit torchvision's alex"):
        LPIPS.from_files(tmp_path / "lin.pth", tmp_path / "vgg16.pth")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no LPIPS linear layers"):
        LPIPS.from_files(tmp_path / "other.pth", tmp_path / "vgg16.pth")


# ---------------------------------------------------------------- FID


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula with scipy's general matrix square root."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize(("n", "dim"), [(200, 16), (10, 32)])  # full rank, and rank-deficient
def test_frechet_distance_equals_scipy(n, dim):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    b = rng.normal(size=(n, dim)) * 1.5 + 0.3
    stats_a, stats_b = FeatureStats(dim), FeatureStats(dim)
    for chunk in np.array_split(a, 3):  # streamed in batches
        stats_a.add(chunk)
    stats_b.add(torch.from_numpy(b))
    mu_a, cov_a = stats_a.mean_cov()
    assert np.allclose(mu_a, a.mean(0)) and np.allclose(cov_a, np.cov(a, rowvar=False))
    mu_b, cov_b = stats_b.mean_cov()
    ours = frechet_distance(mu_a, cov_a, mu_b, cov_b)
    ref = _scipy_frechet(mu_a, cov_a, mu_b, cov_b)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-6 * max(1.0, abs(ref)))
    # zero up to the square root of round-off in the null space of a rank-deficient covariance
    scale = np.trace(cov_a)
    assert frechet_distance(mu_a, cov_a, mu_a, cov_a) == pytest.approx(0, abs=1e-7 * scale)


def test_fid_inception_layout_and_loading(tmp_path):
    model = FIDInceptionV3()
    # torchvision's published Inception v3 total (27,161,264) less its fc (2048 -> 1000) and
    # AuxLogits (1x1 768->128 + BN, 5x5 128->768 + BN, fc 768->1000), which FID does not use
    aux = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
    assert sum(p.numel() for p in model.parameters()) == 27_161_264 - (2048 * 1000 + 1000) - aux
    sd = model.state_dict()
    for key, shape in {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    g = torch.Generator().manual_seed(0)
    fid_file = {k: (torch.rand(v.shape, generator=g) + 0.5 if "running_var" in k else
                    torch.randn(v.shape, generator=g) * 0.05)
                for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # fmt: skip
    fid_file["fc.weight"] = torch.zeros(1008, 2048)  # the FID network's 1008-class head
    fid_file["fc.bias"] = torch.zeros(1008)
    torch.save(fid_file, tmp_path / "pt_inception.pth")
    loaded = FIDInceptionV3.from_file(tmp_path / "pt_inception.pth")
    x = torch.rand((2, 3, 80, 80), generator=g)
    feats = loaded(x)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert torch.equal(loaded(x[:1]), feats[:1]) or torch.allclose(loaded(x[:1]), feats[:1])
    # torchvision's ImageNet file (1000 classes) is refused: its FID is not comparable
    fid_file["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(fid_file, tmp_path / "torchvision.pth")
    with pytest.raises(WeightsError, match="torchvision's ImageNet Inception"):
        FIDInceptionV3.from_file(tmp_path / "torchvision.pth")
    del fid_file["Mixed_6b.branch1x1.conv.weight"]
    fid_file["fc.weight"] = torch.zeros(1008, 2048)
    torch.save(fid_file, tmp_path / "truncated.pth")
    with pytest.raises(WeightsError, match=r"1 missing \(Mixed_6b.branch1x1.conv.weight\)"):
        FIDInceptionV3.from_file(tmp_path / "truncated.pth")


def test_fid_pooling_variants():
    """The FID network's pools: A/C/E1 average without the padded zeros, E2 max-pools."""
    model = FIDInceptionV3()
    assert not model.Mixed_7b.max_pool and model.Mixed_7c.max_pool
    x = torch.ones(1, 1, 4, 4)
    from glean_sr.evaluation.fid import _avg_pool

    assert torch.allclose(_avg_pool(x), x)  # counting padding would give 4/9 in the corners


# ---------------------------------------------------------------- ArcFace


def test_arcface_iresnet_layout_and_depth_inference(tmp_path):
    model = IResNet((2, 2, 2, 2))
    sd = model.state_dict()
    for key, shape in {
        "conv1.weight": (64, 3, 3, 3),
        "prelu.weight": (64,),
        "layer1.0.downsample.0.weight": (64, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer4.1.bn3.running_mean": (512,),
        "bn2.weight": (512,),
        "fc.weight": (512, 512 * 7 * 7),
        "features.running_var": (512,),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    assert "layer1.1.downsample.0.weight" not in sd  # only the first block of a stage
    g = torch.Generator().manual_seed(0)
    file = {k: (torch.rand(v.shape, generator=g) + 0.5 if "running_var" in k else
                torch.randn(v.shape, generator=g) * 0.05)
            for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # fmt: skip
    torch.save({"state_dict": {f"module.{k}": v for k, v in file.items()}}, tmp_path / "bb.pth")
    loaded = IResNet.from_file(tmp_path / "bb.pth")
    assert loaded.layers == (2, 2, 2, 2)
    face = torch.from_numpy(data.astronaut()[:256, 128:384].copy()).permute(2, 0, 1)[None]
    face = face.float() / 255
    emb = loaded.embed(torch.cat([face, face.flip(-1)]))
    assert emb.shape == (2, 512)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(loaded.embed(face), emb[:1], atol=1e-5)
    with pytest.raises(WeightsError, match="not an iresnet backbone"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
        IResNet.from_file(tmp_path / "bad.pth")


# ---------------------------------------------------------------- dlib identity


def test_dlib_identity_on_a_real_face():
    pytest.importorskip("dlib", reason="the 'faces' extra (dlib-bin) is not installed")
    from glean_sr.evaluation.identity import DlibIdentity
    from glean_sr.io import quantize

    ident = DlibIdentity()
    face = data.astronaut()
    box = ident.find_face(face)
    assert box is not None
    assert ident.similarity(face, face, box) == pytest.approx(1.0, abs=1e-9)
    blurred = quantize(
        F.interpolate(
            F.interpolate(torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255,
                          scale_factor=0.125, mode="area"),
            scale_factor=8, mode="bicubic",
        )[0].permute(1, 2, 0).numpy(),
        8,
    )  # fmt: skip
    noise = np.random.default_rng(0).integers(0, 256, face.shape, dtype=np.uint8)
    sim_blur, sim_noise = ident.similarity(blurred, face, box), ident.similarity(noise, face, box)
    assert 0.8 < sim_blur < 1.0 and sim_noise < sim_blur
    assert ident.similarity(face, data.chelsea()) is None  # no human face on the cat


# ---------------------------------------------------------------- every metric through evaluate


class _NearestUp(torch.nn.Module):
    """A deterministic x8 'restorer' (32 -> 256): nearest-neighbour up-sampling."""

    in_size, out_size, scale = 32, 256, 8

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lq, scale_factor=8, mode="nearest")


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.rand(v.shape, generator=g) + 0.5 if "running_var" in k
            else torch.randn(v.shape, generator=g) * 0.05)
        for k, v in module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }  # fmt: skip


@pytest.mark.slow
def test_every_metric_through_evaluate(tmp_path):
    """NIQE, LPIPS, FID, ArcFace and dlib identity on 256x256 photo crops: each column is
    filled for every method and FID is reported per method."""
    import csv
    import json

    from PIL import Image

    from glean_sr.evaluation.evaluate import EvalOptions, evaluate

    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for name, top, left in [("astronaut", 0, 120), ("coffee", 100, 200)]:  # FID needs >= 2
        crop = getattr(data, name)()[top : top + 256, left : left + 256]
        Image.fromarray(crop).save(gt_dir / f"{name}_{top}.png")
    torch.save(_torchvision_features("alex"), tmp_path / "alexnet.pth")
    torch.save(_lin_file("alex"), tmp_path / "alex.pth")
    fid = _random_state(FIDInceptionV3(), 1)
    fid.update({"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    torch.save(fid, tmp_path / "pt_inception.pth")
    torch.save(_random_state(IResNet((1, 1, 1, 1)), 2), tmp_path / "arcface.pth")
    metrics = ("psnr", "ssim", "niqe", "lpips", "fid", "arcface")
    if __import__("importlib").util.find_spec("dlib") is not None:
        metrics += ("identity",)
    opts = EvalOptions(
        metrics=metrics,
        channel="y",
        crop_border=8,
        device="cpu",
        batch_size=2,
        lpips_weights=str(tmp_path / "alex.pth"),
        lpips_backbone=str(tmp_path / "alexnet.pth"),
        fid_weights=str(tmp_path / "pt_inception.pth"),
        arcface_weights=str(tmp_path / "arcface.pth"),
    )
    out = tmp_path / "report"
    summary = evaluate([_NearestUp()], gt_dir, out, options=opts, progress=False)
    per_image = ["psnr_y", "ssim_y", "niqe", "lpips", "identity_arcface"]
    if "identity" in metrics:
        per_image.append("identity_dlib")
    assert summary["columns"] == [*per_image, "fid"]
    for method in ("bicubic", "_NearestUp"):
        row = summary["results"][method]
        assert set(row) == set(summary["columns"]), method
        assert row["fid"] >= -1e-6 and -1 <= row["identity_arcface"] <= 1
    assert set(summary["results"]["gt"]) == {"niqe"}  # the no-reference metric of the GT itself
    # blocky nearest-neighbour output is less natural than the GT
    assert summary["results"]["_NearestUp"]["niqe"] > summary["results"]["gt"]["niqe"]
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3  # bicubic, model, GT row per image
    for r in rows:
        if r["method"] != "gt":
            assert all(r[c] for c in per_image if c != "identity_dlib"), r
    if "identity" in metrics:
        faces = [r for r in rows if r["method"] != "gt" and r["image"].startswith("astronaut")]
        assert all(0 < float(r["identity_dlib"]) <= 1 for r in faces)
        coffee = [r for r in rows if r["method"] == "bicubic" and r["image"].startswith("coffee")]
        assert coffee[0]["identity_dlib"] == "" and "no face" in coffee[0]["note"]
    assert json.loads((out / "summary.json").read_text())["definitions"]["fid"]["better"] == "lower"
