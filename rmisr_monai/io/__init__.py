"""Medical volume input/output with exact geometry (LPS, ITK convention) and atomic writes."""

from __future__ import annotations

from rmisr_monai.io.atomic import atomic_output, check_output_path
from rmisr_monai.io.dicom import pixel_padding_value
from rmisr_monai.io.geometry import Geometry, lps_to_ras_affine, ras_to_lps_affine, rescaled_geometry
from rmisr_monai.io.labels import is_label_map, label_map_reason
from rmisr_monai.io.provenance import RESEARCH_NOTICE, Provenance, as_provenance
from rmisr_monai.io.read import describe, read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import output_format, write_volume

__all__ = [
    "Geometry",
    "Provenance",
    "RESEARCH_NOTICE",
    "Volume",
    "as_provenance",
    "atomic_output",
    "check_output_path",
    "describe",
    "is_label_map",
    "label_map_reason",
    "lps_to_ras_affine",
    "output_format",
    "pixel_padding_value",
    "ras_to_lps_affine",
    "read_volume",
    "rescaled_geometry",
    "write_volume",
]
