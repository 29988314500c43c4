"""MATLAB-compatible cubic resizing of torch tensors along any axes.

The SR literature makes its LR images with MATLAB's ``imresize(img, 1/s, 'bicubic')`` and reports a "Bicubic"
row computed with ``imresize(lr, s, 'bicubic')``; published tables (RMISR Table 1, IMDN, VDSR...) are only reproduced
with the same kernel, the same antialiasing and the same boundary rule. This module re-implements that algorithm
(``contributions`` in MATLAB's ``imresize.m``) from its description:

* cubic convolution kernel with ``a = -0.5`` (Keys 1981), support 4;
* when shrinking (scale < 1) with antialiasing, the kernel is stretched by ``1/scale`` (and scaled by ``scale``);
* output pixel ``x`` (1-based) samples the input at ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* weights are normalised to sum to 1 per output pixel;
* out-of-range taps are mirrored (symmetric padding: ``1, 2, ..., n, n, ..., 1``);
* output length is ``ceil(n * scale)`` unless an output shape is given.

Each axis is an independent linear map, applied as a dense ``(n_out, n_in)`` matrix; the axes commute, so no order
needs to be chosen (MATLAB's order only matters for its uint8 intermediate rounding, which this float version skips).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List

import numpy as np
import torch

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "CUBIC_A",
    "cubic_kernel",
    "cubic_weights",
    "resize_matrix",
    "resize_weights",
    "resize_axis",
    "output_length",
    "imresize",
]

CUBIC_A = -0.5  # MATLAB imresize 'bicubic' (Keys 1981, a = -0.5)
CUBIC_SUPPORT = 4.0  # kernel width in input pixels at scale 1
_SIZE_EPS = 1e-9  # tolerance on n * scale before ceil, so that 255 * (1 / 3) gives 85, not 86


def cubic_kernel(x: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
    """Keys' cubic convolution kernel, evaluated element-wise (numpy front end of :func:`cubic_weights`)."""
    return cubic_weights(torch.as_tensor(np.asarray(x, dtype=np.float64)), a).numpy()


def cubic_weights(x: torch.Tensor, a: float = CUBIC_A) -> torch.Tensor:
    """Keys' cubic convolution kernel of a tensor, element-wise; scriptable."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    inner = (a + 2) * ax3 - (a + 3) * ax2 + 1
    outer = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, inner, torch.where(ax <= 2, outer, torch.zeros_like(ax)))


def output_length(n_in: int, scale: float) -> int:
    """MATLAB's output length ``ceil(n_in * scale)``, robust to floating-point noise."""
    return max(1, int(math.ceil(n_in * scale - _SIZE_EPS)))


