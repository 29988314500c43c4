"""DICOM: read one series (a folder, or a single-frame file) and write a derived series, with pydicom.

Reading rules
-------------
* Every file under the folder (recursively) is tried with ``pydicom.dcmread``. Files that are not DICOM are ignored,
  except a file named ``*.dcm``: that is an error naming it (a corrupt slice must not silently shorten a volume).
  DICOM objects without an image (DICOMDIR, structured reports, presentation states) are ignored.
* Several SeriesInstanceUIDs in one folder are refused with the list of UIDs unless ``series_uid`` picks one;
  series are never merged.
* Geometry: ImageOrientationPatient, PixelSpacing and ImagePositionPatient are required; slices are sorted by their
  position projected on the slice normal ``row x column`` and must be evenly spaced, distinct and not tilted
  (:func:`rmisr_monai.io.geometry.dicom_stack_geometry`). A single file is a 1-slice volume whose third spacing is
  SpacingBetweenSlices, else SliceThickness, else 1 mm.
* Pixels are decoded by pydicom (compressed transfer syntaxes through the pylibjpeg plugins); PixelRepresentation
  gives signed/unsigned; each slice's RescaleSlope/RescaleIntercept is applied. MONOCHROME1 values are kept as stored
  (not inverted). Multi-frame and colour images are refused.

Writing
-------
:func:`write_dicom_series` writes a DERIVED\\SECONDARY series, one uncompressed Explicit VR Little Endian file per slice
(see its docstring for the tags). Patient and study modules are copied from the source series when there is one:
this is the only place where patient data is written, and it is never logged.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from rmisr_monai.errors import InputFileError
from rmisr_monai.io.geometry import Geometry, SliceStackError, dicom_slice_planes, dicom_stack_geometry
from rmisr_monai.io.volume import Volume, exact_dtype

__all__ = ["DicomTemplate", "read_dicom", "write_dicom_series", "SOP_CLASSES"]

logger = logging.getLogger(__name__)

SOP_CLASSES = {
    "CT": UID("1.2.840.10008.5.1.4.1.1.2"),  # CT Image Storage
    "MR": UID("1.2.840.10008.5.1.4.1.1.4"),  # MR Image Storage
    "OT": UID("1.2.840.10008.5.1.4.1.1.7"),  # Secondary Capture Image Storage
}
DECODER_HINT = "install pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-libjpeg and pylibjpeg-rle (or python-gdcm)"
# Patient, study and frame-of-reference modules, copied verbatim from the source series into derived ones.
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
)  # fmt: skip
# Equipment and acquisition attributes that stay true for a resampled image.
ACQUISITION_KEYWORDS = (
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "BodyPartExamined", "PatientPosition", "KVP",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime",
    "InversionTime", "EchoTrainLength", "MagneticFieldStrength", "ImagingFrequency", "ImagedNucleus",
    "ContrastBolusAgent", "WindowCenter", "WindowWidth",
)  # fmt: skip
# Type 1 / type 2 attributes of the CT and MR image modules when the source has none (type 2 = present, empty).
REQUIRED_DEFAULTS = {
    "CT": {"KVP": "", "AcquisitionNumber": ""},
    "MR": {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "",
           "RepetitionTime": "", "EchoTime": "", "EchoTrainLength": ""},
    "OT": {"ConversionType": "WSD"},
}  # fmt: skip
READABLE = "readable inputs: .nii, .nii.gz, .nrrd, .mha, .mhd, DICOM files or a DICOM series folder"
DERIVED_SERIES_NUMBER_OFFSET = 1000
LO_MAX = 64  # DICOM LO value representation: at most 64 characters


@dataclass(repr=False)
class DicomTemplate:
    """What a derived series needs from its source: the first slice's header (no pixels), and the source grid."""

    header: Dataset
    geometry: Geometry
    shape: tuple[int, int, int]

    def __repr__(self) -> str:
        return f"DicomTemplate(shape={self.shape})"  # headers hold patient data: never printed


