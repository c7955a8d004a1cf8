"""The ``glean-sr`` command: argument parsing and error reporting only.

Each subcommand lives in ``glean_sr.commands.<name>`` with ``register(subparsers)``; the work
itself is done by library functions. Errors reach the user as one line, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from . import __version__
from .errors import GleanError

#: subcommand modules, in the order ``--help`` lists them
COMMANDS = [
    "upscale",
    "faces",
    "colorize",
    "retouch",
    "eval",
    "serve",
    "info",
    "convert",
    "publish",
    "convert-bank",
    "sample-bank",
    "train-bank",
    "prepare",
    "build-glyphs",
    "train",
    "train-glyph-classifier",
    "export-onnx",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glean-sr",
        description="Large-factor image restoration with generative latent banks (GLEAN).",
    )
    parser.add_argument("--version", action="version", version=f"glean-sr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"glean_sr.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # positionals after an option (`train RECIPE --resume key=value`) arrive as extras; a
    # subcommand that takes a list of them names it in `extra_positionals`
    target = getattr(args, "extra_positionals", None)
    if extra and (target is None or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, target, [*getattr(args, target), *extra])
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GleanError as exc:
        if args.debug:
            raise
        print(f"glean-sr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"glean-sr {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if args.debug or exc.errno not in _ENVIRONMENT_ERRNOS:
            if args.debug:
                raise
            return _internal_error(args.command, exc)
        # the machine's state, not a bug: a full disk, a read-only or forbidden folder
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"glean-sr {args.command}: error: {where}{exc.strerror}; "
            f"{_ENVIRONMENT_ERRNOS[exc.errno]}",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # a bug: still one line unless --debug
        if args.debug:
            raise
        return _internal_error(args.command, exc)


_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free some space or write somewhere else (files are written under a "
    "temporary name and renamed when complete, so finished files are intact)",
    errno.EDQUOT: "the disk quota is used up; free some space or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "check its permissions, or choose another file or folder",
    errno.EPERM: "check its permissions, or choose another file or folder",
}


def _internal_error(command: str, exc: BaseException) -> int:
    print(
        f"glean-sr {command}: internal error: {type(exc).__name__}: {exc} "
        f"(run with --debug for details and please report it)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
