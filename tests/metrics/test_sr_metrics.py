"""metrics.sr_metrics: PSNR vs the numpy formula, SSIM vs a scipy.ndimage reference, Y channel, shave, window,
MONAI PSNRMetric/SSIMMetric agreement and the cumulative metric classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import PSNRMetric, SSIMMetric
from scipy.ndimage import gaussian_filter

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.metrics import SRPSNRMetric, SRSSIMMetric, psnr, ssim

RNG = np.random.default_rng(0)


def numpy_psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    return float(10 * np.log10(peak**2 / np.mean((a - b) ** 2)))


def numpy_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y of a channel-first 0..255 RGB image (MATLAB rgb2ycbcr / BasicSR, without rounding)."""
    return 16.0 + (65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255.0


def scipy_ssim(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """Wang et al. 2004 with scipy's Gaussian (sigma 1.5, radius 5 = 11 taps), valid region (5 px) only, 2D."""

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, 1.5, truncate=5 / 1.5)[5:-5, 5:-5]

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def structured(h: int, w: int) -> np.ndarray:
    """Blurred bars and a disc plus noise: edges, flat regions and texture, 0..255."""
    yy, xx = np.mgrid[:h, :w]
    img = 60 + 120 * ((xx // 6) % 2) + 60 * ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2)
    return np.clip(gaussian_filter(img.astype(float), 1.0) + RNG.normal(0, 3, size=(h, w)), 0, 255)


def test_psnr_matches_numpy_formula_for_each_layout():
    hr = RNG.uniform(0, 1, size=(2, 3, 16, 18))
    sr = hr + RNG.normal(0, 0.05, size=hr.shape)
    batch = psnr(sr, hr, data_range=1.0)
    assert batch.shape == (2,) and batch.dtype == torch.float64
    for i in range(2):
        assert float(batch[i]) == pytest.approx(numpy_psnr(sr[i], hr[i], 1.0), abs=1e-10)
        assert float(psnr(torch.from_numpy(sr[i]), torch.from_numpy(hr[i]), 1.0)) == pytest.approx(float(batch[i]))
    assert float(psnr(sr[0, 0], hr[0, 0], 1.0)) == pytest.approx(numpy_psnr(sr[0, 0], hr[0, 0], 1.0), abs=1e-10)
    shaved = psnr(sr[0], hr[0], 1.0, shave=3)
    assert float(shaved) == pytest.approx(numpy_psnr(sr[0, :, 3:-3, 3:-3], hr[0, :, 3:-3, 3:-3], 1.0), abs=1e-10)
    assert psnr(hr, hr, 1.0).isinf().all()


def test_y_channel_rgb_and_grey():
    hr = RNG.uniform(0, 255, size=(3, 20, 20))
    sr = np.clip(hr + RNG.normal(0, 4, size=hr.shape), 0, 255)
    expected = numpy_psnr(numpy_y(sr)[2:-2, 2:-2], numpy_y(hr)[2:-2, 2:-2], 255.0)
    assert float(psnr(sr, hr, 255.0, shave=2, y_channel=True)) == pytest.approx(expected, abs=1e-10)
    # [0, 1] images give the same Y-PSNR as the 0..255 ones (BasicSR's rgb2ycbcr(img / 255) convention)
    assert float(psnr(sr / 255, hr / 255, 1.0, shave=2, y_channel=True)) == pytest.approx(expected, abs=1e-9)
    grey_hr, grey_sr = hr[:1], sr[:1]
    expected_grey = numpy_psnr(numpy_y(np.repeat(grey_sr, 3, 0)), numpy_y(np.repeat(grey_hr, 3, 0)), 255.0)
    assert float(psnr(grey_sr, grey_hr, 255.0, y_channel=True)) == pytest.approx(expected_grey, abs=1e-10)
    with pytest.raises(ConfigurationError, match="1 or 3 channels"):
        psnr(hr[:2], hr[:2], 255.0, y_channel=True)


def test_hu_window_clip_and_default_range():
    hr = RNG.uniform(-1200, 2000, size=(1, 24, 24))
    sr = hr + RNG.normal(0, 30, size=hr.shape)
    low, high = -160.0, 240.0
    expected = numpy_psnr(np.clip(sr, low, high), np.clip(hr, low, high), high - low)
    assert float(psnr(sr, hr, window=(low, high))) == pytest.approx(expected, abs=1e-10)
    with pytest.raises(ConfigurationError, match="data_range"):
        psnr(sr, hr)


@pytest.mark.parametrize("kind", ["random", "structured"])
def test_ssim_matches_scipy_reference(kind):
    if kind == "random":
        hr = RNG.uniform(0, 255, size=(30, 27))
        sr = np.clip(hr + RNG.normal(0, 20, size=hr.shape), 0, 255)
    else:
        hr = structured(32, 40)
        sr = gaussian_filter(hr, 1.2)  # a blurred "SR" result
    expected = scipy_ssim(sr, hr, 255.0)
    assert 0 < expected < 1
    assert float(ssim(sr, hr, 255.0)) == pytest.approx(expected, abs=1e-10)
    assert float(ssim(sr, hr, 255.0, shave=4)) == pytest.approx(scipy_ssim(sr[4:-4, 4:-4], hr[4:-4, 4:-4], 255.0))
    assert float(ssim(hr, hr, 255.0)) == pytest.approx(1.0, abs=1e-12)


def test_rgb_ssim_is_mean_of_channels_and_y_ssim_uses_luma():
    hr = np.stack([structured(24, 24) for _ in range(3)])
    sr = np.clip(hr + RNG.normal(0, 5, size=hr.shape), 0, 255)
    per_channel = np.mean([scipy_ssim(sr[c], hr[c], 255.0) for c in range(3)])
    assert float(ssim(sr, hr, 255.0)) == pytest.approx(per_channel, abs=1e-10)
    assert float(ssim(sr, hr, 255.0, y_channel=True)) == pytest.approx(scipy_ssim(numpy_y(sr), numpy_y(hr), 255.0))


def test_agreement_with_monai_metrics():
    hr = torch.from_numpy(np.stack([structured(28, 30) for _ in range(2)])[:, None])
    sr = hr + torch.from_numpy(RNG.normal(0, 6, size=hr.shape))
    monai_psnr = PSNRMetric(max_val=255.0, reduction="none")(sr, hr)[:, 0]
    torch.testing.assert_close(psnr(sr, hr, 255.0), monai_psnr)
    monai_ssim = SSIMMetric(spatial_dims=2, data_range=255.0, reduction="none")(sr, hr)[:, 0].double()
    # same computation; MONAI casts to float32, hence the tolerance (measured differences are about 5e-7)
    torch.testing.assert_close(ssim(sr, hr, 255.0), monai_ssim, atol=1e-5, rtol=0)
    torch.testing.assert_close(ssim(sr / 255, hr / 255, 1.0), monai_ssim, atol=1e-5, rtol=0)


def test_3d_ssim_matches_scipy():
    hr = gaussian_filter(RNG.uniform(0, 1, size=(14, 13, 12)), 1.0)
    sr = hr + RNG.normal(0, 0.02, size=hr.shape)
    blur = lambda x: gaussian_filter(x, 1.5, truncate=5 / 1.5)[5:-5, 5:-5, 5:-5]  # noqa: E731
    mu_a, mu_b = blur(sr), blur(hr)
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * (blur(sr * hr) - mu_a * mu_b) + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (blur(sr * sr) - mu_a**2 + blur(hr * hr) - mu_b**2 + c2)
    assert float(ssim(sr, hr, 1.0, spatial_dims=3)) == pytest.approx(float(np.mean(num / den)), abs=1e-10)


def test_cumulative_metric_classes_average_images():
    batches = [(RNG.uniform(0, 1, size=(2, 1, 16, 16)), RNG.uniform(0, 1, size=(2, 1, 16, 16))) for _ in range(2)]
    psnr_metric, ssim_metric = SRPSNRMetric(data_range=1.0, shave=2), SRSSIMMetric(data_range=1.0)
    for sr, hr in batches:
        psnr_metric(torch.from_numpy(sr), torch.from_numpy(hr))
        ssim_metric(torch.from_numpy(sr), torch.from_numpy(hr))
    per_image = [numpy_psnr(s[0, 2:-2, 2:-2], h[0, 2:-2, 2:-2], 1.0) for sr, hr in batches for s, h in zip(sr, hr)]
    assert float(psnr_metric.aggregate()) == pytest.approx(np.mean(per_image), abs=1e-5)
    per_image_ssim = [scipy_ssim(s[0], h[0], 1.0) for sr, hr in batches for s, h in zip(sr, hr)]
    assert float(ssim_metric.aggregate()) == pytest.approx(np.mean(per_image_ssim), abs=1e-6)