def _scan_folder(folder: Path) -> list[tuple[Path, Dataset]]:
    """Headers of the DICOM image files under ``folder`` (see the module docstring for what is ignored)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            file = Path(root, name)
            header = _read_header(file, required=file.suffix.lower() == ".dcm")
            if header is not None and "Rows" in header:
                found.append((file, header))
            elif header is not None:
                logger.debug("ignoring DICOM object without an image: %s", file.name)
    if not found:
        raise InputFileError(folder, "no DICOM image files found in this folder")
    return found


def _read_header(file: Path, required: bool) -> Dataset | None:
    try:
        return pydicom.dcmread(file, stop_before_pixels=True)
    except InvalidDicomError as exc:
        if required:
            raise InputFileError(file, f"not a DICOM file (no DICM preamble); {READABLE}") from exc
        logger.debug("ignoring non-DICOM file %s", file.name)
    except (OSError, EOFError, ValueError, TypeError) as exc:
        if required:
            raise InputFileError(file, f"cannot read the DICOM header: {type(exc).__name__}") from exc
        logger.debug("ignoring unreadable file %s", file.name)
    return None


def _select_series(
    folder: Path, found: list[tuple[Path, Dataset]], series_uid: str | None
) -> list[tuple[Path, Dataset]]:
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for file, header in found:
        series[str(header.get("SeriesInstanceUID", ""))].append((file, header))
    listing = "; ".join(f"{uid or '(no SeriesInstanceUID)'} ({len(files)} files)" for uid, files in series.items())
    if series_uid is not None:
        if series_uid not in series:
            raise InputFileError(folder, f"series {series_uid} not found; series here: {listing}")
        return series[series_uid]
    if len(series) > 1:
        raise InputFileError(folder, f"{len(series)} DICOM series in one folder (pick one with series_uid): {listing}")
    return next(iter(series.values()))


def _check_slice(file: Path, header: Dataset) -> None:
    if int(header.get("NumberOfFrames", 1) or 1) > 1:
        raise InputFileError(file, f"multi-frame DICOM ({header.NumberOfFrames} frames) is not supported")
    if int(header.get("SamplesPerPixel", 1)) != 1:
        raise InputFileError(file, f"expected a 3D scalar volume, got {header.SamplesPerPixel} samples per pixel")
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if header.get(keyword) is None:
            raise InputFileError(file, f"{keyword} is missing: the slice position in space is unknown")


def _common_value(slices: list[tuple[Path, Dataset]], keyword: str, tolerance: float) -> list[float]:
    """A tag that must be the same on every slice (within ``tolerance``); raises naming the first file that differs."""
    first = [float(v) for v in np.atleast_1d(slices[0][1].get(keyword))]
    for file, header in slices[1:]:
        value = [float(v) for v in np.atleast_1d(header.get(keyword))]
        if len(value) != len(first) or np.abs(np.subtract(value, first)).max() > tolerance:
            raise InputFileError(file, f"{keyword} {value} differs from {first} in {slices[0][0].name}")
    return first


def _slice_pixels(file: Path, header: Dataset) -> tuple[np.ndarray, np.dtype]:
    """One slice, rescaled, as float64 ``(i, j)`` = (column, row), and the dtype pydicom decoded it to."""
    try:
        dataset = pydicom.dcmread(file)
        stored = dataset.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, AttributeError) as exc:
        syntax = header.file_meta.get("TransferSyntaxUID")
        name = syntax.name if syntax else "unknown transfer syntax"
        raise InputFileError(file, f"cannot decode pixel data ({name}): {exc}; {DECODER_HINT}") from exc
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    return (stored.astype(np.float64) * slope + intercept).T, stored.dtype


def read_dicom(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read a DICOM series folder (or a single-frame DICOM file as a 1-slice volume); rules in the module docstring.

    Raises:
        InputFileError: naming the folder or file and the reason (several series, missing/duplicate slices, tilt,
            missing geometry tags, undecodable pixels, multi-frame or colour images).
    """
    path = Path(path)
    if path.is_dir():
        slices = _select_series(path, _scan_folder(path), series_uid)
    else:
        header = _read_header(path, required=True)
        if header is None or "Rows" not in header:
            raise InputFileError(path, "not a DICOM image file")
        slices = [(path, header)]
    for file, header in slices:
        _check_slice(file, header)
    rows_cols = _common_value(slices, "Rows", 0) + _common_value(slices, "Columns", 0)
    orientation = _common_value(slices, "ImageOrientationPatient", 1e-4)
    pixel_spacing = _common_value(slices, "PixelSpacing", 1e-4)
    first = slices[0][1]
    fallback = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    try:
        geometry, order = dicom_stack_geometry(
            orientation, pixel_spacing, [h.ImagePositionPatient for _, h in slices], fallback
        )
    except SliceStackError as exc:
        files = ", ".join(slices[i][0].name for i in exc.slices)
        raise InputFileError(path, f"{exc}" + (f" (files {files})" if files else "")) from exc
    array = np.empty((int(rows_cols[1]), int(rows_cols[0]), len(order)), dtype=np.float64)
    stored_dtypes = set()
    for k, index in enumerate(order):
        array[:, :, k], stored_dtype = _slice_pixels(*slices[index])
        stored_dtypes.add(stored_dtype)
    source_dtype = exact_dtype(array, np.result_type(*stored_dtypes))
    modality = str(first.get("Modality", "")).upper()
    template = DicomTemplate(slices[order[0]][1], geometry, tuple(array.shape))
    return Volume(
        array=array.astype(source_dtype),
        geometry=geometry,
        modality=modality if modality in ("CT", "MR") else "OT",
        source_dtype=source_dtype,
        source_path=str(path),
        source_format="dicom",
        dicom_template=template,
    )


