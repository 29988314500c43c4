"""PSNR and SSIM the way SR papers compute them, and their medical-image versions.

SR benchmark convention (VDSR/EDSR/IMDN MATLAB scripts, BasicSR ``calculate_psnr``/``calculate_ssim``, the protocol
behind RMISR Table 1, Ren et al. 2021): images in the 0..255 convention, scored on the **Y channel** of BT.601
YCbCr (``y_channel=True``), after **shaving** ``scale`` pixels from every border (``shave``). SSIM is Wang et al.'s
(IEEE TIP 2004, eq. 13): an 11 x 11 Gaussian window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, computed on the
"valid" region only (MATLAB ``ssim_index.m`` ``filter2(..., 'valid')``, BasicSR's ``[5:-5, 5:-5]`` crop) and averaged.

Medical convention: scores on the intensity range itself (``data_range`` given, e.g. 1 for normalised slices or the
HU window width), optionally after clipping both images to an HU window (``window``; ``data_range`` then defaults
to its width).

Layout: channel-first, ``(*spatial)``, ``(C, *spatial)`` or a batch ``(N, C, *spatial)`` with ``spatial_dims``
trailing spatial axes; numpy or torch. Scores are float64 tensors: shape ``(N,)`` for a batch (one value per
image, averaged over channels, as the papers average per image), a 0-d tensor otherwise.

MONAI reuse: PSNR is :class:`monai.metrics.PSNRMetric` on the prepared images (identical formula). SSIM is the
computation of :func:`monai.metrics.regression.compute_ssim_and_cs` (same Gaussian window, "valid" convolution,
constants and mean), done here in float64 with a separable window because MONAI casts to float32: the two agree
to about 5e-7 on 0..255 and [0, 1] test images (checked in the tests), and the float64 version matches float64
references to 1e-10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.metrics import PSNRMetric
from monai.metrics.regression import RegressionMetric
from monai.utils import MetricReduction, convert_to_tensor

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "Y_OFFSET",
    "Y_WEIGHTS",
    "Y_DENOMINATOR",
    "SSIM_WINDOW_SIZE",
    "SSIM_SIGMA",
    "SSIM_K1",
    "SSIM_K2",
    "rgb_to_y",
    "as_batched",
    "shave_border",
    "prepare_pair",
    "psnr_batched",
    "psnr",
    "ssim",
    "SRPSNRMetric",
    "SRSSIMMetric",
]

# ITU-R BT.601 luma as MATLAB rgb2ycbcr / BasicSR rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
# for R, G, B in 0..255 (Y in 16..235).
Y_OFFSET = 16.0
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_DENOMINATOR = 255.0
# Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural similarity",
# IEEE TIP 2004, §III-C: 11 x 11 circular-symmetric Gaussian window, sigma 1.5; K1 = 0.01, K2 = 0.03 (eq. 13).
SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def rgb_to_y(x: torch.Tensor, data_range: float, channel_dim: int = -3) -> torch.Tensor:
    """BT.601 luma of an RGB (3 channels) or grey (1 channel, read as R = G = B) image, in the image's range.

    The 0..255 formula is rescaled so that it holds for any ``data_range`` (``data_range = 1`` gives BasicSR's
    ``rgb2ycbcr(img / 255)`` convention): ``Y = (16 data_range + 65.481 R + 128.553 G + 24.966 B) / 255``.

    Returns the luma with a channel axis of length 1 at ``channel_dim``.
    """
    n_channels = x.shape[channel_dim]
    weights = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device)
    if n_channels == 1:
        weights = weights.sum(dim=0, keepdim=True)
    elif n_channels != 3:
        raise ConfigurationError(f"y_channel needs 1 or 3 channels, got {n_channels} (shape {tuple(x.shape)})")
    shape = [1] * x.ndim
    shape[channel_dim] = n_channels
    luma = (x * weights.reshape(shape)).sum(dim=channel_dim, keepdim=True)
    return (Y_OFFSET * data_range + luma) / Y_DENOMINATOR


def as_batched(x: NdarrayOrTensor, spatial_dims: int) -> tuple[torch.Tensor, bool]:
    """``x`` as a float64 ``(N, C, *spatial)`` tensor, and whether it already had a batch axis."""
    t = convert_to_tensor(x, track_meta=False).to(torch.float64)
    if t.ndim == spatial_dims + 2:
        return t, True
    if t.ndim == spatial_dims + 1:
        return t[None], False
    if t.ndim == spatial_dims:
        return t[None, None], False
    raise ConfigurationError(f"shape {tuple(t.shape)} does not fit spatial_dims={spatial_dims} (channel first)")


def shave_border(x: torch.Tensor, shave: int, spatial_dims: int) -> torch.Tensor:
    """Remove ``shave`` samples from both ends of each of the last ``spatial_dims`` axes."""
    if shave == 0:
        return x
    if shave < 0 or any(2 * shave >= n for n in x.shape[-spatial_dims:]):
        raise ConfigurationError(f"cannot shave {shave} pixels from spatial shape {tuple(x.shape[-spatial_dims:])}")
    return x[(Ellipsis, *(slice(shave, -shave) for _ in range(spatial_dims)))]


def prepare_pair(
    sr: NdarrayOrTensor,
    hr: NdarrayOrTensor,
    data_range: float | None = None,
    shave: int = 0,
    y_channel: bool = False,
    window: Sequence[float] | None = None,
    spatial_dims: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """The images as scored: batched float64, window-clipped, Y channel, shaved.

    Returns:
        ``(sr, hr, data_range, batched)``; ``data_range`` defaults to the window width.
    """
    if window is not None:
        low, high = (float(v) for v in window)
        if not high > low:
            raise ConfigurationError(f"window must be (low, high) with low < high, got {tuple(window)}")
        data_range = high - low if data_range is None else data_range
    if data_range is None or not data_range > 0:
        raise ConfigurationError(f"data_range must be a positive number (or give a window), got {data_range}")
    a, batched = as_batched(sr, spatial_dims)
    b, _ = as_batched(hr, spatial_dims)
    if a.shape != b.shape:
        raise ConfigurationError(f"sr {tuple(a.shape)} and hr {tuple(b.shape)} differ in shape")
    if window is not None:
        a, b = a.clamp(low, high), b.clamp(low, high)
    if y_channel:
        a, b = rgb_to_y(a, data_range, channel_dim=1), rgb_to_y(b, data_range, channel_dim=1)
    return shave_border(a, shave, spatial_dims), shave_border(b, shave, spatial_dims), float(data_range), batched


def psnr_batched(sr: torch.Tensor, hr: torch.Tensor, data_range: float) -> torch.Tensor:
    """``10 log10(data_range^2 / MSE)`` per image of two ``(N, C, ...)`` tensors (MONAI ``PSNRMetric``), ``(N,)``."""
    return PSNRMetric(max_val=data_range, reduction=MetricReduction.NONE)(sr, hr)[:, 0]


def psnr(
    sr: NdarrayOrTensor,
    hr: NdarrayOrTensor,
    data_range: float | None = None,
    shave: int = 0,
    y_channel: bool = False,
    window: Sequence[float] | None = None,
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images).

    Args:
        sr: super-resolved image(s), channel first (module docstring for shapes).
        hr: reference image(s), same shape.
        data_range: peak value (255 for 8-bit images, 1 for [0, 1], window width for HU).
        shave: pixels removed from every border before scoring (the SR factor in the papers).
        y_channel: score the BT.601 Y channel of RGB (or grey) images.
        window: ``(low, high)`` clip applied to both images first (e.g. an HU window).
        spatial_dims: number of trailing spatial axes.
    """
    a, b, data_range, batched = prepare_pair(sr, hr, data_range, shave, y_channel, window, spatial_dims)
    value = psnr_batched(a, b, data_range)
    return value if batched else value[0]


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1D Gaussian ``exp(-t^2 / (2 sigma^2))``, ``t = -(size-1)/2 .. (size-1)/2`` (MATLAB fspecial)."""
    t = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, window: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Separable depthwise filtering of ``(N, C, *spatial)`` along each spatial axis, "valid" region only."""
    n, c = x.shape[:2]
    out = x.reshape(n * c, 1, *x.shape[2:])
    conv = getattr(F, f"conv{spatial_dims}d")
    for axis in range(spatial_dims):
        shape = [1, 1] + [1] * spatial_dims
        shape[2 + axis] = window.numel()
        out = conv(out, window.reshape(shape))
    return out.reshape(n, c, *out.shape[2:])


