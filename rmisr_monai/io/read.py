"""Read a medical volume into a :class:`~rmisr_monai.io.volume.Volume` (LPS geometry, ``(i, j, k)`` array).

Formats, chosen from the path: a folder, ``*.dcm`` or a file without a known suffix -> DICOM (:mod:`.dicom`);
``.nii`` / ``.nii.gz`` -> NIfTI (nibabel); ``.nrrd`` / ``.nhdr`` (detached header, data file beside it) -> NRRD and
``.mha`` / ``.mhd`` -> MetaImage (SimpleITK, which reports LPS geometry).

NIfTI geometry rule (nibabel's ``get_best_affine``): the sform when ``sform_code > 0``, else the qform when
``qform_code > 0``, else the pixdim scaling; the RAS affine is converted to LPS. ``scl_slope`` / ``scl_inter`` are
applied. A sheared affine (a gantry-tilted stack) is kept exactly, as NRRD and MetaImage direction matrices are.

4D images (NIfTI ``(i, j, k, t)``, 4D NRRD/MetaImage) are read with their fourth axis
(:class:`~rmisr_monai.io.volume.FourthAxis`: NIfTI ``pixdim[4]``, time unit, ``toffset``, ``slice_duration``;
ITK's fourth spacing and origin). Every reader refuses NaN/Inf voxels, 5D images (trailing axes of length 1 are
dropped), colour/vector and zero-size images: ``InputFileError("expected a 3D scalar volume, got shape ...")``.
A 2D image is read as a 1-slice volume.

Sizes are checked before any voxel is allocated (:func:`rmisr_monai.io.limits.check_claimed_size`): the voxels a
header claims must fit in its file (raw data: the data size itself; gzip: at most ``DEFLATE_MAX_RATIO`` times the
file size) and in the memory available, so a 400-byte file claiming 30000 x 30000 x 30000 voxels is refused in one
line instead of exhausting memory. Detached data (``.mhd``, ``.nhdr``) and bzip2-encoded NRRD data are checked
against the memory only.

Modality for non-DICOM files (:func:`guess_modality`): ``"CT"`` when the 0.5th percentile is at most -500 (air or
padding in Hounsfield units), else ``"MR"`` when no value is negative, else ``"OT"``.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from rmisr_monai.errors import InputFileError
from rmisr_monai.io.dicom import read_dicom
from rmisr_monai.io.geometry import Geometry, orientation_code, ras_to_lps_affine, stack_summary
from rmisr_monai.io.limits import check_claimed_size
from rmisr_monai.io.volume import NIFTI_TIME_UNITS, FourthAxis, Volume, exact_dtype, file_format

__all__ = ["read_volume", "describe", "input_format", "guess_modality"]

logger = logging.getLogger(__name__)

CT_AIR_HU = -500.0  # guess_modality: voxels at or below this are air/padding in HU
CT_AIR_PERCENTILE = 0.5
DESCRIBE_PERCENTILES = (0.5, 1.0, 50.0, 99.0, 99.5)
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_PROBE_BYTES = 1 << 16  # NRRD / MetaImage text headers are read from this many leading bytes


def input_format(path: str | os.PathLike) -> str:
    """``"nifti"``, ``"nrrd"``, ``"mha"`` or ``"dicom"`` for an input path (folders and unknown suffixes: DICOM)."""
    path = Path(path)
    return "dicom" if path.is_dir() else file_format(path) or "dicom"


def guess_modality(array: np.ndarray) -> str:
    """The documented heuristic for files without a modality tag (see the module docstring)."""
    if array.size == 0:
        return "OT"
    if float(np.percentile(array, CT_AIR_PERCENTILE)) <= CT_AIR_HU:
        return "CT"
    return "MR" if float(array.min()) >= 0 else "OT"


def _as_3d(path: Path, array: np.ndarray) -> np.ndarray:
    """Drop trailing length-1 axes beyond the third, add one to a 2D image; keep a 4D image; refuse the rest."""
    shape = array.shape
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim not in (3, 4) or array.size == 0 or array.dtype.fields is not None:
        raise InputFileError(path, f"expected a 3D scalar volume, got shape {shape} ({array.dtype})")
    return array


def _nifti_fourth_axis(header) -> FourthAxis:
    """The fourth axis of a 4D NIfTI: ``pixdim[4]`` in the ``xyzt_units`` time unit, ``toffset``, slice timing."""
    unit = NIFTI_TIME_UNITS.get(header.get_xyzt_units()[1], "")
    return FourthAxis(
        kind="time" if unit in ("s", "ms", "us") else "volumes",
        step=float(header["pixdim"][4]),
        unit=unit,
        offset=float(header["toffset"]),
        slice_duration=float(header["slice_duration"]),
    )


def _check_finite(path: Path, array: np.ndarray) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputFileError(path, f"{bad} voxels are NaN or infinite")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(path, "empty file")


def _gzip_damage(path: Path) -> str | None:
    """Why a ``.gz`` file cannot be decompressed to its end, or None when it can (read only after a failure)."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return f"truncated or corrupt gzip data: {exc}"
    return None


