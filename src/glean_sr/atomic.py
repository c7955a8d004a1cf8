"""Atomic file writes: a reader never sees a half-written file under its final name."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then move it into place.

    With ``overwrite=False`` an existing ``path`` is never replaced: the file is put in place with
    a hard link, which fails atomically if the name exists (so two writers racing for one name
    cannot clobber each other), and :class:`FileExistsError` is raised. On file systems without
    hard links the existence check and the rename are two steps.
    """
    with atomic_writer(path, overwrite=overwrite) as f:
        f.write(data)
    return Path(path)


@contextmanager
def atomic_writer(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s contents into piece by piece (a streamed image): a
    temporary file next to ``path`` that is synced and moved into place when the block ends,
    and removed if it raises. ``overwrite`` as in :func:`atomic_write_bytes`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError as exc:  # no hard links here (e.g. FAT, some network shares)
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                if path.exists():
                    raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_interrupted_writes(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writes of ``path`` killed midway left next to it
    (``.NAME.*.tmp`` of :func:`atomic_write_bytes`, ``NAME.*.tmp`` of training checkpoints);
    called when a command starts writing that target again. Returns what it removed."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    removed = []
    for pattern in (f"{target.name}.*.tmp", f".{target.name}.*.tmp"):
        for stale in target.parent.glob(pattern):
            try:
                stale.unlink()
            except FileNotFoundError:  # another process of the same run got there first
                continue
            removed.append(stale)
    return sorted(removed)
