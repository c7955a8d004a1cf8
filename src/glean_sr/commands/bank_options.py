"""Options shared by the commands that read a StyleGAN2 bank (not a subcommand itself)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the EMA generator (--ema) or the raw one (--no-ema); default: the EMA one "
        "when the file has it",
    )
    p.add_argument(
        "--channel-order",
        choices=["rgb", "bgr"],
        default=None,
        help="the channel order of the file's images, where the format does not fix it "
        "(mmagic trains on BGR by default); a BGR bank is converted to RGB",
    )


def load(args: argparse.Namespace, device: str = "cpu") -> Any:
    """Load the bank the arguments name; notes go to stderr, one line each."""
    from ..weights.banks import load_bank

    bank = load_bank(args.source, ema=args.ema, channel_order=args.channel_order, device=device)
    for note in bank.notes:
        print(f"note: {note}", file=sys.stderr)
    return bank
