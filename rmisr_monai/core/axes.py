"""Axis names of an ``(i, j, k)`` volume and the length of an upscaled axis (network contract)."""

from __future__ import annotations

import numbers

from rmisr_monai.errors import ConfigurationError

__all__ = ["AXIS_NAMES", "resolve_axis", "scaled_length"]

AXIS_NAMES = {"x": 0, "y": 1, "z": 2, "i": 0, "j": 1, "k": 2}


def resolve_axis(axis: str | int) -> int:
    """``"x"|"y"|"z"`` (or ``"i"|"j"|"k"``, or ``0|1|2``, also as strings) -> index axis of the ``(i, j, k)`` array."""
    if isinstance(axis, str):
        key = axis.strip().lower()
        if key in AXIS_NAMES:
            return AXIS_NAMES[key]
        if key in ("0", "1", "2"):
            return int(key)
    elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool) and 0 <= int(axis) <= 2:
        return int(axis)
    raise ConfigurationError(f"axis must be x, y, z or 0, 1, 2, got {axis!r}")


def scaled_length(n: int, s: float) -> int:
    """Output length of an axis of ``n`` pixels upscaled by ``s``: ``round(n * s)``, half to even (network
    contract; the networks' traced variant is :func:`rmisr_monai.networks.blocks.upsample.scaled_size`)."""
    return int(round(n * s))
