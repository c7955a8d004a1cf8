"""Process-wide settings that only take effect when a process starts (glibc's malloc tunables).

Kept free of heavy imports (no torch, no ctypes): the ``glean-sr`` command consults it before
anything else is loaded. Why the setting matters: :mod:`glean_sr.models.heap`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

#: the glibc tunable that switches the per-thread caches of small freed blocks off
TCACHE_OFF = "glibc.malloc.tcache_count=0"


def lean_heap_environ(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``environ`` (default: this process's) with :data:`TCACHE_OFF` added to
    ``GLIBC_TUNABLES``, for a process whose heap should stay compact while it reuses freed
    memory (:func:`glean_sr.models.heap.reuse_freed_memory`); ``None`` when there is nothing to
    add: not glibc, a ``tcache_count`` already set (the user's choice stands), or
    ``GLEAN_SR_REUSE_HEAP=0`` (heap reuse, and with it this, switched off).
    """
    env = dict(os.environ if environ is None else environ)
    if not heap_reuse_enabled(env) or not is_glibc():
        return None
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.tcache_count" in tunables:
        return None
    env["GLIBC_TUNABLES"] = f"{tunables}:{TCACHE_OFF}" if tunables else TCACHE_OFF
    return env


def rerun_with_lean_heap(argv: Sequence[str] | None = None) -> None:
    """Replace this process with the same command (``sys.orig_argv``: interpreter options,
    ``-m`` or script, arguments) run with :func:`lean_heap_environ`; returns without doing
    anything when that is ``None`` (also in the re-run process itself, which has the tunable)
    or when the process cannot be started again (it then goes on with glibc's defaults).

    Call it first thing, before torch is imported: everything done before is done twice.
    """
    env = lean_heap_environ()
    command = list(sys.orig_argv if argv is None else argv)
    if env is None or not command or not sys.executable:  # (embedded interpreters have neither)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, env)
    except OSError:  # could not start it again: go on as started, with glibc's defaults
        return


def heap_reuse_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``GLEAN_SR_REUSE_HEAP=0`` is set (in ``environ``, default this process's):
    the one switch for :func:`glean_sr.models.heap.reuse_freed_memory` and the tunable here."""
    env = os.environ if environ is None else environ
    return env.get("GLEAN_SR_REUSE_HEAP", "1") != "0"


def is_glibc() -> bool:
    """Whether this process runs on glibc (Linux with the GNU C library)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # not POSIX, or a C library without it
        return False
