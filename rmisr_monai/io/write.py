"""Write a :class:`~rmisr_monai.io.volume.Volume` as NIfTI, NRRD, MHA or a derived DICOM series, atomically.

* NIfTI (nibabel): the LPS geometry converted to a RAS affine, stored as both sform and qform with code 1
  (scanner anatomical), units mm, no intensity scaling (``scl_slope`` unset).
* NRRD and MetaImage (SimpleITK): LPS geometry as ITK writes it. ``.mhd`` is written as a single file with the
  data inside (``ElementDataFile = LOCAL``), so that one atomic rename publishes it.
* DICOM (a folder): a derived series, see :func:`rmisr_monai.io.dicom.write_dicom_series`.

Values are cast to the output dtype (default: ``volume.source_dtype``) by :func:`cast_to_dtype`: for an integer
dtype they are clipped to its range and then rounded half to even (``numpy.rint``), so nothing ever wraps around.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from rmisr_monai.errors import OutputFileError
from rmisr_monai.io.atomic import atomic_output, check_output_path
from rmisr_monai.io.dicom import write_dicom_series
from rmisr_monai.io.geometry import lps_to_ras_affine
from rmisr_monai.io.volume import Volume, file_format

__all__ = ["output_format", "write_volume", "cast_to_dtype", "OUTPUT_DTYPES"]

OUTPUT_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)
)
NIFTI_XFORM_SCANNER_ANAT = 1


def output_format(path: str | os.PathLike) -> str:
    """``"nifti"`` (.nii, .nii.gz), ``"nrrd"`` (.nrrd), ``"mha"`` (.mha, .mhd) or ``"dicom"`` (a path without
    suffix, or an existing folder).

    Raises:
        OutputFileError: any other suffix.
    """
    path = Path(path)
    kind = file_format(path)
    if kind is not None:
        return kind
    if path.is_dir() or not path.suffix:
        return "dicom"
    raise OutputFileError(
        path, f"unknown output format {path.suffix!r}: use .nii, .nii.gz, .nrrd, .mha, .mhd or a folder"
    )


def cast_to_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` as ``dtype``; to an integer dtype non-integers are clipped to its range, then rounded half to
    even (``numpy.rint``): 40000.6 -> 32767 and -3.5 -> -4 for int16."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.can_cast(array.dtype, dtype):
        info = np.iinfo(dtype)
        array = np.rint(np.clip(array.astype(np.float64, copy=False), info.min, info.max))
    return array.astype(dtype, copy=False)


def _write_nifti(volume: Volume, path: Path) -> None:
    affine = lps_to_ras_affine(volume.geometry.affine())
    image = nib.Nifti1Image(volume.array, affine)
    image.header.set_data_dtype(volume.array.dtype)
    image.set_sform(affine, code=NIFTI_XFORM_SCANNER_ANAT)
    image.set_qform(affine, code=NIFTI_XFORM_SCANNER_ANAT)
    image.header.set_xyzt_units(xyz="mm")
    nib.save(image, path)


def _write_itk(volume: Volume, path: Path) -> None:
    # SimpleITK arrays are (k, j, i)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.T))
    spacing, origin, direction = volume.geometry.to_itk()
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=True)


_WRITERS = {"nifti": _write_nifti, "nrrd": _write_itk, "mha": _write_itk, "dicom": write_dicom_series}


def write_volume(
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = False, dtype: np.dtype | None = None
) -> None:
    """Write ``volume`` to ``path`` in the format of :func:`output_format`, atomically.

    Args:
        volume: the volume; its geometry is written exactly (LPS, converted to RAS for NIfTI).
        path: output file, or folder for a DICOM series.
        overwrite: replace an existing output (only once the new one is complete).
        dtype: stored dtype; default ``volume.source_dtype``. See :func:`cast_to_dtype`.

    Raises:
        OutputFileError: unknown format or dtype, existing output without ``overwrite``, or a failed write
            (disk full...); nothing is left behind and an existing output is untouched.
    """
    path = Path(path)
    kind = output_format(path)
    check_output_path(path, overwrite=overwrite)
    dtype = np.dtype(dtype if dtype is not None else volume.source_dtype)
    if dtype not in OUTPUT_DTYPES:
        raise OutputFileError(path, f"unsupported output dtype {dtype}; use one of {[str(d) for d in OUTPUT_DTYPES]}")
    out = dataclasses.replace(volume, array=cast_to_dtype(np.asarray(volume.array), dtype))
    suffix = ".mha" if kind == "mha" else None
    try:
        with atomic_output(path, overwrite=overwrite, is_dir=kind == "dicom", suffix=suffix) as temp:
            _WRITERS[kind](out, temp)
    except OSError as exc:
        raise OutputFileError(path, f"cannot write {kind}: {exc.strerror or exc}") from exc
    except RuntimeError as exc:  # SimpleITK reports write failures as RuntimeError
        raise OutputFileError(path, f"cannot write {kind}: {str(exc).strip().splitlines()[-1]}") from exc
