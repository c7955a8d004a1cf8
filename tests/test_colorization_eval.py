"""`glean-sr eval` with colorizers: PSNR/SSIM on RGB and colourfulness, against colour photos."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from glean_sr.cli import main
from glean_sr.colorspace import lab_to_rgb, rgb_to_lightness
from glean_sr.config import GLEANColorizerConfig
from glean_sr.evaluation.colorization import is_colorizer_source
from glean_sr.evaluation.metrics import colourfulness, psnr
from glean_sr.io import round_to_8bit
from glean_sr.models.colorizer import GLEANColorizer

SMALL = GLEANColorizerConfig(
    out_size=16,
    rrdb_channels=8,
    num_rrdbs=1,
    style_channels=16,
    num_mlps=1,
    channel_table={4: 16, 8: 16, 16: 16},
    decoder_channels=8,
)


def test_colourfulness_is_hasler_and_suesstrunks():
    grey = np.full((4, 6, 3), 0.4)
    assert colourfulness(grey) == 0
    halves = np.zeros((2, 2, 3))
    halves[0, :, 0] = halves[1, :, 1] = 1  # pure red above pure green
    # rg = +-255: std 255, mean 0; yb = 127.5 everywhere: std 0, mean 127.5
    assert colourfulness(halves) == pytest.approx(255 + 0.3 * 127.5)
    assert colourfulness(halves * 255, data_range=255) == pytest.approx(colourfulness(halves))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        colourfulness(grey[..., 0])


def _grey_image(rgb8: np.ndarray) -> np.ndarray:
    """The zero-chroma prediction for an 8-bit photo, rounded to 8 bits, in [0, 1]."""
    rgb = torch.from_numpy(rgb8.astype(np.float32) / 255).permute(2, 0, 1)
    lab = torch.cat([rgb_to_lightness(rgb), torch.zeros(2, *rgb.shape[1:])])
    zero = lab_to_rgb(lab, clip=True).permute(1, 2, 0).numpy()
    return round_to_8bit(zero)


def _grey_psnr(rgb8: np.ndarray) -> float:
    return psnr(_grey_image(rgb8), rgb8.astype(np.float32) / 255)


def _t(img: np.ndarray) -> torch.Tensor:
    return (
        torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None] * 2 - 1
    )


def test_eval_scores_colorizers_against_the_grey_baseline(tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    model = GLEANColorizer(SMALL)
    with torch.no_grad():
        model.decoder[-1].bias.copy_(torch.tensor([0.1, 0.2]))
    model.save_pretrained(tmp_path / "colorizer")
    gt = tmp_path / "gt"
    gt.mkdir()
    photos = {
        "cat.png": skimage_data.chelsea()[100:148, 150:190],
        "coffee.png": skimage_data.coffee()[200:240, 200:260],
    }
    for name, photo in photos.items():
        Image.fromarray(photo).save(gt / name)
    Image.fromarray(skimage_data.camera()[:20, :20]).save(gt / "grey.png")
    (gt / "broken.png").write_bytes(b"not an image")

    assert is_colorizer_source(str(tmp_path / "colorizer")) and not is_colorizer_source(
        "glean_cat_8x"
    )
    args = ["eval", "-m", str(tmp_path / "colorizer"), "--gt", str(gt), "-o", str(tmp_path / "r")]
    assert main([*args, "--device", "cpu"]) == 1  # two files skipped
    printed = capsys.readouterr().out
    assert "skipped grey.png: grey: no colour to score" in printed
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["num_images"] == 2 and summary["columns"] == [
        "psnr_rgb",
        "ssim_rgb",
        "colourfulness",
    ]
    results = summary["results"]
    assert list(results) == ["grey", "colorizer", "gt"]
    want = np.mean([_grey_psnr(p) for p in photos.values()])
    assert results["grey"]["psnr_rgb"] == pytest.approx(want, abs=1e-6)
    assert results["grey"]["colourfulness"] < 1
    assert results["colorizer"]["colourfulness"] > 5  # its warm cast
    gt_colour = np.mean([colourfulness(p / 255) for p in photos.values()])
    assert results["gt"]["colourfulness"] == pytest.approx(gt_colour)
    assert results["gt"]["psnr_rgb"] is None
    with open(tmp_path / "r" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["method"]) for r in rows[:3]] == [
        ("cat.png", "grey"),
        ("cat.png", "colorizer"),
        ("cat.png", "gt"),
    ]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "L* input" in html and "colourfulness" in html
    # a colorizer is scored from the GT's own L*: LQ inputs and other metrics do not apply
    assert main([*args, "--lq", str(gt), "--metrics", "psnr,niqe", "--overwrite"]) == 1
    error = capsys.readouterr().err
    assert "--lq, --metrics psnr,niqe does not apply" in error
    # LPIPS when its weights are given: each method's distance to its GT, none for the GT row
    from glean_sr.evaluation.lpips import LPIPS
    from test_eval_networks import _lin_file, _torchvision_features

    torch.save(_torchvision_features("alex"), tmp_path / "alex_backbone.pth")
    torch.save(_lin_file("alex"), tmp_path / "alex.pth")
    lp = ["--lpips-weights", str(tmp_path / "alex.pth"), "--lpips-backbone"]
    lp.append(str(tmp_path / "alex_backbone.pth"))
    assert main([*args, "--metrics", "psnr,ssim,lpips", *lp, "--overwrite", "--device", "cpu"]) == 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["columns"][-1] == "lpips" and summary["results"]["gt"]["lpips"] is None
    net = LPIPS.from_files(tmp_path / "alex.pth", tmp_path / "alex_backbone.pth")
    grey = [_grey_image(p) for p in photos.values()]
    want = np.mean(
        [float(net(_t(g), _t(p / 255)).item()) for g, p in zip(grey, photos.values(), strict=True)]
    )
    assert summary["results"]["grey"]["lpips"] == pytest.approx(want, rel=1e-4)
    assert main([*args, "--metrics", "lpips", "--overwrite"]) == 1
    assert "needs --lpips-weights" in capsys.readouterr().err
