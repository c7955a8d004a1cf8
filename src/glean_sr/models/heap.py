"""How CPU inference uses the C heap (glibc only; elsewhere every function here does nothing).

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks over its mmap threshold (at most
32 MB) with fresh ``mmap`` calls and unmaps them on ``free``, so every large activation is new
memory: the kernel faults it in page by page and zeroes it before the convolution that writes it
can run. GLEAN 64 -> 1024 faulted in about 1 GB that way per image (about 250 000 page faults;
a 64-channel convolution over a 1024 x 130 band took 29.5 ms on fresh memory and 21 ms on
memory already mapped, on the 2-core machine this project is developed on).

:func:`reuse_freed_memory` makes glibc take every block from its heap and keep freed blocks
there, so each image's activations reuse the pages of the last one's: no page faults after the
first image. The price is fragmentation: the heap holds the largest working set plus the gaps
between blocks, 100-250 MB more peak RSS than the working set alone, depending on the process's
allocation history. Without it, :func:`release_free_memory` hands free heap pages back before
the largest stages.

Most of those gaps are made by glibc's per-thread caches of small freed blocks ("tcache", up to
seven blocks of each size under 1 KB per thread): the heap counts a cached block as in use, so
one left inside a freed 64 MB region keeps the region from serving the next 64 MB request, and
the heap grows instead. The cache can only be switched off when a process starts
(``GLIBC_TUNABLES=glibc.malloc.tcache_count=0``): :func:`glean_sr.process.lean_heap_environ`
gives that environment, and the ``glean-sr`` inference commands re-run themselves with it
once. GLEAN 64 -> 1024 on 2 cores: peak RSS 1326-1545 MiB with the cache, 1278-1407 MiB without
it, at the same speed (benchmarks/README.md).
"""

from __future__ import annotations

import ctypes
from typing import Any

from torch import Tensor

from ..process import heap_reuse_enabled
from . import ops

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_libc: Any = None
_reusing = False


def _glibc() -> Any:
    """glibc's handle, or ``False`` on other C libraries (macOS, Windows, musl)."""
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.malloc_trim, libc.mallopt, libc.gnu_get_libc_version  # noqa: B018 (glibc only)
            _libc = libc
        except (OSError, AttributeError):
            _libc = False
    return _libc


def reuse_freed_memory() -> bool:
    """Keep freed memory in this process's heap for reuse instead of unmapping it.

    Process-wide and for the rest of the process (``mallopt(M_MMAP_MAX, 0)``: no block gets its
    own mapping; ``M_TRIM_THRESHOLD`` 1 GiB: the heap's free top is not handed back by itself).
    :class:`glean_sr.Upscaler` calls it for CPU devices; call it yourself before running the
    networks directly. ``GLEAN_SR_REUSE_HEAP=0`` in the environment switches it off. Returns
    whether it took effect (glibc only).

    glean_ffhq_16x, fp32, one image at a time on 2 cores: about 2.05 s -> 1.85 s per image; peak
    RSS about 1.3 GiB either way when the process runs with glibc's small-block caches off (see
    above; with them, up to 1.5 GiB). benchmarks/README.md has the measured ranges.
    """
    global _reusing
    libc = _glibc()
    if not libc or not heap_reuse_enabled():
        return False
    if not _reusing:
        _reusing = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        )
    return _reusing


def release_free_memory(x: Tensor) -> None:
    """Hand free heap pages back to the OS (``malloc_trim(0)``; CPU tensors, glibc only), before
    a stage whose activations are larger than anything before it.

    The coarse stages leave many mid-sized blocks free in the heap; without this they would stay
    resident while the 512-1024 px stages allocate beyond them (about 50 MB more peak RSS for
    GLEAN 64 -> 1024, measured with its banded decoder). It takes well under a millisecond.
    """
    if x.device.type != "cpu" or not ops.fast_paths_enabled() or _reusing:
        return  # (kept memory is there to be reused: handing it back would fault it in again)
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
