"""Write a :class:`~rmisr_monai.io.volume.Volume` as NIfTI, NRRD, MHA or a derived DICOM series, atomically.

* NIfTI (nibabel): the LPS geometry converted to a RAS affine, stored as both sform and qform with code 1
  (scanner anatomical), units mm, no intensity scaling (``scl_slope`` unset). A sheared affine (gantry tilt) is
  stored exactly in the sform (code 1) with ``qform_code`` 0, because a qform quaternion cannot hold a shear:
  nibabel and MONAI's NibabelReader read it exactly; ITK/SimpleITK (so Slicer) refuse such a file ("ITK only
  supports orthonormal direction cosines"), so write NRRD or MHA for them. A 4D volume keeps its fourth axis in
  ``pixdim[4]``, the time unit of ``xyzt_units``, ``toffset`` and ``slice_duration``.
* NRRD and MetaImage (SimpleITK): LPS geometry as ITK writes it; a sheared direction is kept exactly (NRRD
  ``space directions``, MetaImage ``TransformMatrix``, read back identically by SimpleITK and pynrrd). ``.mhd`` is
  written as a single file with the data inside (``ElementDataFile = LOCAL``), so that one atomic rename publishes
  it. ``.nhdr`` is a detached NRRD header with its gzip data file ``<name>.raw.gz`` beside it (the data file is
  moved into place first, then the header). 4D volumes are written as ITK 4D images (fourth spacing = step).
* DICOM (a folder): a derived series, see :func:`rmisr_monai.io.dicom.write_dicom_series`.
* NIfTI codes: the input's ``sform_code`` / ``qform_code`` (:attr:`Volume.source_info`) are kept (1, scanner
  anatomical, where the input had none or was not NIfTI).
* Provenance (``provenance=``, see :mod:`rmisr_monai.io.provenance`): NIfTI ``descrip``, NRRD / MetaImage key
  ``rmisr_provenance``, DICOM DerivationDescription / ContributingEquipmentSequence / SoftwareVersions, and for every
  single-file output a JSON sidecar ``OUT.json``. Without provenance the NIfTI ``descrip`` is the input's.
* Unevenly spaced slices have no single affine: only DICOM holds them (every slice keeps its position); the other
  formats refuse them (:func:`check_representable`) unless they are resampled first
  (:func:`rmisr_monai.io.resample.resample_orthogonal`).

Values are cast to the output dtype (default: ``volume.source_dtype``) by :func:`cast_to_dtype`: for an integer
dtype they are clipped to its range and then rounded half to even (``numpy.rint``), so nothing ever wraps around.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from rmisr_monai.core.arrays import cast_to_dtype
from rmisr_monai.errors import OutputFileError
from rmisr_monai.io.atomic import atomic_output, check_output_path
from rmisr_monai.io.dicom import write_dicom_series
from rmisr_monai.io.geometry import lps_to_ras_affine, stack_summary
from rmisr_monai.io.provenance import NIFTI_DESCRIP_BYTES, PROVENANCE_KEY, Provenance, as_provenance, sidecar_path
from rmisr_monai.io.volume import NIFTI_TIME_UNITS, Volume, file_format

__all__ = ["output_format", "write_volume", "cast_to_dtype", "check_representable", "OUTPUT_DTYPES"]

OUTPUT_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)
)
NIFTI_XFORM_SCANNER_ANAT = 1


def output_format(path: str | os.PathLike) -> str:
    """``"nifti"`` (.nii, .nii.gz), ``"nrrd"`` (.nrrd, .nhdr), ``"mha"`` (.mha, .mhd) or ``"dicom"`` (a path without
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
        path, f"unknown output format {path.suffix!r}: use .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd or a folder"
    )


