"""The training data of ``python -m rmisr_monai.training``: random paired patches of volume slices or pictures.

A thin wiring of :mod:`rmisr_monai.data` (slices normalised per volume, random crops, dihedral augmentation,
bicubic LR, optional LR noise) into a MONAI DataLoader that draws a fixed number of samples with replacement:
at one integer scale (:func:`slice_patch_loader`), or at a random scale per batch for arbitrary-scale networks
(:func:`random_scale_loader`, whose batches carry their scale to the network through :class:`PrepareScaledBatch`).
:func:`image_patch_loader` does the same for 8-bit natural pictures (RMISR Table 1's protocol, the "291" images);
:func:`slice_patch_loader` can also mix grey pictures into the volume slices (``pictures``, ``pictures_share``): the
natural-image prior of the "291" set (sharp edges of every orientation) for scans the volumes do not cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader
from monai.engines.utils import PrepareBatch, default_prepare_batch
from torch.utils.data import RandomSampler, WeightedRandomSampler

from rmisr_monai.core.intensity import IntensityNormalization
from rmisr_monai.data import PairedPatchDataset, image_items, is_padded_copy, volume_slice_items
from rmisr_monai.data.random_scale import META_SCALE_RANGE, RandomScalePatchDataset, ScaleBatchSampler
from rmisr_monai.errors import ConfigurationError

__all__ = [
    "FOREGROUND_HU",
    "MIN_FOREGROUND_FRACTION",
    "EIGHT_BIT",
    "PrepareScaledBatch",
    "image_patch_loader",
    "normalised_images",
    "normalised_slices",
    "random_scale_loader",
    "slice_patch_loader",
    "training_normalization",
]

FOREGROUND_HU = -500.0  # CT voxels above it are not air
MIN_FOREGROUND_FRACTION = 0.1  # slices that are almost all air teach nothing
EIGHT_BIT = IntensityNormalization(kind="range", a_min=0.0, a_max=255.0)  # 8-bit pictures onto [0, 1]


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
    ct_window: Sequence[float] | None = None,
    pictures: Sequence[str | Path] = (),
    pictures_share: float = 0.25,
    fov_padding: Sequence[float] = (),
    fov_padding_share: float | None = None,
    fov_rim_tiles: bool = False,
    contrast_gamma: Sequence[float] | None = None,
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
        ct_window: CT only: the HU window mapped to ``[0, 1]`` (:func:`normalised_slices`).
        pictures: grey 2D pictures mixed into the slices (:func:`normalised_images`); per-volume percentile
            normalisation (``modality="MR"``) only.
        pictures_share: with ``pictures``, the expected share of the patches drawn from them (the slices share the
            rest; each group uniformly).
        fov_padding: padding values (HU): each CT volume of a whole unpadded field of view is also given padded with
            each of them outside its reconstruction circle (:func:`rmisr_monai.data.volume_slice_items`), the rim
            that several scanners write; per-volume percentile normalisation only.
        fov_padding_share: with ``fov_padding``, the expected share of the patches drawn from the padded copies
            (``None``: as many as their slices, like any other slice).
        fov_rim_tiles: with ``fov_padding``, the padded copies are squares 5/4 of the HR patch on the rim, up to 8 per
            slice (``fov_rim_tile`` of :func:`rmisr_monai.data.volume_slice_items`): every patch drawn from them
            crosses it.
        contrast_gamma: ``(low, high)``: random gamma contrast on half the HR patches
            (:func:`rmisr_monai.data.paired_patch_transform`).
    """
    if fov_rim_tiles and not fov_padding:
        raise ConfigurationError("fov_rim_tiles cuts the padded copies of fov_padding: give padding values")
    hr_patch = patch * scale
    rim_tile = hr_patch + hr_patch // 4 if fov_rim_tiles else None
    items, normalization, noise = normalised_slices(
        paths, modality, axes, hr_patch, noise, ct_window, fov_padding, rim_tile
    )
    groups: dict[str, list[dict]] = {"slices": items}
    shares: dict[str, float] = {}
    if fov_padding_share is not None:
        if not fov_padding or not 0.0 < fov_padding_share < 1.0:
            raise ConfigurationError(f"fov_padding_share must be in (0, 1) with fov_padding, got {fov_padding_share}")
        groups = {
            "slices": [item for item in items if not is_padded_copy(item)],
            "padded": [item for item in items if is_padded_copy(item)],
        }
        if not groups["padded"]:
            raise ConfigurationError("fov_padding_share: no CT volume of a whole, unpadded field of view to pad")
        shares["padded"] = fov_padding_share
    if pictures:
        if not 0.0 < pictures_share < 1.0:
            raise ConfigurationError(f"pictures_share must be in (0, 1), got {pictures_share}")
        if normalization.kind != "mr":
            raise ConfigurationError(
                "pictures carry no Hounsfield units: mix them only into per-volume percentile normalisation "
                "(modality MR)"
            )
        mixed = normalised_images(pictures, normalization, patch * scale)
        if not mixed:
            raise ConfigurationError(f"no picture of {len(pictures)} is at least {patch * scale} pixels wide")
        groups["pictures"] = mixed
        shares["pictures"] = pictures_share
    shares["slices"] = 1.0 - sum(shares.values())
    if shares["slices"] <= 0.0:
        raise ConfigurationError(f"the shares of pictures and padded copies leave no volume slices: {shares}")
    items = [item for group in groups.values() for item in group]
    weights = None
    if len(groups) > 1:
        weights = [shares[name] / len(group) for name, group in groups.items() for _ in group]
    dataset = PairedPatchDataset(
        items, scale, patch, normalization=None, noise_sigma=noise, seed=seed, contrast_gamma=contrast_gamma
    )
    return _drawn_with_replacement(dataset, batch, samples, seed, weights), normalization.recipe()


