"""Dual-task loss: manual per-stage L1 against bicubic-downscaled HR, weights and the multi-stage schedule."""

from __future__ import annotations

import pytest
import torch

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.losses.dual_task import DualTaskLoss
from rmisr_monai.ops.resize import imresize


@pytest.fixture
def stages():
    torch.manual_seed(0)
    hr = torch.rand(2, 1, 16, 12)
    return [torch.rand(2, 1, 8, 6), torch.rand(2, 1, 16, 12)], hr


def test_equals_manual_weighted_sum(stages):
    outputs, hr = stages
    hr_half = imresize(hr, 0.5)  # MATLAB imresize(hr, 1/2, 'bicubic')
    assert hr_half.shape == (2, 1, 8, 6)
    l1_mid = (outputs[0] - hr_half).abs().mean()
    l1_final = (outputs[1] - hr).abs().mean()
    torch.testing.assert_close(DualTaskLoss()(outputs, hr), l1_mid + l1_final)
    torch.testing.assert_close(DualTaskLoss(weights=(0.25, 2.0))(outputs, hr), 0.25 * l1_mid + 2.0 * l1_final)
    torch.testing.assert_close(DualTaskLoss()(outputs[1], hr), l1_final)  # a single tensor is one stage


def test_perfect_stages_give_zero(stages):
    _, hr = stages
    assert float(DualTaskLoss()([imresize(hr, 0.5), hr], hr)) == pytest.approx(0.0, abs=1e-7)


def test_schedule_switches_weights(stages):
    outputs, hr = stages
    loss = DualTaskLoss(schedule={0: (1.0, 0.0), 3: (0.5, 1.0)})
    first = loss(outputs, hr)
    torch.testing.assert_close(first, (outputs[0] - imresize(hr, 0.5)).abs().mean())
    assert loss.set_epoch(2) == (1.0, 0.0)
    assert loss.set_epoch(7) == (0.5, 1.0)
    torch.testing.assert_close(loss(outputs, hr), 0.5 * first + (outputs[1] - hr).abs().mean())


def test_invalid(stages):
    outputs, hr = stages
    with pytest.raises(ConfigurationError, match="stage weights"):
        DualTaskLoss(weights=(1.0,))(outputs, hr)
    with pytest.raises(ConfigurationError, match="either"):
        DualTaskLoss(weights=(1.0, 1.0), schedule={0: (1.0, 1.0)})
    with pytest.raises(ConfigurationError, match=">= 0"):
        DualTaskLoss(weights=(-1.0, 1.0))
    with pytest.raises(ConfigurationError, match="larger"):
        DualTaskLoss()([torch.rand(1, 1, 20, 20)], torch.rand(1, 1, 16, 16))
