"""Non-learned interpolators with the network interface: the "Bicubic", "Bilinear" and "Nearest" rows of SR tables.

``"bicubic"`` is MATLAB's ``imresize(lr, s, 'bicubic')`` (:func:`rmisr_monai.ops.resize.imresize`: Keys' cubic kernel
with a = -0.5, symmetric boundary), the interpolator of every published "Bicubic" baseline (e.g. RMISR Table 1,
IMDN, VDSR) and the pre-upsampler of SRCNN and VDSR. ``"bilinear"`` and ``"nearest"`` are ``torch.nn.functional``
interpolations with half-pixel centres (``align_corners=False`` and ``"nearest-exact"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import UPSAMPLER_KINDS, as_scale_pair, forward_scale, scaled_size
from rmisr_monai.ops.resize import resize_axis

__all__ = ["Interpolation", "INTERPOLATION_MODES"]

INTERPOLATION_MODES = ("bicubic", "bilinear", "nearest")


def _nearest_source(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """Source index of each output sample of PyTorch's ``"nearest-exact"``: ``min(floor((i + 0.5) * s), n_in - 1)``.

    ``s = n_in / n_out`` in float32 and the product rounded to float32, as ATen's CPU kernel computes it
    (``nearest_neighbor_exact_compute_source_index``), so the gather picks the very pixels ``F.interpolate`` does;
    written with tensor ops because ONNX has no ``_upsample_nearest_exact2d``.
    """
    if not torch.jit.is_scripting() and isinstance(n_in, torch.Tensor):  # traced sizes stay in the graph
        ratio = n_in.to(torch.float32) / n_out.to(torch.float32)
    else:
        ratio = torch.tensor(float(n_in), dtype=torch.float32) / torch.tensor(float(n_out), dtype=torch.float32)
    position = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * ratio.to(torch.float64)).to(torch.float32)
    return torch.floor(position).long().clamp(max=n_in - 1).to(device)


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

    Export: every mode scripts, and traces (``torch.jit.trace``, ONNX) with the output size following the input
    size: the bicubic matrices are built with torch ops (:func:`~rmisr_monai.ops.resize.resize_axis`) and
    ``"nearest"`` is a gather of the source pixels ``F.interpolate(mode="nearest-exact")`` picks (ONNX has no
    nearest-exact operator); both give bit-identical results to those references.

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
        h, w = x.shape[2], x.shape[3]
        out_h, out_w = scaled_size(h, sy), scaled_size(w, sx)
        if self.mode == "bilinear":
            return F.interpolate(x, size=[out_h, out_w], mode="bilinear", align_corners=False)
        if self.mode == "nearest":
            rows, cols = _nearest_source(h, out_h, x.device), _nearest_source(w, out_w, x.device)
            return x.index_select(2, rows).index_select(3, cols)
        return resize_axis(resize_axis(x, 2, out_h, sy), 3, out_w, sx)
