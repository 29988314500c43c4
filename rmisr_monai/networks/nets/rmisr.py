"""RMISR (Ren et al., "Realistic medical image super-resolution with pyramidal feature multi-distillation networks
for intelligent healthcare systems", Neural Comput. Appl. 2021): the baseline RMISR-BL and the two-branch RMISR-VP.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.activation import make_activation
from rmisr_monai.networks.blocks.pfmdb import PFMDB, PFMDB_DISTILLED, PFMDB_SRBS
from rmisr_monai.networks.blocks.upsample import UPSAMPLER_KINDS, as_scale_pair, forward_scale, make_upsampler
from rmisr_monai.ops.laplacian import laplacian_gradient

__all__ = ["RMISR", "rmisr_bl", "rmisr_vp", "RMISR_PRESETS", "RMISR_FEATURES", "RMISR_VP_HR_FEATURES"]

# §3.2 / §4.1: 64 initial feature maps.
RMISR_FEATURES = 64
# preset -> (SR-branch PFMDBs, gradient-branch PFMDBs): §3.2 "four PFMDB modules"; §5.3 "6 PFMDBs" and "3 PFMDBs".
RMISR_PRESETS = {"bl": (4, 0), "vp": (6, 3)}
# RMISR-VP fuses the two branches in HR space; the paper does not give the width of the upsampled feature maps.
RMISR_VP_HR_FEATURES = 16


class _Tail(nn.Module):
    """§3.2 tail before the upsampler: ``1x1 (B*F -> F) + act``, ``3x3`` plus the head features, ``3x3``.

    The 1x1 over the concatenated block outputs is also available block by block (:meth:`fuse_block`, then
    :meth:`finish`): ``W cat(o_1..o_B) + b = sum_b W_b o_b + b``, so a caller that accumulates it keeps one map
    instead of all ``B`` block outputs alive (RMISR-BL: 768 of 2816 bytes per LR pixel at 64 features).
    """

    def __init__(self, num_blocks: int, features: int, activation: str) -> None:
        super().__init__()
        self.features = features
        self.fuse = nn.Sequential(nn.Conv2d(num_blocks * features, features, 1), make_activation(activation, True))
        self.lr_conv = nn.Conv2d(features, features, 3, padding=1)
        self.out_conv = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, outs: List[torch.Tensor], head: torch.Tensor) -> torch.Tensor:
        return self.out_conv(self.lr_conv(self.fuse(torch.cat(outs, dim=1))) + head)

    def fuse_block(self, out: torch.Tensor, index: int, partial: Optional[torch.Tensor]) -> torch.Tensor:
        """``partial + W_index out`` (the bias with block 0): the 1x1 fusion before its activation, one block at a
        time."""
        conv = self.fuse[0]
        weight = conv.weight[:, index * self.features : (index + 1) * self.features]
        if partial is None:
            return F.conv2d(out, weight, conv.bias)
        return partial + F.conv2d(out, weight)

    def finish(self, fused: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """The rest of the tail after the accumulated 1x1 (:meth:`fuse_block`)."""
        return self.out_conv(self.lr_conv(self.fuse[1](fused)) + head)


class RMISR(nn.Module):
    """RMISR-BL (§3.2, Fig. 1) and RMISR-VP (§4.1, Fig. 2).

    RMISR-BL: ``conv3x3 (in -> F)``, ``B`` PFMDBs (:class:`~rmisr_monai.networks.blocks.pfmdb.PFMDB`), concatenation
    of all PFMDB outputs, then "a 1x1 convolution layer, two 3x3 convolution layers and a sub-pixel upsampler":
    ``1x1 (B*F -> F) + activation`` ("reduce the dimensionality and increase the nonlinearity"), ``3x3`` plus the
    head features (global residual, as in IMDN), ``3x3``, and the upsampler (its own 3x3 conv + PixelShuffle, §4.3).

    RMISR-VP: the SR branch is RMISR-BL with 6 PFMDBs whose tail upsamples *features* (``F -> hr_features``) instead
    of the image. The Laplacian gradient branch starts from the Laplacian of the LR image (eqs. 6-8, two maps per
    channel), has a 3x3 head and 3 PFMDBs; before gradient PFMDB ``j`` the output of SR PFMDB ``2j`` (2, 4, 6) is
    concatenated and reduced by a 1x1 convolution ("merge the outputs of the second, fourth, and sixth PFMDB modules
    into the Laplacian filter branch"). Its tail mirrors the SR tail (1x1 + activation, 3x3 + its head, 3x3,
    upsampler to ``hr_features``). In HR space a 3x3 conv reconstructs the SR Laplacian map (``2 * out`` channels) from
    the gradient features, and the concatenated features of both branches are reconstructed to the SR image by a
    3x3 conv ("merge the feature maps of the two branches before feature map dimensionality reduction").
    Not given by the paper and chosen here: ``hr_features`` (16), the 1x1 merges, the activation after 1x1.

    ``forward`` returns the SR image; RMISR-VP in training mode returns ``(sr, sr_laplacian)`` for its dual loss
    (§4.4) and the SR image alone in eval mode.

    TorchScript: scriptable (both presets and upsamplers; for VP the return type is
    ``Union[Tensor, Tuple[Tensor, Tensor]]``), and traceable at a fixed scale in eval mode.

    Args:
        in_channels: image channels.
        scale: integer factor (``"subpixel"``) or the default run-time factor, a float or ``(sy, sx)`` (``"meta"``).
        upsampler: ``"subpixel"`` (§4.3, Fig. 5a) or ``"meta"`` (Meta-SR, eqs. 15-17, Fig. 5b).
        out_channels: SR image channels; ``None`` means ``in_channels``.
        preset: ``"bl"`` or ``"vp"``.
        features: feature maps ``F`` (64).
        num_blocks: SR-branch PFMDBs; ``None`` takes the preset's (4 or 6).
        grad_blocks: gradient-branch PFMDBs for ``"vp"``; ``None`` takes 3; must divide ``num_blocks``.
        distilled: PFMDB distillation maps (16).
        num_srb: PFMDB cascade SRBs (2 reproduces Table 1's 0.848 M; see PFMDB).
        activation: ``"relu"`` or ``"lrelu"`` in the SRBs and after the 1x1 tails.
        hr_features: upsampled feature maps per branch for ``"vp"``.

    Shapes: ``(N, in, H, W) -> (N, out, round(H*sy), round(W*sx))``; ``sr_laplacian`` has ``2 * out`` channels.
    """

    __constants__ = ["arbitrary_scale", "dual"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float | Sequence[float] = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        preset: str = "bl",
        features: int = RMISR_FEATURES,
        num_blocks: int | None = None,
        grad_blocks: int | None = None,
        distilled: int = PFMDB_DISTILLED,
        num_srb: int = PFMDB_SRBS,
        activation: str = "relu",
        hr_features: int = RMISR_VP_HR_FEATURES,
    ) -> None:
        super().__init__()
        if preset not in RMISR_PRESETS:
            raise ConfigurationError(f"unknown RMISR preset {preset!r}; choose one of {', '.join(RMISR_PRESETS)}")
        if upsampler not in UPSAMPLER_KINDS:
            raise ConfigurationError(f"unknown upsampler {upsampler!r}; choose one of {', '.join(UPSAMPLER_KINDS)}")
        out_channels = in_channels if out_channels is None else out_channels
        num_blocks = RMISR_PRESETS[preset][0] if num_blocks is None else num_blocks
        grad_blocks = RMISR_PRESETS[preset][1] if grad_blocks is None else grad_blocks
        self.dual = preset == "vp"
        if min(in_channels, out_channels, features, num_blocks, hr_features) < 1:
            raise ConfigurationError(
                f"RMISR needs positive sizes, got in={in_channels}, out={out_channels}, features={features}, "
                f"num_blocks={num_blocks}, hr_features={hr_features}"
            )
        if self.dual and (grad_blocks < 1 or num_blocks % grad_blocks):
            raise ConfigurationError(f"grad_blocks={grad_blocks} must be >= 1 and divide num_blocks={num_blocks}")
        self.arbitrary_scale = upsampler == "meta"
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        if not self.arbitrary_scale and self.scale[0] != self.scale[1]:
            raise ConfigurationError(f"the sub-pixel upsampler needs one integer scale, got {scale!r}")
        block = dict(distilled=distilled, num_srb=num_srb, activation=activation)
        up_out = hr_features if self.dual else out_channels
        self.head = nn.Conv2d(in_channels, features, 3, padding=1)
        self.blocks = nn.ModuleList([PFMDB(features, **block) for _ in range(num_blocks)])
        self.tail = _Tail(num_blocks, features, activation)
        self.upsampler = make_upsampler(upsampler, features, up_out, self.scale[0])
        if self.dual:
            self.tap_every = num_blocks // grad_blocks
            self.grad_head = nn.Conv2d(2 * in_channels, features, 3, padding=1)
            self.grad_merge = nn.ModuleList([nn.Conv2d(2 * features, features, 1) for _ in range(grad_blocks)])
            self.grad_blocks = nn.ModuleList([PFMDB(features, **block) for _ in range(grad_blocks)])
            self.grad_tail = _Tail(grad_blocks, features, activation)
            self.grad_upsampler = make_upsampler(upsampler, features, hr_features, self.scale[0])
            self.grad_out = nn.Conv2d(hr_features, 2 * out_channels, 3, padding=1)
            self.sr_out = nn.Conv2d(2 * hr_features, out_channels, 3, padding=1)
        else:
            self.tap_every = 0

    def forward(
        self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Upscale ``x``; ``scale`` (float or ``(sy, sx)``) only with ``upsampler="meta"``; default: constructor's."""
        pair = forward_scale(scale, self.scale, self.arbitrary_scale, "RMISR")
        head = self.head(x)
        feat = head
        if not self.dual:  # the tail's 1x1 accumulated block by block: one map alive instead of every block output
            fused: Optional[torch.Tensor] = None
            for index, blk in enumerate(self.blocks):
                feat = blk(feat)
                fused = self.tail.fuse_block(feat, index, fused)
            assert fused is not None
            tail = self.tail.finish(fused, head)
            if self.arbitrary_scale:
                return self.upsampler(tail, pair)
            return self.upsampler(tail)
        outs: List[torch.Tensor] = []
        for blk in self.blocks:
            feat = blk(feat)
            outs.append(feat)
        if self.arbitrary_scale:
            sr_feat = self.upsampler(self.tail(outs, head), pair)
        else:
            sr_feat = self.upsampler(self.tail(outs, head))
        grad_head = self.grad_head(laplacian_gradient(x, "xy", 2))
        g = grad_head
        grad_outs: List[torch.Tensor] = []
        for j, (merge, blk) in enumerate(zip(self.grad_merge, self.grad_blocks)):
            g = blk(merge(torch.cat([g, outs[(j + 1) * self.tap_every - 1]], dim=1)))
            grad_outs.append(g)
        if self.arbitrary_scale:
            grad_feat = self.grad_upsampler(self.grad_tail(grad_outs, grad_head), pair)
        else:
            grad_feat = self.grad_upsampler(self.grad_tail(grad_outs, grad_head))
        sr = self.sr_out(torch.cat([sr_feat, grad_feat], dim=1))
        if self.training:
            return sr, self.grad_out(grad_feat)
        return sr


def _with_preset_signature(preset: str) -> Callable[[Callable[..., RMISR]], Callable[..., RMISR]]:
    """Give a preset constructor the signature of :class:`RMISR` without ``preset`` and with the preset's block counts
    as defaults, so that ``help()`` and ``inspect.signature`` show its real arguments (one list, RMISR's)."""

    def decorate(build: Callable[..., RMISR]) -> Callable[..., RMISR]:
        num_blocks, grad_blocks = RMISR_PRESETS[preset]
        preset_defaults = {"num_blocks": num_blocks, "grad_blocks": grad_blocks}
        parameters = [
            p.replace(default=preset_defaults.get(name, p.default))
            for name, p in inspect.signature(RMISR.__init__).parameters.items()
            if name not in ("self", "preset")
        ]
        build.__signature__ = inspect.Signature(parameters, return_annotation="RMISR")
        return build

    return decorate


@_with_preset_signature("bl")
def rmisr_bl(**kwargs: Any) -> RMISR:
    """RMISR-BL (§3.2): ``RMISR(preset="bl", **kwargs)``; the arguments are :class:`RMISR`'s."""
    return RMISR(preset="bl", **kwargs)


@_with_preset_signature("vp")
def rmisr_vp(**kwargs: Any) -> RMISR:
    """RMISR-VP (§4.1): ``RMISR(preset="vp", **kwargs)``; the arguments are :class:`RMISR`'s."""
    return RMISR(preset="vp", **kwargs)
