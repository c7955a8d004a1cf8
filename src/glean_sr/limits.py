"""What an untrusted file may declare before glean-sr refuses it.

A small file can describe a huge amount of work: a zip entry that inflates a thousandfold, a
safetensors header or pickle that declares gigabytes of tensors, a ``config.json`` with a million
blocks, a PNG header of 9000 x 9000 pixels. Each of these declarations is checked against a
budget before anything is decompressed, allocated, built or decoded. The defaults are a few
times what the largest known model or a large photo needs; an environment variable changes
each of them:

==============================  ====================================================  ===========
variable                        what it bounds                                        default
==============================  ====================================================  ===========
``GLEAN_SR_MAX_WEIGHTS_BYTES``  bytes of tensors a weight file declares (the          4 GiB
                                released GLEAN 1024 px files hold 0.8-1.1 GB)
``GLEAN_SR_MAX_PARAMS``         parameters a model config describes (the largest      1e9
                                preset has 176 M)
``GLEAN_SR_MAX_PIXELS``         width x height of an image file (``--max-pixels``     2 ** 26
                                overrides it per command)                             (8192 x 8192)
==============================  ====================================================  ===========

JSON read from files (``config.json``, safetensors headers and metadata) is parsed by
:func:`loads_json`, which refuses nesting deeper than :data:`MAX_JSON_DEPTH` instead of letting
the parser recurse until Python gives up.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from .errors import ConfigError

DEFAULT_MAX_WEIGHTS_BYTES = 4 << 30
DEFAULT_MAX_PARAMS = 1_000_000_000
DEFAULT_MAX_PIXELS = 1 << 26

#: Deepest nesting :func:`loads_json` reads; glean-sr's own files nest at most 3 levels.
MAX_JSON_DEPTH = 64


def _from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {text!r}")
    return value


def max_weights_bytes() -> int:
    """Bytes of tensor data one weight file may declare (``GLEAN_SR_MAX_WEIGHTS_BYTES``)."""
    return _from_env("GLEAN_SR_MAX_WEIGHTS_BYTES", DEFAULT_MAX_WEIGHTS_BYTES)


def max_params() -> int:
    """Parameters one model config may describe (``GLEAN_SR_MAX_PARAMS``)."""
    return _from_env("GLEAN_SR_MAX_PARAMS", DEFAULT_MAX_PARAMS)


def max_pixels() -> int:
    """Width x height one image file may have (``GLEAN_SR_MAX_PIXELS``)."""
    return _from_env("GLEAN_SR_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def format_bytes(n: int) -> str:
    """``n`` bytes in words: ``512 B``, ``3.0 MiB``, ``16.0 GiB``, ``over 1 EiB``."""
    if n < 1024:
        return f"{n} B"
    if n >= 1 << 60:
        return "over 1 EiB"  # a declaration, not a file: its exact size says nothing more
    power = (n.bit_length() - 1) // 10  # 1 for KiB .. 5 for PiB
    return f"{n / 1024**power:.1f} {('KiB', 'MiB', 'GiB', 'TiB', 'PiB')[power - 1]}"


def over_weights_budget(declared: int) -> str:
    """The end of a refusal, after "declare": the declared size, the budget, how to raise it."""
    return (
        f"{format_bytes(declared)}, more than the budget of {format_bytes(max_weights_bytes())} "
        f"(set GLEAN_SR_MAX_WEIGHTS_BYTES to raise it if you trust the file)"
    )


class JSONLimitError(json.JSONDecodeError):
    """JSON that :func:`loads_json` does not read (too deeply nested, a number too long); a
    ``JSONDecodeError``, so every reader that reports invalid JSON reports this too."""

    def __init__(self, reason: str, doc: str):
        super().__init__(reason, doc, 0)
        self.args = (reason,)  # the reason alone: a position would say nothing here


#: A JSON string (escapes included) and a bracket; strings are removed before brackets count.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def loads_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for text from a file: nesting deeper than ``max_depth`` is refused before
    the parser runs (it would recurse once per level), and so is a number too long for Python to
    convert, both as :class:`JSONLimitError`.

    Raises:
        json.JSONDecodeError: the text is not JSON, or nests too deeply.
        UnicodeDecodeError: ``text`` is bytes that are not UTF-8, -16 or -32.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > max_depth:
            raise JSONLimitError(f"nested deeper than {max_depth} levels", text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise JSONLimitError(str(exc).split(":")[0], text) from None


__all__ = [
    "MAX_JSON_DEPTH",
    "JSONLimitError",
    "format_bytes",
    "loads_json",
    "max_params",
    "max_pixels",
    "max_weights_bytes",
    "over_weights_budget",
]
