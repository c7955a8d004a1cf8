"""``glean-sr export-onnx MODEL OUT.onnx``: an ONNX graph of a model, checked with onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GleanError
from ..presets import DEMO_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a model to ONNX (dynamic batch) and check it against onnxruntime",
        description="Needs the onnx extra: pip install 'glean-sr[onnx]'. Input 'lq' [N, C, in, "
        "in] RGB in [-1, 1], output 'sr' [N, C, out, out].",
    )
    p.add_argument(
        "model",
        help=f"preset name, model directory, weight file, URL or Hub repo (owner/repo, "
        f"hf://owner/repo/file.pth; {DEMO_MODEL} is the shipped demo)",
    )
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, verify_onnx
    from ..weights.pretrained import load_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise GleanError(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise GleanError(f"{out.parent} is not a directory")
    model = load_model(args.model)
    export_onnx(model, out, opset=args.opset)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB; input lq [N, {model.img_channels}, {model.in_size}, "
          f"{model.in_size}], output sr [N, {model.img_channels}, {model.out_size}, "
          f"{model.out_size}])")  # fmt: skip
    if not args.no_verify:
        diff = verify_onnx(model, out)
        print(f"onnxruntime matches PyTorch: max abs difference {diff:.1e} on a batch of 2")
    return 0
