"""Apply a trained 2D SR network to a channel-first 3D image inside a MONAI ``Compose``.

:class:`SuperResolve` (array) and :class:`SuperResolved` (dictionary) call the volume engine's core,
:func:`rmisr_monai.inference.engine.upscale_array` (slices -> tiles -> network -> stitched slices); there is no
second implementation of slice-wise SR. On a ``MetaTensor`` the affine is updated the way MONAI's ``Resize`` does it,
``affine @ scale_affine(old_size, new_size, centered=True)``: the voxel-corner box is kept and the spacing of each
upscaled axis becomes ``spacing * n / round(n * s)`` (the same geometry as
:func:`rmisr_monai.io.geometry.rescaled_geometry` gives the engine), and ``meta["pixdim"]`` holds that spacing. The
change is recorded in ``applied_operations`` so that :meth:`SuperResolve.inverse` (and ``Invertd``) can return to
the original grid.

Inverse. SR has no exact inverse; the grid change has. The inverse resamples to the recorded original size with
``F.interpolate(mode=inverse_mode)``: ``"area"`` (default) averages the SR voxels over each original voxel, which is
right for intensities; ``"nearest"`` keeps the values, which is what a label map made on the SR grid needs.
``Invertd(..., nearest_interp=True)`` switches the recorded mode to ``"nearest"`` (MONAI's
``convert_applied_interp_mode``), as it does for MONAI's ``Resize``, so a segmentation comes back with its labels.
"""

from __future__ import annotations

import copy
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

from rmisr_monai.core.axes import resolve_axis
from rmisr_monai.core.intensity import IntensityNormalization
from rmisr_monai.core.options import RunOptions
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.inference.adapt import adapt_network
from rmisr_monai.inference.engine import run_options, upscale_array
from rmisr_monai.inference.selection import (
    intensity_for,
    select_network,
    self_ensemble_for,
)
from rmisr_monai.transforms.resize import regridded

__all__ = ["INVERSE_MODES", "SuperResolve", "SuperResolved", "SuperResolveD", "SuperResolveDict"]

# F.interpolate modes of a 3D volume that the inverse accepts ("nearest": Invertd's nearest_interp)
INVERSE_MODES = ("area", "nearest", "nearest-exact", "trilinear")


