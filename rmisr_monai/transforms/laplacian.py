"""MONAI transforms computing the Laplacian gradient map of an image (RMISR, Ren et al. 2021, eqs. 6-8).

:class:`LaplacianGradient` works on one channel-first image ``(C, *spatial)`` (no batch axis) and calls
:func:`rmisr_monai.ops.laplacian.laplacian_gradient`, the operator the RMISR-VP network and loss use, so the
targets of the gradient branch are computed by exactly the same code. Channel order, boundary rule and the eq. 6
typo are documented there: mode ``"xy"`` gives ``C * k`` channels for ``k`` spatial axes (channel ``c * k + j`` =
input channel ``c`` differenced along the ``j``-th axis from the last), ``"scalar"`` their sum (``C`` channels).
The grid is unchanged, so a ``MetaTensor`` keeps its affine and metadata.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.laplacian import LAPLACIAN_MODES, laplacian_gradient

__all__ = [
    "LaplacianGradient",
    "LaplacianGradientd",
    "LaplacianGradientD",
    "LaplacianGradientDict",
    "DEFAULT_LAPLACIAN_SUFFIX",
]

DEFAULT_LAPLACIAN_SUFFIX = "_lap"  # LaplacianGradientd writes "image" -> "image_lap" and keeps "image"


class LaplacianGradient(Transform):
    """Laplacian gradient map of a channel-first image (RMISR eqs. 6-8, replicate boundary).

    Args:
        mode: ``"xy"`` (per-axis maps stacked as channels, eq. 8) or ``"scalar"`` (their sum).

    Numpy in gives numpy out, torch gives torch, MetaTensor gives MetaTensor (same affine); integer input is
    computed in float32.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, mode: str = "xy") -> None:
        if mode not in LAPLACIAN_MODES:
            raise ConfigurationError(f"unknown Laplacian mode {mode!r}; expected one of {LAPLACIAN_MODES}")
        self.mode = mode

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``(C, *spatial) -> (C * k, *spatial)`` for ``"xy"``, ``(C, *spatial)`` for ``"scalar"``."""
        if img.ndim < 2:
            raise ConfigurationError(f"LaplacianGradient expects a channel-first image, got shape {tuple(img.shape)}")
        t = convert_to_tensor(img, track_meta=False)
        if not t.is_floating_point():
            t = t.float()
        out = laplacian_gradient(t[None], mode=self.mode)[0]
        return convert_to_dst_type(out, img, dtype=out.dtype)[0]


class LaplacianGradientd(MapTransform):
    """Dictionary version of :class:`LaplacianGradient`: adds ``key + output_key_suffix`` and keeps ``key``.

    Args:
        keys: keys of the images.
        mode: see :class:`LaplacianGradient`.
        output_key_suffix: the map of ``key`` is stored under ``f"{key}{output_key_suffix}"``; an empty string
            replaces the image in place.
        allow_missing_keys: skip missing keys instead of raising.
    """

    backend = LaplacianGradient.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "xy",
        output_key_suffix: str = DEFAULT_LAPLACIAN_SUFFIX,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.operator = LaplacianGradient(mode)
        self.output_key_suffix = output_key_suffix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            out_key = f"{key}{self.output_key_suffix}" if self.output_key_suffix else key
            d[out_key] = self.operator(d[key])
        return d


LaplacianGradientD = LaplacianGradientDict = LaplacianGradientd
