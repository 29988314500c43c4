"""Reusable parts of the networks: RMISR's SRB, PyConv-3/PYB, CCA/ICCA, PFMDB, RLFN's ESA, and the upsamplers."""

from __future__ import annotations

from rmisr_monai.networks.blocks.activation import make_activation
from rmisr_monai.networks.blocks.attention import ICCA, ContrastChannelAttention
from rmisr_monai.networks.blocks.esa import ESA
from rmisr_monai.networks.blocks.pfmdb import PFMDB
from rmisr_monai.networks.blocks.pyconv import PyConv3, PyramidalBlock
from rmisr_monai.networks.blocks.srb import ShallowResidualBlock
from rmisr_monai.networks.blocks.upsample import MetaUpsampler, SubpixelUpsampler, as_scale_pair, make_upsampler

__all__ = [
    "make_activation",
    "ICCA",
    "ContrastChannelAttention",
    "ESA",
    "PFMDB",
    "PyConv3",
    "PyramidalBlock",
    "ShallowResidualBlock",
    "MetaUpsampler",
    "SubpixelUpsampler",
    "as_scale_pair",
    "make_upsampler",
]
