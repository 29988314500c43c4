"""Back-projection consistency: does the SR output, degraded again, give back its LR input?

The LR images of SR benchmarks are bicubic downscales of the HR images (RMISR, Ren et al. 2021, §5; MATLAB
``imresize``). A faithful SR output ``sr`` of ``lr`` should therefore satisfy ``imresize(sr, 1/s) ~ lr``
(the back-projection constraint of Irani and Peleg 1991); its violation, measured as PSNR and mean absolute error
between ``imresize(sr, 1/s)`` and ``lr``, needs no ground truth, so it also works on clinical images without HR.
The downscale is :func:`rmisr_monai.ops.resize.imresize`, the same operator as the LR generation
(:class:`rmisr_monai.transforms.degrade.BicubicDegrade`), onto the LR grid (``output_shape`` = LR shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from monai.config import NdarrayOrTensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.metrics.sr_metrics import as_batched, psnr_batched
from rmisr_monai.ops.resize import imresize

__all__ = ["BackProjectionError", "back_project", "back_projection_error"]


class BackProjectionError(NamedTuple):
    """PSNR (dB, ``inf`` when exact) and mean absolute error between ``imresize(sr, 1/s)`` and ``lr``."""

    psnr: torch.Tensor
    mae: torch.Tensor


def back_project(
    sr: torch.Tensor, lr_shape: Sequence[int], scale: float | Sequence[float] | None = None
) -> torch.Tensor:
    """Bicubic downscale of ``sr`` (``(..., *spatial)``) onto the LR spatial shape ``lr_shape``.

    Args:
        sr: the SR image(s); the last ``len(lr_shape)`` axes are spatial.
        lr_shape: spatial shape of the LR input.
        scale: SR factor(s) ``s`` (the kernel is built for ``1 / s``); ``None``: ``n_lr / n_sr`` per axis.
    """
    k = len(lr_shape)
    factors = None
    if scale is not None:
        factors = [1.0 / float(scale)] * k if isinstance(scale, (int, float)) else [1.0 / float(s) for s in scale]
    return imresize(sr, factors, output_shape=list(lr_shape), dims=tuple(range(-k, 0)))


def back_projection_error(
    sr: NdarrayOrTensor,
    lr: NdarrayOrTensor,
    data_range: float,
    scale: float | Sequence[float] | None = None,
    spatial_dims: int = 2,
) -> BackProjectionError:
    """Consistency of ``sr`` with its LR input ``lr``.

    Args:
        sr: SR image(s), channel first: ``(*spatial)``, ``(C, *spatial)`` or ``(N, C, *spatial)``.
        lr: the LR input, same layout and channels, smaller spatial shape.
        data_range: peak value for the PSNR.
        scale: SR factor(s); ``None`` derives the kernel from the shapes.
        spatial_dims: number of trailing spatial axes.

    Returns:
        :class:`BackProjectionError` of ``(N,)`` tensors for a batch, 0-d tensors otherwise.
    """
    a, batched = as_batched(sr, spatial_dims)
    b, _ = as_batched(lr, spatial_dims)
    if a.shape[:2] != b.shape[:2]:
        raise ConfigurationError(f"sr {tuple(a.shape)} and lr {tuple(b.shape)} differ in batch or channels")
    down = back_project(a, b.shape[2:], scale)
    value = BackProjectionError(psnr_batched(down, b, data_range), (down - b).abs().flatten(1).mean(dim=1))
    return value if batched else BackProjectionError(value.psnr[0], value.mae[0])
