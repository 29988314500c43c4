"""Invertible intensity normalisation to ``[0, 1]`` for CT (fixed HU window) and MRI (robust percentiles).

Every network of the project works on images in ``[0, 1]`` (network contract, ``CONTRIBUTING.md``); a volume must
leave the inference engine in its original units (HU for CT), so the normalisation is a linear map that is always
recorded and undone. :class:`IntensityNormalization` is that map, free of MONAI: ``forward`` / ``inverse`` on numpy
arrays or torch tensors, ``to_dict`` / ``from_dict`` for the ``"intensity"`` entry of a checkpoint, ``fit`` for the
MR percentiles that are recomputed on every volume. The MONAI transforms around it are in
:mod:`rmisr_monai.transforms.intensity`.

The map is ``y = (x - a_min) / (a_max - a_min)``, optionally clipped to ``[0, 1]``; the inverse is
``x = y * (a_max - a_min) + a_min``. With clipping, values outside ``[a_min, a_max]`` are not recovered by the
inverse (they come back as ``a_min`` or ``a_max``); everything inside the window round-trips exactly up to float
rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "CT_WINDOW_HU",
    "CT_PADDED_WINDOW_HU",
    "MR_PERCENTILES",
    "NORMALIZATION_KINDS",
    "IntensityNormalization",
    "as_float",
]

# what MONAI calls NdarrayOrTensor, without importing MONAI
NdarrayOrTensor = np.ndarray | torch.Tensor

# the full range of 12-bit CT: air is -1024 HU and 4096 stored levels reach 3071 HU (DICOM CT rescale convention)
CT_WINDOW_HU = (-1024.0, 3071.0)
# the same upper end, and a lower end below the padding values scanners store outside the circular field of view
# (-2048 HU GE, -3024 HU GE/CQ500, -2000 HU): a model trained on it sees and sharpens the field-of-view edge
CT_PADDED_WINDOW_HU = (-3072.0, 3071.0)
# robust MR range: 0.5th and 99.5th intensity percentiles, insensitive to a few bright outliers (flow, fat)
MR_PERCENTILES = (0.5, 99.5)
NORMALIZATION_KINDS = ("ct", "mr", "range")


@dataclasses.dataclass(frozen=True)
class IntensityNormalization:
    """A linear map of intensities onto ``[0, 1]`` and back, serialisable to JSON.

    Args:
        kind: ``"ct"`` (fixed HU window, default ``CT_WINDOW_HU``), ``"mr"`` (percentiles of each image, see
            :meth:`fit`) or ``"range"`` (fixed ``a_min``, ``a_max`` given by the user, e.g. 0 and 255 for 8-bit).
        a_min: intensity mapped to 0; for ``"mr"`` ``None`` until :meth:`fit` computed it.
        a_max: intensity mapped to 1; must be ``> a_min`` (a constant MR image fits ``a_max = a_min + 1``).
        clip: clip the normalised values to ``[0, 1]`` (then ``inverse`` cannot restore values outside the window).
        lower_percentile: ``"mr"`` only: percentile (0-100) giving ``a_min``.
        upper_percentile: ``"mr"`` only: percentile (0-100) giving ``a_max``.

    Example::

        norm = IntensityNormalization.from_dict(checkpoint["intensity"]).fit(volume)  # MR: per-volume percentiles
        sr = norm.inverse(engine(norm.forward(volume)))
    """

    kind: str = "range"
    a_min: float | None = 0.0
    a_max: float | None = 1.0
    clip: bool = False
    lower_percentile: float = MR_PERCENTILES[0]
    upper_percentile: float = MR_PERCENTILES[1]

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATION_KINDS:
            raise ConfigurationError(f"unknown intensity normalisation kind {self.kind!r}; use {NORMALIZATION_KINDS}")
        if not 0.0 <= self.lower_percentile < self.upper_percentile <= 100.0:
            raise ConfigurationError(
                f"percentiles must satisfy 0 <= lower < upper <= 100, got {self.lower_percentile}, "
                f"{self.upper_percentile}"
            )
        if (self.a_min is None) != (self.a_max is None):
            raise ConfigurationError(f"a_min and a_max must both be set or both None, got {self.a_min}, {self.a_max}")
        if self.a_min is None and self.kind != "mr":
            raise ConfigurationError(f"kind {self.kind!r} needs a_min and a_max")
        if self.a_min is not None and not float(self.a_max) > float(self.a_min):
            raise ConfigurationError(f"a_max must be greater than a_min, got a_min={self.a_min}, a_max={self.a_max}")

    @classmethod
    def ct(cls, window: tuple[float, float] = CT_WINDOW_HU, clip: bool = True) -> IntensityNormalization:
        """CT: HU ``window = (low, high)`` mapped linearly to ``[0, 1]``."""
        return cls(kind="ct", a_min=float(window[0]), a_max=float(window[1]), clip=clip)

    @classmethod
    def mr(
        cls,
        lower_percentile: float = MR_PERCENTILES[0],
        upper_percentile: float = MR_PERCENTILES[1],
        clip: bool = False,
    ) -> IntensityNormalization:
        """MRI: percentiles computed on each image by :meth:`fit` (``a_min``, ``a_max`` unset until then)."""
        return cls(
            kind="mr",
            a_min=None,
            a_max=None,
            clip=clip,
            lower_percentile=float(lower_percentile),
            upper_percentile=float(upper_percentile),
        )

    @classmethod
    def for_modality(cls, modality: str, array: NdarrayOrTensor | None = None) -> IntensityNormalization:
        """Default map of a modality (``"CT"`` or ``"MR"``, any case), fitted on ``array`` when it is given."""
        presets = {"ct": cls.ct, "mr": cls.mr}
        if modality.lower() not in presets:
            raise ConfigurationError(f"no default intensity normalisation for modality {modality!r}; use CT or MR")
        normalization = presets[modality.lower()]()
        return normalization if array is None else normalization.fit(array)

    def recipe(self) -> dict[str, Any]:
        """:meth:`to_dict` without the per-image numbers: for ``"mr"`` the percentiles only (``a_min = a_max =
        None``), to be fitted again on every volume; ``"ct"`` and ``"range"`` are fixed and returned whole."""
        if self.kind != "mr":
            return self.to_dict()
        return dataclasses.replace(self, a_min=None, a_max=None).to_dict()

    @property
    def fitted(self) -> bool:
        """Whether ``a_min`` and ``a_max`` are known, i.e. ``forward`` and ``inverse`` can run."""
        return self.a_min is not None

    def fit(self, array: NdarrayOrTensor) -> IntensityNormalization:
        """The normalisation to use for ``array``: ``"mr"`` gets its percentiles (``numpy.percentile``, linear
        interpolation, over all voxels and channels); ``"ct"`` and ``"range"`` are returned unchanged."""
        if self.kind != "mr":
            return self
        values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        low, high = np.percentile(values.astype(np.float64), [self.lower_percentile, self.upper_percentile])
        high = high if high > low else low + 1.0  # constant image: any span maps it to 0 and back
        return dataclasses.replace(self, a_min=float(low), a_max=float(high))

    def _span(self) -> tuple[float, float]:
        if not self.fitted:
            raise ConfigurationError("MR normalisation has no a_min/a_max yet: call fit(image) first")
        return float(self.a_min), float(self.a_max) - float(self.a_min)

    def forward(self, array: NdarrayOrTensor) -> NdarrayOrTensor:
        """``(x - a_min) / (a_max - a_min)``, clipped to ``[0, 1]`` when ``clip``; same kind (numpy/torch) as
        ``array``, floating point (integers become float32)."""
        low, span = self._span()
        out = (as_float(array) - low) / span
        if self.clip:
            out = out.clamp(0.0, 1.0) if isinstance(out, torch.Tensor) else np.clip(out, 0.0, 1.0)
        return out

    def inverse(self, array: NdarrayOrTensor) -> NdarrayOrTensor:
        """``y * (a_max - a_min) + a_min``: back to the original units (HU for CT)."""
        low, span = self._span()
        return as_float(array) * span + low

    def excess(self, array: torch.Tensor) -> torch.Tensor | None:
        """What clipping removes from ``array`` (original units): ``x - clip(x, a_min, a_max)``, nonzero only outside
        the window; ``None`` when nothing is clipped (``clip`` off, or every value inside the window).

        The volume engine upscales it with bicubic and adds it to the network's restored output, so that voxels
        outside the window (CT padding at -2048 or -3024 HU, metal above 3071 HU) keep the bicubic result instead
        of coming back as the window's limits, while inside the window the output is the network's alone.
        """
        if not self.clip:
            return None
        low, high = float(self.a_min), float(self.a_max)
        if bool(((array < low) | (array > high)).any()):
            return array - array.clamp(low, high)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the ``"intensity"`` entry of a checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntensityNormalization:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigurationError``."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigurationError(f"unknown intensity normalisation keys {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**dict(data))


def as_float(array: NdarrayOrTensor) -> NdarrayOrTensor:
    """``array`` as it is when floating point, else as float32 (numpy or torch, as given)."""
    if isinstance(array, torch.Tensor):
        return array if array.is_floating_point() else array.to(torch.float32)
    array = np.asarray(array)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float32)
