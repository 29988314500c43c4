"""Keep freed memory in the process on Linux/glibc, so that large CPU activations are not page-faulted anew.

glibc ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB at first, adaptive up to 32 MiB) with a fresh
``mmap`` and gives them back with ``munmap``; a network layer's output map (64 x 512 x 512 float32 = 64 MiB) is such
a block, so every layer of every slice pays a page fault per 4 KiB page of its output (sys time, ~40 % of a 512^2
RMISR-BL forward on 2 cores, benchmarks/RESULTS.md §9). Raising the mmap threshold and the trim threshold with
``mallopt`` keeps those pages mapped in the heap and reuses them: the forward pass runs 1.6x faster. Freed pages
stay resident until the process ends, so the resident peak is that of the live tensors plus what the heap cannot
reuse; one arena for all threads (``M_ARENA_MAX = 1``: the engine's writer thread would otherwise keep a heap of
its own) holds that to ~100 MiB on the 20-slice CT of benchmarks/RESULTS.md §9, within the memory target. Elsewhere
(musl, macOS, Windows) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

__all__ = ["keep_freed_memory", "KEEP_FREED_MEMORY_ENV"]

# set to 0 to leave the C allocator as it is
KEEP_FREED_MEMORY_ENV = "RMISR_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD_BYTES = 1 << 30  # blocks below 1 GiB come from the heap
_TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # never give the heap's top back

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (module docstring); ``True`` when they were set."""
    if not sys.platform.startswith("linux") or os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_ARENA_MAX, 1)  # threads started from now on share the main heap
    done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )
    logger.debug("glibc malloc keeps freed memory: %s", done)
    return done
