"""rmisr-monai: medical-image super-resolution for MONAI.

Subpackages, one concept each (see README "Architecture"):
``ops`` pure tensor operators shared by networks and transforms, ``networks`` every ``nn.Module``,
``transforms`` MONAI transforms, ``losses``, ``metrics``, ``data`` paired-patch datasets, ``io`` medical files and
geometry, ``inference`` the volume engine, ``training``, ``weights`` shipped weights, ``cli`` the ``rmisr`` command.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
