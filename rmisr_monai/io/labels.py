"""Is a volume a label map (a segmentation) rather than an image? Interpolating labels -- bicubic or learned --
invents labels between two others (labels 0-7 come back 0-8), so the callers refuse them or use nearest-neighbour.

Signals, in order (:func:`label_map_reason` names the first that holds):

1. the file says so: a Slicer segmentation (``*.seg.nrrd``, or NRRD / MetaImage ``Segment<N>_ID`` keys), a NIfTI
   ``intent_code`` of ``NIFTI_INTENT_LABEL`` (1002); DICOM SEG never reaches here (``read_volume`` refuses it with
   the same reason);
2. the values look like labels: all non-negative integers, between 2 and :data:`LABEL_MAX_VALUES` distinct values, and
   piecewise constant -- of the neighbouring voxel pairs (along the two in-plane axes) where at least one voxel is
   not the most common value, at least :data:`LABEL_EQUAL_NEIGHBOURS` are equal. Measured on the shared data:
   8-bit MR brains 0.03-0.12, CT 0.02 (and thousands of values); label maps are constant inside every region
   (> 0.9 for any region a few voxels wide).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rmisr_monai.io.volume import Volume

__all__ = ["is_label_map", "label_map_reason", "LABEL_MAX_VALUES", "LABEL_EQUAL_NEIGHBOURS"]

LABEL_MAX_VALUES = 256  # TotalSegmentator has 117 classes; an 8-bit MR has 256 values but fails the next test
LABEL_EQUAL_NEIGHBOURS = 0.75  # between 0.12 (the most uniform 8-bit MR here) and > 0.9 (label maps)
NIFTI_INTENT_LABEL = 1002
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"  # DICOM SEG SOP class
_SAMPLE_VOXELS = 1 << 22  # values are counted on at most this many voxels (a strided view) before the full count


def _distinct_values(array: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct values and their counts, or None when there are more than :data:`LABEL_MAX_VALUES` (found on
    a strided sample first, so that an image is dismissed without counting every voxel)."""
    step = max(1, int(np.ceil((array.size / _SAMPLE_VOXELS) ** (1 / array.ndim))))
    if len(np.unique(array[(slice(None, None, step),) * array.ndim])) > LABEL_MAX_VALUES:
        return None
    values, counts = np.unique(array, return_counts=True)
    return (values, counts) if len(values) <= LABEL_MAX_VALUES else None


def _equal_neighbours(array: np.ndarray, background) -> float:
    """Fraction of in-plane neighbour pairs with equal values, among pairs not both ``background``."""
    equal = total = 0
    for axis in (0, 1):
        if array.shape[axis] < 2:
            continue
        moved = np.moveaxis(array, axis, 0)
        first, second = moved[1:], moved[:-1]
        mask = (first != background) | (second != background)
        total += int(mask.sum())
        equal += int((first[mask] == second[mask]).sum())
    return equal / total if total else 0.0


def label_map_reason(volume: Volume) -> str | None:
    """Why ``volume`` is a label map, in words for a refusal ("a Slicer segmentation (.seg.nrrd)", ...), or None
    when it looks like an image. Rules in the module docstring."""
    info = volume.source_info or {}
    if info.get("sop_class") == SEGMENTATION_STORAGE:
        return "a DICOM segmentation (SEG)"
    if Path(volume.source_path).name.lower().endswith(".seg.nrrd") or info.get("segmentation"):
        return "a Slicer segmentation (.seg.nrrd / Segment keys in the header)"
    if int(info.get("intent_code", 0) or 0) == NIFTI_INTENT_LABEL:
        return "a NIfTI label map (intent_code NIFTI_INTENT_LABEL)"
    array = np.asarray(volume.array)
    if array.size == 0:
        return None
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.mod(array, 1) == 0):
            return None
    found = _distinct_values(array)
    if found is None or len(found[0]) < 2 or found[0][0] < 0:  # labels count from 0: a CT phantom in HU is not one
        return None
    values, counts = found
    background = values[int(np.argmax(counts))]
    fraction = _equal_neighbours(array, background)
    if fraction < LABEL_EQUAL_NEIGHBOURS:
        return None
    return (
        f"an integer volume with {len(values)} distinct values, piecewise constant ({fraction:.0%} of neighbouring "
        "voxels equal): a label map"
    )


def is_label_map(volume: Volume) -> bool:
    """True when :func:`label_map_reason` finds a reason."""
    return label_map_reason(volume) is not None
