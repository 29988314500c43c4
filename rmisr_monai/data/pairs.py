"""Paired LR/HR training patches: random HR crop, dihedral augmentation, normalisation, bicubic LR, optional noise.

RMISR §4.4 / §5.1: the LR image is the bicubic downscaling of the HR image, HR crops are random (192 x 192 there);
augmentation by flips and 90-degree rotations is the usual SR practice (EDSR). The pipeline, as MONAI dictionary
transforms on the key ``"label"`` (HR) producing ``"image"`` (LR), the names ``SupervisedTrainer`` expects:

1. conversion to a float32 ``MetaTensor`` (it records every step in ``applied_operations``), then
   :class:`~rmisr_monai.transforms.intensity.IntensityNormalized` on the whole item (optional: volume slices from
   :func:`~rmisr_monai.data.slices.volume_slice_items` are already normalised per volume);
2. edge padding of items smaller than the HR patch, then a random ``patch_size * scale`` crop;
3. a flip along H with probability 1/2, then a rotation by k * 90 degrees with k uniform in 0-3: the 8 symmetries
   of the square with equal probability;
4. LR = degradation(HR), by default MATLAB-compatible bicubic ``imresize(hr, 1 / scale)``, so LR and HR are aligned
   and every augmentation is shared by construction;
5. optional additive Gaussian noise on the LR, standard deviation uniform in ``[0, noise_sigma]``: robustness to
   noisy low-dose CT, on which networks trained on clean pictures sharpen the noise.

Optionally (``contrast_gamma``), between 3 and 4 the HR patch gets a random gamma contrast change with probability
:data:`CONTRAST_PROB` (MONAI ``RandAdjustContrastd``: ``((x - min) / range) ** gamma * range + min`` on the patch,
gamma uniform in the range given), so LR and HR share it: contrast variety (MR weightings and windows the training
volumes lack) without changing the degradation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import Dataset, MetaTensor
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandSpatialCropd,
    SpatialPadd,
)
from monai.utils import TransformBackends

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.resize import imresize
from rmisr_monai.transforms.intensity import IntensityNormalization, IntensityNormalized

__all__ = [
    "CONTRAST_PROB",
    "FLIP_PROB",
    "ROTATE_PROB",
    "bicubic_degradation",
    "Degraded",
    "paired_patch_transform",
    "PairedPatchDataset",
]

FLIP_PROB = 0.5  # one flip, then rot90 with k = 1, 2, 3 at ROTATE_PROB: the 8 dihedral symmetries, 1/8 each
ROTATE_PROB = 0.75
CONTRAST_PROB = 0.5  # with contrast_gamma: half the patches keep the scan's own contrast


def bicubic_degradation(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """LR maker of RMISR §4.4: MATLAB ``imresize(hr, 1 / scale, 'bicubic')`` on the last two axes."""

    def degrade(hr: torch.Tensor) -> torch.Tensor:
        return imresize(hr, 1.0 / scale)

    return degrade


class Degraded(MapTransform):
    """Make ``d[lr_key] = degradation(d[hr_key])`` as a plain tensor (the HR keeps its ``MetaTensor`` record).

    Args:
        keys: the HR key (one).
        lr_key: where the LR goes.
        degradation: ``(C, H, W) tensor -> (C, h, w) tensor``, e.g. :func:`bicubic_degradation`.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, keys: KeysCollection, lr_key: str, degradation: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        super().__init__(keys)
        self.lr_key = lr_key
        self.degradation = degradation

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            hr = d[key].as_tensor() if isinstance(d[key], MetaTensor) else torch.as_tensor(d[key])
            d[self.lr_key] = self.degradation(hr.to(torch.float32))
        return d


