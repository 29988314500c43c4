"""Training loss of RMISR-VP: L1 on the SR image plus L1 and contextual loss on the Laplacian gradient branch.

Ren et al., "Realistic medical image super-resolution with pyramidal feature multi-distillation networks for
intelligent healthcare systems" (2021), §4.4 eqs. 18-20 and §5.3: "Our SR branch uses the L1 loss function ...
Laplacian gradient map branch uses L1 loss function and contextual loss, where the coefficients of L1 loss and
contextual loss are 10 and 1" (``alpha = 10``, ``beta = 1`` in eq. 18). Reading: the SR-branch L1 has weight 1
(eq. 18 only weighs the branch terms), and the Laplacian target is the Laplacian gradient map of the HR image
computed with the same operator the network uses (``rmisr_monai.ops.laplacian.laplacian_gradient``, eqs. 6-8):

``L = L1(sr, hr) + alpha * L1(sr_lap, lap(hr)) + beta * CX(sr_lap, lap(hr))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.loss import _Loss

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.losses.contextual import ContextualLoss
from rmisr_monai.ops.laplacian import laplacian_gradient

__all__ = ["RMISR_VP_ALPHA", "RMISR_VP_BETA", "RMISRVPLoss"]

RMISR_VP_ALPHA = 10.0  # §5.3: coefficient of the L1 loss on the Laplacian gradient map
RMISR_VP_BETA = 1.0  # §5.3: coefficient of the contextual loss on the Laplacian gradient map


class RMISRVPLoss(_Loss):
    """``L1(sr, hr) + alpha * L1(sr_lap, lap(hr)) + beta * CX(sr_lap, lap(hr))`` (RMISR eqs. 18-20).

    Args:
        alpha: weight of the gradient-branch L1 (paper: 10).
        beta: weight of the gradient-branch contextual loss (paper: 1); 0 skips the contextual term entirely.
        contextual: the contextual loss module; default ``ContextualLoss()`` (offline ``"patches"`` features,
            ``h = 0.5``). Pass ``ContextualLoss(feature_extractor="vgg19", vgg_weights_path=...)`` for the paper's
            VGG-19 features.

    ``forward(y_pred, target)``: ``y_pred`` is RMISR-VP's training output ``(sr, sr_lap)`` with ``sr`` of shape
    ``(N, C, H, W)`` and ``sr_lap`` ``(N, 2C, H, W)``; ``target`` is the HR image ``(N, C, H, W)``.
    """

    def __init__(
        self, alpha: float = RMISR_VP_ALPHA, beta: float = RMISR_VP_BETA, contextual: nn.Module | None = None
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ConfigurationError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.contextual = ContextualLoss() if contextual is None else contextual

    def terms(self, y_pred: Sequence[torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"l1_sr", "l1_lap", "cx_lap"}`` (``cx_lap`` is absent when ``beta == 0``)."""
        if isinstance(y_pred, torch.Tensor) or len(y_pred) != 2:
            raise ConfigurationError("RMISRVPLoss needs the training output (sr, sr_laplacian) of RMISR-VP")
        sr, sr_lap = y_pred
        target_lap = laplacian_gradient(target, mode="xy")
        if sr_lap.shape != target_lap.shape:
            raise ConfigurationError(f"sr_laplacian {tuple(sr_lap.shape)} does not match lap(hr) {target_lap.shape}")
        terms = {"l1_sr": F.l1_loss(sr, target), "l1_lap": F.l1_loss(sr_lap, target_lap)}
        if self.beta > 0:
            terms["cx_lap"] = self.contextual(sr_lap, target_lap)
        return terms

    def forward(self, y_pred: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        terms = self.terms(y_pred, target)
        loss = terms["l1_sr"] + self.alpha * terms["l1_lap"]
        return loss + self.beta * terms["cx_lap"] if "cx_lap" in terms else loss
