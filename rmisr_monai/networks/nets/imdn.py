"""IMDN: Hui, Gao, Yang, Wang, "Lightweight Image Super-Resolution with Information Multi-distillation Network",
ACM Multimedia 2019, pp. 2024-2032, doi 10.1145/3343031.3351084, arXiv 1909.11856.

Implemented: the network of the paper's Fig. 2 with the information multi-distillation block (IMDB) of Fig. 3:
a 3 x 3 head convolution; ``num_modules = 6`` IMDBs, each a progressive refinement module (four 3 x 3 convolutions,
eqs. 1-2, keeping 16 "distilled" channels and passing 48 "remaining" channels on after each of the first three),
the contrast-aware channel attention (CCA, eqs. 3-4, mean + standard deviation) on the concatenated distilled
channels, a 1 x 1 convolution and the block input added; a 1 x 1 fusion of all block outputs (with LeakyReLU), a
3 x 3 convolution, the global residual from the head (in LR space) and the sub-pixel upsampler (3 x 3 conv +
PixelShuffle). Activation details (``shared/peers/imdn/STATE_DICT.md`` §3, checked against the published Set5
figures): LeakyReLU 0.05 after ``c1``, ``c2``, ``c3`` and after the fusion; none after ``c4``, ``c5``, the head, the
3 x 3 convolution after the fusion or in the upsampler.

Official weights (RGB, x2/x3/x4, ``IMDN_x{2,3,4}.pth``; research use only, not shipped with this project) load with
``IMDN.from_official(path)``, or with ``net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))``
(the files hold CUDA tensors, hence ``map_location``): the official key names (``module.`` prefix, ``IMDB1`` ...
``IMDB6``, ``c.0``, ``LR_conv``, ``fea_conv``) are translated by a load-state-dict pre-hook (:func:`official_key`).
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError, WeightsError
from rmisr_monai.networks.blocks.activation import LRELU_SLOPE
from rmisr_monai.networks.blocks.attention import CCA_REDUCTION, ContrastChannelAttention
from rmisr_monai.networks.blocks.upsample import as_scale_pair, contract_out_channels, forward_scale, make_upsampler
from rmisr_monai.networks.nets.official import (
    load_strictly,
    read_official_state,
    renamed_key,
    renaming_hook,
    upsampler_scale,
)

__all__ = [
    "IMDN",
    "IMDB",
    "official_key",
    "IMDN_FEATURES",
    "IMDN_MODULES",
    "IMDN_DISTILLED",
    "IMDN_OFFICIAL_CHANNELS",
]

IMDN_FEATURES = 64  # nf = 64 feature channels (Hui et al. 2019, §4.1 / Fig. 2)
IMDN_MODULES = 6  # six IMDBs (Hui et al. 2019, §4.1)
IMDN_DISTILLED = 16  # channel split 16 distilled / 48 remaining = 1/4 of 64 (Hui et al. 2019, §3.2, eq. 1)
IMDN_OFFICIAL_CHANNELS = 3  # the official checkpoints are RGB in, RGB out
IMDN_KERNEL_SIZE = 3  # 3 x 3 convolutions in the head, the IMDB refinement steps and after the fusion

# official key pieces -> ours; the official repository unrolls the blocks as IMDB1 ... IMDB6 (1-based)
_OFFICIAL_RENAMES = ((r"^fea_conv\.", "head."), (r"^c\.0\.", "fusion.0."), (r"^LR_conv\.", "lr_conv."))
_OFFICIAL_BLOCK = re.compile(r"^IMDB(\d+)\.")


def official_key(key: str) -> str:
    """Our parameter name for a key of the official checkpoints, e.g. ``module.IMDB3.c1.weight -> blocks.2.c1.weight``.

    Keys that are already ours come back unchanged.
    """
    return renamed_key(key, _OFFICIAL_BLOCK, _OFFICIAL_RENAMES)


class IMDB(nn.Module):
    """Information multi-distillation block (Hui et al. 2019, Fig. 3; eqs. 1-4).

    ``c1`` (3 x 3, ``C -> C``), ``c2``, ``c3`` (3 x 3, ``C - d -> C``) are each followed by LeakyReLU and a split
    into ``d`` distilled and ``C - d`` remaining channels; ``c4`` (3 x 3, ``C - d -> d``, no activation) refines the
    last remaining channels. The four distilled pieces (order c1, c2, c3, c4) are concatenated to ``4 d`` channels,
    reweighted by CCA, fused by ``c5`` (1 x 1, ``4 d -> C``) and added to the block input.

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(
        self,
        features: int = IMDN_FEATURES,
        distilled: int = IMDN_DISTILLED,
        negative_slope: float = LRELU_SLOPE,
        cca_reduction: int = CCA_REDUCTION,
    ) -> None:
        super().__init__()
        if not 0 < distilled < features:
            raise ConfigurationError(f"distilled channels must be in (0, {features}), got {distilled}")
        remaining = features - distilled
        pad = IMDN_KERNEL_SIZE // 2
        self.distilled = distilled
        self.remaining = remaining
        self.c1 = nn.Conv2d(features, features, IMDN_KERNEL_SIZE, padding=pad)
        self.c2 = nn.Conv2d(remaining, features, IMDN_KERNEL_SIZE, padding=pad)
        self.c3 = nn.Conv2d(remaining, features, IMDN_KERNEL_SIZE, padding=pad)
        self.c4 = nn.Conv2d(remaining, distilled, IMDN_KERNEL_SIZE, padding=pad)
        self.act = nn.LeakyReLU(negative_slope)
        self.cca = ContrastChannelAttention(4 * distilled, cca_reduction)
        self.c5 = nn.Conv2d(4 * distilled, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept1, rest = torch.split(self.act(self.c1(x)), [self.distilled, self.remaining], dim=1)
        kept2, rest = torch.split(self.act(self.c2(rest)), [self.distilled, self.remaining], dim=1)
        kept3, rest = torch.split(self.act(self.c3(rest)), [self.distilled, self.remaining], dim=1)
        kept4 = self.c4(rest)
        return x + self.c5(self.cca(torch.cat([kept1, kept2, kept3, kept4], dim=1)))


class IMDN(nn.Module):
    """IMDN (Hui et al. 2019).

    Ambiguities resolved:

    * Blocks live in ``self.blocks`` (an ``nn.ModuleList`` sized by ``num_modules``); the official ``IMDB1`` ...
      ``IMDB6`` names are mapped on loading (:func:`official_key`).
    * ``upsampler="meta"`` replaces the sub-pixel upsampler by a Meta-SR ``MetaUpsampler`` (arbitrary scale; not in
      the paper, and the official weights then do not fit the upsampler).
    * Default ``in_channels=1`` (project default for medical slices); the official weights need ``in_channels=3``.

    Args:
        in_channels: image channels in.
        scale: integer factor for "subpixel"; default of ``forward`` for "meta".
        upsampler: ``"subpixel"`` or ``"meta"``.
        out_channels: image channels out (default ``in_channels``).
        features: feature channels (paper: 64).
        num_modules: number of IMDBs (paper: 6).
        distilled: distilled channels per refinement step (paper: 16 of 64).
        negative_slope: LeakyReLU slope (official code: 0.05).
        cca_reduction: CCA channel reduction (official code and weights: 16, i.e. ``conv_du.0`` is 64 -> 4).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        features: int = IMDN_FEATURES,
        num_modules: int = IMDN_MODULES,
        distilled: int = IMDN_DISTILLED,
        negative_slope: float = LRELU_SLOPE,
        cca_reduction: int = CCA_REDUCTION,
    ) -> None:
        super().__init__()
        out_channels = contract_out_channels(
            "IMDN", in_channels, out_channels, features=features, num_modules=num_modules
        )
        pad = IMDN_KERNEL_SIZE // 2
        self.head = nn.Conv2d(in_channels, features, IMDN_KERNEL_SIZE, padding=pad)
        self.blocks = nn.ModuleList(
            IMDB(features, distilled, negative_slope, cca_reduction) for _ in range(num_modules)
        )
        self.fusion = nn.Sequential(nn.Conv2d(num_modules * features, features, 1), nn.LeakyReLU(negative_slope))
        self.lr_conv = nn.Conv2d(features, features, IMDN_KERNEL_SIZE, padding=pad)
        self.arbitrary_scale = upsampler == "meta"
        self.upsampler = make_upsampler(upsampler, features, out_channels, scale)
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        self.register_load_state_dict_pre_hook(renaming_hook(official_key))

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Upscale ``x``; ``scale`` only when built with ``upsampler="meta"``."""
        pair = forward_scale(scale, self.scale, self.arbitrary_scale, "IMDN")
        head = self.head(x)
        features = head
        outputs = []
        for block in self.blocks:
            features = block(features)
            outputs.append(features)
        features = head + self.lr_conv(self.fusion(torch.cat(outputs, dim=1)))
        if self.arbitrary_scale:
            return self.upsampler(features, pair)
        return self.upsampler(features)

    @classmethod
    def from_official(cls, path: str | os.PathLike, scale: int | None = None) -> IMDN:
        """Build the RGB IMDN of an official checkpoint ``IMDN_x{2,3,4}.pth`` and load it strictly.

        Args:
            path: the checkpoint (an ``OrderedDict`` with ``module.``-prefixed keys), read with ``weights_only=True``.
            scale: expected scale; ``None`` reads it from the upsampler (``3 * s * s`` output channels).

        Raises:
            WeightsError: unreadable file, or keys/shapes that do not fit (e.g. ``scale`` differs from the file's).
        """
        state = read_official_state(path, "IMDN")
        upsampler_weight = next((v for k, v in state.items() if k.endswith("upsampler.0.weight")), None)
        if upsampler_weight is None:
            raise WeightsError(f"{path}: no upsampler.0.weight; not an official IMDN checkpoint")
        file_scale = upsampler_scale(path, upsampler_weight, IMDN_OFFICIAL_CHANNELS, scale)
        net = cls(in_channels=IMDN_OFFICIAL_CHANNELS, scale=file_scale)
        return load_strictly(net, state, path, f"IMDN x{file_scale}")