def paired_patch_transform(
    scale: float,
    patch_size: int,
    normalization: IntensityNormalization | Mapping[str, Any] | None = None,
    degradation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    augment: bool = True,
    noise_sigma: float = 0.0,
    contrast_gamma: Sequence[float] | None = None,
) -> Compose:
    """The dictionary pipeline of the module docstring: ``{"label": HR item} -> {"image": LR, "label": HR}``.

    Args:
        scale: SR factor; ``patch_size * scale`` must be an integer (the HR patch size).
        patch_size: LR patch size (HR patches are ``patch_size * scale``).
        normalization: applied to the whole item before cropping (``None``: items are already in ``[0, 1]``).
        degradation: LR maker; default :func:`bicubic_degradation` of ``scale``.
        augment: random flips and 90-degree rotations.
        noise_sigma: maximum standard deviation of the LR noise in normalised units; for a fixed window convert
            from stored units with ``sigma_hu / (a_max - a_min)`` (:meth:`PairedPatchDataset` does it for ``"ct"``
            and ``"range"``).
        contrast_gamma: ``(low, high)``: a random gamma in that range on the HR patch with probability
            :data:`CONTRAST_PROB`, before the LR is made (``None``: the scan's own contrast).
    """
    hr_size = patch_size * scale
    if patch_size < 1 or scale <= 0 or abs(hr_size - round(hr_size)) > 1e-9:
        raise ConfigurationError(f"patch_size * scale must be a positive integer, got {patch_size} * {scale}")
    if noise_sigma < 0:
        raise ConfigurationError(f"noise_sigma must be >= 0, got {noise_sigma}")
    if contrast_gamma is not None and not (len(contrast_gamma) == 2 and 0 < contrast_gamma[0] <= contrast_gamma[1]):
        raise ConfigurationError(f"contrast_gamma must be (low, high) with 0 < low <= high, got {contrast_gamma}")
    roi = (int(round(hr_size)),) * 2
    steps: list = [EnsureTyped("label", dtype=torch.float32, track_meta=True)]  # MetaTensor: records the steps
    if normalization is not None:
        steps.append(IntensityNormalized("label", normalization))
    steps += [SpatialPadd("label", spatial_size=roi, mode="edge"), RandSpatialCropd("label", roi, random_size=False)]
    if augment:
        steps += [RandFlipd("label", prob=FLIP_PROB, spatial_axis=0), RandRotate90d("label", prob=ROTATE_PROB)]
    if contrast_gamma is not None:
        steps.append(RandAdjustContrastd("label", prob=CONTRAST_PROB, gamma=tuple(float(g) for g in contrast_gamma)))
    steps.append(Degraded("label", "image", degradation or bicubic_degradation(scale)))
    if noise_sigma > 0:
        steps.append(RandGaussianNoised("image", prob=1.0, std=noise_sigma, sample_std=True))
    return Compose(steps)


class PairedPatchDataset(Dataset):
    """MONAI ``Dataset`` of random paired patches ``{"image": LR (C, p, p), "label": HR (C, p*s, p*s), ...}``.

    Each access draws a new random patch from item ``index`` (wrap it in a sampler with replacement, or repeat
    the item list, for more patches per epoch).

    Args:
        data: items ``{"label": (C, H, W) array or tensor, ...}`` from :func:`~rmisr_monai.data.images.image_items`
            or :func:`~rmisr_monai.data.slices.volume_slice_items`; other keys (``"source"``...) pass through.
        scale: SR factor.
        patch_size: LR patch size.
        normalization: see :func:`paired_patch_transform`.
        degradation: see :func:`paired_patch_transform`.
        augment: random flips and 90-degree rotations.
        noise_sigma: maximum LR noise standard deviation, in stored units (HU for CT) for ``"ct"``/``"range"``
            normalisations and in normalised units otherwise (MR windows differ per image).
        contrast_gamma: see :func:`paired_patch_transform`.
        seed: random state of the augmentation.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        scale: float,
        patch_size: int,
        normalization: IntensityNormalization | Mapping[str, Any] | None = None,
        degradation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        augment: bool = True,
        noise_sigma: float = 0.0,
        seed: int = 0,
        contrast_gamma: Sequence[float] | None = None,
    ) -> None:
        if normalization is not None and not isinstance(normalization, IntensityNormalization):
            normalization = IntensityNormalization.from_dict(normalization)
        if normalization is not None and normalization.kind != "mr":
            noise_sigma = noise_sigma / (float(normalization.a_max) - float(normalization.a_min))
        transform = paired_patch_transform(
            scale, patch_size, normalization, degradation, augment, noise_sigma, contrast_gamma
        )
        super().__init__(data=list(data), transform=transform.set_random_state(seed))
