"""RLFN: Kong, Li, Liu, Liu, He, Bai, Chen, Fu, "Residual Local Feature Network for Efficient Super-Resolution",
CVPR Workshops (NTIRE) 2022, arXiv 2205.07514; first place in the runtime track of the NTIRE 2022 efficient SR
challenge.

Implemented: the network of the paper's architecture figure and §3.1 (eqs. 1-3 in the paper's notation):

    F_0 = h_ext(I_LR)                          3 x 3 convolution, in_channels -> features   (eq. 1)
    F_k = h_RLFB,k(F_{k-1}),  k = 1 .. 6       residual local feature blocks                (eq. 2)
    I_SR = f_rec(f_conv(F_6) + F_0)            3 x 3 convolution, global residual in LR space, then the
                                               reconstruction: 3 x 3 conv to out * s * s channels + PixelShuffle (eq. 3)

and the residual local feature block (RLFB, §3.2): three 3 x 3 convolutions each followed by LeakyReLU (slope 0.05),
the block input added (the *local* residual that replaces RFDN's feature distillation), a 1 x 1 convolution and the
enhanced spatial attention (:class:`~rmisr_monai.networks.blocks.esa.ESA`, 16 channels). The layout, activations
and input range were checked against the official code (``bytedance/RLFN``, ``model/rlfn.py`` and ``block.py``) and
its checkpoints: ``../shared/peers/rlfn/MANIFEST.md``; ``tests/networks/test_rlfn.py`` reproduces the published
Set5 / Set14 figures with them.

Official weights (RGB, x2 / x4, ``rlfn_x{2,4}.pth`` with 52 features, ``rlfn_s_x{2,4}.pth`` with 48; Apache-2.0;
benchmarks only, not shipped) load with ``RLFN.from_official(path)`` or
``get_network("rlfn", in_channels=3, scale=s).load_state_dict(torch.load(path, weights_only=True), strict=True)``:
the official keys (``conv_1``, ``block_1`` ... ``block_6``, ``conv_2``) are renamed by a load-state-dict pre-hook
(:func:`official_key`).
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError, WeightsError
from rmisr_monai.networks.blocks.activation import LRELU_SLOPE
from rmisr_monai.networks.blocks.esa import ESA, ESA_CHANNELS
from rmisr_monai.networks.blocks.upsample import as_scale_pair, contract_out_channels, forward_scale, make_upsampler
from rmisr_monai.networks.nets.official import (
    load_strictly,
    read_official_state,
    renamed_key,
    renaming_hook,
    upsampler_scale,
)

__all__ = ["RLFN", "RLFB", "official_key", "RLFN_FEATURES", "RLFN_BLOCKS", "RLFN_IMG_RANGE"]

RLFN_FEATURES = 52  # feature channels of RLFN (Kong et al. 2022, §4.1; the official rlfn_x*.pth); RLFN-S: 48
RLFN_BLOCKS = 6  # six RLFBs (Kong et al. 2022, §4.1)
RLFN_IMG_RANGE = 255.0  # the official weights work on 0..255 pixel values (MANIFEST: "Input range 0..255")
RLFN_OFFICIAL_CHANNELS = 3  # the official checkpoints are RGB in, RGB out
RLFN_KERNEL_SIZE = 3

_OFFICIAL_RENAMES = ((r"^conv_1\.", "head."), (r"^conv_2\.", "lr_conv."))
_OFFICIAL_BLOCK = re.compile(r"^block_(\d+)\.")


def official_key(key: str) -> str:
    """Our parameter name for a key of the official checkpoints, e.g. ``block_3.esa.conv2.bias -> blocks.2.esa...``.

    Keys that are already ours come back unchanged (a ``module.`` prefix is dropped).
    """
    return renamed_key(key, _OFFICIAL_BLOCK, _OFFICIAL_RENAMES)


class RLFB(nn.Module):
    """Residual local feature block (Kong et al. 2022, §3.2).

    ``c1_r`` (3 x 3, ``C -> M``), ``c2_r`` (``M -> M``), ``c3_r`` (``M -> C``), each followed by LeakyReLU; the block
    input is added; ``c5`` (1 x 1, ``C -> C``) and ESA follow. Child names are the official checkpoint keys.

    Args:
        features: channels in and out (``C``).
        mid_features: channels between the three convolutions (``M``; official: ``C``).
        esa_channels: channels of the ESA branch (official: 16).
        negative_slope: LeakyReLU slope (official: 0.05).

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(
        self,
        features: int = RLFN_FEATURES,
        mid_features: int | None = None,
        esa_channels: int = ESA_CHANNELS,
        negative_slope: float = LRELU_SLOPE,
    ) -> None:
        super().__init__()
        mid = features if mid_features is None else mid_features
        pad = RLFN_KERNEL_SIZE // 2
        self.c1_r = nn.Conv2d(features, mid, RLFN_KERNEL_SIZE, padding=pad)
        self.c2_r = nn.Conv2d(mid, mid, RLFN_KERNEL_SIZE, padding=pad)
        self.c3_r = nn.Conv2d(mid, features, RLFN_KERNEL_SIZE, padding=pad)
        self.c5 = nn.Conv2d(features, features, 1)
        self.esa = ESA(features, esa_channels)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """RLFN (Kong et al. 2022); inputs in ``[0, 1]`` as the network contract has them.

    Ambiguities resolved:

    * Range: the official weights expect 0..255; ``forward`` multiplies its ``[0, 1]`` input by ``img_range`` and
      divides the output by it (no mean shift, as in the official code). ``img_range=1`` works on ``[0, 1]`` directly.
    * Blocks live in ``self.blocks`` (an ``nn.Sequential`` of ``num_blocks``); the official ``block_1`` ...
      ``block_6``, ``conv_1`` and ``conv_2`` keys are mapped on loading (:func:`official_key`).
    * ``upsampler="meta"`` replaces the sub-pixel reconstruction by a Meta-SR ``MetaUpsampler`` (arbitrary scale;
      not in the paper, and the official weights then do not fit the upsampler).
    * Default ``in_channels=1`` (project default for grey medical slices); the official weights need
      ``in_channels=3`` (run them on a grey slice by replicating it to three channels and averaging the output).
    * ESA on inputs smaller than 15 x 15: see :mod:`rmisr_monai.networks.blocks.esa`.

    Args:
        in_channels: image channels in.
        scale: integer factor for "subpixel"; default of ``forward`` for "meta".
        upsampler: ``"subpixel"`` or ``"meta"``.
        out_channels: image channels out (default ``in_channels``).
        features: feature channels (RLFN: 52, RLFN-S: 48).
        mid_features: channels inside each RLFB (official: ``None``, i.e. ``features``).
        num_blocks: number of RLFBs (paper: 6).
        esa_channels: ESA branch channels (paper and weights: 16).
        negative_slope: LeakyReLU slope (official code: 0.05).
        img_range: value that ``1.0`` of the input is mapped to inside the network (official weights: 255).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale", "img_range"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        features: int = RLFN_FEATURES,
        mid_features: int | None = None,
        num_blocks: int = RLFN_BLOCKS,
        esa_channels: int = ESA_CHANNELS,
        negative_slope: float = LRELU_SLOPE,
        img_range: float = RLFN_IMG_RANGE,
    ) -> None:
        super().__init__()
        out_channels = contract_out_channels(
            "RLFN", in_channels, out_channels, features=features, mid_features=mid_features, num_blocks=num_blocks
        )
        mid = features if mid_features is None else mid_features
        if not img_range > 0:
            raise ConfigurationError(f"img_range must be > 0, got {img_range!r}")
        pad = RLFN_KERNEL_SIZE // 2
        self.head = nn.Conv2d(in_channels, features, RLFN_KERNEL_SIZE, padding=pad)
        self.blocks = nn.Sequential(*(RLFB(features, mid, esa_channels, negative_slope) for _ in range(num_blocks)))
        self.lr_conv = nn.Conv2d(features, features, RLFN_KERNEL_SIZE, padding=pad)
        self.arbitrary_scale = upsampler == "meta"
        self.upsampler = make_upsampler(upsampler, features, out_channels, scale)
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        self.img_range = float(img_range)
        self.register_load_state_dict_pre_hook(renaming_hook(official_key))

    def forward(self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None) -> torch.Tensor:
        """Upscale ``x`` (values in ``[0, 1]``); ``scale`` only when built with ``upsampler="meta"``."""
        pair = forward_scale(scale, self.scale, self.arbitrary_scale, "RLFN")
        head = self.head(x * self.img_range)
        features = head + self.lr_conv(self.blocks(head))
        if self.arbitrary_scale:
            out = self.upsampler(features, pair)
        else:
            out = self.upsampler(features)
        return out / self.img_range

    @classmethod
    def from_official(cls, path: str | os.PathLike, scale: int | None = None) -> RLFN:
        """Build the RGB RLFN of an official checkpoint (``rlfn_x{2,4}.pth``, ``rlfn_s_x{2,4}.pth``), load it strictly.

        The scale is read from the reconstruction convolution (``3 * s * s`` outputs), the width from ``conv_1``.

        Raises:
            WeightsError: unreadable file, keys/shapes that do not fit, or a ``scale`` other than the file's.
        """
        state = read_official_state(path, "RLFN")
        if "upsampler.0.weight" not in state or "conv_1.weight" not in state:
            raise WeightsError(f"{path}: no upsampler.0.weight / conv_1.weight; not an official RLFN checkpoint")
        file_scale = upsampler_scale(path, state["upsampler.0.weight"], RLFN_OFFICIAL_CHANNELS, scale)
        features = state["conv_1.weight"].shape[0]
        net = cls(in_channels=RLFN_OFFICIAL_CHANNELS, scale=file_scale, features=features)
        return load_strictly(net, state, path, f"RLFN x{file_scale}")
