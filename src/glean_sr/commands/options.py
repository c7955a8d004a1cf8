"""Argument types and options shared by the restoring commands (not a subcommand itself)."""

from __future__ import annotations

import argparse

from ..inference import PRECISION_NAMES


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_device_options(p: argparse.ArgumentParser, *, batch_size: int, unit: str) -> None:
    """``--device``, ``--precision``, ``--batch-size`` and ``--plain``."""
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        default="fp32",
        help="fp32 (default), bf16 (fast on GPUs and recent CPUs) or fp16 (fast on GPUs)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"{unit} per forward pass (default {batch_size})",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="run the networks' plain definition on the CPU instead of the fast path "
        "(same results to float rounding; slower, more memory)",
    )
