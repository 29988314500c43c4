"""FSRCNN: Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016.

Implemented: the network of the paper's Fig. 2 and §3.2, ``Conv(5, d, 1) - PReLU - Conv(1, s, d) - PReLU -
m x [Conv(3, s, s) - PReLU] - Conv(1, d, s) - PReLU - DeConv(9, 1, d)`` with the paper's best setting
``d = 56, s = 12, m = 4`` (§3.2, "FSRCNN (56, 12, 4)"), on the LR image (no pre-upsampling); the 9 x 9
deconvolution with stride ``n`` (the scale) is the upsampler.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import as_scale_pair, contract_out_channels, forward_scale, make_upsampler

__all__ = [
    "FSRCNN",
    "deconv_upsampler",
    "FSRCNN_D",
    "FSRCNN_S",
    "FSRCNN_M",
    "FSRCNN_DECONV_KERNEL",
]

FSRCNN_D = 56  # LR feature dimension d (Dong et al. 2016, §3.2 / Table 4, FSRCNN (56, 12, 4))
FSRCNN_S = 12  # shrinking filters s (ibid.)
FSRCNN_M = 4  # mapping depth m (ibid.)
FSRCNN_DECONV_KERNEL = 9  # DeConv(9, 1, d) (Dong et al. 2016, §3.2)
FSRCNN_EXTRACT_KERNEL = 5  # Conv(5, d, 1) (Dong et al. 2016, §3.2)
FSRCNN_MAP_KERNEL = 3  # Conv(3, s, s) (Dong et al. 2016, §3.2)


def deconv_upsampler(in_channels: int, out_channels: int, scale: int, kernel_size: int) -> nn.ConvTranspose2d:
    """Transposed convolution with stride ``scale`` whose output is exactly ``scale`` times its input.

    The output length of a transposed convolution is ``(H - 1) * s - 2 p + k + q``; ``p = max(0, ceil((k - s) / 2))``
    and ``q = s - k + 2 p`` (``0 <= q < s``) make it ``s * H`` for any ``k`` and ``s``.

    Raises:
        ConfigurationError: ``scale`` is not an integer >= 2, or ``kernel_size < 1``.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not float(scale).is_integer() or scale < 2:
        raise ConfigurationError(f"a deconvolution upsampler needs an integer scale >= 2, got {scale!r}")
    if kernel_size < 1:
        raise ConfigurationError(f"kernel_size must be >= 1, got {kernel_size}")
    s = int(scale)
    padding = max(0, -((s - kernel_size) // 2))  # ceil((k - s) / 2), at least 0
    output_padding = s - kernel_size + 2 * padding
    return nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size, stride=s, padding=padding, output_padding=output_padding
    )


class FSRCNN(nn.Module):
    """FSRCNN (d, s, m) on the LR image.

    Ambiguities resolved:

    * PReLU is channel-wise (one slope per feature map), following He et al. 2015 which the paper cites; these
      ``2 d + (m + 1) s`` slopes are not in the paper's parameter count, which counts convolution weights only
      (12,464 for (56, 12, 4) on one channel, Table 4 / §3.2 "Sensitivity"), nor are the biases.
    * Padding keeps sizes: ``k // 2`` for the convolutions; the deconvolution padding and output padding are computed
      by :func:`deconv_upsampler` so the output is exactly ``scale * H`` (the paper does not state them).
    * ``upsampler="subpixel"`` here means the paper's fixed-scale deconvolution (integer ``scale``);
      ``upsampler="meta"`` replaces the deconvolution with a Meta-SR ``MetaUpsampler`` on the ``d`` features,
      for arbitrary scales (not in the paper).
    * Initialisation (Gaussian, std 0.001 for the deconvolution) is a training detail and left to PyTorch defaults.

    Args:
        in_channels: image channels in (paper: 1, the Y channel).
        scale: integer upscaling factor for "subpixel"; default of ``forward`` for "meta".
        upsampler: ``"subpixel"`` (deconvolution) or ``"meta"``.
        out_channels: image channels out (default ``in_channels``).
        d: LR feature dimension (paper: 56).
        s: shrinking filters (paper: 12).
        m: mapping layers (paper: 4).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        d: int = FSRCNN_D,
        s: int = FSRCNN_S,
        m: int = FSRCNN_M,
    ) -> None:
        super().__init__()
        out_channels = contract_out_channels("FSRCNN", in_channels, out_channels, ("m",), d=d, s=s, m=m)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, d, FSRCNN_EXTRACT_KERNEL, padding=FSRCNN_EXTRACT_KERNEL // 2),
            nn.PReLU(d),
            nn.Conv2d(d, s, 1),
            nn.PReLU(s),
        ]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, FSRCNN_MAP_KERNEL, padding=FSRCNN_MAP_KERNEL // 2), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.arbitrary_scale = upsampler == "meta"
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        if upsampler == "subpixel":
            self.upsampler: nn.Module = deconv_upsampler(d, out_channels, scale, FSRCNN_DECONV_KERNEL)
        else:  # the MetaUpsampler, or make_upsampler's error naming an unknown kind
            self.upsampler = make_upsampler(upsampler, d, out_channels, scale)

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Upscale ``x``; ``scale`` only when built with ``upsampler="meta"``."""
        pair = forward_scale(scale, self.scale, self.arbitrary_scale, "FSRCNN")
        features = self.body(x)
        if self.arbitrary_scale:
            return self.upsampler(features, pair)
        return self.upsampler(features)
