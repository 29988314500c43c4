"""Apply a trained 2D SR network to a channel-first 3D image inside a MONAI ``Compose``.

:class:`SuperResolve` (array) and :class:`SuperResolved` (dictionary) call the volume engine's core,
:func:`rmisr_monai.inference.engine.upscale_array` (slices -> tiles -> network -> stitched slices); there is no
second implementation of slice-wise SR. On a ``MetaTensor`` the affine is updated the way MONAI's ``Resize`` does it,
``affine @ scale_affine(old_size, new_size, centered=True)``: the voxel-corner box is kept and the spacing of each
upscaled axis becomes ``spacing * n / round(n * s)`` (the same geometry as
:func:`rmisr_monai.io.geometry.rescaled_geometry` gives the engine). The change is recorded in
``applied_operations`` so that :meth:`SuperResolve.inverse` (and ``Invertd``) can return to the original grid.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.transforms.utils import scale_affine
from monai.utils import TraceKeys, TransformBackends, convert_to_dst_type
from torch import nn

# the engine imports transforms.intensity, hence this package: it is imported when first used, not here
from rmisr_monai.inference.tiling import DEFAULT_TILE_OVERLAP
from rmisr_monai.transforms.intensity import IntensityNormalization

__all__ = ["SuperResolve", "SuperResolved", "SuperResolveD", "SuperResolveDict"]


class SuperResolve(InvertibleTransform, Transform):
    """Super-resolve a channel-first image ``(C, I, J, K)`` slice by slice with a 2D network.

    Args:
        network: a 2D SR network (network contract), e.g. from :func:`rmisr_monai.weights.load_model`.
        scale: factor of each upscaled axis.
        axis: slice axis (in-plane) or thick axis (``through_plane``): ``"x"|"y"|"z"`` or ``0|1|2`` (spatial index).
        through_plane: upscale only ``axis`` (arbitrary-scale networks).
        intensity: normalisation to ``[0, 1]`` applied before and undone after the network (checkpoint
            ``"intensity"``); ``None`` if the image is already in the network's range.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        tile: window side in input pixels (``None``: whole slices).
        tile_overlap: context pixels around each window core.
        batch_size: slices per network call.
        amp: float16 autocast on CUDA.
        progress: tqdm progress bar.

    Returns ``float32`` of the input's kind (MetaTensor with updated affine, tensor or numpy).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        network: nn.Module,
        scale: float,
        axis: str | int = "z",
        through_plane: bool = False,
        intensity: IntensityNormalization | Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch_size: int = 4,
        amp: bool = True,
        progress: bool = False,
    ) -> None:
        self.network = network
        self.scale = float(scale)
        self.axis = axis
        self.through_plane = through_plane
        self.engine_kwargs = dict(
            axis=axis,
            through_plane=through_plane,
            intensity=intensity,
            device=device,
            tile=tile,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
            amp=amp,
            progress=progress,
        )

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Upscale ``img`` (channel first, 3 spatial dimensions)."""
        if img.ndim != 4:
            raise ValueError(f"SuperResolve expects a channel-first 3D image (C, I, J, K), got shape {tuple(img.shape)}")
        from rmisr_monai.inference.engine import upscale_array

        in_size = [int(n) for n in img.shape[1:]]
        out = torch.from_numpy(np.ascontiguousarray(upscale_array(img, self.network, self.scale, **self.engine_kwargs)))
        out_size = [int(n) for n in out.shape[1:]]
        if not isinstance(img, MetaTensor):
            return convert_to_dst_type(out, img, dtype=out.dtype)[0]
        result = MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        affine = img.affine.to(torch.float64) @ torch.as_tensor(scale_affine(in_size, out_size, centered=True))
        result.affine = affine.to(img.affine.dtype)
        self.push_transform(
            result,
            orig_size=in_size,
            extra_info={"scale": self.scale, "axis": str(self.axis), "through_plane": self.through_plane},
        )
        return result

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Back to the recorded original grid: area-average downsampling (``F.interpolate(mode="area")``), which
        is the exact inverse of the grid change but not of the network; the affine is restored."""
        if not isinstance(data, MetaTensor):
            raise ValueError("SuperResolve.inverse needs the MetaTensor that carries the recorded transform")
        record = self.pop_transform(data)
        orig = [int(n) for n in record[TraceKeys.ORIG_SIZE]]
        now = [int(n) for n in data.shape[1:]]
        down = F.interpolate(data.as_tensor()[None].float(), size=orig, mode="area")[0]
        result = MetaTensor(down, meta=dict(data.meta), applied_operations=list(data.applied_operations))
        affine = data.affine.to(torch.float64) @ torch.as_tensor(scale_affine(now, orig, centered=True))
        result.affine = affine.to(data.affine.dtype)
        return result


class SuperResolved(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`SuperResolve` (same arguments after ``keys``).

    Args:
        keys: keys of the images to upscale.
        allow_missing_keys: skip missing keys instead of raising.
    """

    backend = SuperResolve.backend

    def __init__(
        self,
        keys: KeysCollection,
        network: nn.Module,
        scale: float,
        axis: str | int = "z",
        through_plane: bool = False,
        intensity: IntensityNormalization | Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch_size: int = 4,
        amp: bool = True,
        progress: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.upscaler = SuperResolve(
            network, scale, axis, through_plane, intensity, device, tile, tile_overlap, batch_size, amp, progress
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.upscaler(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.upscaler.inverse(d[key])
        return d


SuperResolveD = SuperResolveDict = SuperResolved
