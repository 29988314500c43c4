"""DICOM: read one series (a folder, an enhanced multi-frame file, or a single-frame file) and write a derived
series, with pydicom.

Reading rules
-------------
* Every file under the folder (recursively) is tried with ``pydicom.dcmread``. Files that are not DICOM are ignored,
  except a file named ``*.dcm``: that is an error naming it (a corrupt slice must not silently shorten a volume).
  DICOM objects without an image (DICOMDIR, structured reports, presentation states) are ignored.
* Several SeriesInstanceUIDs in one folder are refused with the list of UIDs unless ``series_uid`` picks one;
  series are never merged.
* Frames: a single-frame file is one frame; an enhanced (multi-frame) CT/MR image gives one frame per
  PerFrameFunctionalGroupsSequence item, its geometry and pixel value transformation taken from the per-frame
  functional group, else the shared one, else the top level (PlanePosition, PlaneOrientation, PixelMeasures,
  PixelValueTransformation, FrameContent StackID). Multi-frame images without per-frame groups are refused.
* Stacks: frames are grouped by StackID and orientation; several stacks (e.g. a three-plane localizer, several
  orientations in one enhanced file) are refused with the list unless ``stack`` picks one.
* Fourth axis: when every slice position holds the same number of frames, told apart by the temporal position,
  the trigger time, the echo time, the b-value or the echo number (the first that does), the result is 4D
  ``(i, j, k, t)``; otherwise frames sharing a position are refused as duplicates.
* Geometry: ImageOrientationPatient, PixelSpacing and ImagePositionPatient are required; slices are sorted by their
  position projected on the slice normal ``row x column``
  (:func:`rmisr_monai.io.geometry.dicom_stack_geometry`): gantry-tilted stacks get their exact sheared affine,
  unevenly spaced ones keep every slice's position. A single frame is a 1-slice volume whose third spacing is
  SpacingBetweenSlices, else SliceThickness, else 1 mm.
* Pixels are decoded by pydicom (compressed transfer syntaxes through the pylibjpeg plugins); PixelRepresentation
  gives signed/unsigned; each frame's RescaleSlope/RescaleIntercept is applied. MONOCHROME1 values are kept as
  stored (not inverted). Colour images are refused.

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
from rmisr_monai.io.limits import check_claimed_size
from rmisr_monai.io.volume import FourthAxis, Volume, exact_dtype

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
    frames_summary: str = ""  # plain words for ``rmisr info``: files, frames, stacks (no patient data)

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
    except Exception as exc:  # pydicom raises many types on damaged headers (NotImplementedError for a bad VR...)
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


@dataclass
class _Frame:
    """One 2D image of the input: a single-frame file, or frame ``number`` (0-based) of a multi-frame file."""

    file: Path
    number: int | None
    position: tuple[float, ...]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, ...]
    slope: float
    intercept: float
    stack: str
    labels: dict[str, float]  # candidate fourth-axis values (temporal position, echo time, b-value...)

    @property
    def name(self) -> str:
        return self.file.name if self.number is None else f"{self.file.name} frame {self.number + 1}"


# Fourth-axis candidates, in order of preference: (kind, unit, single-frame keyword, enhanced (sequence, keyword)).
FOURTH_AXIS_TAGS = (
    ("time", "", "TemporalPositionIdentifier", ("FrameContentSequence", "TemporalPositionIndex")),
    ("time", "ms", "TriggerTime", ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")),
    ("echo", "ms", "EchoTime", ("MREchoSequence", "EffectiveEchoTime")),
    ("b-value", "s/mm2", "DiffusionBValue", ("MRDiffusionSequence", "DiffusionBValue")),
    ("echo", "", "EchoNumbers", None),  # enhanced images carry echoes as EffectiveEchoTime only
)
ENHANCED_TAGS = {  # keyword -> functional group sequence holding it in an enhanced (multi-frame) image
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "SpacingBetweenSlices": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "StackID": "FrameContentSequence",
}
# rounding (mm) that decides which frames share a slice position (DICOM positions carry ~1e-4 mm of decimals)
POSITION_DECIMALS = 2


def _group_value(header: Dataset, group: Dataset | None, sequence: str, keyword: str):
    """``keyword`` from the per-frame functional group, else the shared one, else the top level; None if absent."""
    shared = header.get("SharedFunctionalGroupsSequence")
    for source in (group, shared[0] if shared else None):
        items = source.get(sequence) if source is not None else None
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return header.get(keyword)


def _frames_of(file: Path, header: Dataset) -> list[_Frame]:
    """The frames of one image file with their geometry (functional groups for enhanced multi-frame images)."""
    if int(header.get("SamplesPerPixel", 1)) != 1:
        raise InputFileError(file, f"expected a 3D scalar volume, got {header.SamplesPerPixel} samples per pixel")
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if n_frames > 1 and (per_frame is None or len(per_frame) != n_frames):
        raise InputFileError(
            file, f"multi-frame DICOM ({n_frames} frames) without per-frame functional groups: the frame positions "
            "are unknown (only enhanced multi-frame images are supported)"
        )  # fmt: skip
    frames = []
    for number in range(n_frames):
        group = per_frame[number] if per_frame is not None else None
        label = file.name if n_frames == 1 else f"{file.name} frame {number + 1}"

        def value(keyword: str, group=group):
            return _group_value(header, group, ENHANCED_TAGS.get(keyword, ""), keyword)

        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if value(keyword) is None:
                where = f" ({ENHANCED_TAGS[keyword]})" if per_frame is not None else ""
                raise InputFileError(file, f"{label}: {keyword}{where} is missing: the slice position is unknown")
        labels = {}
        for kind, unit, single, enhanced in FOURTH_AXIS_TAGS:
            if per_frame is None:
                found = header.get(single)
            else:
                found = _group_value(header, group, *enhanced) if enhanced else None
            if found not in (None, ""):
                labels[f"{kind}|{unit}|{single}"] = float(np.atleast_1d(found)[0])
        frames.append(
            _Frame(
                file=file,
                number=None if per_frame is None else number,
                position=tuple(float(v) for v in value("ImagePositionPatient")),
                orientation=tuple(float(v) for v in value("ImageOrientationPatient")),
                pixel_spacing=tuple(float(v) for v in value("PixelSpacing")),
                slope=float(value("RescaleSlope") or 1),
                intercept=float(value("RescaleIntercept") or 0),
                stack=str(value("StackID") or ""),
                labels=labels,
            )
        )
    return frames


def _stacks(frames: list[_Frame]) -> dict[str, list[_Frame]]:
    """Frames grouped into stacks: by StackID and orientation (a localizer's three planes are three stacks)."""
    groups: dict[tuple, list[_Frame]] = defaultdict(list)
    for frame in frames:
        groups[(frame.stack, tuple(np.round(frame.orientation, 3)))].append(frame)
    return {str(n + 1): group for n, (_, group) in enumerate(sorted(groups.items(), key=lambda item: item[0]))}


def _select_stack(path: Path, frames: list[_Frame], stack: str | None) -> list[_Frame]:
    stacks = _stacks(frames)
    listing = "; ".join(
        f"{key}: {len(g)} frames, orientation {[round(v, 3) for v in g[0].orientation]}"
        + (f", StackID {g[0].stack}" if g[0].stack else "")
        for key, g in stacks.items()
    )
    if stack is not None:
        if str(stack) not in stacks:
            raise InputFileError(path, f"stack {stack} not found; stacks here: {listing}")
        return stacks[str(stack)]
    if len(stacks) > 1:
        raise InputFileError(path, f"{len(stacks)} stacks of frames (pick one with --stack N): {listing}")
    return frames


def _split_fourth_axis(path: Path, frames: list[_Frame]) -> tuple[list[list[_Frame]], FourthAxis | None]:
    """Frames grouped by slice position; when every position holds the same number T > 1 of frames told apart by
    one tag of :data:`FOURTH_AXIS_TAGS`, ``T`` lists of one frame per position (one per volume) and the axis."""
    at: dict[tuple, list[_Frame]] = defaultdict(list)
    for frame in frames:
        at[tuple(np.round(frame.position, POSITION_DECIMALS))].append(frame)
    counts = {len(group) for group in at.values()}
    if counts == {1}:
        return [frames], None
    if len(counts) == 1:
        for key in dict.fromkeys(k for f in frames for k in f.labels):
            values = [sorted(f.labels.get(key, np.nan) for f in group) for group in at.values()]
            if all(len(set(v)) == len(v) and v == values[0] for v in values) and not np.isnan(values[0]).any():
                kind, unit, _ = key.split("|")
                volumes = [[next(f for f in group if f.labels[key] == v) for group in at.values()] for v in values[0]]
                step = float(np.median(np.diff(values[0]))) if unit and len(values[0]) > 1 else 0.0
                axis = FourthAxis(kind=kind, step=step, unit=unit, values=tuple(values[0]))
                return volumes, axis
    shared = next(group for group in at.values() if len(group) > 1)
    where = [round(v, 4) for v in shared[0].position]
    raise InputFileError(
        path, f"{len(frames) - len(at)} duplicate slice position(s), e.g. {where} in "
        f"{', '.join(f.name for f in shared[:3])}, and no temporal position, echo or b-value tells them apart"
    )  # fmt: skip


def _common(path: Path, frames: list[_Frame], attribute: str, tolerance: float) -> tuple[float, ...]:
    """A value that must be the same for every frame (within ``tolerance``); raises naming the first that differs."""
    first = getattr(frames[0], attribute)
    for frame in frames[1:]:
        value = getattr(frame, attribute)
        if len(value) != len(first) or np.abs(np.subtract(value, first)).max() > tolerance:
            raise InputFileError(path, f"{attribute} {list(value)} of {frame.name} differs from {list(first)}")
    return first


class _PixelSource:
    """Decodes each file once (all frames of a multi-frame file at a time) and hands out rescaled frames."""

    def __init__(self, headers: dict[Path, Dataset]):
        self.headers = headers
        self.file: Path | None = None
        self.stored: np.ndarray | None = None
        self.dtypes: set[np.dtype] = set()

    def __call__(self, frame: _Frame) -> np.ndarray:
        """One frame, rescaled, as float64 ``(i, j)`` = (column, row)."""
        if frame.file != self.file:
            try:
                self.stored = pydicom.dcmread(frame.file).pixel_array
            except (RuntimeError, NotImplementedError, ValueError, AttributeError) as exc:
                syntax = self.headers[frame.file].file_meta.get("TransferSyntaxUID")
                name = syntax.name if syntax else "unknown transfer syntax"
                raise InputFileError(frame.file, f"cannot decode pixel data ({name}): {exc}; {DECODER_HINT}") from exc
            self.file = frame.file
            self.dtypes.add(self.stored.dtype)
        stored = self.stored if frame.number is None else self.stored[frame.number]
        return (stored.astype(np.float64) * frame.slope + frame.intercept).T


def _frames_summary(files: list[tuple[Path, Dataset]], all_frames: list[_Frame], frames: list[_Frame]) -> str:
    multi = sum(int(h.get("NumberOfFrames", 1) or 1) > 1 for _, h in files)
    text = f"{len(all_frames)} frames in {len(files)} file(s)"
    if multi:
        text += f" ({multi} enhanced multi-frame)"
    stacks = _stacks(all_frames)
    if len(stacks) > 1:
        chosen = next(key for key, group in stacks.items() if group[0] is frames[0])
        text += f"; {len(stacks)} stacks, stack {chosen} read ({len(frames)} frames)"
    return text


def _template_header(header: Dataset, thickness) -> Dataset:
    """The source header a derived series copies from, without the (large) functional groups."""
    header = copy.copy(header)
    for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if keyword in header:
            delattr(header, keyword)
    if thickness is not None and not header.get("SliceThickness"):
        header.SliceThickness = thickness
    return header


def read_dicom(path: str | os.PathLike, series_uid: str | None = None, stack: str | None = None) -> Volume:
    """Read a DICOM series folder, an enhanced multi-frame file or a single-frame file; rules in the module
    docstring.

    Args:
        path: a folder holding the series, or one file.
        series_uid: SeriesInstanceUID to pick when a folder holds several series.
        stack: stack number (as listed in the error) when the frames form several stacks (orientations, StackIDs).

    Raises:
        InputFileError: naming the folder or file and the reason (several series or stacks, duplicate slices,
            missing geometry tags, undecodable pixels, colour images).
    """
    path = Path(path)
    if path.is_dir():
        files = _select_series(path, _scan_folder(path), series_uid)
    else:
        header = _read_header(path, required=True)
        if header is None or "Rows" not in header:
            raise InputFileError(path, "not a DICOM image file")
        files = [(path, header)]
    headers = dict(files)
    for file, header in files:  # a damaged file may keep Rows and lose Columns (a mangled tag number)
        if header.get("Rows") is None or header.get("Columns") is None:
            raise InputFileError(file, "Rows or Columns missing: not a readable DICOM image")
    rows, columns = int(files[0][1].Rows), int(files[0][1].Columns)
    for file, header in files:
        if (int(header.Rows), int(header.Columns)) != (rows, columns):
            size = f"{header.Rows} x {header.Columns}"
            raise InputFileError(file, f"Rows x Columns {size} differ from {rows} x {columns}")
    all_frames = [f for file, header in files for f in _frames_of(file, header)]
    frames = _select_stack(path, all_frames, stack)
    volumes, fourth_axis = _split_fourth_axis(path, frames)
    orientation = _common(path, frames, "orientation", 1e-4)
    pixel_spacing = _common(path, frames, "pixel_spacing", 1e-4)
    first = files[0][1]
    first_group = first.get("PerFrameFunctionalGroupsSequence", [None])[0]
    thickness = _group_value(first, first_group, "PixelMeasuresSequence", "SliceThickness")
    between = _group_value(first, first_group, "PixelMeasuresSequence", "SpacingBetweenSlices")
    try:
        geometry, order = dicom_stack_geometry(
            orientation, pixel_spacing, [f.position for f in volumes[0]], float(between or thickness or 1.0)
        )
    except SliceStackError as exc:
        names = ", ".join(volumes[0][i].name for i in exc.slices)
        raise InputFileError(path, f"{exc}" + (f" ({names})" if names else "")) from exc
    n_frames = len(order) * len(volumes)
    syntaxes = [getattr(getattr(h, "file_meta", None), "TransferSyntaxUID", None) for h in headers.values()]
    raw = all(uid is not None and not UID(uid).is_compressed for uid in syntaxes)
    stored_bytes = max(1, int(first.get("BitsAllocated", 16)) // 8)
    on_disk = sum(file.stat().st_size for file in headers) if raw else None  # compressed: memory bound only
    check_claimed_size(path, (columns, rows, n_frames), stored_bytes, on_disk, False, memory_itemsize=8)
    pixels = _PixelSource(headers)
    array = np.empty((columns, rows, len(order), len(volumes)), dtype=np.float64)
    for t, volume_frames in enumerate(volumes):
        for k, index in enumerate(order):
            array[:, :, k, t] = pixels(volume_frames[index])
    source_dtype = exact_dtype(array, np.result_type(*pixels.dtypes))
    modality = str(first.get("Modality", "")).upper()
    template_header = _template_header(headers[volumes[0][order[0]].file], thickness)
    summary = _frames_summary(files, all_frames, frames)
    template = DicomTemplate(template_header, geometry, tuple(array.shape[:3]), summary)
    return Volume(
        array=(array[..., 0] if fourth_axis is None else array).astype(source_dtype),
        geometry=geometry,
        modality=modality if modality in ("CT", "MR") else "OT",
        source_dtype=source_dtype,
        source_path=str(path),
        source_format="dicom",
        dicom_template=template,
        fourth_axis=fourth_axis,
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
    steps = volume.geometry.plane_steps(volume.array.shape[2])
    spacing = float(np.median(steps)) if steps.size else volume.geometry.spacing[2]
    if template is None or not template.header.get("SliceThickness"):
        return spacing
    ratio = template.shape[2] / volume.array.shape[2]
    return float(template.header.SliceThickness) * ratio


def write_dicom_series(volume: Volume, folder: Path) -> None:
    """Write ``volume`` (values already in the output dtype) as a derived series into the existing ``folder``.

    One file per slice (``IM00001.dcm`` ...), single-frame even when the source was an enhanced multi-frame image,
    each slice in its own plane (tilted and unevenly spaced stacks keep every slice's position: in-plane SR moves
    the first pixel centre by the half-pixel rule only), Explicit VR Little Endian, uncompressed; new
    SeriesInstanceUID and SOPInstanceUIDs; StudyInstanceUID and FrameOfReferenceUID (and the patient/study modules)
    kept from the source DICOM, else generated/empty; ImageType DERIVED\\SECONDARY; plane tags from the geometry;
    Rescale Slope/Intercept from :func:`_stored_pixels`; SeriesDescription suffixed `` SR x<factor>``.
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
    steps = volume.geometry.plane_steps(stored.shape[2])
    if volume.geometry.is_regular:  # an uneven stack has no single spacing: each slice keeps its own position
        series.SpacingBetweenSlices = _ds(float(steps[0]) if steps.size else volume.geometry.spacing[2])
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
