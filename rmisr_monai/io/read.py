"""Read a medical volume (NIfTI, NRRD, MHA/MHD, DICOM series) into a :class:`~rmisr_monai.io.volume.Volume`."""

from __future__ import annotations

import os

from rmisr_monai.io.volume import Volume

__all__ = ["read_volume", "describe"]


def read_volume(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read a 3D scalar volume; see the module docstring."""
    raise NotImplementedError


def describe(volume: Volume) -> dict:
    """Shape, spacing, origin, orientation, dtype, modality and intensity statistics; never patient tags."""
    raise NotImplementedError
