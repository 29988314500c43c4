"""Dual-task loss for multi-stage training of the lightweight dense SR network (Wang et al., 2022).

Wang, Zhao, Qin, Hu & Zong, "Super-resolution reconstruction algorithm of medical image based on lightweight dense
neural network", Journal of Computer Applications 42(8), 2022. The abstract only says: "the multi-stage method was
adopted to train the network and the dual-task loss was used to strengthen the supervision and guidance in network
learning, which solved the problem of difficulty increase ... caused by highly magnified image super-resolution".

Our reading (the full text is not available to us):

* the network upsamples in stages (x4 = x2 then x2) and returns one image per stage, final last
  (:class:`~rmisr_monai.networks.nets.dense_sr.DenseSR` in ``train()`` mode);
* task 1 is the reconstruction of each intermediate image, task 2 that of the final image; stage ``k`` is compared
  by L1 with the HR image downscaled to its size by MATLAB-compatible bicubic resizing (the degradation that makes
  LR images, :func:`rmisr_monai.ops.resize.imresize`):
  ``L = sum_k w_k * L1(out_k, imresize(hr, size(out_k)))``, with ``w_k = 1`` by default (the abstract gives no
  weights; an unweighted sum is the reading that adds no number);
* multi-stage training changes the weights over training: ``schedule = {0: (1, 0), 50: (1, 1)}`` trains the first
  stage alone for 50 epochs, then both; :meth:`DualTaskLoss.set_epoch` selects the entry (call it from an epoch
  handler).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.resize import imresize

__all__ = ["DUAL_TASK_STAGE_WEIGHT", "DualTaskLoss"]

DUAL_TASK_STAGE_WEIGHT = 1.0  # weight of every stage when none is given (reading of the abstract, module docstring)


class DualTaskLoss(_Loss):
    """Weighted sum over upsampling stages of ``L1(stage output, HR bicubic-downscaled to that size)``.

    Args:
        weights: one weight per stage output, final last; ``None`` gives every stage ``DUAL_TASK_STAGE_WEIGHT``.
        schedule: optional multi-stage schedule ``{first epoch: weights}``; :meth:`set_epoch` switches to the entry
            with the largest first epoch ``<= epoch``; the weights in force start as ``schedule[min(schedule)]``
            (``weights`` must then be ``None``).

    ``forward(y_pred, target)``: ``y_pred`` is a list of ``(N, C, h_k, w_k)`` images (a single tensor counts as one
    stage), ``target`` the HR ``(N, C, H, W)`` with ``h_k <= H``, ``w_k <= W``.
    """

    def __init__(
        self, weights: Sequence[float] | None = None, schedule: Mapping[int, Sequence[float]] | None = None
    ) -> None:
        super().__init__()
        if schedule is not None and weights is not None:
            raise ConfigurationError("give either weights or a schedule of weights, not both")
        if schedule is not None and not schedule:
            raise ConfigurationError("schedule must have at least one entry")
        self.schedule = {int(epoch): _as_weights(ws) for epoch, ws in (schedule or {}).items()}
        self.weights = self.schedule[min(self.schedule)] if self.schedule else _as_weights(weights)

    def set_epoch(self, epoch: int) -> tuple[float, ...] | None:
        """Select the schedule entry for ``epoch`` (no-op without a schedule); returns the weights in force."""
        started = [first for first in self.schedule if first <= epoch]
        if started:
            self.weights = self.schedule[max(started)]
        return self.weights

    def forward(self, y_pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [y_pred] if isinstance(y_pred, torch.Tensor) else list(y_pred)
        weights = self.weights or (DUAL_TASK_STAGE_WEIGHT,) * len(outputs)
        if len(weights) != len(outputs):
            raise ConfigurationError(f"{len(weights)} stage weights for {len(outputs)} stage outputs")
        loss = target.new_zeros(())
        for weight, output in zip(weights, outputs):
            if weight == 0:
                continue
            size = tuple(output.shape[-2:])
            if size[0] > target.shape[-2] or size[1] > target.shape[-1]:
                raise ConfigurationError(f"stage output {size} is larger than the target {tuple(target.shape[-2:])}")
            stage_target = target if size == tuple(target.shape[-2:]) else imresize(target, None, output_shape=size)
            loss = loss + weight * F.l1_loss(output, stage_target)
        return loss


def _as_weights(weights: Sequence[float] | None) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if any(w < 0 for w in weights):
        raise ConfigurationError(f"stage weights must be >= 0, got {tuple(weights)}")
    return tuple(float(w) for w in weights)
