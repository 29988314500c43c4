"""VDSR: Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks", CVPR 2016.

Implemented: the network of the paper's Fig. 2: ``d = 20`` layers of ``3 x 3`` convolutions with 64 filters (the
first takes the image, the last outputs the image), ReLU after every layer but the last, zero padding to keep the
size (§3.1), and residual learning: the network predicts ``r = y - x`` and outputs ``x + r`` where ``x`` is the
bicubic-interpolated LR image (§3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import forward_scale
from rmisr_monai.networks.nets.interpolate import Interpolation

__all__ = ["VDSR", "VDSR_DEPTH", "VDSR_FEATURES", "VDSR_KERNEL_SIZE"]

VDSR_DEPTH = 20  # d = 20 weight layers (Kim et al. 2016, §3.1 / §4.1)
VDSR_FEATURES = 64  # 64 filters of 3 x 3 x 64 per hidden layer (Kim et al. 2016, §3.1)
VDSR_KERNEL_SIZE = 3  # 3 x 3 filters (Kim et al. 2016, §3.1)


class VDSR(nn.Module):
    """VDSR with MATLAB-bicubic pre-upsampling and a global residual.

    Ambiguities resolved:

    * The scale only enters through the bicubic pre-upsampling (the paper trains one network for x2, x3 and x4).
      ``upsampler="subpixel"`` is read as "fixed scale": ``forward(x)`` upscales by the constructor's ``scale``
      (any positive float or ``(sy, sx)``), :attr:`arbitrary_scale` is ``False``; ``upsampler="meta"`` is read as
      "arbitrary scale via the pre-upsampling": ``forward(x, scale)``. No Meta-SR module is involved.
    * The residual needs ``out_channels == in_channels``; other values raise :class:`ConfigurationError`.
    * Training details (gradient clipping, learning rate 0.1) are not part of the module.

    Export: scriptable; traceable and ONNX-exportable with dynamic H and W (the bicubic pre-upsampling of
    :class:`Interpolation` is built with torch ops), an arbitrary-scale one at a fixed scale.

    Args:
        in_channels: image channels (the paper: 1, the Y channel).
        scale: upscaling factor (float or ``(sy, sx)``; the default of ``forward`` in "meta" mode).
        upsampler: ``"subpixel"`` (fixed scale) or ``"meta"`` (scale given to ``forward``), see above.
        out_channels: ``None`` or ``in_channels``.
        depth: number of convolution layers (paper: 20).
        features: filters per hidden layer (paper: 64).

    Shapes: ``(N, in_channels, H, W) -> (N, in_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float | Sequence[float] = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        depth: int = VDSR_DEPTH,
        features: int = VDSR_FEATURES,
    ) -> None:
        super().__init__()
        if out_channels is not None and out_channels != in_channels:
            raise ConfigurationError(f"VDSR's global residual needs out_channels == {in_channels}, got {out_channels}")
        if depth < 2 or features < 1:
            raise ConfigurationError(f"VDSR needs depth >= 2 and features >= 1, got depth={depth}, features={features}")
        self.interpolation = Interpolation(in_channels, scale, upsampler, mode="bicubic")
        self.arbitrary_scale = upsampler == "meta"
        widths = [in_channels] + [features] * (depth - 1) + [in_channels]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], VDSR_KERNEL_SIZE, padding=VDSR_KERNEL_SIZE // 2))
            if i < depth - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Upscale ``x``; ``scale`` only when built with ``upsampler="meta"``."""
        pair = forward_scale(scale, self.interpolation.scale, self.arbitrary_scale, "VDSR")
        upscaled = self.interpolation(x, pair)
        return upscaled + self.body(upscaled)
