"""A MONAI ``ImageReader`` backed by :func:`rmisr_monai.io.read.read_volume`: one reader for the CLI, the Slicer
worker, bundles and ``LoadImage`` pipelines around :class:`~rmisr_monai.transforms.super_resolve.SuperResolved`.

MONAI's own readers see a different geometry for the inputs of issue 19: ``ITKReader`` (GDCM) puts a gantry-tilted
DICOM series on an orthogonal grid (the slices then sit up to ``tan(tilt) x extent`` off their planes), does not
read enhanced multi-frame geometry from the functional groups, and neither it nor ``PydicomReader`` keeps uneven
slice positions. ``LoadImage(reader=RmisrReader())`` gives the MetaTensor the RAS affine of the same
:class:`~rmisr_monai.io.geometry.Geometry` the CLI writes (a sheared affine for a tilt), so ``SuperResolved``,
which updates the affine with ``affine @ scale_affine(...)`` (exact for any affine), ends where ``rmisr upscale``
does. A 4D volume comes as ``(I, J, K, T)`` with ``original_channel_dim = -1``, so ``EnsureChannelFirst`` makes
the volumes channels and ``SuperResolve`` upscales each. Unevenly spaced slices have no affine: they are refused,
or resampled onto a regular orthogonal grid with ``resample=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data.image_reader import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from rmisr_monai.errors import InputFileError
from rmisr_monai.io.geometry import lps_to_ras_affine, stack_summary
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.resample import resample_orthogonal
from rmisr_monai.io.volume import Volume, file_format

__all__ = ["RmisrReader"]


class RmisrReader(ImageReader):
    """``LoadImage(reader=RmisrReader())``: read with :func:`~rmisr_monai.io.read.read_volume` (RAS affine).

    Args:
        series_uid: SeriesInstanceUID to pick in a DICOM folder with several series.
        stack: stack number in DICOM frames with several stacks.
        resample: resample tilted or unevenly spaced stacks onto a regular orthogonal grid
            (:func:`~rmisr_monai.io.resample.resample_orthogonal`, lossy); default: tilted stacks keep their exact
            sheared affine and uneven ones are refused.
    """

    def __init__(self, series_uid: str | None = None, stack: str | None = None, resample: bool = False) -> None:
        super().__init__()
        self.series_uid = series_uid
        self.stack = stack
        self.resample = resample

    def verify_suffix(self, filename: Sequence[os.PathLike | str] | os.PathLike | str) -> bool:
        """NIfTI, NRRD/NHDR, MHA/MHD files, ``.dcm`` files and folders (DICOM series)."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(Path(n).is_dir() or file_format(n) is not None or str(n).lower().endswith(".dcm") for n in names)

    def read(self, data: Sequence[os.PathLike | str] | os.PathLike | str, **kwargs) -> Volume:
        """One volume (a file or a DICOM folder); MONAI's list-of-files stacking is not supported."""
        if not isinstance(data, (str, os.PathLike)):
            if len(data) != 1:
                raise InputFileError(str(data[0]), "RmisrReader reads one volume (a file or a DICOM folder) at a time")
            data = data[0]
        volume = read_volume(data, series_uid=self.series_uid, stack=self.stack)
        return resample_orthogonal(volume) if self.resample else volume

    def get_data(self, img: Volume) -> tuple[np.ndarray, dict]:
        """``(array (I, J, K[, T]), meta)`` with ``affine``/``original_affine`` (RAS), ``spatial_shape``, ``space``,
        ``original_channel_dim`` (NaN for 3D, -1 for 4D)."""
        geometry = img.geometry
        if not geometry.is_regular:
            steps = stack_summary(geometry, img.array.shape[2])
            raise InputFileError(
                img.source_path, f"unevenly spaced slices ({steps['min_step']:.4g} to {steps['max_step']:.4g} mm "
                "between planes) have no affine; use RmisrReader(resample=True)"
            )  # fmt: skip
        affine = lps_to_ras_affine(geometry.affine())
        meta = {
            MetaKeys.ORIGINAL_AFFINE: affine,
            MetaKeys.AFFINE: affine.copy(),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.SPATIAL_SHAPE: np.asarray(img.array.shape[:3]),
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if img.fourth_axis is not None else float("nan"),
            "filename_or_obj": img.source_path,
            "modality": img.modality,
        }
        return np.asarray(img.array), meta
