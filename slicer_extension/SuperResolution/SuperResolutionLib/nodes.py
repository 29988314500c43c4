"""MRML nodes <-> rmisr_monai volumes: the few Slicer calls the Logic makes, in one place.

Calls used (Slicer/Slicer ``Base/Python/slicer/util.py``): ``arrayFromVolume`` (KJI view of the voxels),
``updateVolumeFromArray`` (deep copy; the node's IJKToRAS is left as it is), ``arrayFromVTKMatrix`` /
``vtkMatrixFromArray``, ``setSliceViewerLayers``; node methods ``GetIJKToRASMatrix`` / ``SetIJKToRASMatrix``,
``GetRASBounds`` (ROI), ``CreateDefaultDisplayNodes`` / ``GetDisplayNode`` and the scalar-volume display node's
window/level, colour, interpolation and threshold accessors; ``vtkMRMLTableNode.GetTable`` (a ``vtkTable``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import slicer
import vtk

__all__ = ["volume_from_node", "update_node_from_volume", "copy_display", "fill_table", "ijk_to_ras_of"]

# voxel types the rmisr_monai writers take; other types (int64...) travel as float64, exact up to 2**53
_FALLBACK_DTYPE = np.float64
# numpy types Slicer's updateVolumeFromArray refuses (VTK "long long": not rendered correctly)
_REFUSED_BY_SLICER = (np.dtype(np.int64), np.dtype(np.uint64))


def ijk_to_ras_of(node) -> np.ndarray:
    """The node's 4x4 IJKToRAS matrix as numpy."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def volume_from_node(node, roi=None):
    """A copy of a scalar volume node (or of the part of it inside a markups ROI) as an rmisr_monai ``Volume``.

    Raises:
        ValueError: no image data, not a 3D scalar volume, the ROI misses the volume, or an ROI on a transformed
            volume (the ROI is in world coordinates, the voxels are not).
    """
    from rmisr_monai.io.read import guess_modality
    from rmisr_monai.io.volume import Volume
    from rmisr_monai.io.write import OUTPUT_DTYPES
    from SuperResolutionLib.geometry import (
        cropped_geometry,
        geometry_from_ijk_to_ras,
        ijk_from_kji,
        roi_index_ranges,
    )

    if node is None or node.GetImageData() is None:
        raise ValueError("select an input volume that holds an image")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ValueError("the input is a labelmap (segment labels); super-resolution upscales images: pick a volume")
    components = node.GetImageData().GetNumberOfScalarComponents()
    if components != 1:
        raise ValueError(f"the input has {components} values per voxel; super-resolution takes one (a scalar volume)")
    kji = slicer.util.arrayFromVolume(node)
    if kji.ndim != 3:
        raise ValueError(f"the input must be a 3D scalar volume, its voxel array has shape {kji.shape}")
    ijk_to_ras = ijk_to_ras_of(node)
    array = ijk_from_kji(kji)
    geometry = geometry_from_ijk_to_ras(ijk_to_ras)
    if roi is not None:
        if node.GetParentTransformNode() is not None:
            raise ValueError("the input volume is transformed: harden its transform before using an ROI")
        bounds = [0.0] * 6
        roi.GetRASBounds(bounds)
        ranges = roi_index_ranges(ijk_to_ras, bounds, array.shape)
        array = array[ranges]
        geometry = cropped_geometry(geometry, [r.start for r in ranges])
    dtype = array.dtype if array.dtype in OUTPUT_DTYPES else np.dtype(_FALLBACK_DTYPE)
    array = np.array(array, dtype=dtype, order="F")  # a copy: the input node's memory is never handed on
    return Volume(
        array=array,
        geometry=geometry,
        modality=guess_modality(array),
        source_dtype=dtype,
        source_path="<Slicer volume node>",  # node names may carry patient names: kept out of files and logs
        source_format="slicer",
    )


def update_node_from_volume(node, volume) -> None:
    """Put a ``Volume``'s voxels and geometry into a scalar volume node (its previous content is replaced)."""
    from SuperResolutionLib.geometry import ijk_to_ras_from_geometry, kji_from_ijk

    array = kji_from_ijk(volume.array)
    if array.dtype in _REFUSED_BY_SLICER:  # read back as int64 from some formats: float64 is exact to 2**53
        array = array.astype(_FALLBACK_DTYPE)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_from_geometry(volume.geometry)))


def copy_display(source, target) -> None:
    """Give ``target`` the display of ``source``: colour table, window/level (fixed, as shown now), interpolation
    and threshold."""
    target.CreateDefaultDisplayNodes()
    src, dst = source.GetDisplayNode(), target.GetDisplayNode()
    if src is None or dst is None:
        return
    dst.SetAndObserveColorNodeID(src.GetColorNodeID())
    dst.SetAutoWindowLevel(False)
    dst.SetWindowLevel(src.GetWindow(), src.GetLevel())
    dst.SetInterpolate(src.GetInterpolate())
    dst.SetApplyThreshold(src.GetApplyThreshold())
    dst.SetThreshold(src.GetLowerThreshold(), src.GetUpperThreshold())


def fill_table(table_node, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Replace a table node's content by string columns."""
    table = table_node.GetTable()
    table.Initialize()
    for index, name in enumerate(columns):
        column = vtk.vtkStringArray()
        column.SetName(name)
        for row in rows:
            column.InsertNextValue(str(row[index]))
        table.AddColumn(column)
    table_node.Modified()
