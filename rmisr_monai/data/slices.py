"""2D training samples from the slices of 3D volumes (NIfTI, NRRD, MHA/MHD, DICOM series folders).

A volume is read as a numpy array in ITK/NIfTI index order ``(i, j, k)``, the order of
:class:`rmisr_monai.io.volume.Volume` (``axis=2`` gives the slices of the acquisition stack: axial for an axial CT),
normalised once per volume when a normalisation is given (MR percentiles are fitted
on the whole volume, as the inference engine does) and cut into ``(1, H, W)`` slices. Almost empty slices (air
above and below the body) can be skipped by a foreground threshold. CT volumes of a whole, unpadded field of view
can be given again with the corners outside the reconstruction circle padded as several scanners write them
(``fov_padding``, :class:`rmisr_monai.transforms.field_of_view.FieldOfViewPad`), whole or as square tiles centred on
the circle's rim (``fov_rim_tile``), so that every patch cut from them crosses the rim.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import MetaTensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.io.read import guess_modality, read_volume
from rmisr_monai.transforms.field_of_view import FieldOfViewPad
from rmisr_monai.transforms.intensity import IntensityNormalization, IntensityNormalize

__all__ = [
    "MIN_FIELD_OF_VIEW",
    "PADDED_COPY_MARK",
    "UNPADDED_ABOVE_HU",
    "is_padded_copy",
    "read_volume_array",
    "rim_tile_corners",
    "unpadded_field_of_view",
    "volume_slice_items",
]

UNPADDED_ABOVE_HU = -1100.0  # a CT volume with a voxel below it holds padding already (air is -1000 to -1024 HU)
MIN_FIELD_OF_VIEW = 256  # in-plane voxels: smaller CT grids are crops, not the scanner's whole reconstruction field
PADDED_COPY_MARK = " outside the field of view)"  # ends the "source" of a padded copy: "<path> (padded with -3024 ..."
# rim tiles' directions from the middle: off the four points where the rim meets the slice's edge
RIM_TILE_ANGLES = tuple(math.radians(22.5 + 45.0 * k) for k in range(8))


def read_volume_array(path: str | os.PathLike) -> np.ndarray:
    """Voxels of a volume file or DICOM series folder as float32 ``(i, j, k)`` (rescaled: HU for CT), read by
    :func:`rmisr_monai.io.read.read_volume` (training slices need no geometry)."""
    return read_volume(path).array.astype(np.float32)


def volume_slice_items(
    paths: Sequence[str | os.PathLike],
    axis: int = 2,
    normalization: IntensityNormalization | Mapping[str, Any] | None = None,
    foreground_threshold: float | None = None,
    min_foreground_fraction: float = 0.0,
    fov_padding: Sequence[float] = (),
    fov_rim_tile: int | None = None,
) -> list[dict]:
    """Every slice of every volume as ``{"label": (1, H, W), "source": path, "slice": index}``.

    Args:
        paths: volume files or DICOM series folders.
        axis: axis of the ``(i, j, k)`` array to slice along (2: the acquisition stack).
        normalization: fitted per volume and applied to every slice, which is then a ``MetaTensor`` recording the
            map (``applied_operations``); ``None`` keeps float32 numpy slices in stored units.
        foreground_threshold: voxels above it (stored units, e.g. -500 HU: not air) count as foreground.
        min_foreground_fraction: slices whose foreground fraction is below it are skipped (only with a threshold).
        fov_padding: padding values (HU). Every volume for which :func:`unpadded_field_of_view` holds is also given
            once per value, padded with it outside its reconstruction circle and normalised on its own; its items'
            ``"source"`` says so.
        fov_rim_tile: with ``fov_padding``, the padded copies' slices are given as squares of this many voxels
            on the rim (:func:`rim_tile_corners`, up to 8 per slice) instead of whole. Whole padded slices mostly repeat
            the anatomy of the original (the rim is about 1 % of their voxels); from squares 5/4 of the crop size
            every crop crosses the rim (checked on 256-512 voxel grids by the tests).
    """
    if axis not in (0, 1, 2):
        raise ConfigurationError(f"axis must be 0, 1 or 2 (i, j, k), got {axis}")
    if not 0.0 <= min_foreground_fraction <= 1.0:
        raise ConfigurationError(f"min_foreground_fraction must be in [0, 1], got {min_foreground_fraction}")
    if normalization is not None and not isinstance(normalization, IntensityNormalization):
        normalization = IntensityNormalization.from_dict(normalization)
    items = []
    for path in paths:
        volume = read_volume_array(path)
        versions = [(str(path), volume)]
        if fov_padding and unpadded_field_of_view(volume):
            versions += [
                (f"{path} (padded with {value:g}{PADDED_COPY_MARK}", FieldOfViewPad(value)(volume[None])[0])
                for value in fov_padding
            ]
        for source, array in versions:
            normalize = None if normalization is None else IntensityNormalize(normalization.fit(array))
            for index in range(array.shape[axis]):
                hr = np.take(array, index, axis=axis)[None]
                if foreground_threshold is not None and np.mean(hr > foreground_threshold) < min_foreground_fraction:
                    continue
                label = hr if normalize is None else normalize(MetaTensor(np.ascontiguousarray(hr)))
                if fov_rim_tile is None or source == str(path):
                    items.append({"label": label, "source": source, "slice": index})
                    continue
                for i0, j0 in rim_tile_corners(*label.shape[1:], fov_rim_tile):  # copies: the slice is not kept
                    tile = label[:, i0 : i0 + fov_rim_tile, j0 : j0 + fov_rim_tile]
                    tile = tile.copy() if normalize is None else tile.clone()
                    items.append({"label": tile, "source": source, "slice": index})
    return items


def rim_tile_corners(n0: int, n1: int, size: int) -> list[tuple[int, int]]:
    """First voxels ``(i0, j0)`` of the ``size``-wide squares centred on the inscribed circle's rim of an ``(n0, n1)``
    slice at :data:`RIM_TILE_ANGLES` (the grid's middle, radius ``min(n0, n1) / 2``; each square shifted inside
    the slice where it would stick out, once where two of them then coincide)."""
    if not 0 < size <= min(n0, n1):
        raise ConfigurationError(f"a rim tile of {size} voxels does not fit a {n0} x {n1} slice")
    radius = min(n0, n1) / 2.0
    corners = []
    for angle in RIM_TILE_ANGLES:
        ci = (n0 - 1) / 2.0 + radius * math.sin(angle)
        cj = (n1 - 1) / 2.0 + radius * math.cos(angle)
        i0 = min(max(int(round(ci - (size - 1) / 2.0)), 0), n0 - size)
        j0 = min(max(int(round(cj - (size - 1) / 2.0)), 0), n1 - size)
        if (i0, j0) not in corners:  # a tile large against the slice lands on the same corner twice
            corners.append((i0, j0))
    return corners


def unpadded_field_of_view(volume: np.ndarray) -> bool:
    """Whether an ``(i, j, k)`` volume reads as CT (:func:`rmisr_monai.io.read.guess_modality`) of a whole
    reconstruction field (at least :data:`MIN_FIELD_OF_VIEW` voxels on both in-plane axes) holding no padding yet
    (no voxel below :data:`UNPADDED_ABOVE_HU`)."""
    return (
        min(volume.shape[:2]) >= MIN_FIELD_OF_VIEW
        and float(volume.min()) > UNPADDED_ABOVE_HU
        and guess_modality(volume) == "CT"
    )


def is_padded_copy(item: Mapping[str, Any]) -> bool:
    """Whether a training item comes from a padded copy of a volume (``fov_padding`` of :func:`volume_slice_items`)."""
    return str(item["source"]).endswith(PADDED_COPY_MARK)
