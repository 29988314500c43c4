"""MONAI transforms that pad a CT image outside the scanner's reconstruction circle, as many scanners write it.

A CT scanner reconstructs a disc (the scan field of view); several write the square image's corners outside that
disc as a fixed padding value far below air (GE: -3024 or -2048 HU; the DICOM ``PixelPaddingValue``). The disc's
rim is then the strongest edge of the slice (about 2000 HU over one voxel), longer than any anatomy, and an SR
network that never saw it rings along it: on the held-out CQ500 head slice at x4 (benchmarks/RESULTS.md §16) the
rim and the air next to it hold most of the error of a model trained on unpadded scans. :class:`FieldOfViewPad`
writes that rim into scans that lack it (training augmentation, :func:`rmisr_monai.data.volume_slice_items`).

The disc is the one inscribed in the in-plane grid: centre at the middle of the two in-plane axes (voxel
coordinates ``((n0 - 1) / 2, (n1 - 1) / 2)``), radius ``R = radius_fraction * min(n0, n1) / 2`` voxels. With the
voxel's offsets ``(y, x)`` from the centre along axes 1 and 2, which voxels are outside (set to ``padding``) follows
one of two rules:

* ``"chord"`` (default, as GE scanners write it): each line along axis 2 keeps the voxels that the disc's chord at
  the line's centre reaches into, ``|x| - 1/2 < sqrt(R^2 - y^2)``. This is the mask of every padded GE series in
  ../shared/data (LightSpeed16, LightSpeed Plus, CQ500: the same 55,772 voxels of a 512 x 512 slice), and it is
  not symmetric under a transpose.
* ``"centre"``: the voxel's centre lies outside the disc, ``x^2 + y^2 > R^2`` (480 more voxels at 512 x 512, one
  every few rows along the rim).

The staircase matters: the rim is a 1000-2000 HU step, so a network that learns one rule's staircase draws it where
the scanner drew the other. Voxels inside keep their values, so the transform is the identity on the anatomy, and
the grid (a ``MetaTensor``'s affine) is unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "RIM_RULES",
    "SCANNER_PADDING_HU",
    "FieldOfViewPad",
    "FieldOfViewPadd",
    "FieldOfViewPadD",
    "FieldOfViewPadDict",
]

# padding values written outside the reconstruction circle by the scanners in ../shared/data (GE LightSpeed16 and
# CQ500's GE scanners: -3024; GE LightSpeed Plus: -2048)
SCANNER_PADDING_HU = (-3024.0, -2048.0)
RIM_RULES = ("chord", "centre")


class FieldOfViewPad(Transform):
    """Set a channel-first image ``(C, n0, n1[, n2])`` to ``padding`` outside the disc inscribed in axes 1-2.

    Args:
        padding: the value written outside the reconstruction circle (stored units: HU for CT).
        radius_fraction: the disc's radius as a fraction of half the shorter in-plane side (1: inscribed).
        rule: ``"chord"`` (GE's staircase) or ``"centre"`` (voxel centres), see the module docstring.

    Numpy in gives numpy out, torch gives torch, MetaTensor gives MetaTensor (same affine); the dtype is kept.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, padding: float, radius_fraction: float = 1.0, rule: str = "chord") -> None:
        if not 0.0 < radius_fraction <= 1.0:
            raise ConfigurationError(f"radius_fraction must be in (0, 1], got {radius_fraction}")
        if rule not in RIM_RULES:
            raise ConfigurationError(f"rule must be one of {RIM_RULES}, got {rule!r}")
        self.padding = float(padding)
        self.radius_fraction = float(radius_fraction)
        self.rule = rule

    def outside(self, n0: int, n1: int) -> torch.Tensor:
        """``(n0, n1)`` boolean mask of the voxels outside the reconstruction circle."""
        y = torch.arange(n0, dtype=torch.float64)[:, None] - (n0 - 1) / 2.0
        x = torch.arange(n1, dtype=torch.float64)[None, :] - (n1 - 1) / 2.0
        radius = self.radius_fraction * min(n0, n1) / 2.0
        if self.rule == "centre":
            return y * y + x * x > radius * radius
        half_chord = torch.sqrt(torch.clamp(radius * radius - y * y, min=0.0))
        return (x.abs() - 0.5 >= half_chord) | (y.abs() >= radius)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim < 3:
            raise ConfigurationError(
                f"FieldOfViewPad expects a channel-first image (C, n0, n1[, n2]), got shape {tuple(img.shape)}"
            )
        t = convert_to_tensor(img, track_meta=False).clone()
        mask = self.outside(t.shape[1], t.shape[2]).reshape(1, t.shape[1], t.shape[2], *([1] * (t.ndim - 3)))
        t = torch.where(mask.to(t.device), torch.as_tensor(self.padding, dtype=t.dtype, device=t.device), t)
        return convert_to_dst_type(t, img, dtype=t.dtype)[0]


class FieldOfViewPadd(MapTransform):
    """Dictionary version of :class:`FieldOfViewPad` (the same disc and padding for every key)."""

    backend = FieldOfViewPad.backend

    def __init__(
        self,
        keys: KeysCollection,
        padding: float,
        radius_fraction: float = 1.0,
        rule: str = "chord",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.pad = FieldOfViewPad(padding, radius_fraction, rule)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.pad(d[key])
        return d


FieldOfViewPadD = FieldOfViewPadDict = FieldOfViewPadd
