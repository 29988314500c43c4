"""Medical volume input/output with exact geometry (LPS, ITK convention) and atomic writes."""

from __future__ import annotations

from rmisr_monai.io.atomic import atomic_output, check_output_path
from rmisr_monai.io.geometry import Geometry, lps_to_ras_affine, ras_to_lps_affine, rescaled_geometry
from rmisr_monai.io.read import describe, read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import output_format, write_volume

__all__ = [
    "Geometry",
    "Volume",
    "atomic_output",
    "check_output_path",
    "describe",
    "lps_to_ras_affine",
    "output_format",
    "ras_to_lps_affine",
    "read_volume",
    "rescaled_geometry",
    "write_volume",
]