def _nifti_info(header) -> dict[str, Any]:
    """What the writers keep of a NIfTI header (:attr:`Volume.source_info`)."""
    descrip = header["descrip"].tobytes().split(b"\0")[0].decode("latin-1").strip()
    return {
        "descrip": descrip,
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
        "intent_code": int(header["intent_code"]),
    }


def _read_nifti(path: Path) -> tuple[np.ndarray, np.dtype, Geometry, FourthAxis, dict[str, Any]]:
    compressed = path.name.lower().endswith(".gz")
    if compressed:
        with open(path, "rb") as handle:
            if handle.read(2) != _GZIP_MAGIC:
                raise InputFileError(path, "named .gz but not gzip-compressed (rename it to .nii)")
    try:
        image = nib.load(path)
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise InputFileError(path, f"not a NIfTI image ({type(image).__name__})")
        stored = image.get_data_dtype()
        if stored.fields is not None:
            raise InputFileError(path, f"expected a 3D scalar volume, got shape {image.shape} ({stored})")
        offset = int(image.dataobj.offset) if not compressed else 0
        size = path.stat().st_size
        check_claimed_size(path, image.shape, stored.itemsize, max(0, size - offset), compressed)
        array = np.asanyarray(image.dataobj)
    except InputFileError:
        raise
    except Exception as exc:  # nibabel raises many types on damaged headers (HeaderDataError, zlib.error, ...)
        reason = (_gzip_damage(path) if compressed else None) or f"cannot read NIfTI: {' '.join(str(exc).split())}"
        raise InputFileError(path, reason) from exc
    geometry = Geometry.from_affine(ras_to_lps_affine(image.affine))
    return array, stored, geometry, _nifti_fourth_axis(image.header), _nifti_info(image.header)


def _header_fields(path: Path) -> dict[str, str]:
    """``key -> value`` of a NRRD (``key: value``) or MetaImage (``Key = Value``) text header, keys lower case."""
    with open(path, "rb") as handle:
        text = handle.read(_HEADER_PROBE_BYTES).decode("latin-1")
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break  # NRRD: the blank line ends the header
        key, sep, value = line.partition(":=" if ":=" in line else (":" if file_format(path) == "nrrd" else "="))
        if sep:
            fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break  # MetaImage: the data follow this line
    return fields


def _data_in_file(path: Path) -> tuple[int | None, bool]:
    """``(data_bytes, compressed)`` for :func:`check_claimed_size` of a NRRD / MetaImage file."""
    fields = _header_fields(path)
    size = path.stat().st_size
    if file_format(path) == "nrrd":
        if "data file" in fields or "datafile" in fields or fields.get("encoding", "raw").lower() in ("bz2", "bzip2"):
            return None, False
        return size, fields.get("encoding", "raw").lower() in ("gz", "gzip")
    if fields.get("elementdatafile", "").upper() != "LOCAL":
        return None, False
    return size, fields.get("compresseddata", "false").lower() == "true"


