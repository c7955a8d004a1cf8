"""The conformance fixtures' weight-fill rule (tests/data/glean_conformance/fixture_rule.json),
implemented independently of glean_sr so tests can build reference-style files from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data"
#: Reference outputs of mmagic's GLEANStyleGANv2 for weights drawn by the fill rule below.
CONFORMANCE = DATA / "glean_conformance"
#: The full tensor layout (key, shape) of each released mmediting GLEAN checkpoint.
KEY_LAYOUTS = DATA / "glean_keys"


def read_keys(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """``key<TAB>shape[<TAB>...]`` lines; lines starting with '#' are comments."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        out.append((key, tuple(json.loads(shape))))
    return out


def fill_rule(key: str, shape: tuple[int, ...]) -> tuple[float, float] | None:
    """(mean, std) for ``key`` or None for kernel buffers (no draw), first match wins."""
    if key.endswith(".kernel"):
        return None
    if (
        key.endswith("weight_orig")
        or key == "generator.constant_input.input"
        or key.startswith("generator.injected_noise_")
    ):
        return 0.0, 1.0
    if key.endswith("style_modulation.bias"):
        return 1.0, 0.1
    if key.endswith(".weight") and len(shape) >= 2:
        return 0.0, 1.0 / math.sqrt(shape[1] * math.prod(shape[2:]))
    return 0.0, 0.1


def fill_state_dict(keys: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = taps[None, :] * taps[:, None] / 16
    sd = {}
    for key, shape in sorted(keys):
        rule = fill_rule(key, shape)
        if rule is None:
            sd[key] = kernel.clone()
            continue
        mean, std = rule
        sd[key] = torch.randn(shape, generator=g, dtype=torch.float32) * std + mean
    return sd


def fixture_meta(name: str) -> dict:
    rules = json.loads((CONFORMANCE / "fixture_rule.json").read_text())
    return rules["fixtures"][name]


def fixture_input(name: str) -> torch.Tensor:
    meta = fixture_meta(name)
    kw = meta["constructor_kwargs"]
    g = torch.Generator().manual_seed(meta["input_seed"])
    shape = (meta["batch"], 3, kw["in_size"], kw["in_size"])
    return torch.rand(shape, generator=g, dtype=torch.float32) * 2 - 1


def released_checkpoint(generator_sd: dict, extras: bool = True) -> dict:
    """A container laid out like mmediting's released files: {'meta', 'state_dict'} with the
    restorer's prefixes, including training-only discriminator/perceptual-loss tensors."""
    sd = {f"generator.{k}": v for k, v in generator_sd.items()}
    if extras:
        sd["discriminator.final_linear.1.bias"] = torch.zeros(1)
        sd["discriminator.convs.0.0.conv.weight_orig"] = torch.zeros(8, 3, 1, 1)
        sd["perceptual_loss.vgg.mean"] = torch.zeros(1, 3, 1, 1)
        sd["perceptual_loss.vgg.vgg_layers.0.weight"] = torch.zeros(64, 3, 3, 3)
    meta = {"mmedit_version": "0.8.0", "iter": 300000, "hook_msgs": {"last_ckpt": "x.pth"}}
    return {"meta": meta, "state_dict": sd}
