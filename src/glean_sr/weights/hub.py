"""Download-once cache for weight files, verified by SHA-256 and written atomically.

The cache directory is ``$GLEAN_SR_CACHE`` if set, else ``$XDG_CACHE_HOME/glean_sr``, else
``~/.cache/glean_sr``. ``$GLEAN_SR_MIRROR`` replaces the ``scheme://host/`` part of every URL (a
local mirror or a server on 127.0.0.1); ``$GLEAN_SR_OFFLINE=1`` forbids network access.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import DownloadError

_CHUNK = 1 << 20


def cache_dir() -> Path:
    env = os.environ.get("GLEAN_SR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "glean_sr"


def resolve_url(url: str) -> str:
    """Apply ``$GLEAN_SR_MIRROR`` (if set) to ``url``."""
    mirror = os.environ.get("GLEAN_SR_MIRROR")
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return mirror.rstrip("/") + "/" + parts.path.lstrip("/")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _is_verified(path: Path, sha256_prefix: str | None) -> bool:
    """A cached file counts as verified when its sidecar records its size, mtime and hash."""
    marker = _verified_marker(path)
    if not marker.is_file():
        return False
    try:
        digest, size, mtime = marker.read_text().split()
    except ValueError:
        return False
    st = path.stat()
    if int(size) != st.st_size or int(mtime) != st.st_mtime_ns:
        return False
    return sha256_prefix is None or digest.startswith(sha256_prefix)


def _write_marker(path: Path, digest: str) -> None:
    st = path.stat()
    marker = _verified_marker(path)
    tmp = marker.with_name(marker.name + f".tmp{os.getpid()}")
    tmp.write_text(f"{digest} {st.st_size} {st.st_mtime_ns}\n")
    os.replace(tmp, marker)


def download(
    url: str,
    *,
    sha256_prefix: str | None = None,
    filename: str | None = None,
    progress: bool = True,
    what: str | None = None,
) -> Path:
    """Return the cached file for ``url``, downloading and verifying it the first time.

    A file already in the cache is re-hashed once when it has no verification record. The
    download goes to a temporary file in the cache directory and is renamed into place only after
    its SHA-256 matched ``sha256_prefix``, so an interrupted download never leaves a bad file.
    """
    name = filename or Path(urllib.parse.urlsplit(url).path).name
    if not name:
        raise DownloadError(f"cannot derive a file name from the URL {url}")
    target = cache_dir() / name
    label = what or name
    if target.is_file():
        if _is_verified(target, sha256_prefix):
            return target
        digest = sha256_file(target)
        if sha256_prefix is None or digest.startswith(sha256_prefix):
            _write_marker(target, digest)
            return target
        target.unlink()  # a corrupt cached copy: fetch it again

    real_url = resolve_url(url)
    how_to_avoid = (
        f"download {real_url} yourself and pass the local file path instead of '{label}' "
        f"(or place it in {cache_dir()})"
    )
    if os.environ.get("GLEAN_SR_OFFLINE", "") not in ("", "0"):
        raise DownloadError(f"{label} is not cached and GLEAN_SR_OFFLINE is set: {how_to_avoid}")

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        try:
            response = urllib.request.urlopen(real_url, timeout=60)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"could not download {label} ({reason}): {how_to_avoid}") from None
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}")
        with response, os.fdopen(fd, "wb") as out:
            fd = -1
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        digest = h.hexdigest()
        if sha256_prefix is not None and not digest.startswith(sha256_prefix):
            raise DownloadError(
                f"{label}: downloaded file's SHA-256 {digest[:8]}... does not match the expected "
                f"{sha256_prefix}; the download was corrupted or the server sent another file"
            )
        os.replace(tmp, target)
        _write_marker(target, digest)
        return target
    except OSError as exc:
        raise DownloadError(f"could not write {target} ({exc}): {how_to_avoid}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()
