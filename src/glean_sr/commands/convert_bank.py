"""``glean-sr convert-bank SRC DST_DIR``: a StyleGAN2 or BigGAN file to a glean-sr bank
directory."""

from __future__ import annotations

import argparse

from . import bank_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-bank",
        help="convert a StyleGAN2 file (NVIDIA .pkl, rosinality .pt, mmagic .pth) or a BigGAN "
        "one (pytorch-pretrained-biggan folder, BigGAN-PyTorch G.pth) to a bank directory "
        "(config.json + safetensors, with the discriminator when present)",
    )
    p.add_argument("source", help="StyleGAN2 or BigGAN file or folder, bank preset name or URL")
    p.add_argument("output", help="directory to write (created if needed)")
    bank_options.add(p)
    p.add_argument("--overwrite", action="store_true", help="replace a bank already there")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.banks import check_bank_directory

    check_bank_directory(args.output, overwrite=args.overwrite)  # before the (long) load
    bank = bank_options.load(args)
    out = bank.save(args.output, overwrite=args.overwrite)
    print(f"wrote {out}: {bank.describe()}")
    return 0
