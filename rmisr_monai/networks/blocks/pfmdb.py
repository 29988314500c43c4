"""Pyramidal feature multi-distillation block (PFMDB) of RMISR (Ren et al. 2021, §4.2, eqs. 9-13, Fig. 3b)."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.attention import ICCA
from rmisr_monai.networks.blocks.pyconv import PyramidalBlock
from rmisr_monai.networks.blocks.srb import ShallowResidualBlock

__all__ = ["PFMDB", "PFMDB_DISTILLED", "PFMDB_TAPS", "PFMDB_SRBS"]

# IMDN's 1:3 channel split (16 of 64 maps distilled per step), which RMISR §4.2 "rethinks".
PFMDB_DISTILLED = 16
# RMISR §4.2: "The pyramidal feature distillation component is composed of three PYBs".
PFMDB_TAPS = 3
# Cascade SRBs: 2 reproduces Table 1's 0.848 M for RMISR-BL x4; the text of §4.2 says 3 (see PFMDB docstring).
PFMDB_SRBS = 2


class PFMDB(nn.Module):
    """Pyramidal feature multi-distillation block (RMISR §4.2, eqs. 9-13, Fig. 3b).

    Reading of eqs. 9-13 ("we input the output features from the previous PFMDB to the cascade component (CC1) and
    make a copy into the distillation module (DC1)"): the cascade input ``x_0 = F_in`` and after each step
    ``x_i = SRB_i(x_{i-1})``. Distillation tap ``i`` is a PYB (PyConv-3 + 1x1, ``channels -> distilled``) on the
    *input* of cascade step ``i``; the last cascade output goes through the cascade's Conv-3 (3x3,
    ``channels -> distilled``, eq. 12). Then (eq. 13) the taps and the Conv-3 output are concatenated, fused by a
    1x1 convolution back to ``channels``, reweighted by ICCA (eq. 14; the conclusion places ICCA on "the output
    feature map of PFMDB") and the block input is added::

        out = F_in + ICCA(conv1x1(cat(PYB_1(x_0), ..., PYB_T(x_{T-1}), conv3x3(x_S))))

    Parameter count (the ambiguity): with 64 channels one PyConv-3 has 31,104 weights and one SRB 36,928, so four
    blocks with three PYBs *and* three SRBs hold 0.82 M before any 1x1, Conv-3, head, tail or upsampler: RMISR-BL
    x4 would have at least 0.97 M, not Table 1's 0.848 M. With ``num_srb=2`` (SRBs after taps 1 and 2; tap 3 and
    the Conv-3 both read the second SRB's output) RMISR-BL x4 RGB has 856,832 parameters (+1.0 %), so that is the
    default; ``num_srb=3`` gives the cascade as §4.2's text describes it (1,004,544 for RMISR-BL x4 RGB).
    ``distilled=16`` is IMDN's split (the paper does not give its own), and the activation is the ReLU of §4.2.

    Args:
        channels: feature maps in and out (RMISR: 64).
        distilled: maps per distillation tap and from the Conv-3.
        num_taps: PYB distillation taps (RMISR: 3).
        num_srb: cascade SRBs, ``num_taps - 1`` or ``num_taps``.
        activation: SRB activation, ``"relu"`` or ``"lrelu"``.

    Shapes: ``(N, channels, H, W) -> (N, channels, H, W)``.
    """

    def __init__(
        self,
        channels: int = 64,
        distilled: int = PFMDB_DISTILLED,
        num_taps: int = PFMDB_TAPS,
        num_srb: int = PFMDB_SRBS,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if num_taps < 1 or num_srb not in (num_taps - 1, num_taps):
            raise ConfigurationError(f"num_srb={num_srb} must be num_taps - 1 or num_taps (num_taps={num_taps})")
        if distilled < 1:
            raise ConfigurationError(f"distilled must be >= 1, got {distilled}")
        self.taps = nn.ModuleList([PyramidalBlock(channels, distilled) for _ in range(num_taps)])
        steps: list[nn.Module] = [ShallowResidualBlock(channels, activation=activation) for _ in range(num_srb)]
        # the cascade step after the last tap is the identity when there are num_taps - 1 SRBs
        steps += [nn.Identity() for _ in range(num_taps - num_srb)]
        self.cascade = nn.ModuleList(steps)
        self.conv3 = nn.Conv2d(channels, distilled, 3, padding=1)
        self.fusion = nn.Conv2d(distilled * (num_taps + 1), channels, 1)
        self.attention = ICCA(channels)

    def distill(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1x1(cat(PYB_1(x_0), ..., conv3x3(x_S)))`` of eq. 13, before the attention; the taps are released
        on return."""
        distilled: List[torch.Tensor] = []
        feat = x
        for tap, step in zip(self.taps, self.cascade):
            distilled.append(tap(feat))
            feat = step(feat)
        feat = self.conv3(feat)  # the last cascade map is released here, the taps once concatenated
        distilled.append(feat)
        stacked = torch.cat(distilled, dim=1)
        distilled.clear()
        return self.fusion(stacked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.distill(x)
        weights = self.attention.channel_weights(fused)
        # without autograd the attention and the residual sum overwrite the fused map (a fresh tensor of this block)
        out = fused * weights if fused.requires_grad else fused.mul_(weights)
        return out.add_(x)