def normalised_images(
    paths: Sequence[str | Path], normalization: IntensityNormalization, min_size: int
) -> list[dict]:
    """Grey 2D images (BT.601 luma) at least ``min_size`` wide as training slices ``{"label", "source", "slice": 0}``
    (the keys of volume slices, so that both batch together), each normalised on its own like a volume
    (``normalization`` fitted to the image: its own percentiles for the ``"mr"`` recipe)."""
    items = []
    for item in image_items(paths, "gray"):
        if min(item["label"].shape[1:]) >= min_size:
            image = torch.as_tensor(item["label"])
            items.append({**item, "label": normalization.fit(image).forward(image).to(torch.float32), "slice": 0})
    return items


def image_patch_loader(
    paths: Sequence[str | Path],
    *,
    color: str,
    scale: int,
    patch: int,
    batch: int,
    samples: int,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[DataLoader, dict]:
    """:func:`slice_patch_loader` for 2D pictures (PNG, BMP, JPEG...): 0-255 mapped to ``[0, 1]`` (:data:`EIGHT_BIT`,
    recorded in the checkpoint); pictures smaller than the HR patch are left out.

    Args:
        paths: picture files.
        color: ``"rgb"`` (3-channel networks, RMISR Table 1) or ``"gray"`` (BT.601 luma).
        scale, patch, batch, samples, seed: as :func:`slice_patch_loader`.
        noise: maximum LR noise standard deviation in ``[0, 1]`` units.
    """
    items = [item for item in image_items(paths, color) if min(item["label"].shape[1:]) >= patch * scale]
    if not items:
        raise ConfigurationError(f"no picture of {len(paths)} is at least {patch * scale} pixels wide")
    span = float(EIGHT_BIT.a_max) - float(EIGHT_BIT.a_min)  # PairedPatchDataset takes the noise in stored units
    dataset = PairedPatchDataset(items, scale, patch, normalization=EIGHT_BIT, noise_sigma=noise * span, seed=seed)
    return _drawn_with_replacement(dataset, batch, samples, seed), EIGHT_BIT.recipe()


def _drawn_with_replacement(
    dataset: PairedPatchDataset, batch: int, samples: int, seed: int, weights: Sequence[float] | None = None
) -> DataLoader:
    """``samples`` items drawn with replacement, uniformly or with the probabilities ``weights``."""
    generator = torch.Generator().manual_seed(seed)
    if weights is None:
        sampler = RandomSampler(dataset, replacement=True, num_samples=samples, generator=generator)
    else:
        sampler = WeightedRandomSampler(weights, samples, replacement=True, generator=generator)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=0)


