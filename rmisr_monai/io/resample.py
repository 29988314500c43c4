"""Resample a tilted or unevenly spaced slice stack onto a regular orthogonal grid (on request only: lossy).

The target grid and where each target slice comes from are computed by
:func:`rmisr_monai.io.geometry.orthogonal_resampling`; this module only interpolates: each target slice is the linear
blend of the two input slices around its plane, each shifted in-plane by its offset with bilinear interpolation
(``scipy.ndimage.shift``, order 1). Target voxels that fall outside the input slices get the volume's minimum (air
for CT, background for MR). This is what dcm2niix does for gantry tilt; it blurs by up to half a voxel, which is why
the default is to keep the exact (sheared) geometry where the output format can hold it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from rmisr_monai.io.geometry import orthogonal_resampling
from rmisr_monai.io.volume import Volume

__all__ = ["resample_orthogonal", "needs_resampling"]


def needs_resampling(volume: Volume) -> bool:
    """True when the volume's slices are tilted (sheared affine) or unevenly spaced."""
    return not volume.geometry.is_regular or volume.geometry.is_sheared


def _resample_3d(array: np.ndarray, source_k: np.ndarray, offsets: np.ndarray, fill: float) -> np.ndarray:
    out = np.empty((*array.shape[:2], len(source_k)), dtype=np.float32)
    last = array.shape[2] - 1
    for k, (position, (di, dj)) in enumerate(zip(source_k, offsets)):
        k0 = min(int(np.floor(position)), last)
        weight = position - k0
        blend = array[:, :, k0].astype(np.float64)
        if weight > 1e-9:
            blend = (1.0 - weight) * blend + weight * array[:, :, min(k0 + 1, last)]
        # ndimage.shift: output[x] = input[x - shift]; target (i, j) reads input (i + di, j + dj)
        out[:, :, k] = ndimage.shift(blend, (-di, -dj), order=1, mode="constant", cval=fill)
    return out


def resample_orthogonal(volume: Volume) -> Volume:
    """``volume`` on the regular orthogonal grid of :func:`~rmisr_monai.io.geometry.orthogonal_resampling`
    (float32 values; 4D volumes frame by frame). A regular orthogonal volume is returned unchanged."""
    if not needs_resampling(volume):
        return volume
    target, source_k, offsets = orthogonal_resampling(volume.geometry, volume.array.shape[:3])
    fill = float(np.min(volume.array))
    frames = [_resample_3d(np.asarray(f.array), source_k, offsets, fill) for f in volume.frames()]
    array = frames[0] if volume.fourth_axis is None else np.stack(frames, axis=3)
    return dataclasses.replace(volume, array=array, geometry=target)
