"""Atomic writes: an output appears whole or not at all, and an existing output is replaced only on request.

Permissions: the temporary file (``mkstemp``: 0600) or folder (``mkdtemp``: 0700) gets, just before it is renamed,
the mode a plain ``open`` / ``mkdir`` would have given under the process's umask (0644 / 0755 under umask 022), so
that colleagues and pipelines running as other users can read the results; an existing output replaced with
``overwrite`` keeps its own mode.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rmisr_monai.errors import OutputFileError

__all__ = ["atomic_output", "check_output_path", "current_umask"]

_TEMP_PREFIX = ".rmisr-tmp-"
_FILE_MODE, _DIR_MODE = 0o666, 0o777  # what open() and mkdir() ask for before the umask
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask: from ``/proc/self/status`` where Linux reports it, else by setting and restoring it
    (under a lock, so that concurrent writers of this module never see the temporary value)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _final_mode(path: Path, is_dir: bool) -> int:
    """The mode of the finished output: the existing output's when one is replaced, else the umask default."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return (_DIR_MODE if is_dir else _FILE_MODE) & ~current_umask()


def check_output_path(path: str | os.PathLike, *, overwrite: bool) -> None:
    """Refuse an output before any work is done: it exists and ``overwrite`` is false, or its folder is missing or
    not writable.

    Raises:
        OutputFileError: naming the path and the reason.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputFileError(
            path,
            "output already exists (overwrite=True replaces it)",
            "output already exists (--overwrite replaces it)",
        )
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputFileError(path, f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFileError(path, f"output folder {parent} is not writable")


def _check_replaceable(path: Path, is_dir: bool) -> None:
    """An existing output may only be replaced by the same kind; a folder only when it holds no sub-folder (so a
    mistyped path such as a home folder is never deleted)."""
    if not path.exists():
        return
    if is_dir != path.is_dir():
        kind = "a folder" if path.is_dir() else "a file"
        raise OutputFileError(path, f"output exists and is {kind}; refusing to replace it")
    if is_dir and any(child.is_dir() for child in path.iterdir()):
        raise OutputFileError(path, "output folder holds sub-folders; refusing to replace it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(
    path: str | os.PathLike, *, overwrite: bool = False, is_dir: bool = False, suffix: str | None = None
) -> Iterator[Path]:
    """Write to a temporary file (or folder, ``is_dir=True``) in the target folder and move it onto ``path`` when
    the ``with`` body succeeds.

    On any exception (``KeyboardInterrupt`` and ``OSError(ENOSPC)`` included) the temporary output is removed, an
    existing output is left untouched and the exception propagates. The temporary name ends with ``suffix``
    (default: the target's, e.g. ``.nii.gz``) so that suffix-driven writers pick the right format.

    Raises:
        OutputFileError: the output exists without ``overwrite``, is of the other kind (file/folder), or its folder
            is missing -- before anything is written; or the final move fails.
    """
    path = Path(path)
    check_output_path(path, overwrite=overwrite)
    _check_replaceable(path, is_dir)
    if suffix is None:
        suffix = "".join(path.suffixes[-2:]) if not is_dir else ""
    parent = path.absolute().parent
    if is_dir:
        temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=parent))
    else:
        handle, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=suffix, dir=parent)
        os.close(handle)
        temp = Path(name)
    try:
        yield temp
        _replace(temp, path, is_dir)
    except BaseException:
        _remove(temp)
        raise


def _replace(temp: Path, path: Path, is_dir: bool) -> None:
    """Give ``temp`` its final mode and move it onto ``path``; a folder cannot be renamed over a non-empty folder,
    so an old one is moved aside first and restored if the move fails."""
    os.chmod(temp, _final_mode(path, is_dir))
    if not is_dir or not path.exists():
        try:
            os.replace(temp, path)
        except OSError as exc:
            raise OutputFileError(path, f"cannot move the finished output into place: {exc.strerror}") from exc
        return
    backup = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX + "old-", dir=path.absolute().parent))
    backup.rmdir()
    os.replace(path, backup)
    try:
        os.replace(temp, path)
    except OSError as exc:
        os.replace(backup, path)
        raise OutputFileError(path, f"cannot move the finished output into place: {exc.strerror}") from exc
    shutil.rmtree(backup, ignore_errors=True)
