"""Write a :class:`~rmisr_monai.io.volume.Volume` as NIfTI, NRRD, MHA or a derived DICOM series, atomically."""

from __future__ import annotations

import os

import numpy as np

from rmisr_monai.io.volume import Volume

__all__ = ["output_format", "write_volume"]


def output_format(path: str | os.PathLike) -> str:
    """``"nifti"``, ``"nrrd"``, ``"mha"`` or ``"dicom"`` from the output path."""
    raise NotImplementedError


def write_volume(
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = False, dtype: np.dtype | None = None
) -> None:
    """Write ``volume`` to ``path`` in the format of :func:`output_format`."""
    raise NotImplementedError
