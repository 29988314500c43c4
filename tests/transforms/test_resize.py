"""transforms.resize.bicubic_resize: MATLAB x2 weights written out by hand, kinds/dtypes, per-axis, affine in mm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.transforms.resize import bicubic_resize

# MATLAB imresize(x, 0.5, 'bicubic'): Keys a = -0.5 stretched by 2 and scaled by 1/2, sampled at +-0.25, +-0.75,
# +-1.25, +-1.75 input pixels: output j covers input 2j-3 .. 2j+4 (0-based).
DOWN2_WEIGHTS = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625,
                          -0.01171875])
# MATLAB imresize(x, 2, 'bicubic'): output 2j samples input j - 0.25 (taps j-2..j+1), output 2j+1 samples j + 0.25
UP2_EVEN = np.array([-0.0234375, 0.2265625, 0.8671875, -0.0703125])
UP2_ODD = UP2_EVEN[::-1]


def numpy_down2(x: np.ndarray, axis: int) -> np.ndarray:
    """Independent x2 MATLAB downscale along ``axis`` (symmetric padding = MATLAB's mirrored indices)."""
    x = np.moveaxis(x, axis, -1)
    p = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(4, 4)], mode="symmetric")
    n_out = -(-x.shape[-1] // 2)
    out = np.stack([p[..., 2 * j + 1 : 2 * j + 9] @ DOWN2_WEIGHTS for j in range(n_out)], axis=-1)
    return np.moveaxis(out, -1, axis)


def numpy_up2(x: np.ndarray, axis: int) -> np.ndarray:
    """Independent x2 MATLAB upscale along ``axis``."""
    x = np.moveaxis(x, axis, -1)
    p = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(2, 2)], mode="symmetric")
    cols = []
    for j in range(x.shape[-1]):
        cols += [p[..., j : j + 4] @ UP2_EVEN, p[..., j + 1 : j + 5] @ UP2_ODD]
    return np.moveaxis(np.stack(cols, axis=-1), -1, axis)


@pytest.mark.parametrize("shape", [(1, 12, 10), (3, 9, 7), (2, 6, 8, 5)])
def test_down_and_up_by_two_match_hand_written_matlab_weights(shape):
    x = np.random.default_rng(1).uniform(0, 255, size=shape)
    down, up = x, x
    for axis in range(1, x.ndim):
        down, up = numpy_down2(down, axis), numpy_up2(up, axis)
    np.testing.assert_allclose(bicubic_resize(x, 0.5), down, atol=1e-10)
    np.testing.assert_allclose(bicubic_resize(x, 2), up, atol=1e-10)


def test_kinds_and_dtypes_are_preserved():
    x = np.random.default_rng(2).uniform(size=(1, 8, 6))
    out_np = bicubic_resize(x, 2.0)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float64 and out_np.shape == (1, 16, 12)
    out_t = bicubic_resize(torch.from_numpy(x).float(), 2.0)
    assert type(out_t) is torch.Tensor and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-5)
    out_u8 = bicubic_resize((x * 255).astype(np.uint8), 0.5)
    assert out_u8.dtype == np.float32 and not np.all(out_u8 == np.round(out_u8))  # float, no rounding
    assert isinstance(bicubic_resize(MetaTensor(torch.from_numpy(x)), 0.5), MetaTensor)


def test_per_axis_scale_and_unit_scale_untouched():
    x = np.random.default_rng(3).uniform(size=(2, 8, 10, 6))
    out = bicubic_resize(x, (1.0, 0.5, 1.0))
    assert out.shape == (2, 8, 5, 6)
    np.testing.assert_allclose(out, numpy_down2(x, 2), atol=1e-12)
    np.testing.assert_array_equal(bicubic_resize(x, 1.0), x)
    assert bicubic_resize(x, (1.5, 1, 0.5)).shape == (2, 12, 10, 3)  # ceil(n * s) per axis
    assert bicubic_resize(x, None, output_shape=(4, 7, 6)).shape == (2, 4, 7, 6)
    with pytest.raises(ConfigurationError):
        bicubic_resize(x, (0.5, 0.5))


def corners_mm(affine: torch.Tensor, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the outer corner of voxel 0 and of the last voxel (index -0.5 and n - 0.5)."""
    a = affine.numpy()
    pad = [0.0] * (a.shape[0] - 1 - len(shape)) + [1.0]  # a 2D MetaTensor carries a 4 x 4 affine
    first = a @ np.array([-0.5] * len(shape) + pad)
    last = a @ np.array([n - 0.5 for n in shape] + pad)
    return first[:-1], last[:-1]


def oblique_affine() -> torch.Tensor:
    rotation = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.6, 2.5])
    affine[:3, 3] = [-120.0, 35.5, 12.0]
    return torch.as_tensor(affine)


@pytest.mark.parametrize("scale", [0.5, 2.0, (1.0, 0.25, 3.0)])
def test_metatensor_affine_keeps_the_box_in_mm(scale):
    img = MetaTensor(torch.rand(1, 8, 12, 4, dtype=torch.float64), affine=oblique_affine())
    out = bicubic_resize(img, scale)
    for before, after in zip(corners_mm(img.affine, img.shape[1:]), corners_mm(out.affine, out.shape[1:])):
        np.testing.assert_allclose(after, before, atol=1e-9)


def test_metatensor_affine_when_ceil_rounds_up_follows_the_sampling():
    # 9 -> ceil(4.5) = 5 samples at twice the spacing (MATLAB sampling): voxel 0's corner is kept, the box grows
    img = MetaTensor(torch.rand(1, 9, 8, dtype=torch.float64), affine=torch.diag(torch.tensor([0.7, 0.9, 1, 1.0])))
    out = bicubic_resize(img, 0.5)
    assert out.shape == (1, 5, 4)
    np.testing.assert_allclose(np.diag(out.affine.numpy())[:2], [1.4, 1.8])
    np.testing.assert_allclose(corners_mm(out.affine, (5, 4))[0], corners_mm(img.affine, (9, 8))[0], atol=1e-12)