class SuperResolve(InvertibleTransform, Transform):
    """Super-resolve a channel-first image ``(C, I, J, K)`` slice by slice with a 2D network.

    With ``network=None`` the network is the one ``rmisr upscale`` would choose for the options' ``model`` /
    ``weights`` / scale and ``modality`` (:mod:`rmisr_monai.inference.selection`), with its intensity normalisation
    and its self-ensemble recipe, so that a ``Compose`` gives what the CLI gives. A given ``network`` is used as it
    is: ``intensity`` then says how to normalise, and ``self_ensemble`` ``None`` means off.

    The transform owns a private copy of ``network``, made here: the caller's module is never changed (its training
    mode, device and memory format stay as they are), while the copy is put in eval mode, moved to the device and
    made channels-last by the engine. Changes made to ``network`` after construction do not reach the transform.

    Args:
        network: a 2D SR network (network contract), e.g. from :func:`rmisr_monai.weights.load_model`; ``None``:
            chosen from the options (above).
        scale: factor of each upscaled axis (replaces ``options.scale`` when given).
        options: :class:`~rmisr_monai.core.options.RunOptions` (or their dict): axis, through-plane, device,
            precision, batch, tile, overlap, self-ensemble, memory budget, ``model`` / ``weights``.
        intensity: normalisation to ``[0, 1]`` applied before and undone after the network (checkpoint
            ``"intensity"``); ``None`` with a given network: the image is already in the network's range.
        modality: ``"CT"`` or ``"MR"``: which shipped default serves ``network=None``.
        progress: tqdm progress bar.
        inverse_mode: ``F.interpolate`` mode of :meth:`inverse`, one of :data:`INVERSE_MODES` (module docstring);
            recorded with the operation, where ``Invertd(nearest_interp=True)`` replaces it by ``"nearest"``.
        changes: run options by field name over ``options``.

    Returns ``float32`` of the input's kind (MetaTensor with updated affine and pixdim, tensor or numpy); an
    integer ``out_dtype`` option gives that type.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        network: nn.Module | None = None,
        scale: float | None = None,
        *,
        options: RunOptions | Mapping[str, Any] | None = None,
        intensity: IntensityNormalization | Mapping[str, Any] | None = None,
        modality: str | None = None,
        progress: bool = False,
        inverse_mode: str = "area",
        **changes: Any,
    ) -> None:
        if inverse_mode not in INVERSE_MODES:
            raise ConfigurationError(f"inverse_mode must be one of {', '.join(INVERSE_MODES)}, got {inverse_mode!r}")
        self.options = run_options(options, scale, **changes)
        o = self.options
        if network is None:
            network, meta = select_network(o.model, o.weights, o.scale, modality, o.through_plane)
            self.options = o.replace(self_ensemble=self_ensemble_for(meta, o.self_ensemble))
            intensity = intensity_for(meta, modality) if intensity is None else intensity
        self.network = copy.deepcopy(network)
        self.intensity = intensity
        self.modality = modality
        self.progress = progress
        self.inverse_mode = inverse_mode

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Upscale ``img`` (channel first, 3 spatial dimensions)."""
        if img.ndim != 4:
            raise ValueError(
                f"SuperResolve expects a channel-first 3D image (C, I, J, K), not shape {tuple(img.shape)}"
            )
        in_size = [int(n) for n in img.shape[1:]]
        network = self.network
        if self.options.adapt > 0:  # a copy fine-tuned on this image (first channel), as rmisr upscale --adapt does
            o = self.options
            volume = img[0].detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img[0])
            network = adapt_network(
                network, volume, scale=o.scale, axis=resolve_axis(o.axis), through_plane=o.through_plane,
                intensity=self.intensity, seconds=o.adapt, seed=o.seed, progress=self.progress,
            )
        array = upscale_array(
            img, network, options=self.options, intensity=self.intensity, progress=self.progress
        )
        out = torch.from_numpy(np.ascontiguousarray(array))
        out_size = [int(n) for n in out.shape[1:]]
        if not isinstance(img, MetaTensor):
            return convert_to_dst_type(out, img, dtype=out.dtype)[0]
        o = self.options
        extra = {"scale": o.scale, "axis": o.axis, "through_plane": o.through_plane}
        return regridded(
            img, out, scale_affine(in_size, out_size, centered=True), self,
            orig_size=in_size, extra_info={**extra, "mode": self.inverse_mode},
        )

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Back to the recorded original grid with the recorded mode (module docstring): the exact inverse of the
        grid change, not of the network; affine and pixdim are restored. ``"nearest"`` modes keep the dtype (labels
        stay labels); the others give float32 (float64 stays float64)."""
        if not isinstance(data, MetaTensor):
            raise ValueError("SuperResolve.inverse needs the MetaTensor that carries the recorded transform")
        record = self.pop_transform(data)
        mode = record[TraceKeys.EXTRA_INFO].get("mode", "area")
        if mode not in INVERSE_MODES:
            raise ConfigurationError(f"recorded inverse mode {mode!r} is not one of {', '.join(INVERSE_MODES)}")
        orig = [int(n) for n in record[TraceKeys.ORIG_SIZE]]
        now = [int(n) for n in data.shape[1:]]
        x = data.as_tensor()
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        down = F.interpolate(work[None], size=orig, mode=mode)[0]
        if mode.startswith("nearest"):
            down = down.to(x.dtype)
        return regridded(data, down, scale_affine(now, orig, centered=True))


class SuperResolved(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`SuperResolve` (the same arguments after ``keys``, by keyword after
    ``scale``; one private network copy).

    Args:
        keys: keys of the images to upscale.
        allow_missing_keys: skip missing keys instead of raising.
    """

    backend = SuperResolve.backend

    def __init__(
        self,
        keys: KeysCollection,
        network: nn.Module | None = None,
        scale: float | None = None,
        *,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.upscaler = SuperResolve(network, scale, **kwargs)

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