def _ds(value: float) -> str:
    """A decimal string (DICOM DS, at most 16 characters) with as many significant digits as fit."""
    for digits in range(15, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DICOM decimal string")


def _stored_pixels(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Integers to store and ``(slope, intercept)`` so that ``stored * slope + intercept`` gives the values back:
    integer values that fit 16 bits are stored as they are (slope 1, intercept 0; int16 when any is negative);
    anything else is mapped linearly onto uint16 (0 .. 65535)."""
    low, high = float(values.min()), float(values.max())
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(np.mod(values, 1) == 0))
    if integral and low >= np.iinfo(np.int16).min and high <= np.iinfo(np.int16).max:
        signed = low < 0 or values.dtype in (np.int8, np.int16)
        return values.astype(np.int16 if signed else np.uint16), 1.0, 0.0
    if integral and low >= 0 and high <= np.iinfo(np.uint16).max:
        return values.astype(np.uint16), 1.0, 0.0
    # DS values hold at most 16 characters: round the coefficients first, then quantise with the rounded ones
    intercept = float(_ds(low))
    slope = float(_ds((high - intercept) / 65535.0)) if high > intercept else 1.0
    stored = np.clip(np.rint((values.astype(np.float64) - intercept) / slope), 0, 65535)
    return stored.astype(np.uint16), slope, intercept


def _series_description(volume: Volume, template: DicomTemplate | None) -> str:
    """Source description + `` SR x2`` (one factor when all axes agree, else ``x1x1x2`` in (i, j, k) order)."""
    if template is None:
        return "rmisr_monai SR"
    factors = [n_out / n_in for n_out, n_in in zip(volume.array.shape, template.shape)]
    label = f"x{factors[0]:g}" if len(set(factors)) == 1 else "x" + "x".join(f"{f:g}" for f in factors)
    suffix = f" SR {label}"
    base = str(template.header.get("SeriesDescription", ""))
    return base[: LO_MAX - len(suffix)] + suffix


def _series_dataset(volume: Volume, template: DicomTemplate | None) -> Dataset:
    """Attributes shared by every slice of the derived series."""
    source = template.header if template is not None else Dataset()
    ds = Dataset()
    for keyword in PATIENT_STUDY_KEYWORDS + ACQUISITION_KEYWORDS:
        if keyword in source:
            ds[keyword] = copy.deepcopy(source[keyword])
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator"):  # fmt: skip
        if keyword not in ds:
            setattr(ds, keyword, "")  # type 2: present, empty -- no patient data invented
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = generate_uid()
    for keyword, value in REQUIRED_DEFAULTS[volume.modality].items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    ds.Modality = volume.modality
    ds.SOPClassUID = SOP_CLASSES[volume.modality]
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(source.get("SeriesNumber", 0) or 0) + DERIVED_SERIES_NUMBER_OFFSET
    ds.SeriesDescription = _series_description(volume, template)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "super-resolved by rmisr_monai"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(volume.array.shape[1]), int(volume.array.shape[0])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def _slice_thickness(volume: Volume, template: DicomTemplate | None) -> float:
    """The source thickness scaled like the slice spacing (an overlapping 3 mm / 2 mm series stays overlapping);
    the slice spacing when there is no source thickness."""
    spacing = volume.geometry.spacing[2]
    if template is None or not template.header.get("SliceThickness"):
        return spacing
    ratio = template.shape[2] / volume.array.shape[2]
    return float(template.header.SliceThickness) * ratio


def write_dicom_series(volume: Volume, folder: Path) -> None:
    """Write ``volume`` (values already in the output dtype) as a derived series into the existing ``folder``.

    One file per slice (``IM00001.dcm`` ...), Explicit VR Little Endian, uncompressed; new SeriesInstanceUID and
    SOPInstanceUIDs; StudyInstanceUID and FrameOfReferenceUID (and the patient/study modules) kept from the source
    DICOM, else generated/empty; ImageType DERIVED\\SECONDARY; plane tags from the geometry; Rescale Slope/Intercept
    from :func:`_stored_pixels`; SeriesDescription suffixed `` SR x<factor>``.
    """
    template = volume.dicom_template if isinstance(volume.dicom_template, DicomTemplate) else None
    stored, slope, intercept = _stored_pixels(volume.array)
    orientation, pixel_spacing, positions, locations = dicom_slice_planes(volume.geometry, volume.array.shape[2])
    series = _series_dataset(volume, template)
    series.PixelRepresentation = int(stored.dtype == np.int16)
    series.RescaleSlope, series.RescaleIntercept = _ds(slope), _ds(intercept)
    if volume.modality == "CT":
        series.RescaleType = "HU"
    series.ImageOrientationPatient = [_ds(v) for v in orientation]
    series.PixelSpacing = [_ds(v) for v in pixel_spacing]
    series.SpacingBetweenSlices = _ds(volume.geometry.spacing[2])
    series.SliceThickness = _ds(_slice_thickness(volume, template))
    for k in range(stored.shape[2]):
        ds = copy.deepcopy(series)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.SliceLocation = _ds(locations[k])
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype(stored.dtype.newbyteorder("<")).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.save_as(folder / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