def resize_matrix(n_in: int, n_out: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The ``(n_out, n_in)`` float64 matrix that resizes one axis the way MATLAB ``imresize`` does.

    Numpy front end of :func:`resize_weights`.

    Args:
        n_in: input length.
        n_out: output length.
        scale: the scale the kernel is built for (``n_out / n_in`` when only a shape is given).
        antialias: stretch the kernel when shrinking (MATLAB default).
    """
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ConfigurationError(f"cannot resize an axis of length {n_in} to {n_out}")
    return resize_weights(n_in, n_out, float(scale), antialias).numpy()


def resize_weights(
    n_in: int, n_out: int, scale: float, antialias: bool = True, support: float = CUBIC_SUPPORT
) -> torch.Tensor:
    """The float64 ``(n_out, n_in)`` MATLAB ``imresize`` matrix of one axis, built with torch ops only.

    Scriptable, and traceable with the lengths as traced sizes (0-d tensors), so that an exported graph (ONNX,
    ``torch.jit.trace``) rebuilds the matrix for every input size. Arguments as :func:`resize_matrix`; ``support``
    is the kernel width at scale 1 (an argument because TorchScript cannot read a module-level float).
    """
    if scale < 1 and antialias:  # the kernel is stretched by 1 / scale and scaled by scale
        width, stretch = support / scale, scale
    else:
        width, stretch = support, 1.0
    x = torch.arange(1, n_out + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based, may fall outside [1, n_in]
    weights = stretch * cubic_weights(stretch * (u[:, None] - indices))
    weights = weights / weights.sum(dim=1, keepdim=True)
    # symmetric boundary 1, 2, ..., n, n, ..., 1 (0-based here), as arithmetic so that n_in may be a traced size
    source = torch.remainder(indices.long() - 1, 2 * n_in)
    source = torch.where(source < n_in, source, 2 * n_in - 1 - source)
    return torch.zeros((n_out, n_in), dtype=torch.float64).scatter_add_(1, source, weights)


def resize_axis(x: torch.Tensor, dim: int, n_out: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """Resize the non-negative axis ``dim`` of the float tensor ``x`` to ``n_out`` samples (MATLAB bicubic).

    ``scale`` is the scale the kernel is built for. An axis with scale 1 and unchanged length is returned as it is.
    Scriptable and traceable (:func:`resize_weights`).
    """
    n_in = x.shape[dim]
    if scale == 1.0 and n_out == n_in:
        return x
    matrix = resize_weights(n_in, n_out, scale, antialias).to(dtype=x.dtype, device=x.device)
    # ``dim`` moved last and back by explicit permutations (``movedim(x, dim, -1)`` exports a negative Transpose
    # permutation that ONNX Runtime rejects)
    last = x.dim() - 1
    to_last: List[int] = []
    for d in range(x.dim()):
        if d != dim:
            to_last.append(d)
    to_last.append(dim)
    back = list(range(dim)) + [last] + list(range(dim, last))
    return torch.matmul(x.permute(to_last), matrix.t()).permute(back)


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None,
    output_shape: Sequence[int] | None = None,
    dims: Sequence[int] = (-2, -1),
    antialias: bool = True,
) -> torch.Tensor:
    """Resize ``x`` along ``dims`` exactly like MATLAB ``imresize(..., 'bicubic')``, without rounding.

    Args:
        x: tensor of any rank; integer tensors are converted to float32, float64 stays float64.
        scale: multiplier per axis in ``dims`` (> 1 enlarges), one float for all of them, or ``None`` when
            ``output_shape`` is given (the kernel then uses ``n_out / n_in``).
        output_shape: output length per axis in ``dims``; overrides the ``ceil(n * scale)`` rule.
        dims: the axes to resize.
        antialias: antialiasing when shrinking (MATLAB default ``True``).

    Returns:
        The resized tensor, float, on the device of ``x``. An axis with scale 1 and unchanged length is untouched.
    """
    dims = [d % x.ndim for d in dims]
    if scale is None and output_shape is None:
        raise ConfigurationError("imresize needs a scale or an output_shape")
    if scale is None:
        scales = [None] * len(dims)
    elif isinstance(scale, (int, float)):
        scales = [float(scale)] * len(dims)
    else:
        scales = [float(s) for s in scale]
    if len(scales) != len(dims):
        raise ConfigurationError(f"{len(scales)} scales given for {len(dims)} axes {tuple(dims)}")
    if output_shape is not None and len(output_shape) != len(dims):
        raise ConfigurationError(f"output_shape {tuple(output_shape)} does not match the axes {tuple(dims)}")
    if any(s is not None and not s > 0 for s in scales):
        raise ConfigurationError(f"scales must be positive, got {scale}")
    out = x if x.is_floating_point() else x.to(torch.float32)
    for i, dim in enumerate(dims):
        n_in = out.shape[dim]
        n_out = int(output_shape[i]) if output_shape is not None else output_length(n_in, scales[i])
        if n_in < 1 or n_out < 1:
            raise ConfigurationError(f"cannot resize an axis of length {n_in} to {n_out}")
        out = resize_axis(out, dim, n_out, scales[i] if scales[i] is not None else n_out / n_in, antialias)
    return out
