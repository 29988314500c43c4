"""MATLAB-compatible bicubic resizing of channel-first images (numpy, torch or MetaTensor).

:func:`bicubic_resize` is the channel-first, type-preserving front end of :func:`rmisr_monai.ops.resize.imresize`
(MATLAB ``imresize(..., 'bicubic')``: Keys cubic ``a = -0.5``, antialiasing when shrinking, symmetric boundary,
output length ``ceil(n * scale)``), the operator the SR literature uses for its LR images and its "Bicubic" rows
(e.g. RMISR, Ren et al. 2021, Table 1). No rounding is applied: callers that emulate MATLAB's uint8 files round and
clip themselves.

Geometry of a ``MetaTensor``: MATLAB samples output voxel ``x`` (1-based) at input position
``u = x / s + (1 - 1 / s) / 2``, so the first voxel corner stays where it was and the spacing becomes ``spacing / s``
exactly, with ``s`` the scale the kernel is built for (the given scale, or ``n_out / n_in`` when only
``output_shape`` is given). The affine is therefore ``affine @ scale_affine(n_in, n_in * s, centered=True)``, which
is MONAI ``Resize``'s update whenever ``n_in * s`` is the output length (then both corners of the box are kept);
when ``ceil`` rounds the length up the box grows at the far end, as the sampled data do. The metadata are updated
by MONAI's own bookkeeping (:func:`regridded`): a deep copy, with ``meta["pixdim"]`` set to the new spacing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import TraceableTransform
from monai.transforms.utils import scale_affine
from monai.utils import convert_to_dst_type, convert_to_tensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.resize import imresize

__all__ = ["bicubic_resize", "per_axis_scales", "regridded"]


def per_axis_scales(scale: float | Sequence[float], n_axes: int) -> list[float]:
    """``scale`` as one float per axis (a single float is repeated); raises if the count does not match."""
    scales = [float(scale)] * n_axes if isinstance(scale, (int, float)) else [float(s) for s in scale]
    if len(scales) != n_axes:
        raise ConfigurationError(f"{len(scales)} scales {tuple(scales)} given for {n_axes} spatial axes")
    if any(not s > 0 for s in scales):
        raise ConfigurationError(f"scales must be positive, got {tuple(scales)}")
    return scales


def bicubic_resize(
    image: NdarrayOrTensor,
    scale: float | Sequence[float] | None,
    output_shape: Sequence[int] | None = None,
) -> NdarrayOrTensor:
    """Resize a channel-first image like MATLAB ``imresize(image, scale, 'bicubic')``, without rounding.

    Args:
        image: ``(C, H, W)`` or ``(C, H, W, D)`` (any number of spatial axes), numpy array, tensor or MetaTensor.
        scale: one factor for every spatial axis or one per spatial axis; ``> 1`` enlarges, ``< 1`` shrinks (with
            antialiasing), ``1`` leaves the axis untouched. ``None`` when ``output_shape`` is given.
        output_shape: spatial output size; overrides ``ceil(n * scale)``. Without ``scale`` the kernel of each axis
            is built for ``n_out / n_in``.

    Returns:
        The resized image of the input's kind: float (integer input becomes float32, float64 stays float64);
        a MetaTensor gets its affine updated as described in the module docstring.
    """
    if image.ndim < 2:
        raise ConfigurationError(f"bicubic_resize expects a channel-first image, got shape {tuple(image.shape)}")
    n_spatial = image.ndim - 1
    in_size = [int(n) for n in image.shape[1:]]
    scales = None if scale is None else per_axis_scales(scale, n_spatial)
    if output_shape is not None and len(output_shape) != n_spatial:
        raise ConfigurationError(f"output_shape {tuple(output_shape)} does not match the spatial shape {in_size}")
    t = convert_to_tensor(image, track_meta=False)
    out = imresize(t, scales, output_shape, dims=tuple(range(1, image.ndim)))
    if not isinstance(image, MetaTensor):
        return convert_to_dst_type(out, image, dtype=out.dtype)[0]
    extent = [n * s for n, s in zip(in_size, scales)] if scales is not None else [int(n) for n in output_shape]
    return regridded(image, out, scale_affine(in_size, extent, centered=True))


def regridded(
    image: MetaTensor, data: torch.Tensor, scaling: NdarrayOrTensor, transform: TraceableTransform | None = None,
    **record: Any,
) -> MetaTensor:
    """``data`` as a MetaTensor on the grid of ``image`` changed by the voxel-to-voxel affine ``scaling``.

    MONAI's own bookkeeping (:meth:`~monai.transforms.TraceableTransform.track_transform_meta`, what ``Resize``
    uses) on a deep copy of ``image``'s metadata (no array shared with it, ``image`` unchanged): the affine becomes
    ``affine @ scaling`` (float64) and ``meta["pixdim"]``, when present, holds the new voxel spacing.

    Args:
        image: the image before the grid change.
        data: the array on the new grid.
        scaling: ``scale_affine(old_size, new_size, centered=True)`` or any voxel-to-voxel affine.
        transform: if given, its operation is pushed onto ``applied_operations`` (for ``inverse``/``Invertd``).
        record: ``orig_size``, ``extra_info`` of the pushed operation.
    """
    info = None if transform is None else transform.get_transform_info()
    # MONAI copies the metadata dict shallowly and then writes the new pixdim into its array in place: hand it a
    # deep copy, or the pixdim of ``image`` (e.g. the HR kept beside its LR) would change too
    source = MetaTensor(
        image.as_tensor(), meta=copy.deepcopy(image.meta), applied_operations=copy.deepcopy(image.applied_operations)
    )
    meta = TraceableTransform.track_transform_meta(source, affine=scaling, transform_info=info, **record)
    return MetaTensor(data).copy_meta_from(meta)
