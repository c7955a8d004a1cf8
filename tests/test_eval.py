"""``glean-sr eval`` end to end on a tiny deterministic model and real photo crops."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import TINY, run_cli
from glean_sr.data.imresize import imresize
from glean_sr.errors import ConfigError, GleanError
from glean_sr.evaluation.evaluate import EvalOptions, evaluate
from glean_sr.weights.pretrained import load_model

#: textured 32x32 crops (the tiny model restores 8 -> 32): (photo, top, left)
CROPS = [
    ("astronaut", 180, 180),
    ("astronaut", 60, 230),
    ("chelsea", 120, 180),
    ("coffee", 150, 250),
]


def _write_gt(folder, size: int = 32):
    folder.mkdir(parents=True, exist_ok=True)
    for k, (photo, top, left) in enumerate(CROPS):
        img = getattr(data, photo)()[top : top + size, left : left + size]
        Image.fromarray(img).save(folder / f"{k}_{photo}.png")
    return folder


@pytest.fixture(scope="module")
def gt_dir(tmp_path_factory):
    return _write_gt(tmp_path_factory.mktemp("gt"))


@pytest.fixture(scope="module")
def report_dir(tiny_model_dir, gt_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "r"
    proc = run_cli(
        "eval", "-m", str(tiny_model_dir), "-m", str(tiny_model_dir), "--gt", str(gt_dir),
        "-o", str(out), "--channel", "both", "--device", "cpu", "--batch-size", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout
    return out


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_eval_writes_csv_json_html(report_dir, gt_dir):
    for name in ("per_image.csv", "summary.json", "report.html"):
        assert (report_dir / name).is_file() and (report_dir / name).stat().st_size > 0
    rows = _read_csv(report_dir / "per_image.csv")
    methods = ["bicubic", "tiny_model0", "tiny_model0-2"]
    assert [r["method"] for r in rows] == methods * len(CROPS)
    assert {r["image"] for r in rows} == {p.name for p in gt_dir.iterdir()}
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["num_images"] == len(CROPS) and summary["skipped"] == []
    assert summary["columns"] == ["psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"]
    assert list(summary["results"]) == methods
    # the summary is the mean of the per-image values
    for method in methods:
        for col in summary["columns"]:
            per_image = [float(r[col]) for r in rows if r["method"] == method]
            assert summary["results"][method][col] == pytest.approx(np.mean(per_image), abs=1e-6)
    # both -m of the same model give the same numbers
    assert summary["results"]["tiny_model0"] == summary["results"]["tiny_model0-2"]
    html = (report_dir / "report.html").read_text()
    crops = sorted((report_dir / "images").rglob("*.png"))
    assert len(crops) == len(CROPS) * 5  # LQ, bicubic, two models, GT
    for crop in crops:
        assert crop.relative_to(report_dir).as_posix() in html


@pytest.mark.slow
def test_eval_values_match_independent_computation(report_dir, gt_dir, tiny_model_dir):
    """Bicubic and model rows recomputed here: LQ = MATLAB imresize of the 8-bit GT, outputs
    rounded to 8 bits, PSNR/SSIM by scikit-image."""
    # the model as `glean-sr eval` loads it: its weights' memory layout decides the order of
    # the convolutions' sums, and so the last bit of a value that an 8-bit rounding may keep
    tiny_model = load_model(tiny_model_dir, device="cpu")
    rows = {(r["image"], r["method"]): r for r in _read_csv(report_dir / "per_image.csv")}
    paths = sorted(gt_dir.iterdir())
    gts = [np.asarray(Image.open(path)) for path in paths]
    lqs = [imresize(gt8, 1 / 4) for gt8 in gts]  # uint8 in, rounded uint8 out, like MATLAB
    # the model run in the same batches as the report's --batch-size 3 (equal bits, since a
    # batch's size decides how the modulated convolutions are executed)
    batch = torch.stack([torch.from_numpy(lq8).permute(2, 0, 1).float() / 255 for lq8 in lqs])
    with torch.no_grad():
        srs = torch.cat([tiny_model(chunk * 2 - 1) for chunk in batch.split(3)])
    for path, gt8, lq8, sr in zip(paths, gts, lqs, srs, strict=True):
        bic8 = imresize(lq8, 4)
        sr = sr.permute(1, 2, 0).numpy()
        sr8 = np.floor(np.clip((sr + 1) / 2, 0, 1) * 255 + 0.5).astype(np.uint8)
        for method, out8 in (("bicubic", bic8), ("tiny_model0", sr8)):
            row = rows[(path.name, method)]
            expected = peak_signal_noise_ratio(gt8, out8, data_range=255)
            assert float(row["psnr_rgb"]) == pytest.approx(expected, abs=1e-5)
            expected = structural_similarity(
                gt8.astype(np.float64), out8.astype(np.float64), data_range=255, channel_axis=2,
                gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            )  # fmt: skip
            assert float(row["ssim_rgb"]) == pytest.approx(expected, abs=1e-5)


def test_given_lq_folder_gives_the_same_numbers(tiny_model, gt_dir, tmp_path):
    lq_dir = tmp_path / "lq"
    lq_dir.mkdir()
    for path in gt_dir.iterdir():
        Image.fromarray(imresize(np.asarray(Image.open(path)), 1 / 4)).save(lq_dir / path.name)
    opts = EvalOptions(device="cpu", report_images=0)
    made = evaluate([tiny_model], gt_dir, tmp_path / "a", options=opts, progress=False)
    given = evaluate(
        [tiny_model], gt_dir, tmp_path / "b", lq_dir=lq_dir, options=opts, progress=False
    )
    assert made["results"] == given["results"]
    assert given["lq"] == {"dir": str(lq_dir)}


@pytest.mark.slow
def test_gt_of_another_resolution_is_one_line_error(tiny_model_dir, tmp_path):
    big = _write_gt(tmp_path / "gt48", size=48)
    proc = run_cli("eval", "-m", str(tiny_model_dir), "--gt", str(big), "-o", str(tmp_path / "o"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "4 of 4 images are not 32x32" in lines[0] and "is 48x48" in lines[0]
    assert not (tmp_path / "o" / "summary.json").exists()


def test_models_of_different_sizes_are_refused(tiny_model, tmp_path, gt_dir):
    from glean_sr.config import GLEANConfig
    from glean_sr.models import GLEAN

    other = GLEAN(GLEANConfig(**{**TINY.__dict__, "in_size": 4})).eval()  # 4 -> 32, x8
    with pytest.raises(ConfigError, match=r"different sizes.*\(x4\).*\(x8\)"):
        evaluate([tiny_model, other], gt_dir, tmp_path / "o", progress=False)


@pytest.mark.slow
def test_missing_weights_are_named_never_skipped(tiny_model, tiny_model_dir, gt_dir, tmp_path):
    proc = run_cli(
        "eval", "-m", str(tiny_model_dir), "--gt", str(gt_dir), "-o", str(tmp_path / "cli"),
        "--metrics", "psnr,lpips",
    )  # fmt: skip
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "pass --lpips-weights FILE" in proc.stderr and "'lpips' Python package" in proc.stderr
    for metric, flag in (("fid", "--fid-weights"), ("arcface", "--arcface-weights")):
        with pytest.raises(GleanError, match=f"pass {flag} FILE"):
            opts = EvalOptions(metrics=("psnr", metric))
            evaluate([tiny_model], gt_dir, tmp_path / metric, options=opts, progress=False)
    with pytest.raises(GleanError, match="no such file"):
        opts = EvalOptions(metrics=("fid",), fid_weights=str(tmp_path / "nope.pth"))
        evaluate([tiny_model], gt_dir, tmp_path / "x", options=opts, progress=False)
    with pytest.raises(GleanError, match="NIQE needs images with at least two 96x96"):
        opts = EvalOptions(metrics=("psnr", "niqe"))
        evaluate([tiny_model], gt_dir, tmp_path / "n", options=opts, progress=False)
    assert not list(tmp_path.rglob("summary.json"))


def test_bad_files_are_reported_and_the_rest_scored(tiny_model, gt_dir, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(gt_dir, mixed)
    (mixed / "broken.png").write_bytes(b"not an image at all")
    good = (mixed / "0_astronaut.png").read_bytes()
    (mixed / "truncated.png").write_bytes(good[: len(good) // 2])
    summary = evaluate(
        [tiny_model], mixed, tmp_path / "o", options=EvalOptions(device="cpu"), progress=False
    )
    assert summary["num_images"] == len(CROPS)
    assert sorted(s["image"] for s in summary["skipped"]) == ["broken.png", "truncated.png"]
    assert all(s["reason"] for s in summary["skipped"])
    rows = _read_csv(tmp_path / "o" / "per_image.csv")
    assert {r["image"] for r in rows} == {p.name for p in gt_dir.iterdir()}


def test_existing_report_is_not_overwritten(tiny_model, gt_dir, tmp_path):
    opts = EvalOptions(device="cpu", report_images=0)
    evaluate([tiny_model], gt_dir, tmp_path, options=opts, progress=False)
    before = (tmp_path / "summary.json").read_text()
    with pytest.raises(GleanError, match="--overwrite"):
        evaluate([tiny_model], gt_dir, tmp_path, options=opts, progress=False)
    assert (tmp_path / "summary.json").read_text() == before
    opts = EvalOptions(device="cpu", report_images=0, overwrite=True)
    evaluate([tiny_model], gt_dir, tmp_path, options=opts, progress=False)


def test_identical_output_gives_infinite_psnr_as_null_in_json(gt_dir, tmp_path):
    """A model that returns the GT exactly (here: nearest up-sampling of a blocky GT)."""

    class Nearest(torch.nn.Module):
        in_size, out_size, scale = 8, 32, 4

        def forward(self, lq):
            return torch.nn.functional.interpolate(lq, scale_factor=4, mode="nearest")

    blocky = tmp_path / "blocky"
    blocky.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small.repeat(4, 0).repeat(4, 1)).save(blocky / f"{k}.png")
    lq_dir = tmp_path / "lq"
    lq_dir.mkdir()
    for k in range(2):
        big = np.asarray(Image.open(blocky / f"{k}.png"))
        Image.fromarray(big[::4, ::4]).save(lq_dir / f"{k}.png")
    summary = evaluate(
        [Nearest()], blocky, tmp_path / "o", lq_dir=lq_dir, options=EvalOptions(device="cpu"),
        progress=False,
    )  # fmt: skip
    assert summary["results"]["Nearest"]["psnr_rgb"] == float("inf")
    assert summary["results"]["Nearest"]["ssim_rgb"] == pytest.approx(1.0)
    on_disk = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert on_disk["results"]["Nearest"]["psnr_rgb"] is None
    assert on_disk["infinite_values"]["Nearest"] == {"psnr_rgb": 2}
    rows = _read_csv(tmp_path / "o" / "per_image.csv")
    assert {r["psnr_rgb"] for r in rows if r["method"] == "Nearest"} == {"inf"}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(report_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it; CI has it)")
    shot = tmp_path / "shot.png"
    width, height = 1200, 1000
    proc = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}", f"--window-size={width},{height}",
            (report_dir / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert img.shape == (height, width, 3)
    background = np.array([255, 255, 255])
    differs = np.abs(img - background).sum(axis=2) > 30
    assert differs.mean() > 0.05, "the page is (almost) blank"
    # the crops are drawn: the image row area holds many distinct colours, not just text
    colours = {tuple(p) for p in img[400:900:4, 0:1100:4].reshape(-1, 3)}
    assert len(colours) > 500, len(colours)
    # the summary table's header background (#e8eef7) is present
    assert (np.abs(img - np.array([0xE8, 0xEE, 0xF7])).sum(axis=2) <= 3).sum() > 500


@pytest.mark.slow
def test_eval_is_registered_in_cli_help():
    proc = run_cli("eval", "--help")
    assert proc.returncode == 0 and "--gt" in proc.stdout and "--crop-border" in proc.stdout


def test_models_from_training_runs_are_named_after_the_run(tmp_path):
    from glean_sr.evaluation.evaluate import _model_name

    taken: set[str] = set()
    for run in ("glean_4x", "nobank_4x"):
        for out in ("final", "best"):
            (tmp_path / run / out).mkdir(parents=True)
    names = [
        _model_name(str(tmp_path / "glean_4x" / "final"), taken),
        _model_name(str(tmp_path / "nobank_4x" / "final"), taken),
        _model_name(str(tmp_path / "glean_4x" / "best"), taken),
        _model_name(str(tmp_path / "glean_4x" / "final"), taken),
    ]
    assert names == ["glean_4x", "nobank_4x", "glean_4x-best", "glean_4x-2"]
