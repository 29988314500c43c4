"""Non-learned interpolators with the network interface: the "Bicubic", "Bilinear" and "Nearest" rows of SR tables.

``"bicubic"`` is MATLAB's ``imresize(lr, s, 'bicubic')`` (:func:`rmisr_monai.ops.resize.imresize`: Keys' cubic kernel
with a = -0.5, symmetric boundary), the interpolator of every published "Bicubic" baseline (e.g. RMISR Table 1,
IMDN, VDSR) and the pre-upsampler of SRCNN and VDSR. ``"bilinear"`` and ``"nearest"`` are ``torch.nn.functional``
interpolations with half-pixel centres (``align_corners=False`` and ``"nearest-exact"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import UPSAMPLER_KINDS, as_scale_pair, forward_scale, scaled_size
from rmisr_monai.ops.resize import imresize

__all__ = ["Interpolation", "INTERPOLATION_MODES"]

INTERPOLATION_MODES = ("bicubic", "bilinear", "nearest")


@torch.jit.unused
def _bicubic(x, sy, sx, size):
    # type: (Tensor, float, float, List[int]) -> Tensor
    """MATLAB bicubic by :func:`imresize` (numpy-built matrices: traceable, not scriptable)."""
    return imresize(x, (sy, sx), output_shape=size).to(x.dtype)


class Interpolation(nn.Module):
    """Upscale by interpolation; no parameters, any scale at run time.

    Ambiguities resolved:

    * output size follows the network contract, ``(round(H*sy), round(W*sx))``; the bicubic kernel is built for the
      requested scale (MATLAB behaviour), while bilinear/nearest map centres with ``in/out`` (PyTorch behaviour with
      ``size=``). Both agree whenever ``H*sy`` is an integer.
    * ``"nearest"`` uses PyTorch's ``"nearest-exact"`` (source pixel ``floor((i + 0.5) * in / out)``), which is
      centred like MATLAB's and scipy's nearest; the legacy ``"nearest"`` (``floor(i * in / out)``) shifts the image
      by up to half a pixel at non-integer scales.
    * ``upsampler`` has no effect on the computation (there is nothing to learn); it is validated so that a config
      written for any network is accepted, and :attr:`arbitrary_scale` is always ``True``.

    TorchScript: ``"bilinear"``/``"nearest"`` script; ``"bicubic"`` builds its resize matrices with numpy and must be
    traced (at a fixed input size and scale).

    Args:
        in_channels: image channels.
        scale: default scale (float or ``(sy, sx)``) used when ``forward`` gets none.
        upsampler: ``"subpixel"`` or ``"meta"`` (no effect, see above).
        out_channels: must be ``None`` or ``in_channels``.
        mode: one of :data:`INTERPOLATION_MODES`.

    Shapes: ``(N, in_channels, H, W) -> (N, in_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale", "mode"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float | Sequence[float] = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        mode: str = "bicubic",
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ConfigurationError(f"in_channels must be >= 1, got {in_channels}")
        if out_channels is not None and out_channels != in_channels:
            raise ConfigurationError(f"interpolation keeps the channels: out_channels {out_channels} != {in_channels}")
        if upsampler not in UPSAMPLER_KINDS:
            raise ConfigurationError(f"unknown upsampler {upsampler!r}; choose one of {', '.join(UPSAMPLER_KINDS)}")
        if mode not in INTERPOLATION_MODES:
            raise ConfigurationError(f"unknown interpolation mode {mode!r}; choose one of {INTERPOLATION_MODES}")
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        self.upsampler = upsampler
        self.mode = mode
        self.arbitrary_scale = True

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Interpolate ``x`` by ``scale`` (default: the constructor's)."""
        sy, sx = forward_scale(scale, self.scale, self.arbitrary_scale, "Interpolation")
        # int(): plain sizes while tracing too (the traced graph is then fixed to this input size)
        size = [scaled_size(int(x.shape[-2]), sy), scaled_size(int(x.shape[-1]), sx)]
        if self.mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest-exact")
        return _bicubic(x, sy, sx, size)
