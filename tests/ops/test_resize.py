"""ops.resize.imresize: properties of MATLAB's cubic resize and the published Set5 bicubic figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.resize import cubic_kernel, imresize, output_length, resize_matrix
from tests.conftest import shared_path


def test_kernel_values():
    # Keys' kernel with a = -0.5: interpolating (k(0)=1, k(+-1)=k(+-2)=0), k(0.5) = 0.5625, k(1.5) = -0.0625
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(cubic_kernel(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("n_in,scale", [(8, 2.0), (9, 0.5), (12, 0.25), (7, 1.5), (10, 1 / 3)])
def test_rows_sum_to_one_and_constant_preserved(n_in, scale):
    m = resize_matrix(n_in, output_length(n_in, scale), scale)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    x = torch.full((1, n_in, n_in), 3.25, dtype=torch.float64)
    np.testing.assert_allclose(imresize(x, scale).numpy(), 3.25, atol=1e-12)


def test_output_length_matlab_rule():
    assert output_length(255, 1 / 3) == 85
    assert output_length(10, 0.25) == 3  # ceil(2.5)
    assert output_length(7, 1.5) == 11


def test_upscale_reproduces_linear_ramp_in_interior():
    # cubic convolution reproduces linear functions; sample positions u = x/s + 0.5(1 - 1/s) (1-based)
    n, s = 16, 2.0
    ramp = torch.arange(1, n + 1, dtype=torch.float64)[None, :]
    out = imresize(ramp, (1.0, s), dims=(0, 1))[0].numpy()
    u = np.arange(1, 2 * n + 1) / s + 0.5 * (1 - 1 / s)
    np.testing.assert_allclose(out[4:-4], u[4:-4], atol=1e-12)


def test_downscale_by_two_of_ramp_is_pair_mean():
    n = 32
    ramp = torch.arange(n, dtype=torch.float64)[None, :] * 2.0
    out = imresize(ramp, (1.0, 0.5), dims=(0, 1))[0].numpy()
    pair_mean = ramp[0].numpy().reshape(-1, 2).mean(axis=1)
    np.testing.assert_allclose(out[2:-2], pair_mean[2:-2], atol=1e-12)


def test_axes_and_types():
    x = torch.rand(2, 9, 10, 11)
    y = imresize(x, (2.0, 1.0, 0.5), dims=(1, 2, 3))
    assert y.shape == (2, 18, 10, 6) and y.dtype == torch.float32
    assert imresize(torch.ones(1, 4, 4, dtype=torch.int16), 2.0).dtype == torch.float32
    assert imresize(x, None, output_shape=(5, 7)).shape == (2, 9, 5, 7)
    with pytest.raises(ConfigurationError):
        imresize(x, (2.0,), dims=(1, 2))
    with pytest.raises(ConfigurationError):
        imresize(x, -1.0)


def test_set5_bicubic_x4_matches_published_table():
    from PIL import Image

    folder = shared_path("data", "natural", "Set5")
    psnrs = []
    for path in sorted(folder.glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        t = torch.from_numpy(hr).permute(2, 0, 1)
        lr = imresize(t, 0.25).round().clamp(0, 255)
        sr = imresize(lr, 4.0).round().clamp(0, 255)
        weights = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)[:, None, None]
        y_hr, y_sr = ((t * weights).sum(0) / 255 + 16), ((sr * weights).sum(0) / 255 + 16)
        mse = float(((y_hr - y_sr)[4:-4, 4:-4] ** 2).mean())
        psnrs.append(10 * np.log10(255.0**2 / mse))
    assert len(psnrs) == 5
    assert abs(np.mean(psnrs) - 28.42) < 0.05  # RMISR Table 1, Bicubic x4 Set5
