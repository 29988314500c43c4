"""Channel attention from channel statistics: IMDN's CCA and RMISR's ICCA.

* CCA, contrast-aware channel attention (Hui et al., IMDN, ACM MM 2019, §3.2): statistic = population standard
  deviation + mean of each channel.
* ICCA, information-entropy contrast-aware channel attention (Ren et al., RMISR 2021, §4.2, eq. 14, Fig. 4):
  statistic = scaled entropy term + standard deviation + mean.

Both then apply ``1x1 conv (C -> C/r) -> ReLU -> 1x1 conv (C/r -> C) -> sigmoid`` and rescale the input channels.

The statistics are global (over the whole ``H x W`` map), so a window of a slice sees other statistics than the whole
slice. They are also *mergeable*: :meth:`ContrastChannelAttention.partial_statistics` gives sums over a part of the
map (count, mean and centred sum of squares; for ICCA also the maximum, ``sum exp(x - max)`` and
``sum x exp(x - max)``) and :meth:`~ContrastChannelAttention.merge_statistics` combines the parts of disjoint regions
into the statistic of their union (Chan et al.'s pairwise variance update and a log-sum-exp rescaling, in float64),
equal to the whole-map statistic within float32 rounding. :mod:`rmisr_monai.inference.tiling` uses them for tiles that
give the whole-slice result.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "channel_mean_std",
    "spatial_entropy_term",
    "merge_moments",
    "merge_entropy_terms",
    "ContrastChannelAttention",
    "ICCA",
    "CCA_REDUCTION",
    "ICCA_ENTROPY_NORM",
    "STD_EPS",
]

# IMDN code, model/block.py CCALayer(channel, reduction=16).
CCA_REDUCTION = 16
# RMISR eq. 14: "N = 256 is used to normalize the value of information entropy".
ICCA_ENTROPY_NORM = 256.0
# floor under the variance so that the gradient of sqrt stays finite on constant channels
STD_EPS = 1e-12


def channel_mean_std(x: torch.Tensor, eps: float = STD_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel spatial mean and population standard deviation (``1/(HW)``), each ``(N, C, 1, 1)``.

    The variance is floored at ``eps`` (:data:`STD_EPS`) before the square root (IMDN's ``stdv_channels`` has no
    floor and gives NaN gradients on constant channels); values differ from IMDN's by at most ``sqrt(STD_EPS) = 1e-6``.
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    centred = x - mean
    # without autograd the square overwrites the centred copy: one full-size temporary instead of two
    squared = centred.square() if centred.requires_grad else centred.square_()
    var = squared.mean(dim=(2, 3), keepdim=True)
    return mean, var.clamp_min(eps).sqrt()


def spatial_entropy_term(x: torch.Tensor, norm: float = ICCA_ENTROPY_NORM) -> torch.Tensor:
    """The entropy term of RMISR eq. 14, ``(1/N) * sum_ij p_ij log2 p_ij``, per channel, ``(N, C, 1, 1)``.

    Reading chosen: eq. 14 writes ``x log2 x`` on the raw feature map, which is undefined for negative values. Here
    ``p = softmax`` of the channel over its ``H*W`` positions (positive, sums to 1, defined for any real input and
    differentiable everywhere, so ``0 log 0`` never occurs). The sign is kept as printed, so the term equals
    ``-H(p) / N`` with ``H`` the Shannon entropy in bits; ``N = 256`` as in the paper.

    Computed as ``sum p log p = E_p[x] - logsumexp(x)`` (``log p = x - logsumexp(x)``) from ``e = exp(x - max)``:
    ``E_p[x] = sum(e * x) / sum(e)``, ``logsumexp = max + log sum(e)``; reductions over ``(H, W)`` keep a
    channels-last tensor in place (no flatten copy) and only ``e`` is written, against three maps for
    ``log_softmax`` then ``exp`` then the product. Equal to the softmax form within fp32 rounding.
    """
    shift = x.amax(dim=(2, 3), keepdim=True).detach()  # any shift gives the same value; the max avoids overflow
    e = (x - shift).exp_()
    total = e.sum(dim=(2, 3), keepdim=True)
    weighted = e * x if e.requires_grad else e.mul_(x)  # without autograd e is not needed again: no second map
    plogp = weighted.sum(dim=(2, 3), keepdim=True) / total - (shift + total.log())
    return plogp / (math.log(2.0) * norm)


def _moment_parts(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, 3)`` float64: count, mean and centred sum of squares of each channel of ``x`` over ``(H, W)``,
    computed in float32 or better (two passes over the part, as :func:`channel_mean_std`) and returned in float64."""
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    mean = x.mean(dim=(2, 3), keepdim=True)
    m2 = (x - mean).square_().sum(dim=(2, 3))
    count = torch.full_like(m2, float(x.shape[-2] * x.shape[-1]))
    return torch.stack([count, mean[..., 0, 0], m2], dim=-1).double()


