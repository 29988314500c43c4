"""Bicubic degradation: the LR images of SR training and evaluation (MATLAB ``imresize(hr, 1/s, 'bicubic')``).

Every SR paper compared in RMISR (Ren et al. 2021, Table 1 and §5) makes its LR inputs with MATLAB's antialiased
bicubic downscaling; :class:`BicubicDegrade` does the same through :func:`rmisr_monai.transforms.resize.bicubic_resize`.

Sizes. For an axis of ``n`` HR samples and SR factor ``s >= 1``:

* ``crop_to_multiple=False``: the LR length is MATLAB's ``ceil(n / s)``, and the kernel is built for the scale
  ``n_lr / n`` so that the LR grid covers exactly the HR box (identical to ``1 / s`` when ``s`` divides ``n``);
* ``crop_to_multiple=True`` (the usual benchmark protocol, e.g. Set14 ``comic`` 250 x 361 at x4): the HR image is
  first cropped at the far end to ``round(floor(n / s) * s)`` samples, then ``n_lr = floor(n / s)``. For an integer
  ``s`` this is the largest multiple of ``s``; for a fractional ``s`` it is the HR length an arbitrary-scale network
  produces from ``n_lr`` (``round(n_lr * s)``, network contract), so ``network(lr, s)`` matches ``hr`` in shape.

Geometry. A ``MetaTensor`` LR image gets ``affine @ scale_affine(n_hr, n_lr, centered=True)`` (MONAI ``Resize``):
the spacing is multiplied by ``n_hr / n_lr`` (``meta["pixdim"]`` too) and the origin moves so that the outer voxel
corners of the image stay at the same physical points. Cropping at the far end keeps voxel 0, hence the affine.
In :class:`BicubicDegraded` the LR is a new image made from the HR: its metadata are a copy of the HR's (no array
shared) with the LR grid, and its ``applied_operations`` are empty, since the HR's crops and flips were applied to
the HR, not to it (``Invertd`` on the LR would otherwise undo them on the wrong grid).

Batches. :class:`RandBicubicDegraded` draws a factor per call, so two samples of a batch generally differ in size
and cannot be collated. For ``batch_size > 1`` give the samples one HR patch size (e.g. ``RandSpatialCropd``) and
pass :meth:`RandBicubicDegraded.collate` as the DataLoader's ``collate_fn``: it draws one factor per batch (Meta-SR's
protocol, Hu et al. 2019 §4.1) and degrades every sample of the batch with it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor, list_data_collate
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import TransformBackends
from torch.utils.data import get_worker_info

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.transforms.resize import bicubic_resize, per_axis_scales

__all__ = [
    "DEFAULT_SCALE_RANGE",
    "BicubicDegrade",
    "BicubicDegraded",
    "BicubicDegradeD",
    "BicubicDegradeDict",
    "RandBicubicDegraded",
    "RandBicubicDegradeD",
    "RandBicubicDegradeDict",
]

# Meta-SR's arbitrary-scale training range, x1.1 ... x4.0 (Hu et al. 2019; RMISR §4.3 arbitrary-scale upsampler)
DEFAULT_SCALE_RANGE = (1.1, 4.0)
_SIZE_EPS = 1e-9  # floor(n / s) robust to 255 / (255 / 85) landing just below 85


class BicubicDegrade(Transform):
    """Shrink a channel-first image by the SR factor ``scale`` with MATLAB-compatible antialiased bicubic.

    Args:
        scale: SR factor ``>= 1`` (the image shrinks by it): one float, or one per axis in ``axes``.
        axes: spatial axes (0-based, channel excluded) to degrade, e.g. ``(2,)`` for the slice axis of a
            ``(C, H, W, D)`` volume; ``None``: every spatial axis.
        crop_to_multiple: crop the far end of each degraded axis first (see the module docstring).

    Returns float (integer input becomes float32) of the input's kind; a MetaTensor gets the LR affine.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, scale: float | Sequence[float], axes: Sequence[int] | None = None, crop_to_multiple: bool = False
    ) -> None:
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        if self.axes is not None and (len(set(self.axes)) != len(self.axes) or any(a < 0 for a in self.axes)):
            raise ConfigurationError(f"axes must be distinct non-negative spatial indices, got {axes}")
        if not isinstance(scale, (int, float)) and self.axes is not None and len(scale) != len(self.axes):
            raise ConfigurationError(f"{len(scale)} scales {tuple(scale)} given for the axes {self.axes}")
        check = [scale] if isinstance(scale, (int, float)) else list(scale)
        if any(not float(s) >= 1 for s in check):
            raise ConfigurationError(f"SR factors must be >= 1 (the image shrinks by them), got {scale}")
        self.scale = scale
        self.crop_to_multiple = crop_to_multiple

    def factors(self, n_spatial: int) -> list[float]:
        """The SR factor of each of ``n_spatial`` axes (1 on the axes that are not degraded)."""
        axes = range(n_spatial) if self.axes is None else self.axes
        if any(a >= n_spatial for a in axes):
            raise ConfigurationError(f"axes {self.axes} out of range for {n_spatial} spatial axes")
        factors = [1.0] * n_spatial
        for a, s in zip(axes, per_axis_scales(self.scale, len(axes))):
            factors[a] = s
        return factors

    def sizes(self, spatial_shape: Sequence[int]) -> tuple[list[int], list[int]]:
        """``(hr_size, lr_size)``: the HR size after the optional crop and the LR size (module docstring)."""
        factors = self.factors(len(spatial_shape))
        if not self.crop_to_multiple:
            return list(spatial_shape), [max(1, math.ceil(n / s - _SIZE_EPS)) for n, s in zip(spatial_shape, factors)]
        lr_size = [math.floor(n / s + _SIZE_EPS) for n, s in zip(spatial_shape, factors)]
        if any(m < 1 for m in lr_size):
            raise ConfigurationError(f"spatial shape {tuple(spatial_shape)} is smaller than the SR factors {factors}")
        return [round(m * s) for m, s in zip(lr_size, factors)], lr_size

    def crop(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img`` cropped at the far end to the HR size of :meth:`sizes` (voxel 0, hence the affine, kept)."""
        hr_size = self.sizes(img.shape[1:])[0]
        return img[(slice(None), *(slice(0, m) for m in hr_size))]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """The LR image; with ``crop_to_multiple`` it is made from :meth:`crop` of ``img``."""
        hr_size, lr_size = self.sizes(img.shape[1:])
        hr = img[(slice(None), *(slice(0, m) for m in hr_size))] if self.crop_to_multiple else img
        return bicubic_resize(hr, None, output_shape=lr_size)


class BicubicDegraded(MapTransform):
    """Dictionary version of :class:`BicubicDegrade`: adds ``lr_key`` made from ``keys``.

    Args:
        keys: the HR image key (one key; several keys need as many ``lr_key`` entries).
        lr_key: where the LR image goes; one per key.
        scale, axes, crop_to_multiple: see :class:`BicubicDegrade`. With ``crop_to_multiple`` the HR entry is
            replaced by its cropped version so that the pair stays aligned; otherwise it is left untouched.
        scale_key: if given, the SR factor is stored under this key (a float, or a tuple for per-axis factors).
        allow_missing_keys: skip missing keys instead of raising.
    """

    backend = BicubicDegrade.backend

    def __init__(
        self,
        keys: KeysCollection = "hr",
        lr_key: KeysCollection = "lr",
        scale: float | Sequence[float] = 2.0,
        axes: Sequence[int] | None = None,
        crop_to_multiple: bool = False,
        scale_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.lr_keys = (lr_key,) if isinstance(lr_key, str) else tuple(lr_key)
        if len(self.lr_keys) != len(self.keys):
            raise ConfigurationError(f"{len(self.keys)} keys {self.keys} but {len(self.lr_keys)} lr keys")
        self.degrader = BicubicDegrade(scale, axes, crop_to_multiple)
        self.scale_key = scale_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, lr_key in self.key_iterator(d, self.lr_keys):
            d[lr_key] = self.degrader(d[key])
            if isinstance(d[lr_key], MetaTensor):  # a new image: the HR's history is not its own (module docstring)
                d[lr_key].applied_operations = []
            if self.degrader.crop_to_multiple:
                d[key] = self.degrader.crop(d[key])
        if self.scale_key is not None:
            d[self.scale_key] = self.degrader.scale
        return d


class RandBicubicDegraded(Randomizable, BicubicDegraded):
    """:class:`BicubicDegraded` with an SR factor drawn uniformly from ``scale_range`` on every call.

    The same factor is applied to every degraded axis and stored under ``scale_key`` (float), so an arbitrary-scale
    network can be fed ``network(lr, d[scale_key])``. ``crop_to_multiple`` defaults to ``True`` so that this
    output size equals the HR size (module docstring).

    As a transform it draws a factor per sample (batches of one). For larger batches use :meth:`collate` as the
    DataLoader's ``collate_fn`` on samples of one HR size, e.g.
    ``DataLoader(Dataset(items, Compose([LoadImaged("hr"), RandSpatialCropd("hr", (64, 64))])), batch_size=16,
    collate_fn=RandBicubicDegraded("hr", "lr").collate)``: one factor per batch, so HR and LR stack.

    Args:
        scale_range: ``(low, high)`` bounds of the uniform draw, ``1 <= low <= high``.
        keys, lr_key, axes, allow_missing_keys: see :class:`BicubicDegraded`.
        crop_to_multiple: see :class:`BicubicDegrade`.
        scale_key: key of the drawn factor.
    """

    def __init__(
        self,
        keys: KeysCollection = "hr",
        lr_key: KeysCollection = "lr",
        scale_range: Sequence[float] = DEFAULT_SCALE_RANGE,
        axes: Sequence[int] | None = None,
        crop_to_multiple: bool = True,
        scale_key: str = "scale",
        allow_missing_keys: bool = False,
    ) -> None:
        low, high = (float(v) for v in scale_range)
        if not 1 <= low <= high:
            raise ConfigurationError(f"scale_range must satisfy 1 <= low <= high, got {tuple(scale_range)}")
        super().__init__(keys, lr_key, low, axes, crop_to_multiple, scale_key, allow_missing_keys)
        self.scale_range = (low, high)
        self._seeded_for: int | None = None  # the DataLoader worker seed :meth:`collate` last re-seeded from

    def randomize(self, data: Any = None) -> None:
        """Draw the SR factor of the next call."""
        self.degrader.scale = float(self.R.uniform(*self.scale_range))

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        self.randomize()
        return super().__call__(data)

    def collate(self, samples: Sequence[Mapping[Hashable, NdarrayOrTensor]]) -> dict[Hashable, Any]:
        """DataLoader ``collate_fn``: one factor for the whole batch, every sample degraded with it, then collated.

        The samples must share the HR size (their LR and cropped HR then do too). In a DataLoader worker the random
        state is first re-seeded from the worker's seed, so that workers do not repeat each other's factors.
        """
        worker = get_worker_info()
        if worker is not None and self._seeded_for != worker.seed:
            self.set_random_state(seed=worker.seed % 2**32)
            self._seeded_for = worker.seed
        self.randomize()
        return list_data_collate([BicubicDegraded.__call__(self, sample) for sample in samples])


BicubicDegradeD = BicubicDegradeDict = BicubicDegraded
RandBicubicDegradeD = RandBicubicDegradeDict = RandBicubicDegraded
