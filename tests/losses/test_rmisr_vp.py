"""RMISR-VP loss (eqs. 18-20): each term against a manual computation, alpha/beta, beta = 0."""

from __future__ import annotations

import pytest
import torch

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.losses.contextual import ContextualLoss, contextual_loss
from rmisr_monai.losses.rmisr_vp import RMISRVPLoss
from rmisr_monai.ops.laplacian import laplacian_gradient


def patches3(t: torch.Tensor) -> torch.Tensor:
    """3 x 3 neighbourhoods as feature vectors, built by slicing (independent of ``F.unfold``)."""
    n, c, h, w = t.shape
    return torch.stack([t[:, :, i : i + h - 2, j : j + w - 2] for i in range(3) for j in range(3)], dim=2).reshape(
        n, 9 * c, h - 2, w - 2
    )


@pytest.fixture
def batch():
    torch.manual_seed(0)
    hr = torch.rand(2, 1, 12, 10, dtype=torch.float64)
    sr = (hr + 0.05 * torch.randn_like(hr)).requires_grad_(True)
    sr_lap = (laplacian_gradient(hr, mode="xy") + 0.02 * torch.randn(2, 2, 12, 10, dtype=torch.float64))
    return sr, sr_lap.requires_grad_(True), hr


def test_terms_and_total_equal_manual_computation(batch):
    sr, sr_lap, hr = batch
    lap_hr = laplacian_gradient(hr, mode="xy")
    assert lap_hr.shape == (2, 2, 12, 10)
    l1_sr = (sr - hr).abs().mean()
    l1_lap = (sr_lap - lap_hr).abs().mean()
    cx = contextual_loss(patches3(sr_lap), patches3(lap_hr), band_width=0.5)
    loss = RMISRVPLoss()
    terms = loss.terms((sr, sr_lap), hr)
    torch.testing.assert_close(terms["l1_sr"], l1_sr)
    torch.testing.assert_close(terms["l1_lap"], l1_lap)
    torch.testing.assert_close(terms["cx_lap"], cx)
    total = loss((sr, sr_lap), hr)
    torch.testing.assert_close(total, l1_sr + 10.0 * l1_lap + 1.0 * cx)
    total.backward()
    assert torch.isfinite(sr.grad).all() and torch.isfinite(sr_lap.grad).all() and sr_lap.grad.abs().sum() > 0


def test_alpha_beta_configurable_and_beta_zero_is_pure_l1(batch):
    sr, sr_lap, hr = batch
    lap_hr = laplacian_gradient(hr, mode="xy")
    l1_sr, l1_lap = (sr - hr).abs().mean(), (sr_lap - lap_hr).abs().mean()
    cx = contextual_loss(patches3(sr_lap), patches3(lap_hr), band_width=0.2)
    custom = RMISRVPLoss(alpha=3.0, beta=0.5, contextual=ContextualLoss(band_width=0.2))
    torch.testing.assert_close(custom((sr, sr_lap), hr), l1_sr + 3.0 * l1_lap + 0.5 * cx)
    pure = RMISRVPLoss(alpha=2.0, beta=0.0)
    assert "cx_lap" not in pure.terms((sr, sr_lap), hr)
    torch.testing.assert_close(pure((sr, sr_lap), hr), l1_sr + 2.0 * l1_lap)


def test_perfect_prediction_leaves_only_the_cx_minimum(batch):
    _, _, hr = batch
    lap_hr = laplacian_gradient(hr, mode="xy")
    loss = RMISRVPLoss(beta=0.0)
    assert float(loss((hr, lap_hr), hr)) == 0.0


def test_rejects_eval_output_and_wrong_shapes(batch):
    sr, sr_lap, hr = batch
    with pytest.raises(ConfigurationError, match="sr_laplacian"):
        RMISRVPLoss()(sr, hr)
    with pytest.raises(ConfigurationError, match="does not match"):
        RMISRVPLoss()((sr, sr_lap[:, :1]), hr)
    with pytest.raises(ConfigurationError, match=">= 0"):
        RMISRVPLoss(alpha=-1.0)