def ssim(
    sr: NdarrayOrTensor,
    hr: NdarrayOrTensor,
    data_range: float | None = None,
    shave: int = 0,
    y_channel: bool = False,
    window: Sequence[float] | None = None,
    spatial_dims: int = 2,
    win_size: int = SSIM_WINDOW_SIZE,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004, eq. 13) over the valid region, averaged over channels.

    Args:
        sr, hr, data_range, shave, y_channel, window, spatial_dims: as in :func:`psnr`.
        win_size: Gaussian window side (11).
        sigma: Gaussian standard deviation (1.5).
        k1, k2: stability constants, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``.
    """
    a, b, data_range, batched = prepare_pair(sr, hr, data_range, shave, y_channel, window, spatial_dims)
    if any(n < win_size for n in a.shape[2:]):
        raise ConfigurationError(f"SSIM needs at least {win_size} samples per axis, got {tuple(a.shape[2:])}")
    g = _gaussian_window(win_size, sigma, a.dtype, a.device)
    mu_a, mu_b = _filter_valid(a, g, spatial_dims), _filter_valid(b, g, spatial_dims)
    var_a = _filter_valid(a * a, g, spatial_dims) - mu_a**2
    var_b = _filter_valid(b * b, g, spatial_dims) - mu_b**2
    cov = _filter_valid(a * b, g, spatial_dims) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    value = ssim_map.flatten(1).mean(dim=1)
    return value if batched else value[0]


class _SRMetric(RegressionMetric):
    """MONAI cumulative metric over :func:`psnr` / :func:`ssim` (batch-first ``(N, C, *spatial)`` inputs)."""

    def __init__(
        self,
        data_range: float | None = None,
        shave: int = 0,
        y_channel: bool = False,
        window: Sequence[float] | None = None,
        spatial_dims: int = 2,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.kwargs = dict(data_range=data_range, shave=shave, y_channel=y_channel, window=window)
        self.spatial_dims = spatial_dims

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y_pred.ndim != self.spatial_dims + 2:
            raise ConfigurationError(f"expected a batch (N, C, *spatial), got shape {tuple(y_pred.shape)}")
        return self._score(y_pred, y)[:, None]


class SRPSNRMetric(_SRMetric):
    """:func:`psnr` as a MONAI ``CumulativeIterationMetric``: call per batch, then ``aggregate()`` (mean of images).

    Args:
        data_range, shave, y_channel, window, spatial_dims: as in :func:`psnr`.
        reduction, get_not_nans: MONAI metric reduction.
    """

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return psnr(y_pred, y, spatial_dims=self.spatial_dims, **self.kwargs)


class SRSSIMMetric(_SRMetric):
    """:func:`ssim` as a MONAI ``CumulativeIterationMetric`` (arguments as :class:`SRPSNRMetric`)."""

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ssim(y_pred, y, spatial_dims=self.spatial_dims, **self.kwargs)

