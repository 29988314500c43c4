"""EDSR baseline: Lim, Son, Kim, Nah, Lee, "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPR Workshops 2017.

Implemented: the single-scale baseline of the paper's Fig. 3 and §3.1/§4.1: a head convolution, ``B = 16`` residual
blocks of ``conv - ReLU - conv`` without batch normalisation (Fig. 2c) with residual scaling 1 (constant scaling is
only used by the large model), a convolution closing the body, a global skip from the head, the sub-pixel upsampler,
and a tail convolution; ``F = 64`` features, 3 x 3 kernels. With 3 channels at x2 it has the well-known 1,369,859
parameters.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import (
    SubpixelUpsampler,
    as_scale_pair,
    contract_out_channels,
    forward_scale,
    make_upsampler,
)

__all__ = [
    "EDSRBaseline",
    "ResBlock",
    "cascade_scales",
    "EDSR_BASELINE_FEATURES",
    "EDSR_BASELINE_BLOCKS",
    "EDSR_BASELINE_RES_SCALE",
    "EDSR_KERNEL_SIZE",
]

EDSR_BASELINE_FEATURES = 64  # F = 64 (Lim et al. 2017, §3.1, baseline model)
EDSR_BASELINE_BLOCKS = 16  # B = 16 (ibid.)
EDSR_BASELINE_RES_SCALE = 1.0  # no residual scaling in the baseline; 0.1 only for EDSR with F = 256 (§3.1)
EDSR_KERNEL_SIZE = 3  # 3 x 3 convolutions throughout (Lim et al. 2017, Fig. 3)


def cascade_scales(scale: float) -> list[int]:
    """Per-stage factors of a cascaded upsampler: ``log2(s)`` stages of x2 for powers of two, else one stage of s.

    EDSR (Lim et al. 2017, Fig. 3) builds x4 as two x2 sub-pixel stages and x3 as one x3 stage.

    Raises:
        ConfigurationError: ``scale`` is not an integer >= 2.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not float(scale).is_integer() or scale < 2:
        raise ConfigurationError(f"a fixed-scale upsampler needs an integer scale >= 2, got {scale!r}")
    s = int(scale)
    if s & (s - 1) == 0:
        return [2] * (s.bit_length() - 1)
    return [s]


class ResBlock(nn.Module):
    """EDSR residual block without batch norm (Lim et al. 2017, Fig. 2c): ``x + res_scale * conv(relu(conv(x)))``."""

    def __init__(self, features: int, res_scale: float = EDSR_BASELINE_RES_SCALE) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, EDSR_KERNEL_SIZE, padding=EDSR_KERNEL_SIZE // 2),
            nn.ReLU(),
            nn.Conv2d(features, features, EDSR_KERNEL_SIZE, padding=EDSR_KERNEL_SIZE // 2),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSRBaseline(nn.Module):
    """EDSR baseline (single scale).

    Ambiguities resolved:

    * Mean shift: EDSR subtracts the DIV2K RGB mean on 0..255 images (``MeanShift``) before the head and adds it
      back after the tail. Inputs here are [0, 1] images of any channel count (mostly one-channel medical slices),
      for which that RGB mean is meaningless; the global skip already centres the body, so no mean shift is applied.
    * Upsampler (``"subpixel"``): as in the paper, x4 (and x8) are cascades of x2 sub-pixel stages
      (:func:`cascade_scales`), each ``conv F -> 4F`` + PixelShuffle(2), followed by the tail ``conv F -> out``;
      x3 is one x3 stage.
    * ``upsampler="meta"``: the sub-pixel stages *and* the tail convolution are replaced by a Meta-SR
      ``MetaUpsampler`` ``F -> out`` (as Meta-SR replaces the upscale module of its backbones).

    Args:
        in_channels: image channels in.
        scale: integer factor for "subpixel"; default of ``forward`` for "meta".
        upsampler: ``"subpixel"`` or ``"meta"``.
        out_channels: image channels out (default ``in_channels``).
        features: feature maps ``F`` (paper baseline: 64).
        num_blocks: residual blocks ``B`` (paper baseline: 16).
        res_scale: residual scaling (paper baseline: 1).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        features: int = EDSR_BASELINE_FEATURES,
        num_blocks: int = EDSR_BASELINE_BLOCKS,
        res_scale: float = EDSR_BASELINE_RES_SCALE,
    ) -> None:
        super().__init__()
        out_channels = contract_out_channels(
            "EDSR", in_channels, out_channels, ("num_blocks",), features=features, num_blocks=num_blocks
        )
        pad = EDSR_KERNEL_SIZE // 2
        self.head = nn.Conv2d(in_channels, features, EDSR_KERNEL_SIZE, padding=pad)
        self.body = nn.Sequential(
            *[ResBlock(features, res_scale) for _ in range(num_blocks)],
            nn.Conv2d(features, features, EDSR_KERNEL_SIZE, padding=pad),
        )
        self.arbitrary_scale = upsampler == "meta"
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        if upsampler == "subpixel":
            stages: list[nn.Module] = [SubpixelUpsampler(features, features, s) for s in cascade_scales(scale)]
            stages.append(nn.Conv2d(features, out_channels, EDSR_KERNEL_SIZE, padding=pad))
            self.upsampler: nn.Module = nn.Sequential(*stages)
        else:  # the MetaUpsampler, or make_upsampler's error naming an unknown kind
            self.upsampler = make_upsampler(upsampler, features, out_channels, scale)

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Upscale ``x``; ``scale`` only when built with ``upsampler="meta"``."""
        pair = forward_scale(scale, self.scale, self.arbitrary_scale, "EDSR")
        head = self.head(x)
        features = head + self.body(head)
        if self.arbitrary_scale:
            return self.upsampler(features, pair)
        return self.upsampler(features)
