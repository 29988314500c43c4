"""Contextual loss (Mechrez, Talmi & Zelnik-Manor, ECCV 2018, arXiv:1803.02077), as the official code computes it.

RMISR eq. 20 uses ``L_C = -log(CX(phi(I_SR), phi(I_HR)))`` on the Laplacian-gradient branch (§4.4). The formula
below follows ``CX/CSFlow.py`` of roimehrez/contextualLoss (``create_using_dotP`` and ``CX_loss``), with ``x`` the
output features (``I``) and ``y`` the target features (``T``), positions ``i`` of ``x`` and ``j`` of ``y``:

1. centre both by the channel mean of ``y`` over batch and positions (``center_by_T``);
2. L2-normalise every feature vector along the channels;
3. cosine distance ``d_ij = (1 - cos(x_i, y_j)) / 2``;
4. relative distance ``d~_ij = d_ij / (min_k d_ik + eps)``, ``eps = 1e-5``;
5. ``w_ij = exp((b - d~_ij) / h)``, ``b = 1``; ``CX_ij = w_ij / sum_k w_ik`` (normalised over target positions);
6. ``CX = mean_j max_i CX_ij``; loss ``-log(CX)`` per sample, averaged over the batch.

Step 5 is computed as a softmax over ``k``: the same numbers, without overflow of ``exp`` for small ``h`` (``b``
cancels in the normalisation). Maps with more than ``65 x 65`` positions are sub-sampled to ``65 x 65`` random
positions, the same positions in ``x`` and ``y`` (``CX_helper.random_pooling``, ``max_sampling_1d_size = 65``).

Feature extractors: ``"vgg19"`` (the paper's choice, §5.1: "a pre-trained VGG-19"; needs local ImageNet weights,
see :class:`~rmisr_monai.networks.nets.vgg.VGG19Features`) or ``"patches"``, which needs no weights: the feature
vector of a position is the raw ``k x k`` neighbourhood of the input map (all channels), a good fit for the nearly
sparse Laplacian gradient maps and the offline default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.nets.vgg import VGG19Features

__all__ = [
    "CX_BAND_WIDTH",
    "CX_B",
    "CX_EPSILON",
    "CX_MAX_POSITIONS",
    "CX_VGG_LAYERS",
    "CX_FEATURE_EXTRACTORS",
    "contextual_similarity",
    "contextual_loss",
    "sample_positions",
    "ContextualLoss",
]

CX_BAND_WIDTH = 0.5  # h: official config.py "config.CX.nn_stretch_sigma = 0.5" (pass it explicitly: REFERENCES e)
CX_B = 1.0  # b of w = exp((b - d~) / h), CSFlow(b=1.0)
CX_EPSILON = 1e-5  # CSFlow.calc_relative_distances
CX_MAX_POSITIONS = 65 * 65  # config.CX.max_sampling_1d_size = 65
CX_VGG_LAYERS = ("relu3_2", "relu4_2")  # config.CX.feat_layers conv3_2, conv4_2 (read after their ReLU)
CX_FEATURE_EXTRACTORS = ("patches", "vgg19")
_NORM_FLOOR = 1e-12  # keeps an all-zero centred vector at zero instead of 0/0


def contextual_similarity(x: torch.Tensor, y: torch.Tensor, band_width: float = CX_BAND_WIDTH) -> torch.Tensor:
    """Contextual similarity ``CX`` per sample (steps 1-6 of the module docstring, before ``-log``).

    Args:
        x: output features ``(N, C, *spatial)``.
        y: target features ``(N, C, *spatial')`` (the spatial size may differ from ``x``).
        band_width: ``h`` (> 0).

    Returns:
        ``(N,)`` values in ``(0, 1]``.
    """
    if not band_width > 0:
        raise ConfigurationError(f"band_width (h) must be positive, got {band_width}")
    if x.shape[:2] != y.shape[:2]:
        raise ConfigurationError(f"x and y need the same batch and channels, got {tuple(x.shape)}, {tuple(y.shape)}")
    x_vec, y_vec = x.flatten(2), y.flatten(2)  # (N, C, P)
    mean = y_vec.mean(dim=(0, 2), keepdim=True)
    x_vec = F.normalize(x_vec - mean, dim=1, eps=_NORM_FLOOR)
    y_vec = F.normalize(y_vec - mean, dim=1, eps=_NORM_FLOOR)
    # steps 3-5 with one (N, P_x, P_y) map: for cosine similarity s, d = (1 - s) / 2, so over k
    # (b - d_ik / (m_i + eps)) / h = s_ik / (2 h (m_i + eps)) + const_i with m_i = min_k d_ik = (1 - max_k s_ik) / 2,
    # and the softmax drops const_i: the same CX (and gradients) as the official steps, in 3 passes instead of 8
    similarity = torch.bmm(x_vec.transpose(1, 2), y_vec)  # (N, P_x, P_y)
    nearest = (1.0 - similarity.amax(dim=2, keepdim=True)) / 2.0
    cx = torch.softmax(similarity * (1.0 / (2.0 * band_width * (nearest + CX_EPSILON))), dim=2)
    return cx.amax(dim=1).mean(dim=1)


def contextual_loss(
    x: torch.Tensor, y: torch.Tensor, band_width: float = CX_BAND_WIDTH, reduction: str = "mean"
) -> torch.Tensor:
    """``-log(CX(x, y))`` (RMISR eq. 20), reduced over the batch by ``"mean"`` (official), ``"sum"`` or ``"none"``."""
    loss = -torch.log(contextual_similarity(x, y, band_width))
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ConfigurationError(f"unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")


def sample_positions(
    x: torch.Tensor, y: torch.Tensor, max_positions: int = CX_MAX_POSITIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``(N, C, *spatial)`` maps to ``(N, C, P)``, keeping ``max_positions`` random positions when larger.

    Maps of equal size keep the same positions in both (official ``random_pooling``); otherwise each is sampled
    on its own.
    """
    x_vec, y_vec = x.flatten(2), y.flatten(2)
    same = x_vec.shape[2] == y_vec.shape[2]
    if x_vec.shape[2] > max_positions:
        keep = torch.randperm(x_vec.shape[2], device=x.device)[:max_positions]
        x_vec = x_vec[:, :, keep]
        y_vec = y_vec[:, :, keep] if same else y_vec
    if y_vec.shape[2] > max_positions:
        y_vec = y_vec[:, :, torch.randperm(y_vec.shape[2], device=y.device)[:max_positions]]
    return x_vec, y_vec


class ContextualLoss(_Loss):
    """Contextual loss between an output and a target image (or gradient map), summed over feature layers.

    Args:
        band_width: ``h`` of ``w = exp((1 - d~) / h)``; default 0.5 (official ``config.py``).
        feature_extractor: ``"patches"`` (raw ``patch_size x patch_size`` neighbourhoods, no weights, valid
            positions only) or ``"vgg19"`` (needs ``vgg_weights_path`` or ``RMISR_VGG19_WEIGHTS``; every channel
            of the input is passed to VGG as its own gray image, so 1- and 2-channel maps work).
        vgg_layers: ``"vgg19"`` only: layer names, or ``{name: weight}``; default relu3_2 and relu4_2, weight 1
            each (official ``feat_layers``).
        vgg_weights_path: ``"vgg19"`` only: local torchvision VGG19 file (``"random"`` for tests).
        patch_size: ``"patches"`` only: odd or even ``k >= 1``; ``k = 1`` compares single pixels.
        max_positions: maps with more positions are randomly sub-sampled (default ``65 * 65``).
        reduction: ``"mean"`` (over the batch, official), ``"sum"`` or ``"none"``.

    Inputs ``forward(input, target)``: ``(N, C, H, W)`` each; returns the loss (scalar unless ``"none"``).
    """

    def __init__(
        self,
        band_width: float = CX_BAND_WIDTH,
        feature_extractor: str = "patches",
        vgg_layers: Sequence[str] | Mapping[str, float] = CX_VGG_LAYERS,
        vgg_weights_path: str | os.PathLike | None = None,
        patch_size: int = 3,
        max_positions: int = CX_MAX_POSITIONS,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if feature_extractor not in CX_FEATURE_EXTRACTORS:
            raise ConfigurationError(f"unknown feature_extractor {feature_extractor!r}; use {CX_FEATURE_EXTRACTORS}")
        if not band_width > 0:
            raise ConfigurationError(f"band_width (h) must be positive, got {band_width}")
        if reduction not in ("mean", "sum", "none"):
            raise ConfigurationError(f"unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")
        if patch_size < 1 or max_positions < 1:
            raise ConfigurationError(f"patch_size and max_positions must be >= 1, got {patch_size}, {max_positions}")
        self.band_width = float(band_width)
        self.feature_extractor = feature_extractor
        self.patch_size = int(patch_size)
        self.max_positions = int(max_positions)
        self.layer_weights = dict(vgg_layers) if isinstance(vgg_layers, Mapping) else dict.fromkeys(vgg_layers, 1.0)
        self.vgg = (
            VGG19Features(tuple(self.layer_weights), vgg_weights_path, in_channels=1)
            if feature_extractor == "vgg19"
            else None
        )

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{layer name: (N', C', H', W')}`` feature maps the loss compares (``"patches"``: one entry)."""
        if self.vgg is None:
            size = _valid_size(x, self.patch_size)
            return {"patches": F.unfold(x, kernel_size=self.patch_size).unflatten(2, size)}
        return self.vgg(x.reshape(-1, 1, *x.shape[2:]))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape[:2] != target.shape[:2] or input.ndim != 4:
            raise ConfigurationError(f"need (N, C, H, W) maps of equal N, C; got {tuple(input.shape)}, {target.shape}")
        out_features, target_features = self.features(input), self.features(target)
        total = input.new_zeros(())
        for name, out_map in out_features.items():
            x_vec, y_vec = sample_positions(out_map, target_features[name], self.max_positions)
            loss = contextual_loss(x_vec, y_vec, self.band_width, reduction="none")
            if self.vgg is not None:  # channels were folded into the batch: one value per sample again
                loss = loss.view(input.shape[0], -1).mean(dim=1)
            total = total + self.layer_weights.get(name, 1.0) * loss
        if self.reduction == "mean":
            return total.mean()
        if self.reduction == "sum":
            return total.sum()
        return total


def _valid_size(x: torch.Tensor, patch_size: int) -> tuple[int, int]:
    height, width = x.shape[-2] - patch_size + 1, x.shape[-1] - patch_size + 1
    if height < 1 or width < 1:
        raise ConfigurationError(f"patch_size {patch_size} is larger than the map {tuple(x.shape[-2:])}")
    return height, width
