"""SRCNN: Dong, Loy, He, Tang, "Image Super-Resolution Using Deep Convolutional Networks", TPAMI 2016
(ECCV 2014 version: "Learning a Deep Convolutional Network for Image Super-Resolution").

Implemented: the three-layer network of the paper's Fig. 2 / eqs. (1)-(3), in the "9-1-5" setting with
``n1 = 64`` and ``n2 = 32`` filters (§4.1 / Table 1 of the TPAMI paper): patch extraction ``W1 * Y + B1``, ReLU;
non-linear mapping ``W2 * F1 + B2``, ReLU; reconstruction ``W3 * F2 + B3``, applied to the bicubic-upscaled image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import forward_scale
from rmisr_monai.networks.nets.interpolate import Interpolation

__all__ = ["SRCNN", "SRCNN_FEATURES", "SRCNN_KERNEL_SIZES"]

SRCNN_FEATURES = (64, 32)  # n1, n2 (Dong et al. 2016, §4.1)
SRCNN_KERNEL_SIZES = (9, 1, 5)  # f1, f2, f3: the "9-1-5" network (Dong et al. 2016, §4.1)


class SRCNN(nn.Module):
    """SRCNN on a MATLAB-bicubic pre-upscaled image.

    Ambiguities resolved:

    * The paper uses unpadded ("valid") convolutions, so its output is smaller than the input; here every layer is
      zero-padded by ``k // 2`` so the output has the contract size ``(round(H*sy), round(W*sx))``.
    * The scale only enters through the bicubic pre-upsampling, so any scale works with the same weights.
      ``upsampler="subpixel"`` is read as "fixed scale": ``forward(x)`` upscales by the constructor's ``scale``
      (any positive float or ``(sy, sx)``, not only integers), :attr:`arbitrary_scale` is ``False``;
      ``upsampler="meta"`` is read as "arbitrary scale via the pre-upsampling": ``forward(x, scale)``. No Meta-SR
      module is involved in either case.
    * The paper works on the Y channel only; ``in_channels``/``out_channels`` generalise the first and last layer.

    Export: scriptable; traceable and ONNX-exportable with dynamic H and W (the bicubic pre-upsampling of
    :class:`Interpolation` is built with torch ops), an arbitrary-scale one at a fixed scale.

    Args:
        in_channels: image channels in.
        scale: upscaling factor (float or ``(sy, sx)``; the default of ``forward`` in "meta" mode).
        upsampler: ``"subpixel"`` (fixed scale) or ``"meta"`` (scale given to ``forward``), see above.
        out_channels: image channels out (default ``in_channels``).
        features: ``(n1, n2)`` filters of the first two layers (paper: 64, 32).
        kernel_sizes: ``(f1, f2, f3)`` odd kernel sizes (paper: 9, 1, 5).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float | Sequence[float] = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        features: Sequence[int] = SRCNN_FEATURES,
        kernel_sizes: Sequence[int] = SRCNN_KERNEL_SIZES,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if len(features) != 2 or min(features) < 1:
            raise ConfigurationError(f"features must be two positive numbers (n1, n2), got {features!r}")
        if len(kernel_sizes) != 3 or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ConfigurationError(f"kernel_sizes must be three odd positive sizes, got {kernel_sizes!r}")
        if min(in_channels, out_channels) < 1:
            raise ConfigurationError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        self.interpolation = Interpolation(in_channels, scale, upsampler, mode="bicubic")
        self.arbitrary_scale = upsampler == "meta"
        widths = [in_channels, *features, out_channels]
        layers: list[nn.Module] = []
        for i, k in enumerate(kernel_sizes):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], k, padding=k // 2))
            if i < 2:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Upscale ``x``; ``scale`` only when built with ``upsampler="meta"``."""
        pair = forward_scale(scale, self.interpolation.scale, self.arbitrary_scale, "SRCNN")
        return self.body(self.interpolation(x, pair))
