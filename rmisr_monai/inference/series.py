"""4D volumes (time series, echoes, diffusion weightings): each 3D volume through the volume engine.

:func:`upscale_series` is what :func:`rmisr_monai.inference.engine.upscale_volume` hands a 4D
:class:`~rmisr_monai.io.volume.Volume` to: every ``array[..., t]`` is upscaled by ``upscale_volume`` with the same
options (intensity normalisation fitted per 3D volume, as for a 3D input) and written into one preallocated
``(I', J', K', T)`` array; the geometry is that of the 3D results and the fourth axis (its step, unit, offset,
values) is kept unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch import nn
from tqdm import tqdm

__all__ = ["upscale_series"]


def upscale_series(volume, network: nn.Module, scale: float, **options: Any):
    """Upscale each 3D volume of a 4D ``volume`` (options as for :func:`~rmisr_monai.inference.upscale_volume`);
    a 3D volume is passed straight to ``upscale_volume``. Returns a 4D ``Volume`` with the same ``fourth_axis``."""
    from rmisr_monai.inference.engine import upscale_volume

    frames = volume.frames()
    if volume.fourth_axis is None:
        return upscale_volume(volume, network, scale, **options)
    out = None
    geometry = None
    progress = options.get("progress", True)
    for t, frame in enumerate(tqdm(frames, desc="volumes", unit="volume", disable=not progress or len(frames) < 2)):
        result = upscale_volume(frame, network, scale, **options)
        if out is None:
            out = np.empty((*result.array.shape, len(frames)), dtype=result.array.dtype)
            geometry = result.geometry
        out[..., t] = result.array
    return dataclasses.replace(volume, array=out, geometry=geometry)