@contextlib.contextmanager
def _itk_stderr(lines: list[str]) -> Iterator[None]:
    """Capture what ITK writes on the C-level stderr (file descriptor 2) while the block runs into ``lines``, so
    that it reaches the user as the reason of one error line, not as loose lines before it."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to capture
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def _itk_reason(exc: RuntimeError, lines: list[str]) -> str:
    """A true reason from ITK's own messages: its stderr lines (e.g. ``ElementType required and not defined``)
    first, else the exception's description line; never its misleading ``No such file or directory`` errno text
    for a file that exists."""
    said = [line for line in lines if "No such file or directory" not in line]
    text = [line.strip() for line in str(exc).splitlines() if line.strip()]
    described = [line.split(":", 1)[1].strip() for line in text if line.lower().startswith("description:")]
    words = said or described or text[-1:]
    reason = "; ".join(dict.fromkeys(words))
    return " ".join(reason.split()) or "unreadable header"


def _read_itk(path: Path) -> tuple[np.ndarray, np.dtype, Geometry, FourthAxis, dict[str, Any]]:
    lines: list[str] = []
    try:
        with _itk_stderr(lines):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            components = reader.GetNumberOfComponents()
            probe = sitk.Image([1, 1], reader.GetPixelID(), components)
            itemsize = sitk.GetArrayViewFromImage(probe).dtype.itemsize * components
            check_claimed_size(path, reader.GetSize(), itemsize, *_data_in_file(path))
            image = reader.Execute()
            keys = list(reader.GetMetaDataKeys())
    except RuntimeError as exc:
        raise InputFileError(path, f"cannot read image: {_itk_reason(exc, lines)}") from exc
    for line in lines:
        logger.debug("ITK: %s", line)
    info = {"segmentation": any(key.startswith("Segment") and key.endswith("_ID") for key in keys)}
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() not in (2, 3, 4):
        shape = (*image.GetSize(), image.GetNumberOfComponentsPerPixel())
        raise InputFileError(path, f"expected a 3D scalar volume, got shape {shape} (size x components)")
    # GetArrayFromImage is (k, j, i): reverse to the (i, j, k) index order
    array = sitk.GetArrayFromImage(image).T
    spacing, origin, direction = image.GetSpacing(), image.GetOrigin(), image.GetDirection()
    fourth = FourthAxis()
    if image.GetDimension() == 4:  # the spatial 3x3 block of ITK's 4x4 direction; the fourth spacing is the step
        fourth = FourthAxis(step=float(spacing[3]), offset=float(origin[3]))
        spacing, origin, direction = spacing[:3], origin[:3], np.reshape(direction, (4, 4))[:3, :3].ravel()
    return array, array.dtype, Geometry.from_itk(spacing, origin, direction), fourth, info


def read_volume(path: str | os.PathLike, series_uid: str | None = None, stack: str | None = None) -> Volume:
    """Read a 3D (or 4D) scalar volume from NIfTI, NRRD, MHA/MHD or DICOM (rules in the module docstring).

    Args:
        path: a file, or a folder holding one DICOM series.
        series_uid: SeriesInstanceUID to pick when a DICOM folder holds several series.
        stack: DICOM stack number when the frames form several stacks (listed in the error otherwise).

    Raises:
        InputFileError: naming the file and the reason; nothing is ever written.
    """
    path = Path(path)
    _check_file(path)
    kind = input_format(path)
    if kind == "dicom":
        try:
            volume = read_dicom(path, series_uid, stack)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # a damaged tag value (pydicom parses lazily)
            raise InputFileError(path, f"cannot read the DICOM data: {' '.join(str(exc).split())}") from exc
        _check_finite(path, volume.array)
        return volume
    try:
        array, stored, geometry, fourth_axis, info = _read_nifti(path) if kind == "nifti" else _read_itk(path)
    except ValueError as exc:  # e.g. Geometry: "spacing must be finite and positive"
        raise InputFileError(path, " ".join(str(exc).split())) from exc
    array = _as_3d(path, array)
    _check_finite(path, array)
    source_dtype = exact_dtype(array, stored)
    return Volume(
        array=array.astype(source_dtype, copy=False),
        geometry=geometry,
        modality=guess_modality(array),
        source_dtype=source_dtype,
        source_path=str(path),
        source_format=kind,
        fourth_axis=fourth_axis if array.ndim == 4 else None,
        source_info=info,
    )


def _slice_words(volume: Volume) -> dict[str, str]:
    """Slice spacing, tilt, frames/stacks and fourth axis of a volume, in plain words (``rmisr info``)."""
    n_slices = int(volume.array.shape[2])
    stack = stack_summary(volume.geometry, n_slices)
    if stack["uneven"]:
        spacing = (
            f"uneven: {stack['min_step']:.4g} to {stack['max_step']:.4g} mm between the {n_slices} slice planes "
            "(kept per slice in DICOM output; NIfTI/NRRD/MHA output needs --resample)"
        )
    else:
        spacing = f"even: {stack['min_step']:.4g} mm between the {n_slices} slice planes"
    tilt = "none"
    if volume.geometry.is_sheared:
        tilt = (
            f"{stack['tilt_degrees']:.2f} degrees (gantry tilt: slices advance off their normal; exact sheared "
            "affine in NIfTI/NRRD/MHA output, or --resample to an orthogonal grid)"
        )
    template = volume.dicom_template
    frames = getattr(template, "frames_summary", "") or "not DICOM"
    fourth = "none (3D)"
    if volume.fourth_axis is not None:
        fourth = volume.fourth_axis.describe(int(volume.array.shape[3])) + " (each volume is upscaled)"
    return {"slice_spacing": spacing, "tilt": tilt, "frames": frames, "fourth_axis": fourth}


def describe(volume: Volume) -> dict[str, Any]:
    """A JSON-ready summary: shape, spacing, origin, direction, orientation code, slice spacing regularity, gantry
    tilt, DICOM frames and stacks, fourth axis (plain words), dtype, modality, source format, intensity
    min/max/mean and percentiles. Never patient tags (nothing from the DICOM headers)."""
    values = np.asarray(volume.array, dtype=np.float64)
    percentiles = np.percentile(values, DESCRIBE_PERCENTILES)
    return {
        "shape": [int(n) for n in volume.array.shape],
        "spacing": list(volume.geometry.spacing),
        "origin": list(volume.geometry.origin),
        "direction": [list(row) for row in volume.geometry.direction],
        "orientation": orientation_code(volume.geometry),
        **_slice_words(volume),
        "dtype": str(volume.array.dtype),
        "source_dtype": str(volume.source_dtype),
        "modality": volume.modality,
        "source_format": volume.source_format,
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "percentiles": {f"p{p:g}": float(v) for p, v in zip(DESCRIBE_PERCENTILES, percentiles)},
    }
