"""metrics.edge (PSNR of RMISR Laplacian maps) and metrics.consistency (back-projection) against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rmisr_monai.metrics import back_project, back_projection_error, edge_psnr
from rmisr_monai.transforms import BicubicDegrade, bicubic_resize
from tests.metrics.test_sr_metrics import numpy_psnr
from tests.ops.test_laplacian import numpy_second_differences
from tests.transforms.test_resize import numpy_down2

RNG = np.random.default_rng(5)


def test_edge_psnr_is_psnr_of_numpy_laplacian_maps_after_shave():
    hr = RNG.uniform(0, 1, size=(2, 1, 20, 18))
    sr = hr + RNG.normal(0, 0.03, size=hr.shape)
    maps_sr = np.stack(numpy_second_differences(sr, 2), axis=2)[..., 2:-2, 2:-2]
    maps_hr = np.stack(numpy_second_differences(hr, 2), axis=2)[..., 2:-2, 2:-2]
    value = edge_psnr(sr, hr, data_range=1.0, shave=2)
    for i in range(2):
        assert float(value[i]) == pytest.approx(numpy_psnr(maps_sr[i], maps_hr[i], 1.0), abs=1e-10)


def test_edge_psnr_ignores_smooth_illumination_changes():
    # a linear ramp has zero second differences away from the border: edges are unchanged, pixel PSNR is not
    hr = RNG.uniform(0, 1, size=(1, 16, 16))
    ramp = 0.01 * np.arange(16)[None, None, :] + 0.02 * np.arange(16)[None, :, None]
    assert float(edge_psnr(hr + ramp, hr, 1.0, shave=1)) > 250  # zero up to float64 rounding
    assert float(edge_psnr(hr + ramp, hr, 1.0, shave=0)) < 60  # the replicate border sees the ramp
    assert float(edge_psnr(hr + RNG.normal(0, 0.05, size=hr.shape), hr, 1.0, shave=1)) < 40


def test_consistency_is_exact_for_the_hr_image_itself():
    hr = torch.rand(1, 3, 24, 20, dtype=torch.float64)
    lr = BicubicDegrade(4)(hr[0])[None]
    error = back_projection_error(hr, lr, data_range=1.0, scale=4)
    assert math.isinf(float(error.psnr[0])) and float(error.mae[0]) < 1e-12


def test_back_projection_is_the_matlab_x2_downscale_and_constant_offsets_pass_through():
    lr = RNG.uniform(0, 1, size=(1, 10, 9))
    sr = bicubic_resize(lr, 2)  # bicubic upscaling is not consistent: imresize(., 1/2) does not return lr
    np.testing.assert_allclose(back_project(torch.from_numpy(sr), (10, 9)), numpy_down2(numpy_down2(sr, 1), 2))
    error = back_projection_error(sr, lr, data_range=1.0)
    expected_mae = np.abs(numpy_down2(numpy_down2(sr, 1), 2) - lr).mean()
    assert float(error.mae) == pytest.approx(expected_mae, abs=1e-12) and expected_mae > 1e-3
    # bicubic weights sum to one: an offset c on the SR image is an offset c on its back-projection
    hr = RNG.uniform(0, 1, size=(1, 20, 18))
    shifted = back_projection_error(hr + 0.1, BicubicDegrade(2)(hr), 1.0)
    assert float(shifted.mae) == pytest.approx(0.1, abs=1e-12)
    assert float(shifted.psnr) == pytest.approx(20 * math.log10(1 / 0.1), abs=1e-9)
