"""Errors that reach the user as one line.

Every error glean-sr raises on purpose derives from :class:`GleanError`. Its message is a single
line that names the problem and, where there is one, the fix. The command-line interface prints
exactly that line (no traceback) and exits with a non-zero status.
"""

from __future__ import annotations


class GleanError(Exception):
    """Base class of all deliberate glean-sr errors (one-line, user-facing message)."""


class WeightsError(GleanError):
    """A weight file is missing, unreadable, unsafe or does not fit the expected architecture."""


class DownloadError(GleanError):
    """Weights could not be downloaded or failed verification."""


class ConfigError(GleanError, ValueError):
    """A configuration value is invalid."""


class ImageError(GleanError):
    """An input image cannot be read or does not satisfy the model's input contract."""


class DataError(GleanError):
    """A training or evaluation data set is missing, empty or does not fit the model."""


class MissingDependencyError(GleanError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_extra(package: str, extra: str) -> MissingDependencyError:
    """Build the error raised when an optional dependency is absent."""
    return MissingDependencyError(
        f"this feature needs the optional package '{package}': "
        f"install it with  pip install 'glean-sr[{extra}]'"
    )
