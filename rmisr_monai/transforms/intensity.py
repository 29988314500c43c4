"""Invertible intensity normalisation to ``[0, 1]`` for CT (fixed HU window) and MRI (robust percentiles).

Every network of the project works on images in ``[0, 1]`` (network contract, ``CONTRIBUTING.md``); a volume must
leave the inference engine in its original units (HU for CT), so the normalisation is a linear map that is always
recorded and undone:

* :class:`~rmisr_monai.core.intensity.IntensityNormalization` (in the bottom layer, re-exported here) is the
  functional form, free of MONAI: ``forward`` / ``inverse`` on numpy arrays or torch tensors, ``to_dict`` /
  ``from_dict`` for the ``"intensity"`` entry of a checkpoint, ``fit`` for the MR percentiles that are recomputed
  on every volume;
* :class:`IntensityNormalize` (and its presets :class:`NormalizeCT`, :class:`NormalizeMR`) is the MONAI array
  transform; on a ``MetaTensor`` it records the fitted map in ``applied_operations`` so that ``inverse`` (and
  ``Invertd``) restore the original intensities;
* :class:`IntensityNormalized`, :class:`NormalizeCTd`, :class:`NormalizeMRd` are the dictionary versions.

The map is ``y = (x - a_min) / (a_max - a_min)``, optionally clipped to ``[0, 1]``; the inverse is
``x = y * (a_max - a_min) + a_min``. With clipping, values outside ``[a_min, a_max]`` are not recovered by the
inverse (they come back as ``a_min`` or ``a_max``); everything inside the window round-trips exactly up to float
rounding.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TraceKeys, TransformBackends

from rmisr_monai.core.intensity import (  # the names not used here are re-exported through __all__
    CT_PADDED_WINDOW_HU,  # noqa: F401
    CT_WINDOW_HU,
    MR_PERCENTILES,
    NORMALIZATION_KINDS,  # noqa: F401
    IntensityNormalization,
)
from rmisr_monai.core.intensity import __all__ as _CORE_NAMES
from rmisr_monai.errors import ConfigurationError

# the bottom layer's names (all but its float helper) are this module's too
__all__ = [
    *(name for name in _CORE_NAMES if name != "as_float"),
    "IntensityNormalize",
    "NormalizeCT",
    "NormalizeMR",
    "IntensityNormalized",
    "IntensityNormalizeD",
    "IntensityNormalizeDict",
    "NormalizeCTd",
    "NormalizeCTD",
    "NormalizeCTDict",
    "NormalizeMRd",
    "NormalizeMRD",
    "NormalizeMRDict",
]

_EXTRA_KEY = "intensity"  # key of the recorded normalisation in the applied_operations entry


class IntensityNormalize(InvertibleTransform, Transform):
    """Apply an :class:`IntensityNormalization` (fitted on each image for ``"mr"``) and record it for ``inverse``.

    On a ``MetaTensor`` the fitted map is pushed to ``applied_operations`` (``extra_info["intensity"]``, the
    :meth:`IntensityNormalization.to_dict` form), so :meth:`inverse` and ``monai.transforms.Invertd`` restore the
    original intensities. A numpy array or plain tensor carries no record: call :meth:`normalization_for` to get
    the fitted map and keep it.

    Args:
        normalization: the map, or its dictionary form.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, normalization: IntensityNormalization | Mapping[str, Any]) -> None:
        if not isinstance(normalization, IntensityNormalization):
            normalization = IntensityNormalization.from_dict(normalization)
        self.normalization = normalization

    def normalization_for(self, img: NdarrayOrTensor) -> IntensityNormalization:
        """The map applied to ``img`` (the percentiles of ``img`` for ``"mr"``)."""
        return self.normalization.fit(img)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Normalise ``img`` (any shape; numpy in, numpy out; tensor in, tensor out)."""
        normalization = self.normalization_for(img)
        out = normalization.forward(img)
        if isinstance(out, MetaTensor):
            self.push_transform(out, extra_info={_EXTRA_KEY: normalization.to_dict()})
        return out

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Undo the normalisation recorded on the ``MetaTensor`` ``data``."""
        if not isinstance(data, MetaTensor):
            raise ConfigurationError(
                "inverse needs the MetaTensor that carries the recorded normalisation; for numpy arrays use "
                "IntensityNormalization.inverse with the map from normalization_for"
            )
        record = self.pop_transform(data)
        normalization = IntensityNormalization.from_dict(record[TraceKeys.EXTRA_INFO][_EXTRA_KEY])
        return normalization.inverse(data)


class NormalizeCT(IntensityNormalize):
    """CT: HU window mapped linearly to ``[0, 1]`` (invertible; see :class:`IntensityNormalize`).

    Args:
        window: ``(low, high)`` in HU; default ``CT_WINDOW_HU = (-1024, 3071)``, the full 12-bit CT range.
        clip: clip to ``[0, 1]``: HU outside the window (metal above 3071 HU) come back as the window limits.
    """

    def __init__(self, window: tuple[float, float] = CT_WINDOW_HU, clip: bool = True) -> None:
        super().__init__(IntensityNormalization.ct(window, clip))


class NormalizeMR(IntensityNormalize):
    """MRI: robust percentiles of each image mapped to ``[0, 1]`` (invertible; see :class:`IntensityNormalize`).

    Args:
        lower_percentile: percentile (0-100) mapped to 0, default 0.5.
        upper_percentile: percentile (0-100) mapped to 1, default 99.5.
        clip: clip to ``[0, 1]``; off by default so that the inverse restores every voxel.
    """

    def __init__(
        self,
        lower_percentile: float = MR_PERCENTILES[0],
        upper_percentile: float = MR_PERCENTILES[1],
        clip: bool = False,
    ) -> None:
        super().__init__(IntensityNormalization.mr(lower_percentile, upper_percentile, clip))


class IntensityNormalized(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`IntensityNormalize`: every key gets its own fitted map.

    Args:
        keys: keys of the images to normalise.
        normalization: the map, or its dictionary form.
        allow_missing_keys: skip missing keys instead of raising.
    """

    backend = IntensityNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        normalization: IntensityNormalization | Mapping[str, Any],
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = IntensityNormalize(normalization)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer.inverse(d[key])
        return d


class NormalizeCTd(IntensityNormalized):
    """Dictionary version of :class:`NormalizeCT` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        window: tuple[float, float] = CT_WINDOW_HU,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, IntensityNormalization.ct(window, clip), allow_missing_keys)


class NormalizeMRd(IntensityNormalized):
    """Dictionary version of :class:`NormalizeMR` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        lower_percentile: float = MR_PERCENTILES[0],
        upper_percentile: float = MR_PERCENTILES[1],
        clip: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, IntensityNormalization.mr(lower_percentile, upper_percentile, clip), allow_missing_keys)


IntensityNormalizeD = IntensityNormalizeDict = IntensityNormalized
NormalizeCTD = NormalizeCTDict = NormalizeCTd
NormalizeMRD = NormalizeMRDict = NormalizeMRd