def check_representable(volume: Volume, path: str | os.PathLike) -> None:
    """Refuse, before any work, a volume whose geometry the output format of ``path`` cannot hold.

    Raises:
        OutputFileError: unevenly spaced slices to NIfTI/NRRD/MHA (naming the spacing range and the way out), or a
            4D volume to a DICOM series.
    """
    kind = output_format(path)
    if kind != "dicom" and not volume.geometry.is_regular:
        steps = stack_summary(volume.geometry, volume.array.shape[2])
        uneven = (
            f"unevenly spaced slices ({steps['min_step']:.4g} to {steps['max_step']:.4g} mm between planes) cannot "
            f"be written as {kind}, which has one affine for all slices; resample them onto a regular grid"
        )
        keep = "or write a DICOM folder, which keeps every slice's position"
        raise OutputFileError(
            path,
            f"{uneven} (io.resample.resample_orthogonal or BatchUpscaler(resample=True), lossy) {keep}",
            f"{uneven} (rmisr upscale --resample, lossy) {keep}",
        )
    if kind == "dicom" and (volume.source_info or {}).get("segmentation"):
        raise OutputFileError(
            path, "a segmentation (label map) cannot be written as a DICOM image series; write .nii.gz, .nrrd or "
            ".seg.nrrd"
        )  # fmt: skip
    if kind == "dicom" and volume.fourth_axis is not None:
        raise OutputFileError(
            path, f"a 4D volume ({volume.fourth_axis.describe(volume.array.shape[3])}) cannot be written as a DICOM "
            "series; write .nii.gz, .nrrd or .mha"
        )  # fmt: skip


def _nifti_codes(volume: Volume) -> tuple[int, int]:
    """``(sform_code, qform_code)``: the input's when it was NIfTI with a code, else 1 (scanner anatomical); the
    qform is 0 for a sheared affine, which a quaternion cannot hold."""
    info = volume.source_info or {}
    sform, qform = int(info.get("sform_code", 0) or 0), int(info.get("qform_code", 0) or 0)
    if sform == 0 and qform == 0:
        sform = qform = NIFTI_XFORM_SCANNER_ANAT
    sform = sform or qform
    return sform, 0 if volume.geometry.is_sheared else qform


def _write_nifti(volume: Volume, path: Path, provenance: Provenance | None = None) -> None:
    affine = lps_to_ras_affine(volume.geometry.affine())
    image = nib.Nifti1Image(volume.array, affine)
    header = image.header
    header.set_data_dtype(volume.array.dtype)
    sform_code, qform_code = _nifti_codes(volume)
    image.set_sform(affine, code=sform_code)
    if qform_code == 0:  # no qform rather than a wrong one (a shear), or as the input had none
        image.set_qform(None, code=0)
    else:
        image.set_qform(affine, code=qform_code)
    descrip = provenance.short() if provenance is not None else str((volume.source_info or {}).get("descrip", ""))
    header["descrip"] = descrip.encode("ascii", "replace")[:NIFTI_DESCRIP_BYTES]
    fourth = volume.fourth_axis
    time_unit = {unit: code for code, unit in NIFTI_TIME_UNITS.items()}.get(fourth.unit, "unknown") if fourth else None
    header.set_xyzt_units(xyz="mm", t=time_unit)
    if fourth is not None:
        header.set_zooms((*header.get_zooms()[:3], fourth.step or 1.0))
        header["toffset"] = fourth.offset
        header["slice_duration"] = fourth.slice_duration
    nib.save(image, path)


def _write_itk(volume: Volume, path: Path, provenance: Provenance | None = None) -> None:
    # SimpleITK arrays are (k, j, i) (or (t, k, j, i))
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.T), isVector=False)
    spacing, origin, direction = volume.geometry.to_itk()
    if volume.fourth_axis is not None:  # ITK 4D image: the fourth axis is orthogonal to space
        matrix = np.eye(4)
        matrix[:3, :3] = np.reshape(direction, (3, 3))
        spacing = (*spacing, volume.fourth_axis.step or 1.0)
        origin = (*origin, volume.fourth_axis.offset)
        direction = tuple(matrix.ravel())
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    if provenance is not None:
        image.SetMetaData(PROVENANCE_KEY, provenance.header_value())
    sitk.WriteImage(image, str(path), useCompression=True)


