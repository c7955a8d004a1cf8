"""``glean-sr train-glyph-classifier DATA_DIR -o OUT_DIR``: train the glyph classifier that
measures character accuracy and gives the features of a glyph-domain FID."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError
from .options import positive_int

#: the library's defaults (glean_sr.evaluation.glyph_classifier), repeated here so that building
#: the parser imports no torch
EPOCHS = 3
BATCH_SIZE = 128
LR = 3e-3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-glyph-classifier",
        help="train a glyph classifier (character accuracy, features for a glyph FID)",
        description="Train a small CNN that names 32x32 character glyphs on DATA_DIR/train.npz, "
        "keep the epoch with the best accuracy on DATA_DIR/val.npz and write it to OUT_DIR "
        "(config.json + model.safetensors). OUT_DIR is a feature network for a glyph-domain FID "
        "(train-bank's train.fid_network=OUT_DIR).",
    )
    p.add_argument("data_dir", help="folder with train.npz and val.npz (build-glyphs writes them)")
    p.add_argument("-o", "--output", required=True, help="folder for the trained classifier")
    p.add_argument(
        "--epochs", type=positive_int, default=EPOCHS, help=f"passes over the data ({EPOCHS})"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=BATCH_SIZE,
        help=f"glyphs per step ({BATCH_SIZE})",
    )
    p.add_argument("--lr", type=float, default=LR, help=f"peak learning rate ({LR:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and order (0)")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads (1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--no-augment", action="store_true", help="train on the glyphs as they are")
    p.add_argument("--quiet", action="store_true", help="no line per epoch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = Path(args.data_dir).expanduser()
    for name in ("train.npz", "val.npz"):
        if not (data / name).is_file():
            raise DataError(f"{data}: no {name} (glean-sr build-glyphs writes train/val/test.npz)")
    from ..evaluation.glyph_classifier import train_glyph_classifier

    summary = train_glyph_classifier(
        data / "train.npz",
        data / "val.npz",
        args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        augment=not args.no_augment,
        progress=not args.quiet,
    )
    print(
        f"val accuracy {summary['val_accuracy']:.4f} (epoch {summary['best_epoch']} of "
        f"{summary['epochs']}, {summary['val_glyphs']} glyphs) in {summary['seconds']:.0f} s; "
        f"classifier in {summary['out_dir']}"
    )
    return 0
