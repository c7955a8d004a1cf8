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


def _tile(text: str) -> int:
    value = positive_int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"expected an integer >= 16, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def outscale_type(text: str) -> float:
    """An ``argparse`` type: a final scale, a number in (0, 64]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 64:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 64], got {text!r}")
    return value


def add_tile_options(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--tile`` and ``--tile-pad`` for models that take any size (``what`` names them)."""
    p.add_argument(
        "--tile",
        type=_tile,
        default=None,
        metavar="N",
        help=f"run {what} in tiles of N x N input pixels, one batch of tiles on the device at a "
        "time, blended without seams (e.g. 256; default: the whole image at once)",
    )
    p.add_argument(
        "--tile-pad",
        type=_non_negative_int,
        default=10,
        metavar="P",
        help="pixels of context around each tile (default 10); tiles cross-fade over P pixels "
        "and equal the untiled result where the model's reach is at most P/2",
    )
