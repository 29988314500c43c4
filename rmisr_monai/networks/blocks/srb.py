"""Shallow residual block (SRB) of RFDN (Liu et al. 2020, arXiv:2009.11551), used in RMISR's PFMDB cascade.

RMISR (Ren et al. 2021) §4.2, Fig. 3c: "The SRB is composed of a 3x3 convolution, a residual connection, and a
Relu activation function" -- ``act(conv3x3(x) + x)``; the identity adds no parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from rmisr_monai.networks.blocks.activation import make_activation

__all__ = ["ShallowResidualBlock"]


class ShallowResidualBlock(nn.Module):
    """``act(conv3x3(x) + x)`` (RMISR §4.2, Fig. 3c; RFDN's SRB).

    Args:
        channels: feature channels in and out.
        kernel_size: odd convolution size (RMISR: 3).
        activation: ``"relu"`` (RMISR §4.2) or ``"lrelu"`` (RFDN's code, slope 0.05); see
            :func:`~rmisr_monai.networks.blocks.activation.make_activation`.

    Shapes: ``(N, channels, H, W) -> (N, channels, H, W)``.
    """

    def __init__(self, channels: int, kernel_size: int = 3, activation: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.act = make_activation(activation, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the sum and the activation overwrite the convolution's output (its backward reads only x and the
        # weights): one full-size map per block instead of three
        y = self.conv(x)
        y += x
        return self.act(y)