def _sidecar_record(volume: Volume, provenance: Provenance) -> dict:
    """The JSON sidecar: the provenance, the output grid, and what is known of the source (no patient data)."""
    info = volume.source_info or {}
    source = {"format": volume.source_format}
    if info.get("descrip"):
        source["descrip"] = info["descrip"]
    return {
        **provenance.as_dict(),
        "output": {
            "shape": [int(n) for n in volume.array.shape],
            "spacing_mm": list(volume.geometry.spacing),
            "dtype": str(volume.array.dtype),
            "modality": volume.modality,
        },
        "source": source,
    }


def _write_detached_nrrd(volume: Volume, path: Path, overwrite: bool, provenance: Provenance | None) -> None:
    """``.nhdr`` + ``<name>.raw.gz``: ITK writes both into a temporary folder beside ``path`` (the header names
    its data file relative to itself); the data file is moved into place first, then the header."""
    parent = path.absolute().parent
    with tempfile.TemporaryDirectory(prefix=".rmisr-tmp-", dir=parent) as temp:
        header = Path(temp) / path.name
        _write_itk(volume, header, provenance)
        found = re.search(r"^data file: (.+)$", header.read_text(encoding="ascii"), flags=re.MULTILINE)
        data = Path(temp) / found.group(1).strip()
        target = parent / data.name
        check_output_path(target, overwrite=overwrite)
        os.replace(data, target)
        try:
            os.replace(header, path)
        except BaseException:
            target.unlink(missing_ok=True)
            raise


_WRITERS = {"nifti": _write_nifti, "nrrd": _write_itk, "mha": _write_itk, "dicom": write_dicom_series}


def write_volume(
    volume: Volume,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: np.dtype | None = None,
    provenance: Provenance | Mapping[str, Any] | Any | None = None,
) -> None:
    """Write ``volume`` to ``path`` in the format of :func:`output_format`, atomically.

    Args:
        volume: the volume; its geometry is written exactly (LPS, converted to RAS for NIfTI).
        path: output file, or folder for a DICOM series.
        overwrite: replace an existing output (only once the new one is complete); also its sidecar.
        dtype: stored dtype; default ``volume.source_dtype``. See :func:`cast_to_dtype`.
        provenance: what made the output (:class:`rmisr_monai.io.provenance.Provenance`, or a mapping with
            ``model``, ``model_version``, ``sha256``, ``scale``, ``options``; see
            :func:`rmisr_monai.io.provenance.as_provenance`): stored as the module docstring says, with a JSON
            sidecar ``OUT.json`` beside a single-file output. None: no sidecar, the NIfTI ``descrip`` of the input.

    Raises:
        OutputFileError: unknown format or dtype, existing output (or sidecar) without ``overwrite``, or a failed
            write (disk full...); nothing is left behind and an existing output is untouched.
    """
    path = Path(path)
    kind = output_format(path)
    provenance = as_provenance(provenance)
    check_output_path(path, overwrite=overwrite)
    sidecar = sidecar_path(path) if provenance is not None and kind != "dicom" else None
    if sidecar is not None:
        check_output_path(sidecar, overwrite=overwrite)
    check_representable(volume, path)
    dtype = np.dtype(dtype if dtype is not None else volume.source_dtype)
    if dtype not in OUTPUT_DTYPES:
        raise OutputFileError(path, f"unsupported output dtype {dtype}; use one of {[str(d) for d in OUTPUT_DTYPES]}")
    out = dataclasses.replace(volume, array=cast_to_dtype(np.asarray(volume.array), dtype))
    suffix = ".mha" if kind == "mha" else None
    try:
        if path.name.lower().endswith(".nhdr"):
            _write_detached_nrrd(out, path, overwrite, provenance)
        else:
            with atomic_output(path, overwrite=overwrite, is_dir=kind == "dicom", suffix=suffix) as temp:
                _WRITERS[kind](out, temp, provenance)
        if sidecar is not None:
            with atomic_output(sidecar, overwrite=overwrite) as temp:
                Path(temp).write_text(json.dumps(_sidecar_record(out, provenance), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputFileError(path, f"cannot write {kind}: {exc.strerror or exc}") from exc
    except RuntimeError as exc:  # SimpleITK reports write failures as RuntimeError
        raise OutputFileError(path, f"cannot write {kind}: {str(exc).strip().splitlines()[-1]}") from exc
