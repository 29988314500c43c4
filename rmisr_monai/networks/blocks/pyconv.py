"""Pyramidal convolution PyConv-3 (Duta et al. 2020, arXiv:2006.11538) and RMISR's pyramidal block (PYB).

RMISR (Ren et al. 2021) §4.2, Fig. 3d: from 64 input maps, a 7x7 convolution in 8 groups gives 16 maps, a 5x5 in
4 groups 16 maps and a 3x3 without groups 32 maps; concatenated they give 64 maps with 31,104 weights (no bias)
against 36,864 for a plain 64 -> 64 3x3 convolution. PYB = PyConv-3 followed by a 1x1 convolution.

Speed (benchmarks/RESULTS.md §7): PyConv-3 and the 1x1 after it are linear with nothing in between, so PYB is one
convolution of the largest kernel, ``in -> out``, whose weights are composed from the parameters at every call
(:meth:`PyramidalBlock.fused_weight`, differentiable, so training computes the same function and gradients). It does
more multiply-adds than the grouped levels, but oneDNN runs grouped 7x7/5x5 convolutions with 1-4 maps per group so
slowly on CPUs that the one dense convolution is about 3x faster; outputs equal the level-by-level form within fp32
rounding. ``fuse_levels = False`` runs the reference form (used to count the paper's multiply-adds); tracing
(``torch.jit.trace``, ONNX export) always records the reference form, whose kernels have static shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rmisr_monai.errors import ConfigurationError

__all__ = ["PyConv3", "PyramidalBlock", "PYCONV_KERNELS", "PYCONV_GROUPS", "PYCONV_SPLIT"]

# RMISR §4.2: kernel sizes, groups, and each level's share of the output maps (16/64, 16/64, 32/64).
PYCONV_KERNELS = (7, 5, 3)
PYCONV_GROUPS = (8, 4, 1)
PYCONV_SPLIT = (0.25, 0.25, 0.5)


class PyConv3(nn.Module):
    """Three-level pyramidal convolution (RMISR §4.2 / Fig. 3d; Duta et al. 2020).

    Each level sees all ``in_channels`` and gives ``out_channels * share`` maps; the levels are concatenated in the
    order 7x7, 5x5, 3x3. For other channel counts the paper's proportions are kept; every level's input and output
    count must divide by its groups.

    Args:
        in_channels: input maps (RMISR: 64).
        out_channels: output maps (RMISR: 64); ``None`` means ``in_channels``.
        kernels: kernel size per level.
        groups: convolution groups per level.
        split: share of ``out_channels`` per level (sums to 1).
        bias: add biases (the paper's count of 31,104 is without).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``.

    Raises:
        ConfigurationError: a level gets a non-integer or zero number of maps, or groups do not divide.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernels: Sequence[int] = PYCONV_KERNELS,
        groups: Sequence[int] = PYCONV_GROUPS,
        split: Sequence[float] = PYCONV_SPLIT,
        bias: bool = False,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if not len(kernels) == len(groups) == len(split):
            raise ConfigurationError(f"kernels {kernels}, groups {groups} and split {split} differ in length")
        counts = [out_channels * share for share in split]
        if any(not c.is_integer() or c < 1 for c in counts) or sum(counts) != out_channels:
            raise ConfigurationError(f"out_channels={out_channels} cannot be split as {tuple(split)}")
        levels = []
        for k, g, c in zip(kernels, groups, counts):
            if in_channels % g or int(c) % g:
                raise ConfigurationError(
                    f"PyConv level {k}x{k}: groups={g} must divide in_channels={in_channels} and maps={int(c)}"
                )
            levels.append(nn.Conv2d(in_channels, int(c), k, padding=k // 2, groups=g, bias=bias))
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([level(x) for level in self.levels], dim=1)


class PyramidalBlock(nn.Sequential):
    """PYB (RMISR §4.2, Fig. 3d): :class:`PyConv3` (``in -> in``) then a 1x1 convolution ``in -> out_channels``.

    Args:
        in_channels: input maps (RMISR: 64).
        out_channels: distilled maps out.
        pyconv_bias: biases in the PyConv-3 levels (the paper's weight count excludes them).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, pyconv_bias: bool = False) -> None:
        super().__init__(PyConv3(in_channels, bias=pyconv_bias), nn.Conv2d(in_channels, out_channels, 1))
        # one dense convolution of composed weights (module docstring); False: the level-by-level reference
        self.fuse_levels = True

    def fused_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(out, in, K, K)`` (``K`` the largest level kernel, smaller kernels centred) and bias ``(out,)`` of
        the single convolution equal to PyConv-3 followed by the 1x1: ``W[o] = sum_m P[o, m] L_m`` over the PyConv
        output maps ``m`` (``P`` the 1x1 weights, ``L_m`` map ``m``'s kernel on its group's inputs, zero elsewhere),
        bias ``P b_levels + b``."""
        point = self[1]
        mix = point.weight.flatten(1)  # (out, maps)
        out_maps = mix.shape[0]
        size = 1
        for level in self[0].levels:
            size = max(size, level.kernel_size[0])
        weight = mix.new_zeros((out_maps, point.in_channels, size, size))
        bias = mix.new_zeros((out_maps,))
        point_bias = point.bias
        if point_bias is not None:
            bias = point_bias
        first = 0
        for level in self[0].levels:
            maps, groups, k = level.out_channels, level.groups, level.kernel_size[0]
            w = level.weight.reshape(groups, maps // groups, level.in_channels // groups, k, k)
            p = mix[:, first : first + maps]
            # each output map o mixes the level's maps of group g, which see only group g's inputs
            dense = torch.einsum("ogm,gmikl->ogikl", p.reshape(out_maps, groups, maps // groups), w)
            pad = (size - k) // 2
            weight = weight + F.pad(dense.reshape(out_maps, level.in_channels, k, k), (pad, pad, pad, pad))
            level_bias = level.bias
            if level_bias is not None:
                bias = bias + p @ level_bias
            first += maps
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fuse_levels or torch.jit.is_tracing():  # tracing (ONNX export) needs static kernel shapes
            return self[1](self[0](x))
        weight, bias = self.fused_weight()
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