def merge_moments(parts: list[torch.Tensor], eps: float = STD_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population standard deviation ``(N, C, 1, 1)`` (float64) of the union of the parts
    (:func:`_moment_parts` of disjoint regions), by Chan, Golub and LeVeque's pairwise update
    ``M2 = M2_a + M2_b + delta^2 n_a n_b / n``; the variance is floored at ``eps`` as in :func:`channel_mean_std`."""
    total = parts[0]
    n, mean, m2 = total.unbind(-1)
    for part in parts[1:]:
        nb, mb, m2b = part.unbind(-1)
        count = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / count)
        m2 = m2 + m2b + delta.square() * (n * nb / count)
        n = count
    var = (m2 / n).clamp_min(eps)
    return mean[..., None, None], var.sqrt()[..., None, None]


def _entropy_parts(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, 3)`` float64: ``max``, ``sum exp(x - max)`` and ``sum x exp(x - max)`` of each channel over ``(H, W)``
    (the sums of :func:`spatial_entropy_term`, in float32 or better)."""
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    shift = x.amax(dim=(2, 3), keepdim=True)
    e = (x - shift).exp_()
    total = e.sum(dim=(2, 3))
    weighted = e.mul_(x).sum(dim=(2, 3))
    return torch.stack([shift[..., 0, 0], total, weighted], dim=-1).double()


def merge_entropy_terms(parts: list[torch.Tensor], norm: float = ICCA_ENTROPY_NORM) -> torch.Tensor:
    """The entropy term of :func:`spatial_entropy_term` ``(N, C, 1, 1)`` (float64) of the union of the parts
    (:func:`_entropy_parts` of disjoint regions): the sums are rescaled to the common maximum ``M``,
    ``S = sum_t S_t exp(m_t - M)``, ``T = sum_t T_t exp(m_t - M)``, then ``sum p log p = T / S - (M + log S)``."""
    stacked = torch.stack(parts)  # (parts, N, C, 3)
    shifts, totals, weighted = stacked.unbind(-1)
    top = shifts.amax(dim=0)
    scale = (shifts - top).exp()
    total = (totals * scale).sum(dim=0)
    plogp = (weighted * scale).sum(dim=0) / total - (top + total.log())
    return (plogp / (math.log(2.0) * norm))[..., None, None]


class ContrastChannelAttention(nn.Module):
    """IMDN's contrast-aware channel attention (CCA): statistic ``std + mean`` per channel.

    Children ``conv_du.0`` and ``conv_du.2`` match the official IMDN checkpoint keys (``cca.conv_du.0.weight``...).

    Args:
        channels: channels in and out.
        reduction: channel reduction of the bottleneck (IMDN: 16).

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = CCA_REDUCTION) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ConfigurationError(f"reduction={reduction} leaves no channel of {channels}")
        hidden = channels // reduction
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, bias=True),
            nn.Sigmoid(),
        )

    def statistic(self, x: torch.Tensor) -> torch.Tensor:
        """IMDN: ``contrast (population std) + mean`` per channel, ``(N, C, 1, 1)``."""
        mean, std = channel_mean_std(x)
        return std + mean

    def partial_statistics(self, x: torch.Tensor) -> torch.Tensor:
        """Mergeable sums of ``x`` over its ``(H, W)`` (a part of the map), ``(N, C, 3)`` float64: count, mean and
        centred sum of squares; :meth:`merge_statistics` of the parts of a partition gives :meth:`statistic` of the
        whole map."""
        return _moment_parts(x)

    def merge_statistics(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`statistic` ``(N, C, 1, 1)`` (float32) of the union of disjoint regions from their
        :meth:`partial_statistics`."""
        mean, std = merge_moments(parts)
        return (std + mean).float()

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention factors ``sigmoid(bottleneck(statistic(x)))``, ``(N, C, 1, 1)``; ``forward`` is ``x`` times
        them."""
        return self.conv_du(self.statistic(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_weights(x)


class ICCA(ContrastChannelAttention):
    """RMISR's information-entropy contrast-aware channel attention (eq. 14, Fig. 4).

    ``s_c = (1/N) sum p log2 p + std(x_c) + mean(x_c)`` with the entropy reading of :func:`spatial_entropy_term`,
    then the CCA bottleneck and sigmoid; the output is ``x * sigmoid(...)``.

    Args:
        channels: channels in and out (RMISR: 64).
        reduction: bottleneck reduction (not given in the paper; IMDN's 16).
        entropy_norm: ``N`` of eq. 14 (256).
    """

    def __init__(self, channels: int, reduction: int = CCA_REDUCTION, entropy_norm: float = ICCA_ENTROPY_NORM) -> None:
        super().__init__(channels, reduction)
        self.entropy_norm = float(entropy_norm)

    def statistic(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 14: entropy term + standard deviation + mean, ``(N, C, 1, 1)``."""
        mean, std = channel_mean_std(x)
        return spatial_entropy_term(x, self.entropy_norm) + std + mean

    def partial_statistics(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, 6)`` float64: the moment sums of CCA, then ``max``, ``sum exp(x - max)``, ``sum x exp(x - max)``."""
        return torch.cat([_moment_parts(x), _entropy_parts(x)], dim=-1)

    def merge_statistics(self, parts: list[torch.Tensor]) -> torch.Tensor:
        mean, std = merge_moments([p[..., :3] for p in parts])
        entropy = merge_entropy_terms([p[..., 3:] for p in parts], self.entropy_norm)
        return (entropy + std + mean).float()
