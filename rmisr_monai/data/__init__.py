"""Paired-patch training data from 2D images and from the slices of 3D volumes."""

from __future__ import annotations

from rmisr_monai.data.images import image_items, read_image_2d
from rmisr_monai.data.pairs import Degraded, PairedPatchDataset, bicubic_degradation, paired_patch_transform
from rmisr_monai.data.slices import is_padded_copy, read_volume_array, volume_slice_items

__all__ = [
    "image_items",
    "read_image_2d",
    "Degraded",
    "PairedPatchDataset",
    "bicubic_degradation",
    "paired_patch_transform",
    "is_padded_copy",
    "read_volume_array",
    "volume_slice_items",
]
