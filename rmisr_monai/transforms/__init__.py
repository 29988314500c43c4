"""MONAI transforms (array + dictionary ``d`` versions with ``D``/``Dict`` aliases) of rmisr-monai.

``resize`` MATLAB-compatible bicubic resizing, ``degrade`` bicubic LR generation, ``laplacian`` RMISR gradient maps
(eqs. 6-8), ``intensity`` invertible CT/MR normalisation, ``field_of_view`` CT padding outside the reconstruction
circle, ``super_resolve`` slice-wise SR of a volume.

``super_resolve`` runs the volume engine (:mod:`rmisr_monai.inference`), a layer above the other transforms: its
names are loaded on first use (``from rmisr_monai.transforms import SuperResolved`` works as usual), so that
importing a transform such as ``rmisr_monai.transforms.intensity`` does not import the engine.
"""

from __future__ import annotations

import importlib

from rmisr_monai.transforms import degrade, field_of_view, intensity, laplacian, resize
from rmisr_monai.transforms.degrade import *  # noqa: F401,F403
from rmisr_monai.transforms.field_of_view import *  # noqa: F401,F403
from rmisr_monai.transforms.intensity import *  # noqa: F401,F403
from rmisr_monai.transforms.laplacian import *  # noqa: F401,F403
from rmisr_monai.transforms.resize import *  # noqa: F401,F403

# the names of rmisr_monai.transforms.super_resolve, loaded by __getattr__
SUPER_RESOLVE_NAMES = ("INVERSE_MODES", "SuperResolve", "SuperResolved", "SuperResolveD", "SuperResolveDict")

# one line per module: a new transforms module adds its name to the tuple below and a star import above
__all__ = [
    *(name for module in (degrade, field_of_view, intensity, laplacian, resize) for name in module.__all__),
    *SUPER_RESOLVE_NAMES,
]


def __getattr__(name: str):
    if name in SUPER_RESOLVE_NAMES or name == "super_resolve":
        module = importlib.import_module("rmisr_monai.transforms.super_resolve")
        return module if name == "super_resolve" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
