"""Contextual loss against an independent numpy transcription of the official CSFlow code, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.losses.contextual import ContextualLoss, contextual_loss, contextual_similarity, sample_positions

RNG = np.random.default_rng(1)


def numpy_cx_loss(x: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
    """Per-sample -log(CX) written from REFERENCES.md e with explicit loops over samples (float64)."""
    n, c = x.shape[:2]
    xs, ys = x.reshape(n, c, -1), y.reshape(n, c, -1)
    mu = ys.transpose(1, 0, 2).reshape(c, -1).mean(axis=1)[None, :, None]  # target mean over batch and positions
    losses = []
    for k in range(n):
        a, b = xs[k] - mu[0], ys[k] - mu[0]
        a = a / np.linalg.norm(a, axis=0, keepdims=True)
        b = b / np.linalg.norm(b, axis=0, keepdims=True)
        d = (1.0 - a.T @ b) / 2.0  # d[i, j]: output position i, target position j
        d_rel = d / (d.min(axis=1, keepdims=True) + 1e-5)
        w = np.exp((1.0 - d_rel) / h)
        cx_ij = w / w.sum(axis=1, keepdims=True)
        losses.append(-np.log(cx_ij.max(axis=0).mean()))
    return np.array(losses)


@pytest.mark.parametrize("h", [0.1, 0.5, 1.0])
def test_matches_numpy_reference(h):
    x = RNG.normal(size=(2, 5, 4, 3))
    y = RNG.normal(size=(2, 5, 3, 5))  # different spatial size is allowed
    expected = numpy_cx_loss(x, y, h)
    got = contextual_loss(torch.tensor(x), torch.tensor(y), band_width=h, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    mean = contextual_loss(torch.tensor(x), torch.tensor(y), band_width=h)
    assert float(mean) == pytest.approx(expected.mean(), abs=1e-5)


def test_identical_inputs_are_the_minimum_and_distinct_one_hot_gives_zero():
    y = torch.tensor(RNG.normal(size=(1, 6, 5, 5)), dtype=torch.float64)
    same = contextual_loss(y, y, 0.5)
    for _ in range(5):
        other = y + 0.3 * torch.randn_like(y)
        assert float(contextual_loss(other, y, 0.5)) > float(same)
    # distinct one-hot feature vectors: every target has its own exact match, far from the rest -> CX ~ 1
    one_hot = torch.eye(8, dtype=torch.float64).reshape(1, 8, 2, 4)
    assert float(contextual_loss(one_hot, one_hot, 0.1)) == pytest.approx(0.0, abs=1e-6)


def test_invariant_to_shuffling_positions():
    x = torch.tensor(RNG.normal(size=(2, 4, 6, 6)))
    y = torch.tensor(RNG.normal(size=(2, 4, 6, 6)))
    base = contextual_loss(x, y, 0.5, reduction="none")
    perm_x = torch.randperm(36)
    perm_y = torch.randperm(36)
    shuffled_x = x.flatten(2)[:, :, perm_x].reshape_as(x)
    shuffled_y = y.flatten(2)[:, :, perm_y].reshape_as(y)
    torch.testing.assert_close(contextual_loss(shuffled_x, y, 0.5, reduction="none"), base)
    torch.testing.assert_close(contextual_loss(x, shuffled_y, 0.5, reduction="none"), base)


def test_not_symmetric_and_in_unit_interval():
    x = torch.tensor(RNG.normal(size=(1, 3, 4, 4)))
    y = torch.tensor(RNG.normal(size=(1, 3, 4, 4))) * 2 + 1
    cx = contextual_similarity(x, y, 0.5)
    assert 0 < float(cx) <= 1
    assert not torch.allclose(contextual_loss(x, y), contextual_loss(y, x))


def test_small_band_width_does_not_overflow():
    x = torch.randn(1, 4, 5, 5)
    y = torch.randn(1, 4, 5, 5)
    assert torch.isfinite(contextual_loss(x, y, band_width=1e-3))


def test_module_patches_equals_functional_on_unfolded_patches_and_has_finite_gradient():
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 2, 9, 8, dtype=torch.float64)
    loss = ContextualLoss(band_width=0.5, patch_size=3)(x, y)
    # independent feature construction: explicit 3x3 windows stacked channel-major
    def windows(t):
        return torch.stack(
            [t[:, :, i : i + 7, j : j + 6] for i in range(3) for j in range(3)], dim=2
        ).reshape(2, 18, 7, 6)
    expected = contextual_loss(windows(x.detach()), windows(y), 0.5)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-10)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_sampling_keeps_same_positions_in_both_maps():
    x = torch.arange(100.0).reshape(1, 1, 10, 10)
    xs, ys = sample_positions(x, x + 1000.0, max_positions=16)
    assert xs.shape == (1, 1, 16) and len(set(xs.flatten().tolist())) == 16
    torch.testing.assert_close(ys, xs + 1000.0)
    loss = ContextualLoss(patch_size=1, max_positions=16)
    assert torch.isfinite(loss(torch.rand(1, 1, 10, 10), torch.rand(1, 1, 10, 10)))


def test_vgg_extractor_with_random_weights_runs_on_two_channel_maps():
    loss = ContextualLoss(feature_extractor="vgg19", vgg_layers={"relu1_2": 1.0, "relu2_1": 0.5},
                          vgg_weights_path="random")
    x, y = torch.rand(2, 2, 12, 12), torch.rand(2, 2, 12, 12)
    value = loss(x, y)
    assert value.ndim == 0 and torch.isfinite(value) and float(value) > 0
    assert float(loss(y, y)) < float(value)


def test_invalid_arguments():
    with pytest.raises(ConfigurationError, match="feature_extractor"):
        ContextualLoss(feature_extractor="resnet")
    with pytest.raises(ConfigurationError, match="band_width"):
        ContextualLoss(band_width=0.0)
    with pytest.raises(ConfigurationError, match="patch_size"):
        ContextualLoss(patch_size=5)(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 3, 3))
