"""The training data of ``python -m rmisr_monai.training``: random paired patches of volume slices.

A thin wiring of :mod:`rmisr_monai.data` (slices normalised per volume, random crops, dihedral augmentation,
bicubic LR, optional LR noise) into a MONAI DataLoader that draws a fixed number of samples with replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import DataLoader
from torch.utils.data import RandomSampler

from rmisr_monai.data import PairedPatchDataset, volume_slice_items
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.transforms.intensity import IntensityNormalization

__all__ = ["FOREGROUND_HU", "MIN_FOREGROUND_FRACTION", "slice_patch_loader"]

FOREGROUND_HU = -500.0  # CT voxels above it are not air
MIN_FOREGROUND_FRACTION = 0.1  # slices that are almost all air teach nothing


def slice_patch_loader(
    paths: Sequence[str | Path],
    modality: str,
    *,
    scale: int,
    patch: int,
    batch: int,
    samples: int,
    axes: Sequence[int] = (2,),
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[DataLoader, dict]:
    """A DataLoader of ``samples`` random ``{"image": LR, "label": HR}`` patches, and the intensity recipe.

    Args:
        paths: volume files or DICOM series folders.
        modality: ``"CT"`` (fixed HU window) or ``"MR"`` (percentiles per volume).
        scale: SR factor.
        patch: LR patch size.
        batch: batch size.
        samples: patches drawn in all (iterations x batch).
        axes: slice axes of the ``(i, j, k)`` volumes.
        noise: maximum LR noise standard deviation (HU for CT, normalised units for MR).
        seed: random state of the sampler and of the augmentation.
    """
    normalization = IntensityNormalization.for_modality(modality)
    threshold = FOREGROUND_HU if modality == "CT" else None
    items = [
        item
        for axis in axes
        for item in volume_slice_items(paths, axis, normalization, threshold, MIN_FOREGROUND_FRACTION)
        if min(item["label"].shape[1:]) >= patch * scale
    ]
    if not items:
        raise ConfigurationError(f"no slice of {[str(p) for p in paths]} is at least {patch * scale} pixels wide")
    if modality == "CT":  # the slices are normalised already: express the HU noise in normalised units
        noise = noise / (float(normalization.a_max) - float(normalization.a_min))
    dataset = PairedPatchDataset(items, scale, patch, normalization=None, noise_sigma=noise, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=samples, generator=generator)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=0), normalization.recipe()
