"""Volume-node geometry <-> numpy arrays and :class:`rmisr_monai.io.geometry.Geometry`.

Slicer's conventions (Slicer/Slicer ``Base/Python/slicer/util.py`` ``arrayFromVolume``, ``updateVolumeFromArray``;
``Libs/MRML/Core/vtkMRMLVolumeNode.cxx`` ``GetIJKToRASMatrix``):

* ``slicer.util.arrayFromVolume(node)`` is the voxel array in **KJI** order (slice, row, column): the reverse of the
  ``vtkImageData`` dimensions. rmisr_monai arrays are in **IJK** order, so the two are transposes of each other.
* ``node.GetIJKToRASMatrix(m)`` gives the 4x4 index -> world matrix in **RAS** millimetres: its columns are the axis
  directions times the spacing, its translation the centre of voxel ``(0, 0, 0)``. rmisr_monai geometry is **LPS**
  (ITK, DICOM), so the first two world axes flip (:func:`rmisr_monai.io.geometry.ras_to_lps_affine`).

Spacing / origin / direction arithmetic is done by :mod:`rmisr_monai.io.geometry` (the project's only place for it);
this module only converts between the two conventions and maps a region of interest to index ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rmisr_monai.io.geometry import Geometry, lps_to_ras_affine, ras_to_lps_affine

__all__ = [
    "PLANE_NORMALS",
    "ijk_from_kji",
    "kji_from_ijk",
    "geometry_from_ijk_to_ras",
    "ijk_to_ras_from_geometry",
    "slice_axis_for_plane",
    "thick_axis",
    "roi_index_ranges",
    "cropped_geometry",
]

# RAS world axis normal to each anatomical plane: axial slices stack along S, coronal along A, sagittal along R
PLANE_NORMALS = {"sagittal": 0, "coronal": 1, "axial": 2}
# a voxel centre this close (in voxels) outside an ROI face still counts as inside (float round-off of corners)
ROI_TOLERANCE_VOXELS = 1e-6


def ijk_from_kji(array_kji: np.ndarray) -> np.ndarray:
    """The ``(i, j, k)`` view of a ``slicer.util.arrayFromVolume`` array (no copy)."""
    return np.transpose(np.asarray(array_kji), (2, 1, 0))


def kji_from_ijk(array_ijk: np.ndarray) -> np.ndarray:
    """The ``(k, j, i)`` view of an rmisr_monai array, as ``slicer.util.updateVolumeFromArray`` takes it."""
    return np.transpose(np.asarray(array_ijk), (2, 1, 0))


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray) -> Geometry:
    """LPS :class:`Geometry` of a volume node from its 4x4 IJKToRAS matrix (numpy)."""
    return Geometry.from_affine(ras_to_lps_affine(np.asarray(ijk_to_ras, dtype=np.float64)))


def ijk_to_ras_from_geometry(geometry: Geometry) -> np.ndarray:
    """The 4x4 IJKToRAS matrix of a volume node placed at ``geometry`` (inverse of :func:`geometry_from_ijk_to_ras`)."""
    return lps_to_ras_affine(geometry.affine())


def slice_axis_for_plane(ijk_to_ras: np.ndarray, plane: str) -> int:
    """Index axis (0, 1, 2 = i, j, k) along which the ``"axial"``, ``"coronal"`` or ``"sagittal"`` slices stack: the
    axis whose direction is closest to the plane's normal (S, A or R), so oblique volumes get the nearest plane."""
    if plane not in PLANE_NORMALS:
        raise ValueError(f"plane must be one of {sorted(PLANE_NORMALS)}, got {plane!r}")
    directions = np.asarray(ijk_to_ras, dtype=np.float64)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    return int(np.argmax(np.abs(directions[PLANE_NORMALS[plane]])))


def thick_axis(spacing: Sequence[float]) -> int:
    """Index axis with the largest spacing (the thick-slice axis); on a tie the last of them (k, the usual slice
    axis of a scan)."""
    values = [float(s) for s in spacing]
    return max(range(3), key=lambda a: (values[a], a))


def roi_index_ranges(
    ijk_to_ras: np.ndarray, ras_bounds: Sequence[float], shape: Sequence[int]
) -> tuple[slice, slice, slice]:
    """Index ranges of the voxels whose centres lie in an ROI box.

    Args:
        ijk_to_ras: the volume's 4x4 IJKToRAS matrix.
        ras_bounds: the ROI's world box ``(r_min, r_max, a_min, a_max, s_min, s_max)``, as Slicer's
            ``GetRASBounds`` returns it (a rotated ROI gives its axis-aligned bounding box).
        shape: the volume's ``(I, J, K)`` shape.

    Returns:
        One ``slice`` per index axis; the box of selected voxels is the smallest index box holding every voxel
        centre inside the ROI (for an oblique volume, the index box around the ROI).

    Raises:
        ValueError: the ROI holds no voxel centre of the volume.
    """
    lo_r, hi_r, lo_a, hi_a, lo_s, hi_s = (float(b) for b in ras_bounds)
    corners = np.array([[r, a, s, 1.0] for r in (lo_r, hi_r) for a in (lo_a, hi_a) for s in (lo_s, hi_s)])
    indices = (np.linalg.inv(np.asarray(ijk_to_ras, dtype=np.float64)) @ corners.T)[:3]
    ranges = []
    for axis, n in enumerate(int(v) for v in shape):
        start = max(0, int(np.ceil(indices[axis].min() - ROI_TOLERANCE_VOXELS)))
        stop = min(n, int(np.floor(indices[axis].max() + ROI_TOLERANCE_VOXELS)) + 1)
        if stop <= start:
            raise ValueError("the ROI does not contain any voxel centre of the input volume; move or enlarge it")
        ranges.append(slice(start, stop))
    return ranges[0], ranges[1], ranges[2]


def cropped_geometry(geometry: Geometry, start: Sequence[int]) -> Geometry:
    """Geometry of the sub-volume whose voxel ``(0, 0, 0)`` is voxel ``start`` of ``geometry``: same spacing and
    direction, origin at the world position of ``start`` (:meth:`Geometry.index_to_world`)."""
    origin = geometry.index_to_world([[float(v) for v in start]])[0]
    return Geometry(geometry.spacing, tuple(origin), geometry.direction)
