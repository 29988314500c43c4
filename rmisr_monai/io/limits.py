"""Size limits of inputs: a header's claimed voxels against its file and the free memory, before allocating.

A damaged or hostile header (a 400-byte NIfTI claiming 30000 x 30000 x 30000 voxels) must be refused in one line
instead of ending in a ``MemoryError`` or in swapping. :func:`check_claimed_size` compares the bytes the header
implies with what the file can hold (the data size itself for raw data; at most :data:`DEFLATE_MAX_RATIO` times the
compressed size, the most deflate can expand) and with the memory available (``MemAvailable`` of ``/proc/meminfo``
where the system reports it). Used by :mod:`rmisr_monai.io.read` and :mod:`rmisr_monai.io.dicom`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rmisr_monai.errors import InputFileError

__all__ = ["DEFLATE_MAX_RATIO", "available_memory", "check_claimed_size"]

# zlib's technical limit: deflate expands at most 1032:1 (zlib FAQ, "maximum compression factor")
DEFLATE_MAX_RATIO = 1032


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _human(n: float) -> str:
    """``1,999 bytes`` below 1 MiB, else ``1.5 GiB`` (binary units)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n):,} bytes"


def check_claimed_size(
    path: Path,
    shape: Sequence[int],
    itemsize: int,
    data_bytes: int | None,
    compressed: bool,
    memory_itemsize: int | None = None,
) -> None:
    """Refuse a header whose voxels cannot be in its file or in memory (module docstring), before allocating.

    Args:
        path: the file (named in the error).
        shape: the shape the header claims; ``itemsize``: bytes per voxel.
        data_bytes: bytes of the file that can hold the data (None: not checkable, e.g. a detached data file).
        compressed: whether the data are deflate-compressed (bound :data:`DEFLATE_MAX_RATIO` x ``data_bytes``).
        memory_itemsize: bytes per voxel of the array the reader allocates, when it is not ``itemsize`` (e.g. a
            float64 buffer for stored 16-bit values).

    Raises:
        InputFileError: naming the file, the claimed shape and what it does not fit.
    """
    claimed = int(np.prod([int(n) for n in shape], dtype=object)) * int(itemsize)
    dims = " x ".join(str(int(n)) for n in shape)
    if data_bytes is not None:
        room = data_bytes * (DEFLATE_MAX_RATIO if compressed else 1)
        if claimed > room:
            raise InputFileError(
                path,
                f"the header claims {dims} voxels ({_human(claimed)}) but the file holds only {_human(data_bytes)}"
                f"{' of compressed data' if compressed else ''}: truncated or corrupt header",
            )
    needed = claimed // max(1, int(itemsize)) * int(memory_itemsize or itemsize)
    free = available_memory()
    if free is not None and needed > free:
        raise InputFileError(
            path,
            f"the header claims {dims} voxels, {_human(needed)} in memory, more than the {_human(free)} free",
        )
