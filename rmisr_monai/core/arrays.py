"""Numpy casts to the dtype a volume is stored in."""

from __future__ import annotations

import numpy as np

__all__ = ["cast_to_dtype"]


def cast_to_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as ``dtype``; to an integer dtype non-integers are clipped to its range, then rounded half to
    even (``numpy.rint``): 40000.6 -> 32767 and -3.5 -> -4 for int16."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.can_cast(array.dtype, dtype):
        info = np.iinfo(dtype)
        array = np.rint(np.clip(array.astype(np.float64, copy=False), info.min, info.max))
    return array.astype(dtype, copy=False)
