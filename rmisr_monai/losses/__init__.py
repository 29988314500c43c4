"""Training losses: contextual loss (Mechrez et al. 2018), RMISR-VP loss (RMISR eqs. 18-20), dual-task loss."""

from __future__ import annotations

from rmisr_monai.losses.contextual import ContextualLoss, contextual_loss, contextual_similarity
from rmisr_monai.losses.dual_task import DualTaskLoss
from rmisr_monai.losses.rmisr_vp import RMISRVPLoss

__all__ = ["ContextualLoss", "contextual_loss", "contextual_similarity", "DualTaskLoss", "RMISRVPLoss"]
