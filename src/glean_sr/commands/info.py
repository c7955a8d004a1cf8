"""``glean-sr info PATH_OR_PRESET [--json]``: format, architecture, parameters and MACs."""

from __future__ import annotations

import argparse
import json

from ..presets import DEMO_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a model: format, architecture, parameters per part, MACs",
        description="Describe a model file, model directory or preset (a preset needs no "
        "download). MACs are for batch 1; see glean_sr.analysis for the two conventions.",
    )
    p.add_argument(
        "source",
        help=f"preset name, model directory, weight file, URL or Hub repo (owner/repo, "
        f"hf://owner/repo/file.pth; {DEMO_MODEL} is the shipped demo)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def run(args: argparse.Namespace) -> int:
    from ..analysis import ANY_SIZE_INPUT
    from ..weights.pretrained import describe

    info = describe(args.source)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    cfg = info["config"]
    print(f"source:     {info['source']}")
    print(f"format:     {info['format']}")
    channels = f"{cfg.get('img_channels')} channels"
    if info["model_type"] == "glean_colorizer":  # one size, L* in and RGB out
        size, channels = f"{cfg['out_size']} -> {cfg['out_size']}", "L* in, RGB out"
    elif "in_size" in cfg:
        size = f"{cfg['in_size']} -> {cfg['out_size']} (x{cfg['out_size'] // cfg['in_size']})"
    else:  # a model that takes any size (MACs at ANY_SIZE_INPUT px)
        size = f"x{cfg['scale']}, any size (MACs at {ANY_SIZE_INPUT} x {ANY_SIZE_INPUT} px in)"
    print(f"model:      {info['model_type']} {size}, {channels}")
    print("config:     " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "model_type"))
    params = info["params"]
    print("parameters: " + ", ".join(f"{k} {_millions(v)}" for k, v in params.items()))
    print(
        f"MACs:       {info['macs'] / 1e9:.2f} G all convolutions ({info['gflops']:.2f} GFLOPs); "
        f"{info['macs_modules'] / 1e9:.2f} G nn.Conv2d/nn.Linear only (the papers' convention)"
    )
    if info.get("preset"):
        print(
            f"preset:     {info['preset']}" + (f"  weights: {info['url']}" if info["url"] else "")
        )
    return 0
