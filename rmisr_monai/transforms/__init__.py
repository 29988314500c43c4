"""MONAI transforms (array + dictionary ``d`` versions with ``D``/``Dict`` aliases) of rmisr-monai.

``resize`` MATLAB-compatible bicubic resizing, ``degrade`` bicubic LR generation, ``laplacian`` RMISR gradient maps
(eqs. 6-8), ``intensity`` invertible CT/MR normalisation, ``field_of_view`` CT padding outside the reconstruction
circle, ``super_resolve`` slice-wise SR of a volume.
"""

from __future__ import annotations

from rmisr_monai.transforms import degrade, field_of_view, intensity, laplacian, resize, super_resolve
from rmisr_monai.transforms.degrade import *  # noqa: F401,F403
from rmisr_monai.transforms.field_of_view import *  # noqa: F401,F403
from rmisr_monai.transforms.intensity import *  # noqa: F401,F403
from rmisr_monai.transforms.laplacian import *  # noqa: F401,F403
from rmisr_monai.transforms.resize import *  # noqa: F401,F403
from rmisr_monai.transforms.super_resolve import *  # noqa: F401,F403

# one line per module: a new transforms module adds its name to the tuple below and a star import above
__all__ = [
    name
    for module in (degrade, field_of_view, intensity, laplacian, resize, super_resolve)
    for name in module.__all__
]
