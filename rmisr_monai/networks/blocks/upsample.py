"""Upsamplers of RMISR (Ren et al. 2021, §4.3, Fig. 5): sub-pixel and Meta-SR style arbitrary scale.

Both map LR feature maps ``(N, in_channels, H, W)`` to ``(N, out_channels, round(H*sy), round(W*sx))``.
The output-size rule (:func:`scaled_size`, Python's ``round``, i.e. half to even) is the one of the network contract
in ``CONTRIBUTING.md``; every module that needs it imports it from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "as_scale_pair",
    "runtime_scale_pair",
    "forward_scale",
    "scaled_size",
    "SubpixelUpsampler",
    "MetaUpsampler",
    "make_upsampler",
    "contract_out_channels",
    "UPSAMPLER_KINDS",
    "META_HIDDEN_FEATURES",
    "META_MAX_CONV_CLASSES",
    "META_MAX_CONV_VALUES",
]

UPSAMPLER_KINDS = ("subpixel", "meta")

# Meta-SR (Hu et al. CVPR 2019) official code, model/metardn.py ``Pos2Weight``: Linear(3, 256) -> ReLU -> Linear.
META_HIDDEN_FEATURES = 256
# at most this many (row offset x column offset) classes are computed as one convolution (MetaUpsampler._forward_conv):
# 4 at x2, 9 at x3, 25 at x2.5, 49 at x3.5; scales with more distinct offsets gather per row class instead
META_MAX_CONV_CLASSES = 64
# ... or more classes while the convolution's output (batch x classes x out channels x LR pixels) stays below this
# many values: training patches (16 x 32 x 32 at x2.37 on both axes: 361 classes, 6M values) then run as one
# convolution too, 1.7-2.3x faster per step forward and backward than the per-row gather (1 thread)
META_MAX_CONV_VALUES = 1 << 24


def as_scale_pair(scale: float | Sequence[float]) -> tuple[float, float]:
    """Normalise a scale factor to ``(sy, sx)``.

    Args:
        scale: one positive number for both axes, or a pair ``(sy, sx)`` (rows, columns).

    Returns:
        ``(sy, sx)`` as Python floats.

    Raises:
        ConfigurationError: not a number or a pair of numbers, or not finite and > 0.
    """
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        pair = (float(scale), float(scale))
    elif isinstance(scale, Sequence) and not isinstance(scale, str) and len(scale) == 2:
        if any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in scale):
            raise ConfigurationError(f"scale must hold numbers, got {scale!r}")
        pair = (float(scale[0]), float(scale[1]))
    else:
        raise ConfigurationError(f"scale must be a number or a pair (sy, sx), got {scale!r}")
    if not all(math.isfinite(s) and s > 0 for s in pair):
        raise ConfigurationError(f"scale must be finite and > 0, got {scale!r}")
    return pair


def runtime_scale_pair(scale: Union[float, Tuple[float, float]]) -> Tuple[float, float]:
    """``(sy, sx)`` of a scale given at run time; scriptable.

    In eager mode (and while tracing) the scale goes through :func:`as_scale_pair`, so ints and any pair are accepted
    and validated; scripted code receives a float or a pair of floats, TorchScript's types for it.
    """
    if not torch.jit.is_scripting():
        return as_scale_pair(scale)
    if isinstance(scale, float):
        return scale, scale
    return scale[0], scale[1]


def forward_scale(
    scale: Optional[Union[float, Tuple[float, float]]],
    default: Tuple[float, float],
    arbitrary_scale: bool,
    network: str,
) -> Tuple[float, float]:
    """The ``(sy, sx)`` a network's ``forward(x, scale)`` upscales by (network contract in ``CONTRIBUTING.md``).

    Args:
        scale: the scale given to ``forward``, ``None`` for the constructor's.
        default: the constructor's scale as a pair.
        arbitrary_scale: whether the network takes a run-time scale (built with ``upsampler="meta"``).
        network: the network's name, for the error message.

    Raises:
        ConfigurationError: a scale given to a fixed-scale network, or (eager mode) an invalid scale.
    """
    if scale is None:
        return default
    if not arbitrary_scale:
        raise ConfigurationError(f"this {network} has a fixed scale (upsampler='subpixel'); build it with 'meta'")
    return runtime_scale_pair(scale)


def scaled_size(size: int, scale: float) -> int:
    """Output length of an axis of ``size`` pixels upscaled by ``scale``: ``round(size * scale)`` (half to even).

    While tracing (``torch.jit.trace``, ONNX export) a size read from a tensor's shape is a 0-d tensor; the length
    is then computed with tensor ops (``torch.round`` also rounds half to even, in float64 like Python), so that the
    traced graph follows the input size instead of freezing the traced one.
    """
    if not torch.jit.is_scripting() and isinstance(size, torch.Tensor):
        return torch.round(size.to(torch.float64) * scale).long()
    return int(round(size * scale))


class SubpixelUpsampler(nn.Sequential):
    """Sub-pixel upsampler (Shi et al. CVPR 2016, ESPCN; RMISR Fig. 5a): conv ``in -> out*s*s`` then PixelShuffle(s).

    Children: ``0`` the convolution (``kernel_size``, padding ``kernel_size // 2``, with bias), ``1`` the shuffle,
    so the keys ``0.weight`` / ``0.bias`` match IMDN's official checkpoint (``upsampler.0.weight``).
    For scales 4 and 8 a single shuffle by ``s`` is used, as IMDN does (not EDSR's cascade of x2 stages).

    Args:
        in_channels: feature channels in.
        out_channels: image channels out.
        scale: integer factor >= 2 for both axes.
        kernel_size: odd convolution size (IMDN: 3).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, s*H, s*W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int, kernel_size: int = 3) -> None:
        if isinstance(scale, bool) or not float(scale).is_integer() or int(scale) < 2:
            raise ConfigurationError(f"the sub-pixel upsampler needs an integer scale >= 2, got {scale!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigurationError(f"kernel_size must be odd and positive, got {kernel_size}")
        s = int(scale)
        super().__init__(
            nn.Conv2d(in_channels, out_channels * s * s, kernel_size, padding=kernel_size // 2, bias=True),
            nn.PixelShuffle(s),
        )
        self.scale = s


class MetaUpsampler(nn.Module):
    """Meta-upscale module (Hu et al., Meta-SR, CVPR 2019; RMISR eqs. 15-17, Algorithm 1, Fig. 5b).

    * Position projection (eq. 15, Meta-SR ``input_matrix_wpn``): output row ``i`` reads LR row
      ``floor(i / sy)`` (clamped to ``H - 1``), offset ``i / sy - floor(i / sy)``; likewise for columns with ``sx``.
    * Weight prediction (eq. 16, Meta-SR ``Pos2Weight``): ``Linear(4, hidden) -> ReLU -> Linear(hidden, k*k*in*out)``
      applied to the vector ``[1/sy, 1/sx, offset_y, offset_x]``. Meta-SR's code uses the 3-vector
      ``[1/r, offset_h, offset_w]`` (one scale); the scale is given per axis here so that one axis alone can be
      upscaled, e.g. ``(2.0, 1.0)``. The predicted vector is laid out ``(in, ky, kx, out)`` (``out`` fastest), which is
      Meta-SR's ``(inC*k*k, outC)`` layout.
    * Feature mapping (eq. 17): the ``k x k`` neighbourhood (``F.unfold`` with zero padding ``k // 2``) of the
      projected LR pixel is multiplied with the predicted weights.

    Memory: the weights depend only on ``(offset_y, offset_x)``; they are predicted once per distinct row offset x
    distinct column offset (e.g. 2 x 2 for scale 2, 5 x 5 for 2.5) instead of once per output pixel. The product is
    computed one row-offset class at a time with ``einsum``, so besides the unfolded LR map (``N * in*k*k * H * W``)
    at most ``N * in*k*k * rows_of_class * W_out`` values are gathered at once, never the full
    ``N * in*k*k * H_out * W_out`` of Meta-SR's ``repeat_x``. With at most :data:`META_MAX_CONV_CLASSES` classes
    (integer and short-period fractional scales, the inference case), or while that convolution's output stays under
    :data:`META_MAX_CONV_VALUES` values (training patches), the product is instead one convolution with a filter per
    class followed by a gather (:meth:`_forward_conv`): the same result, several times faster on CPU. Scriptable with
    ``torch.jit.script``; in eager mode ``scale`` may also be an int or any pair accepted by :func:`as_scale_pair`.

    Args:
        in_channels: feature channels in (Meta-SR: ``G0 = 64``).
        out_channels: image channels out.
        kernel_size: neighbourhood size ``k`` (Meta-SR: 3).
        hidden_features: width of the weight-prediction MLP (Meta-SR: 256).

    Shapes: ``forward(x, scale)``: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``;
    ``scale`` is a float or ``(sy, sx)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, hidden_features: int = META_HIDDEN_FEATURES
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigurationError(f"kernel_size must be odd and positive, got {kernel_size}")
        if min(in_channels, out_channels, hidden_features) < 1:
            raise ConfigurationError(
                f"channels must be >= 1, got in={in_channels}, out={out_channels}, hidden={hidden_features}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.max_conv_classes = META_MAX_CONV_CLASSES
        self.max_conv_values = META_MAX_CONV_VALUES
        self.weight_predictor = nn.Sequential(
            nn.Linear(4, hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, kernel_size * kernel_size * in_channels * out_channels),
        )

    @staticmethod
    def project(size: int, scale: float, out_size: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Position projection of one axis (eq. 15): LR index ``floor(i / s)`` (clamped) and offset, float64."""
        pos = torch.arange(out_size, dtype=torch.float64, device=device) / scale
        base = torch.floor(pos)
        return base.clamp(max=size - 1).long(), pos - base

    def forward(self, x: torch.Tensor, scale: Union[float, Tuple[float, float]]) -> torch.Tensor:
        sy, sx = runtime_scale_pair(scale)
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        out_h, out_w = scaled_size(h, sy), scaled_size(w, sx)
        k2c = self.in_channels * self.kernel_size * self.kernel_size
        src_y, off_y = self.project(h, sy, out_h, x.device)
        src_x, off_x = self.project(w, sx, out_w, x.device)
        # offsets rounded to the feature dtype so that equal offsets of periodic positions fall in one class
        cls_y_val, cls_y = torch.unique(off_y.to(x.dtype), sorted=True, return_inverse=True)
        cls_x_val, cls_x = torch.unique(off_x.to(x.dtype), sorted=True, return_inverse=True)
        ny, nx = cls_y_val.numel(), cls_x_val.numel()
        inv = torch.tensor([1.0 / sy, 1.0 / sx], dtype=x.dtype, device=x.device)
        grid = torch.cat(
            [
                inv.expand(ny, nx, 2),
                cls_y_val[:, None, None].expand(ny, nx, 1),
                cls_x_val[None, :, None].expand(ny, nx, 1),
            ],
            dim=2,
        )
        weights = self.weight_predictor(grid).view(ny, nx, k2c, self.out_channels)
        if ny * nx <= self.max_conv_classes or n * ny * nx * self.out_channels * h * w <= self.max_conv_values:
            return self._forward_conv(x, weights, src_y, cls_y, src_x, cls_x)
        cols = F.unfold(x, self.kernel_size, padding=self.kernel_size // 2).view(n, k2c, h, w)
        pieces = []
        rows_in_order = []
        for c in range(ny):
            rows = torch.nonzero(cls_y == c).squeeze(1)
            patch = cols.index_select(2, src_y.index_select(0, rows)).index_select(3, src_x)
            wc = weights[c].index_select(0, cls_x)
            pieces.append(torch.einsum("nkrw,wko->norw", patch, wc))
            rows_in_order.append(rows)
        out = torch.cat(pieces, dim=2)
        return out.index_select(2, torch.argsort(torch.cat(rows_in_order)))

    def _forward_conv(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        src_y: torch.Tensor,
        cls_y: torch.Tensor,
        src_x: torch.Tensor,
        cls_x: torch.Tensor,
    ) -> torch.Tensor:
        """Eq. 17 for few offset classes: one ``k x k`` convolution with a filter per class, then a gather.

        The unfold-and-multiply of eq. 17 with the weights of class ``(cy, cx)`` is a convolution of ``x`` with those
        weights at every LR pixel; all classes at once are one convolution with ``ny * nx * out`` output maps
        (same multiply-adds as the per-row product when each class's rows cover the LR grid, as at integer and
        periodic fractional scales, in one oneDNN call instead of gathering an ``in*k*k``-deep copy of the
        output grid). Each output pixel then picks its class's map at its source LR pixel.
        """
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        ny, nx, o = weights.shape[0], weights.shape[1], self.out_channels
        # the unfold order is (in, ky, kx), so (ny, nx, in*k*k, o) -> (ny*nx*o, in, k, k) conv filters
        filters = weights.permute(0, 1, 3, 2).reshape(ny * nx * o, self.in_channels, self.kernel_size, self.kernel_size)
        maps = F.conv2d(x, filters, padding=self.kernel_size // 2)  # (n, ny*nx*o, h, w)
        table = maps.view(n, ny, nx, o, h, w).permute(0, 4, 5, 1, 2, 3).reshape(n, h * w * ny * nx, o)
        index = ((src_y[:, None] * w + src_x[None, :]) * ny + cls_y[:, None]) * nx + cls_x[None, :]
        out = table.index_select(1, index.reshape(-1)).view(n, src_y.numel(), src_x.numel(), o)
        return out.permute(0, 3, 1, 2)


def contract_out_channels(
    network: str, in_channels: int, out_channels: int | None, zero_ok: Sequence[str] = (), **sizes: int | None
) -> int:
    """``out_channels`` as the network contract defaults it (``in_channels``), once the sizes are checked.

    Args:
        network: the network's name, for the message.
        in_channels, out_channels: the contract's first arguments (``out_channels=None``: ``in_channels``).
        zero_ok: the names in ``sizes`` that may be 0 (a number of repeated layers); all others must be >= 1.
        sizes: the architecture sizes by argument name; ``None`` (an optional size left to its default) is not
            checked.

    Raises:
        ConfigurationError: a size out of range, naming the network and every size.
    """
    out = in_channels if out_channels is None else out_channels
    low = {name: 0 if name in zero_ok else 1 for name in sizes}
    if min(in_channels, out) < 1 or any(v is not None and v < low[k] for k, v in sizes.items()):
        rule = "sizes must be >= 1" + (f" ({', '.join(zero_ok)} >= 0)" if zero_ok else "")
        got = ", ".join(f"{k}={v}" for k, v in {"in": in_channels, "out": out, **sizes}.items())
        raise ConfigurationError(f"{network} {rule}, got {got}")
    return out


def make_upsampler(kind: str, in_channels: int, out_channels: int, scale: float) -> nn.Module:
    """Build the upsampler named ``kind``: ``"subpixel"`` (integer ``scale``) or ``"meta"`` (any scale at run time).

    Raises:
        ConfigurationError: unknown ``kind``, or a non-integer scale for ``"subpixel"``.
    """
    if kind == "subpixel":
        return SubpixelUpsampler(in_channels, out_channels, scale)
    if kind == "meta":
        return MetaUpsampler(in_channels, out_channels)
    raise ConfigurationError(f"unknown upsampler {kind!r}; choose one of {', '.join(UPSAMPLER_KINDS)}")
