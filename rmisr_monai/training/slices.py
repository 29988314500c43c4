"""Random paired LR/HR patches from the 2D slices of CT/MR volumes, as a MONAI DataLoader.

Every slice along the chosen axes becomes one item ``{"label": HR (1, H, W), "weight": foreground map}``; each draw
crops an HR patch where the body is (MONAI ``RandWeightedCropd`` on the foreground map, so patches of air are rare),
flips and rotates it by multiples of 90 degrees, and makes the LR input with MATLAB-compatible bicubic downscaling
(RMISR eq. 2), optionally adding Gaussian noise to the LR so the network learns not to sharpen noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, DeleteItemsd, Lambdad, RandFlipd, RandGaussianNoised, RandRotate90d, RandWeightedCropd
from torch.utils.data import RandomSampler

from rmisr_monai.io.read import read_volume
from rmisr_monai.ops.resize import imresize
from rmisr_monai.transforms.intensity import IntensityNormalization

__all__ = ["FOREGROUND_WEIGHT", "BACKGROUND_WEIGHT", "volume_slices", "slice_patch_loader"]

FOREGROUND_WEIGHT = 1.0
BACKGROUND_WEIGHT = 0.02  # air still appears in a few patches: the network must keep it flat


def volume_slices(
    paths: Sequence[str | Path], modality: str, axes: Sequence[int] = (2,), min_size: int = 0
) -> tuple[list[dict], dict]:
    """Normalised slices of every volume, with a foreground weight map; returns them and the CT normalisation.

    For MR the percentile window is computed per volume (as the inference engine does), so the returned
    normalisation is the recipe (``to_dict``) rather than fixed numbers.
    """
    items, recipe = [], None
    for path in paths:
        volume = read_volume(path)
        norm = IntensityNormalization.for_modality(modality, volume.array)
        recipe = recipe or norm.recipe()
        data = norm.forward(volume.array.astype(np.float32))
        threshold = float(np.percentile(data, 60)) if modality == "MR" else norm.forward(np.float32(-500.0))
        for axis in axes:
            for k in range(data.shape[axis]):
                hr = np.ascontiguousarray(np.take(data, k, axis=axis))
                if min(hr.shape) < min_size:
                    continue
                weight = np.where(hr > threshold, FOREGROUND_WEIGHT, BACKGROUND_WEIGHT).astype(np.float32)
                items.append({"label": hr[None], "weight": weight[None]})
    return items, recipe


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
    """A DataLoader of ``samples`` random ``{"image": LR, "label": HR}`` patches, and the intensity recipe."""
    hr_size = patch * scale
    items, recipe = volume_slices(paths, modality, axes, min_size=hr_size)
    if not items:
        raise ValueError(f"no slice of {list(map(str, paths))} is at least {hr_size} pixels wide")
    transform = Compose(
        [
            RandWeightedCropd(keys=("label", "weight"), w_key="weight", spatial_size=(hr_size, hr_size)),
            DeleteItemsd(keys="weight"),
            RandFlipd(keys="label", prob=0.5, spatial_axis=0),
            RandFlipd(keys="label", prob=0.5, spatial_axis=1),
            RandRotate90d(keys="label", prob=0.5),
            Lambdad(keys="label", func=lambda hr: imresize(torch.as_tensor(hr), 1.0 / scale), overwrite="image"),
            RandGaussianNoised(keys="image", prob=1.0 if noise > 0 else 0.0, std=noise),
        ]
    ).set_random_state(seed)
    dataset = Dataset(data=items, transform=transform)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=samples, generator=generator)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=0), recipe
