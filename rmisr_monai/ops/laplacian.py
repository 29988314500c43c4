"""Laplacian gradient maps: second differences along each spatial axis (RMISR, Ren et al. 2021, eqs. 6-8).

The paper defines, for an image ``I(x, y)``,

* eq. 6: ``I_x(x, y) = I(x + 1, y) + I(x - 1, y) - 2 I(x, y)`` (printed as ``I(x + 1, y) + I(x + 1, y)``, a typo:
  the symmetric second difference is the only reading that makes eq. 7's twin and the "difference between the centre
  pixel and the surrounding four pixels" of the text);
* eq. 7: ``I_y(x, y) = I(x, y + 1) + I(x, y - 1) - 2 I(x, y)``;
* eq. 8: ``nabla^2 I = (I_x, I_y)``, the two maps kept apart; their sum is the 5-point Laplacian.

``x`` is the column index (last axis of a ``(..., H, W)`` tensor), ``y`` the row index. The operator generalises
to any number of spatial axes (``z`` = third axis from the end). The paper does not state a boundary rule; we use
**replicate** padding, so on the first and last sample of an axis the second difference is the one-sided
``I(1) - I(0)`` (zero slope outside the image), and a constant image maps to exactly zero everywhere.

Implemented with ``narrow`` and ``cat`` only: differentiable, batched, device- and dtype-agnostic, and
``torch.jit.script``-able (the RMISR-VP network calls it in ``forward``).
"""

from __future__ import annotations

from typing import Optional

import torch

from rmisr_monai.errors import ConfigurationError

__all__ = ["LAPLACIAN_MODES", "laplacian_gradient", "second_difference"]

# "xy": eq. 8, one map per spatial axis stacked as channels; "scalar": their sum, the 5-point (7-point in 3D) Laplacian
LAPLACIAN_MODES = ("xy", "scalar")


def second_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x[i + 1] + x[i - 1] - 2 x[i]`` along ``dim`` with replicate boundary (RMISR eqs. 6-7 along one axis)."""
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)
    return nxt + prev - 2 * x


def laplacian_gradient(x: torch.Tensor, mode: str = "xy", spatial_dims: Optional[int] = None) -> torch.Tensor:
    """Laplacian gradient map of a batched channel-first tensor (RMISR eqs. 6-8, replicate boundary).

    Args:
        x: ``(N, C, *spatial)`` tensor (floating point).
        mode: ``"xy"`` (eq. 8): for ``k`` spatial axes the output has ``C * k`` channels; channel ``c * k + j`` is the
            second difference of input channel ``c`` along the ``j``-th axis counted **from the last**: ``j = 0``
            is ``I_x`` (columns, last axis), ``j = 1`` is ``I_y`` (rows), ``j = 2`` is ``I_z`` (third from the end).
            ``"scalar"``: the sum over the axes, shape ``(N, C, *spatial)``.
        spatial_dims: number of trailing spatial axes; default ``x.ndim - 2``.

    Returns:
        The gradient maps, same dtype and device as ``x``.

    Raises:
        ConfigurationError: unknown ``mode``, or fewer than 1 spatial axis.
    """
    k = x.dim() - 2 if spatial_dims is None else spatial_dims
    if k < 1 or k > x.dim():
        raise ConfigurationError(f"laplacian_gradient needs 1..{x.dim()} spatial axes, got {k} for shape {x.shape}")
    maps = [second_difference(x, x.dim() - 1 - j) for j in range(k)]
    if mode == "scalar":
        return torch.stack(maps, dim=0).sum(dim=0)
    if mode != "xy":
        raise ConfigurationError(f"unknown Laplacian mode '{mode}'; expected 'xy' or 'scalar'")
    channel_dim = x.dim() - k - 1
    if channel_dim < 0:
        raise ConfigurationError(f"mode 'xy' needs a channel axis before the {k} spatial axes, got shape {x.shape}")
    return torch.stack(maps, dim=channel_dim + 1).flatten(channel_dim, channel_dim + 1)