def random_scale_loader(
    paths: Sequence[str | Path],
    modality: str,
    *,
    patch: int,
    batch: int,
    batches: int,
    scale_range: Sequence[float] = META_SCALE_RANGE,
    axes: Sequence[int] = (2,),
    noise: float = 0.0,
    seed: int = 0,
    ct_window: Sequence[float] | None = None,
    fov_padding: Sequence[float] = (),
) -> tuple[DataLoader, dict]:
    """A DataLoader of ``batches`` batches at a random scale pair each (:mod:`rmisr_monai.data.random_scale`).

    Args:
        paths, modality, axes, noise, seed, ct_window, fov_padding: as :func:`slice_patch_loader`.
        patch: LR patch size (HR patches are ``round(patch * s)`` per axis).
        batch: batch size.
        batches: number of batches (iterations).
        scale_range: ``(low, high)`` of the scales drawn (Meta-SR: 1.1 to 4.0).
    """
    items, normalization, noise = normalised_slices(
        paths, modality, axes, round(patch * max(scale_range)), noise, ct_window, fov_padding
    )
    dataset = RandomScalePatchDataset(items, patch, noise_sigma=noise, seed=seed)
    sampler = ScaleBatchSampler(len(dataset), batch, batches, scale_range, seed=seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=0), normalization.recipe()


def normalised_slices(
    paths: Sequence[str | Path],
    modality: str,
    axes: Sequence[int],
    min_size: int,
    noise: float,
    ct_window: Sequence[float] | None = None,
    fov_padding: Sequence[float] = (),
    fov_rim_tile: int | None = None,
) -> tuple[list[dict], IntensityNormalization, float]:
    """Foreground slices at least ``min_size`` wide, normalised per volume, and the noise in normalised units
    (also the bundles' training data, :mod:`rmisr_monai.training.datasets`). ``ct_window``: the CT HU window
    (default ``CT_WINDOW_HU``; ``CT_PADDED_WINDOW_HU`` also spans the scanners' padding values). ``fov_padding``:
    as :func:`slice_patch_loader`; ``fov_rim_tile``: as :func:`rmisr_monai.data.volume_slice_items`."""
    normalization = training_normalization(modality, ct_window)
    if fov_padding and normalization.kind != "mr":
        raise ConfigurationError(
            "a padded field of view moves the HU floor: pad only under per-volume percentile normalisation "
            "(modality MR)"
        )
    threshold = FOREGROUND_HU if modality == "CT" else None
    items = [
        item
        for axis in axes
        for item in volume_slice_items(
            paths, axis, normalization, threshold, MIN_FOREGROUND_FRACTION, fov_padding, fov_rim_tile
        )
        if min(item["label"].shape[1:]) >= min_size
    ]
    if not items:
        raise ConfigurationError(f"no slice of {[str(p) for p in paths]} is at least {min_size} pixels wide")
    if modality == "CT":  # the slices are normalised already: express the HU noise in normalised units
        noise = noise / (float(normalization.a_max) - float(normalization.a_min))
    return items, normalization, noise


def training_normalization(modality: str, ct_window: Sequence[float] | None = None) -> IntensityNormalization:
    """The modality's intensity map onto ``[0, 1]``; for CT the HU window ``ct_window`` when given."""
    if modality == "CT" and ct_window is not None:
        return IntensityNormalization.ct(tuple(ct_window))
    return IntensityNormalization.for_modality(modality)


class PrepareScaledBatch(PrepareBatch):
    """MONAI ``prepare_batch`` for :func:`random_scale_loader` batches: ``network(image, scale=(sy, sx))``.

    Every item of a batch has the same scale (one draw per batch), so the first row of ``batch["scale"]`` is passed
    on as the ``scale`` keyword of the network's forward (the Meta-SR upsampler's run-time scale).
    """

    def __call__(
        self, batchdata: dict[str, torch.Tensor], device: Any = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        sy, sx = (float(s) for s in batchdata["scale"][0])
        return image, label, (), {"scale": (sy, sx)}
