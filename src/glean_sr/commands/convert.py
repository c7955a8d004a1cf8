"""``glean-sr convert SRC DST_DIR``: any supported model source to a glean-sr model directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GleanError
from ..presets import DEMO_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a released .pth, state_dict or preset to config.json + model.safetensors",
    )
    p.add_argument(
        "source",
        help=f"preset name, weight file, model directory, URL or Hub repo ({DEMO_MODEL} is the "
        f"shipped demo)",
    )
    p.add_argument("output", help="directory to write (created if needed)")
    p.add_argument(
        "--dtype",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="storage type of the weights (fp16 halves the file; loading gives fp32 back)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing model there")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.pretrained import (
        CONFIG_NAME,
        WEIGHTS_NAME,
        build_resolved,
        provenance,
        resolve,
    )

    out = Path(args.output)
    existing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if (out / n).exists()]
    if existing and not args.overwrite:
        raise GleanError(f"{out} already holds a model ({', '.join(existing)}); pass --overwrite")
    if out.exists() and not out.is_dir():
        raise GleanError(f"{out} exists and is not a directory")
    import torch

    resolved = resolve(args.source)
    model = build_resolved(resolved)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    # where the weights came from: a converted copy of a preset's file stands for the preset
    # (-m preset=copy) while its tensors are the recorded ones
    origin = {k: v for k, v in provenance(resolved).items() if k != "preset"}
    model.save_pretrained(out, dtype=dtype, metadata=origin)
    counts = model.parameter_counts()
    print(f"wrote {out / CONFIG_NAME} and {out / WEIGHTS_NAME} ({counts['total']:,} parameters)")
    return 0
