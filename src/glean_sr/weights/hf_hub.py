"""Weights on the Hugging Face Hub, through ``huggingface_hub`` (the ``hub`` extra).

Three ways to name them, accepted wherever glean-sr takes a model or a bank:

* ``owner/repo`` or ``owner/repo@revision``: a glean-sr model repository (``config.json`` +
  ``model.safetensors`` + a model card), or a bank repository written by ``BankDir.save``;
* ``hf://owner/repo/path/file.pth`` or ``hf://owner/repo@revision/path/file.pth``: one file
  of any format glean-sr reads (a released ``.pth``, an NVIDIA ``.pkl``, a rosinality ``.pt``);
* ``hf://owner/repo`` (the same as ``owner/repo``).

A bare ``owner/repo`` means the Hub only when no such local path exists. Files land in the Hub's
own cache (``$HF_HUB_CACHE``, by default ``$HF_HOME/hub``), so other Hub tools share them;
``$HF_ENDPOINT`` points at a mirror and ``$HF_HUB_OFFLINE=1`` uses the cache alone. Every
failure is one :class:`~glean_sr.errors.DownloadError` line naming the repo, the file and the
way out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DownloadError, GleanError

HUB_EXTRA = "pip install 'glean-sr[hub]'"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<rev>[A-Za-z0-9._/-]+?))?$")
_URI = re.compile(
    rf"^hf://(?P<repo>{_PART}/{_PART})(?:@(?P<rev>[A-Za-z0-9._-]+))?(?:/(?P<path>.+))?$"
)


@dataclass(frozen=True)
class HubRef:
    """A repository on the Hub, at ``revision`` (None: the default branch), and optionally one
    file in it (``filename``, a path inside the repository)."""

    repo_id: str
    revision: str | None = None
    filename: str | None = None
    #: named as ``owner/repo`` without ``hf://``: it might have been meant as a local path
    bare: bool = False

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf://{self.repo_id}{rev}" + (f"/{self.filename}" if self.filename else "")


def parse_hub_source(text: str) -> HubRef | None:
    """The :class:`HubRef` ``text`` names, or None when it names no Hub repository.

    ``hf://`` always means the Hub; ``owner/repo[@revision]`` only when it is not a local path.
    """
    if text.startswith("hf://"):
        m = _URI.match(text)
        if m is None or (m["path"] is not None and (not m["path"] or ".." in m["path"].split("/"))):
            raise DownloadError(
                f"'{text}' is not a Hub address: write hf://owner/repo/path/to/file "
                f"(or hf://owner/repo@revision/path/to/file)"
            )
        return HubRef(m["repo"], m["rev"], m["path"])
    if Path(text).expanduser().exists() or text.startswith(("/", "./", "../", "~")):
        return None
    m = _REPO.match(text)
    return HubRef(m["repo"], m["rev"], bare=True) if m else None


def require_hub() -> Any:
    """The ``huggingface_hub`` module, or one line naming the extra that installs it."""
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
        import huggingface_hub.utils
    except ImportError:
        raise GleanError(
            f"loading from the Hugging Face Hub needs huggingface_hub: {HUB_EXTRA}"
        ) from None
    return huggingface_hub


def endpoint() -> str:
    return require_hub().constants.ENDPOINT


def offline() -> bool:
    return bool(require_hub().constants.HF_HUB_OFFLINE)


def cache_dir() -> str:
    return require_hub().constants.HF_HUB_CACHE


def _failure(exc: BaseException, ref: HubRef, filename: str) -> DownloadError:
    """One line for a failed Hub download: what was asked, what went wrong, the way out."""
    from huggingface_hub import errors as e

    at = f"{ref.repo_id}" + (f"@{ref.revision}" if ref.revision else "")
    local = "or pass a local copy of the file instead"
    if isinstance(exc, e.GatedRepoError):
        why = f"{at} is gated: accept its terms on the Hub and log in (hf auth login), {local}"
    elif isinstance(exc, e.RepositoryNotFoundError) and ref.bare:
        why = (
            f"'{at}' is neither a local file or folder nor a repository on {endpoint()} (a "
            f"private one needs hf auth login)"
        )
    elif isinstance(exc, e.RepositoryNotFoundError):
        why = (
            f"no repository {ref.repo_id} on {endpoint()} (or it is private: log in with "
            f"hf auth login); check the name, {local}"
        )
    elif isinstance(exc, e.RevisionNotFoundError):
        why = f"{ref.repo_id} has no revision '{ref.revision}'; name a branch, tag or commit it has"
    elif isinstance(exc, e.LocalEntryNotFoundError):
        if offline():
            why = (
                f"HF_HUB_OFFLINE is set and {filename} of {at} is not in the Hub cache "
                f"({cache_dir()}); run once with the network, or unset HF_HUB_OFFLINE"
            )
        else:
            why = (
                f"could not reach {endpoint()} and {filename} of {at} is not in the Hub cache "
                f"({cache_dir()}); check the network or HF_ENDPOINT, {local}"
            )
    elif isinstance(exc, e.EntryNotFoundError):
        why = f"{at} has no file {filename}"
    elif isinstance(exc, e.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        why = f"{endpoint()} answered HTTP {status} for {filename} of {at}; {local}"
    else:
        why = f"could not get {filename} of {at} ({type(exc).__name__}: {exc}); {local}"
    return DownloadError(why.replace("\n", " "))


def hub_file(
    ref: HubRef, filename: str | None = None, *, progress: bool = True, missing_ok: bool = False
) -> Path | None:
    """The local path of ``filename`` (default ``ref.filename``) of ``ref``, downloaded into the
    Hub cache the first time. ``missing_ok``: None when the repository has no such file."""
    hub = require_hub()
    name = filename or ref.filename
    if not name:
        raise ValueError("hub_file needs a file name")
    from .. import __version__

    if not progress:
        hub.utils.disable_progress_bars()
    try:
        path = hub.hf_hub_download(
            ref.repo_id,
            name,
            revision=ref.revision,
            library_name="glean-sr",
            library_version=__version__,
        )
    except hub.errors.EntryNotFoundError as exc:
        if missing_ok and not isinstance(exc, hub.errors.LocalEntryNotFoundError):
            return None
        raise _failure(exc, ref, name) from None
    except (OSError, ValueError, hub.errors.HfHubHTTPError) as exc:
        raise _failure(exc, ref, name) from None
    return Path(path)


def hub_directory(
    ref: HubRef, required: tuple[str, ...], optional: tuple[str, ...] = (), *, progress: bool = True
) -> Path:
    """Download ``required`` (and whichever of ``optional`` exist) of one commit of ``ref`` and
    return the snapshot folder holding them. The first file resolves the revision to a commit and
    the rest are taken at that commit, so that the files always belong together."""
    first = hub_file(ref, required[0], progress=progress)
    folder = first.parent  # <cache>/models--owner--repo/snapshots/<commit>/
    pinned = HubRef(ref.repo_id, folder.name, None, ref.bare)
    for name in required[1:]:
        hub_file(pinned, name, progress=progress)
    for name in optional:
        hub_file(pinned, name, progress=progress, missing_ok=True)
    return folder


__all__ = [
    "HUB_EXTRA",
    "HubRef",
    "cache_dir",
    "endpoint",
    "hub_directory",
    "hub_file",
    "offline",
    "parse_hub_source",
    "require_hub",
]
