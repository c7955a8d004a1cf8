"""Shared pieces of the training tests: a tiny GLEAN, a StyleGAN2 bank file in the mmagic layout,
small image sets cut from scikit-image's bundled photos, and recipe writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from conftest import set_noise_strengths
from glean_sr.config import (
    GLEANConfig,
    StyleGAN2Config,
    StyleGAN2DiscriminatorConfig,
    config_to_dict,
)
from glean_sr.data.imresize import imresize
from glean_sr.models.discriminator import StyleGAN2Discriminator
from glean_sr.models.stylegan2 import StyleGAN2Generator
from glean_sr.training.recipe import dump_toml

#: GLEAN 8 -> 16: every kind of part (RRDB, 2 fusions, 1 bank feature, decoder) at a size a
#: 2-core CPU trains at a few steps per second (StyleGAN2 keeps 512 channels up to 32 px).
TRAIN_TINY = GLEANConfig(
    in_size=8, out_size=16, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2
)


#: torchvision's vgg16 state_dict, written out from Simonyan & Zisserman's configuration D:
#: index of each 3x3 conv in ``features`` -> (out, in) channels; then the classifier
TORCHVISION_CONVS = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
    14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512),
    26: (512, 512), 28: (512, 512),
}  # fmt: skip
TORCHVISION_CLASSIFIER = (0, 3, 6)


def torchvision_layout_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights in the key layout of torchvision's vgg16-397923af.pth (the real
    ImageNet file cannot be downloaded here)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (out_c, in_c) in TORCHVISION_CONVS.items():
        # He scaling keeps activations O(1) through the ReLUs, as trained weights do
        std = (2 / (in_c * 9)) ** 0.5
        sd[f"features.{i}.weight"] = torch.randn(out_c, in_c, 3, 3, generator=g) * std
        sd[f"features.{i}.bias"] = torch.randn(out_c, generator=g) * 0.1
    for i in TORCHVISION_CLASSIFIER:  # present, as in the real file; unused (kept tiny here)
        sd[f"classifier.{i}.weight"] = torch.zeros(1, 1)
        sd[f"classifier.{i}.bias"] = torch.zeros(1)
    return sd


def write_bank_file(
    path: Path, config: StyleGAN2Config = TRAIN_TINY.bank, *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A StyleGAN2 file as OpenMMLab's converted official weights are laid out:
    ``{"state_dict": {"generator_ema.*", "discriminator.*"}}``. Returns the bank's state_dict."""
    torch.manual_seed(seed)
    bank = set_noise_strengths(StyleGAN2Generator(config), 0.1)  # live noise, as trained files
    disc = StyleGAN2Discriminator(StyleGAN2DiscriminatorConfig(resolution=config.resolution))
    sd = {f"generator_ema.{k}": v for k, v in bank.state_dict().items()}
    sd.update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    torch.save({"meta": {"note": "test bank"}, "state_dict": sd}, path)
    return bank.state_dict()


def _crops(rng: np.random.Generator, count: int, size: int) -> list[np.ndarray]:
    """``count`` square crops of scikit-image's bundled colour photos, resized to ``size``."""
    import skimage.data as data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    out = []
    for i in range(count):
        img = photos[i % len(photos)]
        side = int(rng.integers(96, min(img.shape[:2]) + 1))
        y = int(rng.integers(0, img.shape[0] - side + 1))
        x = int(rng.integers(0, img.shape[1] - side + 1))
        crop = np.ascontiguousarray(img[y : y + side, x : x + side, :3])
        out.append(imresize(crop, size=(size, size)))
    return out


def make_image_set(
    root: Path, count: int, *, gt_size: int, lq_size: int, seed: int, meta: bool = False
) -> dict[str, str]:
    """GT PNGs and their MATLAB-bicubic LQ PNGs (``root/GT``, ``root/LQ``); returns the paths."""
    gt_dir, lq_dir = root / "GT", root / "LQ"
    gt_dir.mkdir(parents=True)
    lq_dir.mkdir()
    rng = np.random.default_rng(seed)
    names = []
    for i, gt in enumerate(_crops(rng, count, gt_size)):
        name = f"{i:04d}.png"
        Image.fromarray(gt).save(gt_dir / name)
        Image.fromarray(imresize(gt, size=(lq_size, lq_size))).save(lq_dir / name)
        names.append(name)
    out = {"gt_dir": str(gt_dir), "lq_dir": str(lq_dir)}
    if meta:
        (root / "meta.txt").write_text(
            "".join(f"{n} ({gt_size},{gt_size},3)\n" for n in names), encoding="utf-8"
        )
        out["meta_file"] = str(root / "meta.txt")
    return out


def tiny_recipe_dict(
    tmp: Path, *, bank: Path, train_set: dict, val_set: dict | None, **sections: dict
) -> dict[str, Any]:
    """A recipe for :data:`TRAIN_TINY`; ``sections`` update its tables (``train={...}``)."""
    cfg = config_to_dict(TRAIN_TINY)
    cfg.pop("model_type")
    data: dict[str, Any] = {
        "name": "tiny",
        "out_dir": str(tmp / "run"),
        "seed": 0,
        "model": {"type": "glean", **cfg},
        "bank": {"source": str(bank), "channel_order": "rgb"},
        "data": {**train_set, "num_workers": 0},
        "val": {**(val_set or {}), "interval": 1000},
        "loss": {"perceptual_weight": 0.0},
        "optim": {"total_steps": 1000},
        "train": {
            "batch_size": 4,
            "log_interval": 1,
            "checkpoint_interval": 1000,
            "tensorboard": False,
            "progress_bar": False,
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def write_recipe(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    lines = (Path(out_dir) / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def train_losses(events: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per step, the logged losses of the *last* segment that logged that step."""
    out: dict[int, dict[str, float]] = {}
    for e in events:
        if e["event"] == "train":
            out[e["step"]] = {k: v for k, v in e.items() if k.startswith("loss_")}
    return out
