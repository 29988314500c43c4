"""ops.laplacian: RMISR eqs. 6-8 against an independent numpy reference (edge padding + slicing), 1D-3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.laplacian import laplacian_gradient


def numpy_second_differences(x: np.ndarray, spatial_dims: int) -> list[np.ndarray]:
    """Per-axis ``I(i+1) + I(i-1) - 2 I(i)`` with edge (replicate) padding, last axis first (x, y, z)."""
    maps = []
    for axis in range(x.ndim - 1, x.ndim - 1 - spatial_dims, -1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 1)
        p = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        maps.append(np.take(p, range(2, n + 2), axis=axis) + np.take(p, range(0, n), axis=axis) - 2 * x)
    return maps


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 5, 6, 4), (3, 1, 8), (1, 1, 1, 5)])
def test_xy_and_scalar_match_numpy_reference(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    k = len(shape) - 2
    maps = numpy_second_differences(x, k)
    expected_xy = np.stack(maps, axis=2).reshape(shape[0], shape[1] * k, *shape[2:])  # channel c*k + j
    out = laplacian_gradient(torch.from_numpy(x), mode="xy")
    assert out.dtype == torch.float64 and out.shape == expected_xy.shape
    np.testing.assert_allclose(out.numpy(), expected_xy, atol=1e-12)
    np.testing.assert_allclose(laplacian_gradient(torch.from_numpy(x), mode="scalar").numpy(), sum(maps), atol=1e-12)


def test_channel_order_is_ix_then_iy():
    # I = x^2 along columns only: I_x = 2 in the interior, I_y = 0 (eq. 6 along x = last axis)
    cols = torch.arange(6, dtype=torch.float64) ** 2
    img = cols.expand(4, 6)[None, None]
    out = laplacian_gradient(img)
    torch.testing.assert_close(out[0, 0, :, 1:-1], torch.full((4, 4), 2.0, dtype=torch.float64))
    assert out[0, 0, 0, 0] == 1.0 and out[0, 0, 0, -1] == -(25.0 - 16.0)  # one-sided replicate boundary
    assert torch.count_nonzero(out[0, 1]) == 0


def test_constant_is_zero_and_five_point_stencil():
    assert torch.count_nonzero(laplacian_gradient(torch.full((1, 2, 5, 5), 3.0), mode="scalar")) == 0
    delta = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    delta[0, 0, 2, 2] = 1.0
    stencil = laplacian_gradient(delta, mode="scalar")[0, 0, 1:4, 1:4]
    expected = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64)
    torch.testing.assert_close(stencil, expected)


def test_differentiable_and_scriptable():
    x = torch.rand(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: laplacian_gradient(t, "xy"), (x,))
    scripted = torch.jit.script(laplacian_gradient)
    torch.testing.assert_close(scripted(x, "xy", None), laplacian_gradient(x, "xy"))
    torch.testing.assert_close(scripted(x, "scalar", 2), laplacian_gradient(x, "scalar"))


def test_spatial_dims_explicit_and_errors():
    x = torch.rand(3, 5, 6)  # (C, H, W) without batch: spatial_dims=2 makes axis 0 the channel axis
    assert laplacian_gradient(x, spatial_dims=2).shape == (6, 5, 6)
    with pytest.raises(ConfigurationError, match="mode"):
        laplacian_gradient(x[None], mode="laplace")
    with pytest.raises(ConfigurationError, match="channel axis"):
        laplacian_gradient(torch.rand(5, 6), spatial_dims=2)
