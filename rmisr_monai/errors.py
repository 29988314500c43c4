"""Project exception types.

Every error a user can cause is raised as a subclass of :class:`RmisrError` carrying the file (when there is one)
and the reason; the CLI prints it as one line on stderr and exits non-zero. ``str(error)`` speaks the words of the
Python API (argument names, ``overwrite=True``); where the ``rmisr`` command's words differ (its options,
``--overwrite``), the raiser also gives the message in them as ``cli``, and the CLI prints that instead.
"""

from __future__ import annotations

import os

__all__ = ["RmisrError", "InputFileError", "OutputFileError", "WeightsError", "ConfigurationError"]


class RmisrError(Exception):
    """Base class of all errors the project raises on purpose; ``cli``: the message in the CLI's words, if other."""

    def __init__(self, *args: object, cli: str | None = None) -> None:
        super().__init__(*args)
        self.cli = cli


class InputFileError(RmisrError):
    """An input file or folder cannot be used: ``InputFileError(path, reason)`` -> ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str, cli_reason: str | None = None):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}", cli=None if cli_reason is None else f"{self.path}: {cli_reason}")


class OutputFileError(RmisrError):
    """An output cannot be written (exists without overwrite, unknown format, disk full...)."""

    def __init__(self, path: str | os.PathLike, reason: str, cli_reason: str | None = None):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}", cli=None if cli_reason is None else f"{self.path}: {cli_reason}")


class WeightsError(RmisrError):
    """A weights file is missing, corrupt, or does not fit the requested network."""


class ConfigurationError(RmisrError, ValueError):
    """An option or argument has a value that cannot work (bad scale, unknown network name...)."""
