"""Whole super-resolution networks, one file per paper; all follow the network contract of ``CONTRIBUTING.md``."""

from __future__ import annotations

from rmisr_monai.networks.nets.dense_sr import DenseSR
from rmisr_monai.networks.nets.edsr import EDSRBaseline
from rmisr_monai.networks.nets.fsrcnn import FSRCNN
from rmisr_monai.networks.nets.imdn import IMDN
from rmisr_monai.networks.nets.interpolate import Interpolation
from rmisr_monai.networks.nets.rlfn import RLFN
from rmisr_monai.networks.nets.rmisr import RMISR, rmisr_bl, rmisr_vp
from rmisr_monai.networks.nets.srcnn import SRCNN
from rmisr_monai.networks.nets.vdsr import VDSR

__all__ = [
    "DenseSR",
    "EDSRBaseline",
    "FSRCNN",
    "IMDN",
    "Interpolation",
    "RLFN",
    "RMISR",
    "rmisr_bl",
    "rmisr_vp",
    "SRCNN",
    "VDSR",
]
