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
* Siemens MOSAIC (ImageType ``MOSAIC``): one file holds a whole volume as ``n x n`` tiles,
  ``n = ceil(sqrt(NumberOfImagesInMosaic))`` (CSA image header, else the private tag (0019,100A)); tile ``t`` is at
  tile row ``t // n``, tile column ``t % n``; the first tile's position is ImagePositionPatient moved by half the
  mosaic-minus-tile size (Siemens' mosaic position, corrected as nibabel and dcm2niix do), and tile ``t`` lies
  ``t`` slice spacings (SpacingBetweenSlices, else SliceThickness) along the CSA SliceNormalVector (else
  ``row x column``). A mosaic whose pixels do not divide into its tiles is refused, naming the sizes.
* Multi-frame images without functional groups: an RT Dose grid (ImagePositionPatient + GridFrameOffsetVector,
  frame ``f`` at ``GridFrameOffsetVector[f] - GridFrameOffsetVector[0]`` mm along the normal, values times
  DoseGridScaling, in Gy) is read; other multi-frame files without per-frame positions are refused.
* A single-frame projection image (CR, DX, MG, IO, US, SC, XA, RF...) read on its own, without ImagePositionPatient
  and ImageOrientationPatient, but with PixelSpacing (else ImagerPixelSpacing, else NominalScannedPixelSpacing) is a
  one-slice volume in the patient's row/column directions (identity orientation, origin 0); without any of these
  spacings it is refused (its pixel size is unknown).
* DICOM SEG (Segmentation Storage, often 1-bit packed frames) is a label map, not an image: a BINARY SEG file read
  on its own becomes one label volume (segment numbers, 0 outside; refused when segments overlap), marked in
  ``source_info`` so that the label-map check (:mod:`rmisr_monai.io.labels`) refuses to interpolate it and the
  DICOM writer refuses to write it as an image series; a SEG among image files, or a FRACTIONAL one, is refused
  with that reason.

Writing
-------
:func:`write_dicom_series` writes a DERIVED\\SECONDARY series, one uncompressed Explicit VR Little Endian file per slice
(see its docstring for the tags). Patient and study modules are copied from the source series when there is one,
and every output slice copies the acquisition attributes of the source slice in its plane (thickness, windows,
kernel, tilt, dates...): this is the only place where patient data is written, and it is never logged.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from rmisr_monai.errors import InputFileError
from rmisr_monai.io.geometry import (
    Geometry,
    SliceStackError,
    dicom_slice_planes,
    dicom_stack_geometry,
    slice_correspondence,
)
from rmisr_monai.io.limits import check_claimed_size
from rmisr_monai.io.provenance import RESEARCH_NOTICE, Provenance, as_provenance, package_version
from rmisr_monai.io.volume import FourthAxis, Volume, exact_dtype

__all__ = ["DicomTemplate", "SliceSource", "read_dicom", "write_dicom_series", "pixel_padding_value", "SOP_CLASSES"]

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
# Series and equipment attributes that stay true for a resampled image: copied once, from the first source slice.
SERIES_KEYWORDS = PATIENT_STUDY_KEYWORDS + (
    "Laterality", "ProtocolName", "SeriesDate", "SeriesTime", "BodyPartExamined", "PatientPosition",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "StationName", "ContrastBolusAgent",
    "ContrastBolusRoute", "MagneticFieldStrength", "ImagedNucleus", "ImagingFrequency",
)  # fmt: skip
# Acquisition attributes each derived slice copies from the source slice in its plane (uneven series, per-slice
# windows, a tilt that changes...); SliceThickness is handled apart (scaled when the slice axis is upscaled).
SLICE_KEYWORDS = (
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "GantryDetectorTilt", "ConvolutionKernel",
    "SequenceName", "FlipAngle", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "ContentDate",
    "ContentTime", "AcquisitionNumber", "PatientOrientation", "KVP", "XRayTubeCurrent", "ExposureTime", "Exposure",
    "DataCollectionDiameter", "ReconstructionDiameter", "FilterType", "TableHeight", "RotationDirection",
    "SpiralPitchFactor", "CTDIvol", "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "RepetitionTime", "EchoTime", "InversionTime", "EchoTrainLength", "EchoNumbers", "NumberOfAverages",
    "PixelBandwidth", "ReceiveCoilName", "TransmitCoilName", "TriggerTime", "TemporalPositionIdentifier",
    "NumberOfTemporalPositions", "DiffusionBValue",
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
ST_MAX = 1024  # DICOM ST: at most 1024 characters
LT_NOTE = 200  # characters of the provenance summary added to ImageComments (LT holds 10240)
CT_IMAGE_TYPE_3 = ("AXIAL", "LOCALIZER")  # CT Image Module, Image Type value 3 (PS3.3 C.8.2.1.1.1)
MR_IMAGE_TYPE_3 = "OTHER"  # MR Image Module, Image Type value 3 defined term (PS3.3 C.8.3.1.1.1)
# BodyPartExamined values of CID 4031 that are not paired: no Laterality then (dciodvfy: "may not be present")
UNPAIRED_BODY_PARTS = frozenset(
    "CHEST ABDOMEN PELVIS ABDOMENPELVIS CHESTABDOMEN CHESTABDPELVIS HEAD BRAIN SKULL NECK HEADNECK NECKCHEST SPINE "
    "CSPINE TSPINE LSPINE SSPINE COCCYX HEART AORTA LIVER PANCREAS SPLEEN STOMACH COLON RECTUM BLADDER PROSTATE "
    "UTERUS ESOPHAGUS THORAX MEDIASTINUM WHOLEBODY SACRUM".split()
)
# MR Image Module: TriggerTime is Type 2C, present only when ScanOptions says the scan was gated (PS3.3 C.8.3.1)
GATED_SCAN_OPTIONS = frozenset({"PER", "RG", "CG", "PPG", "FC", "PFF", "PFP"})
PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")  # CID 7005 Contributing Equipment Purposes
SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")  # CID 7202


@dataclass(repr=False)
class SliceSource:
    """What a derived slice copies from the source slice in its plane: that file's header (no pixels), the
    per-frame values of an enhanced image under their classic keywords, and the frame number to reference."""

    header: Dataset
    values: Dataset = field(default_factory=Dataset)
    frame: int | None = None  # 1-based ReferencedFrameNumber in a multi-frame file; None for a single frame

    def element(self, keyword: str):
        """The data element for ``keyword`` (per-frame value first), or None."""
        for source in (self.values, self.header):
            if keyword in source:
                return source[keyword]
        return None

    def __repr__(self) -> str:
        return f"SliceSource(frame={self.frame})"  # headers hold patient data: never printed


@dataclass(repr=False)
class DicomTemplate:
    """What a derived series needs from its source: the first slice's header (no pixels), the source grid, and
    per slice (in array order ``k``) what each derived slice copies (:class:`SliceSource`)."""

    header: Dataset
    geometry: Geometry
    shape: tuple[int, int, int]
    frames_summary: str = ""  # plain words for ``rmisr info``: files, frames, stacks (no patient data)
    slices: tuple[SliceSource, ...] = ()
    padding_value: float | None = None  # PixelPaddingValue after the source's rescale (HU for CT)
    rescaled: bool = True  # the source's top level carries Rescale Slope/Intercept (an MR output keeps them then)

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
    """One 2D image of the input: a single-frame file, frame ``number`` (0-based) of a multi-frame file, or tile
    ``tile = (first row, first column, rows, columns)`` of a Siemens mosaic."""

    file: Path
    number: int | None
    position: tuple[float, ...]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, ...]
    slope: float
    intercept: float
    stack: str
    labels: dict[str, float]  # candidate fourth-axis values (temporal position, echo time, b-value...)
    tile: tuple[int, int, int, int] | None = None
    group: Dataset | None = None  # the per-frame functional group of an enhanced image
    tile_index: int = 0  # of a mosaic tile

    @property
    def name(self) -> str:
        if self.tile is not None:
            return f"{self.file.name} tile {self.tile_index + 1}"
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
# Per-frame attributes of an enhanced image that a derived (classic) slice carries at its top level:
# classic keyword -> (functional group sequence, keyword in it).
ENHANCED_PER_FRAME = {
    "SliceThickness": ("PixelMeasuresSequence", "SliceThickness"),
    "WindowCenter": ("FrameVOILUTSequence", "WindowCenter"),
    "WindowWidth": ("FrameVOILUTSequence", "WindowWidth"),
    "AcquisitionDateTime": ("FrameContentSequence", "FrameAcquisitionDateTime"),
    "ConvolutionKernel": ("CTReconstructionSequence", "ConvolutionKernel"),
    "KVP": ("CTXRayDetailsSequence", "KVP"),
    "FlipAngle": ("MRTimingAndRelatedParametersSequence", "FlipAngle"),
    "RepetitionTime": ("MRTimingAndRelatedParametersSequence", "RepetitionTime"),
    "EchoTime": ("MREchoSequence", "EffectiveEchoTime"),
}
# rounding (mm) that decides which frames share a slice position (DICOM positions carry ~1e-4 mm of decimals)
POSITION_DECIMALS = 2
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# Pixel size of a projection image without an image plane, in order of preference.
PROJECTION_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
SIEMENS_MOSAIC_COUNT_TAG = (0x0019, 0x100A)  # private NumberOfImagesInMosaic, when the CSA header lacks it


def _group_value(header: Dataset, group: Dataset | None, sequence: str, keyword: str):
    """``keyword`` from the per-frame functional group, else the shared one, else the top level; None if absent."""
    shared = header.get("SharedFunctionalGroupsSequence")
    for source in (group, shared[0] if shared else None):
        items = source.get(sequence) if source is not None else None
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return header.get(keyword)


def _labels(header: Dataset, group: Dataset | None, enhanced: bool) -> dict[str, float]:
    labels = {}
    for kind, unit, single, in_group in FOURTH_AXIS_TAGS:
        if not enhanced:
            found = header.get(single)
        else:
            found = _group_value(header, group, *in_group) if in_group else None
        if found not in (None, ""):
            labels[f"{kind}|{unit}|{single}"] = float(np.atleast_1d(found)[0])
    return labels


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _is_segmentation(header: Dataset) -> bool:
    return str(header.get("SOPClassUID", "")) == SEGMENTATION_STORAGE


def _refuse_segmentation(file: Path, header: Dataset) -> None:
    """A SEG among image files (or one that cannot be one label map) is refused, saying what it is."""
    if not _is_segmentation(header):
        return
    segments = len(header.get("SegmentSequence", None) or [])
    kind = str(header.get("SegmentationType", "") or "").lower() or "unknown type"
    bits = int(header.get("BitsAllocated", 0) or 0)
    raise InputFileError(
        file, f"a DICOM SEG ({segments} segment(s), {kind}, {bits}-bit frames) is a label map, not an image: "
        "super-resolution does not apply to labels; read it on its own (a BINARY SEG becomes a label volume) and "
        "resample it with nearest-neighbour interpolation"
    )  # fmt: skip


def _read_segmentation(path: Path, header: Dataset) -> Volume:
    """A BINARY DICOM SEG as one label volume: voxel = the number of the segment whose frame covers it, 0 where
    none does; frames placed by their PlanePositionSequence (frames of several segments share positions)."""
    kind = str(header.get("SegmentationType", "") or "").upper()
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    if kind != "BINARY" or per_frame is None or len(per_frame) != n_frames:
        _refuse_segmentation(path, header)
    positions, segments = [], []
    for number, group in enumerate(per_frame):
        position = _group_value(header, group, "PlanePositionSequence", "ImagePositionPatient")
        segment = _group_value(header, group, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if position is None or segment is None:
            raise InputFileError(path, f"DICOM SEG frame {number + 1}: no PlanePositionSequence or segment number")
        positions.append(tuple(np.round(_floats(position), POSITION_DECIMALS + 2)))
        segments.append(int(segment))
    first = per_frame[0]
    orientation = _group_value(header, first, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = _group_value(header, first, "PixelMeasuresSequence", "PixelSpacing")
    thickness = _group_value(header, first, "PixelMeasuresSequence", "SliceThickness")
    between = _group_value(header, first, "PixelMeasuresSequence", "SpacingBetweenSlices")
    if orientation is None or spacing is None:
        raise InputFileError(path, "DICOM SEG without PlaneOrientationSequence / PixelMeasuresSequence")
    planes = list(dict.fromkeys(positions))
    try:
        geometry, order = dicom_stack_geometry(
            _floats(orientation), _floats(spacing), planes, float(between or thickness or 1.0)
        )
    except SliceStackError as exc:
        raise InputFileError(path, f"DICOM SEG: {exc}") from exc
    rows, columns = int(header.Rows), int(header.Columns)
    check_claimed_size(path, (columns, rows, n_frames), 1, None, False, memory_itemsize=1)
    try:
        bits = pydicom.dcmread(path).pixel_array.reshape(n_frames, rows, columns)
    except (RuntimeError, NotImplementedError, ValueError, AttributeError) as exc:
        raise InputFileError(path, f"cannot decode the DICOM SEG frames: {exc}; {DECODER_HINT}") from exc
    dtype = np.uint8 if max(segments) <= np.iinfo(np.uint8).max else np.uint16
    labels = np.zeros((columns, rows, len(planes)), dtype=dtype)
    slot = {plane: order.index(i) for i, plane in enumerate(planes)}
    overlap = 0
    for frame, (position, segment) in enumerate(zip(positions, segments)):
        plane = labels[:, :, slot[position]]
        mask = bits[frame].T.astype(bool)
        overlap += int(np.count_nonzero(mask & (plane != 0) & (plane != segment)))
        plane[mask] = segment
    if overlap:
        raise InputFileError(
            path, f"DICOM SEG: {overlap} voxels belong to more than one segment, so the segments are not one label "
            "map; split them (one segment per file) first"
        )  # fmt: skip
    n_segments = len(header.get("SegmentSequence", None) or []) or len(set(segments))
    template = DicomTemplate(
        header=_template_header(header, thickness), geometry=geometry, shape=labels.shape,
        frames_summary=f"DICOM SEG: {n_frames} binary frames of {n_segments} segment(s), read as labels 0.."
        f"{max(segments)}",
    )  # fmt: skip
    return Volume(
        array=labels, geometry=geometry, modality="OT", source_dtype=labels.dtype, source_path=str(path),
        source_format="dicom", dicom_template=template,
        source_info={"sop_class": SEGMENTATION_STORAGE, "segmentation": True},
    )  # fmt: skip


def _mosaic_count(header: Dataset) -> tuple[int | None, np.ndarray | None]:
    """``(NumberOfImagesInMosaic, SliceNormalVector)`` of a Siemens mosaic from its CSA image header (nibabel's
    reader), else the private tag; None where absent."""
    count, normal = None, None
    try:
        with warnings.catch_warnings():  # nibabel.nicom warns that its DICOM readers are experimental
            warnings.simplefilter("ignore", UserWarning)
            from nibabel.nicom import csareader

        csa = csareader.get_csa_header(header, "image")
        if csa is not None:
            count = csareader.get_n_mosaic(csa)
            normal = csareader.get_slice_normal(csa)
    except Exception as exc:  # a damaged CSA header: fall back to the private tag
        logger.debug("unreadable CSA header: %s", type(exc).__name__)
    if not count and SIEMENS_MOSAIC_COUNT_TAG in header:
        count = header[SIEMENS_MOSAIC_COUNT_TAG].value
    count = int(count) if count else None
    normal = np.asarray(normal, dtype=np.float64) if normal is not None and len(normal) == 3 else None
    return count, normal


def _mosaic_frames(file: Path, header: Dataset) -> list[_Frame] | None:
    """The tiles of a Siemens mosaic as frames (rules in the module docstring); None when not a mosaic."""
    if "MOSAIC" not in [str(v).upper() for v in np.atleast_1d(header.get("ImageType", []) or [])]:
        return None
    count, normal = _mosaic_count(header)
    if not count:
        raise InputFileError(
            file, "Siemens MOSAIC without NumberOfImagesInMosaic (CSA header or (0019,100A)): the slice count is "
            "unknown, so the tiles cannot be read as a volume"
        )  # fmt: skip
    grid = int(np.ceil(np.sqrt(count)))
    rows, columns = int(header.Rows), int(header.Columns)
    if rows % grid or columns % grid:
        raise InputFileError(
            file, f"Siemens MOSAIC of {count} images in {grid} x {grid} tiles, but its {rows} x {columns} pixels do "
            f"not divide into {grid} x {grid} tiles: the pixel data do not match the mosaic header"
        )  # fmt: skip
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if header.get(keyword) is None:
            raise InputFileError(file, f"Siemens MOSAIC: {keyword} is missing: the slice positions are unknown")
    tile_rows, tile_columns = rows // grid, columns // grid
    orientation = _floats(header.ImageOrientationPatient)
    spacing = _floats(header.PixelSpacing)
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if normal is None or np.linalg.norm(normal) == 0:
        normal = np.cross(row_dir, col_dir)
    normal = normal / np.linalg.norm(normal)
    # Siemens writes the position of the mosaic's first pixel as if the tile were the whole mosaic (nibabel
    # dicomwrappers.MosaicWrapper.image_position, dcm2niix nii_SaveMosaic): move it by half the size difference
    first = np.asarray(_floats(header.ImagePositionPatient)) + (
        col_dir * spacing[0] * (rows - tile_rows) / 2.0 + row_dir * spacing[1] * (columns - tile_columns) / 2.0
    )
    step = float(header.get("SpacingBetweenSlices") or header.get("SliceThickness") or 1.0)
    slope, intercept = float(header.get("RescaleSlope", 1) or 1), float(header.get("RescaleIntercept", 0) or 0)
    labels = _labels(header, None, False)
    frames = []
    for t in range(count):
        frames.append(
            _Frame(
                file=file, number=None, position=tuple(first + t * step * normal), orientation=orientation,
                pixel_spacing=spacing, slope=slope, intercept=intercept, stack="", labels=labels,
                tile=((t // grid) * tile_rows, (t % grid) * tile_columns, tile_rows, tile_columns), tile_index=t,
            )
        )  # fmt: skip
    return frames


def _dose_frames(file: Path, header: Dataset, n_frames: int) -> list[_Frame]:
    """The frames of a multi-frame RT Dose grid placed by GridFrameOffsetVector (see the module docstring)."""
    offsets = [float(v) for v in np.atleast_1d(header.GridFrameOffsetVector)]
    if len(offsets) != n_frames:
        raise InputFileError(
            file, f"GridFrameOffsetVector has {len(offsets)} values for {n_frames} frames: the frame positions are "
            "unknown"
        )  # fmt: skip
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if header.get(keyword) is None:
            raise InputFileError(file, f"RT Dose: {keyword} is missing: the frame positions are unknown")
    orientation = _floats(header.ImageOrientationPatient)
    normal = np.cross(orientation[:3], orientation[3:])
    first = np.asarray(_floats(header.ImagePositionPatient))
    # offsets are relative to the first frame when they start at 0, absolute along the normal otherwise: their
    # differences place the frames either way
    scaling = float(header.get("DoseGridScaling", 1) or 1)
    return [
        _Frame(file=file, number=f, position=tuple(first + (offsets[f] - offsets[0]) * normal),
               orientation=orientation, pixel_spacing=_floats(header.PixelSpacing), slope=scaling, intercept=0.0,
               stack="", labels={})
        for f in range(n_frames)
    ]  # fmt: skip


def _projection_frame(file: Path, header: Dataset) -> _Frame | None:
    """A single-frame image without an image plane as a 1-slice volume, when its pixel size is known."""
    keyword = next((k for k in PROJECTION_SPACING_TAGS if header.get(k)), None)
    if keyword is None:
        return None
    spacing = _floats(header.get(keyword))
    if len(spacing) != 2 or min(spacing) <= 0:
        return None
    return _Frame(
        file=file, number=None, position=(0.0, 0.0, 0.0), orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        pixel_spacing=spacing, slope=float(header.get("RescaleSlope", 1) or 1),
        intercept=float(header.get("RescaleIntercept", 0) or 0), stack="", labels={},
    )  # fmt: skip


def _frames_of(file: Path, header: Dataset, alone: bool = False) -> list[_Frame]:
    """The frames of one image file with their geometry (functional groups for enhanced multi-frame images);
    ``alone``: the file is the whole input (only then may it be a projection image without an image plane)."""
    _refuse_segmentation(file, header)
    if int(header.get("SamplesPerPixel", 1)) != 1:
        raise InputFileError(file, f"expected a 3D scalar volume, got {header.SamplesPerPixel} samples per pixel")
    mosaic = _mosaic_frames(file, header)
    if mosaic is not None:
        return mosaic
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if n_frames > 1 and per_frame is None and header.get("GridFrameOffsetVector") is not None:
        return _dose_frames(file, header, n_frames)
    if n_frames > 1 and (per_frame is None or len(per_frame) != n_frames):
        raise InputFileError(
            file, f"multi-frame DICOM ({n_frames} frames) without per-frame functional groups or a "
            "GridFrameOffsetVector: the frame positions are unknown (enhanced multi-frame images and RT Dose grids "
            "are supported)"
        )  # fmt: skip
    plane = [header.get(k) for k in ("ImagePositionPatient", "ImageOrientationPatient")]
    if alone and per_frame is None and plane == [None, None]:
        frame = _projection_frame(file, header)
        if frame is not None:
            return [frame]
    frames = []
    for number in range(n_frames):
        group = per_frame[number] if per_frame is not None else None
        label = file.name if n_frames == 1 else f"{file.name} frame {number + 1}"

        def value(keyword: str, group=group):
            return _group_value(header, group, ENHANCED_TAGS.get(keyword, ""), keyword)

        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if value(keyword) is None:
                where = f" ({ENHANCED_TAGS[keyword]})" if per_frame is not None else ""
                hint = "" if per_frame is not None else (
                    " (a projection image needs PixelSpacing or ImagerPixelSpacing to be read as one slice)"
                )  # fmt: skip
                raise InputFileError(file, f"{label}: {keyword}{where} is missing: the slice position is unknown{hint}")
        frames.append(
            _Frame(
                file=file,
                number=None if per_frame is None else number,
                position=_floats(value("ImagePositionPatient")),
                orientation=_floats(value("ImageOrientationPatient")),
                pixel_spacing=_floats(value("PixelSpacing")),
                slope=float(value("RescaleSlope") or 1),
                intercept=float(value("RescaleIntercept") or 0),
                stack=str(value("StackID") or ""),
                labels=_labels(header, group, per_frame is not None),
                group=group,
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
        raise InputFileError(
            path,
            f"{len(stacks)} stacks of frames (pick one with stack=N): {listing}",
            f"{len(stacks)} stacks of frames (pick one with --stack N): {listing}",
        )
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
        if frame.tile is not None:
            row, column, rows, columns = frame.tile
            stored = stored[row : row + rows, column : column + columns]
        return (stored.astype(np.float64) * frame.slope + frame.intercept).T


def _frames_summary(files: list[tuple[Path, Dataset]], all_frames: list[_Frame], frames: list[_Frame]) -> str:
    multi = sum(int(h.get("NumberOfFrames", 1) or 1) > 1 for _, h in files)
    text = f"{len(all_frames)} frames in {len(files)} file(s)"
    if all_frames[0].tile is not None:
        grid = int(np.ceil(np.sqrt(len(all_frames) / len(files))))
        text += f" (Siemens MOSAIC: {grid} x {grid} tiles per file, read as slices)"
    elif multi and all(h.get("PerFrameFunctionalGroupsSequence") is None for _, h in files):
        text += f" ({multi} multi-frame placed by GridFrameOffsetVector)"
    elif multi:
        text += f" ({multi} enhanced multi-frame)"
    elif files[0][1].get("ImagePositionPatient") is None:
        text += " (a projection image without an image plane: one slice, rows and columns along L and P, origin 0)"
    stacks = _stacks(all_frames)
    if len(stacks) > 1:
        chosen = next(key for key, group in stacks.items() if group[0] is frames[0])
        text += f"; {len(stacks)} stacks, stack {chosen} read ({len(frames)} frames)"
    return text


def _template_header(header: Dataset, thickness) -> Dataset:
    """The source header a derived series copies from, without the (large) functional groups (a new dataset:
    the source header is left as it is)."""
    skip = {0x52009229, 0x52009230}  # SharedFunctionalGroupsSequence, PerFrameFunctionalGroupsSequence
    stripped = Dataset({tag: element for tag, element in header.items() if int(tag) not in skip})
    if hasattr(header, "file_meta"):
        stripped.file_meta = header.file_meta
    if thickness is not None and not stripped.get("SliceThickness"):
        stripped.SliceThickness = thickness
    return stripped


def _as_classic(keyword: str, value):
    """A functional-group value under its classic keyword's VR (decimal strings fitted to 16 characters)."""
    if dictionary_VR(keyword) == "DS":
        values = [_ds(float(v)) for v in np.atleast_1d(value)]
        return values if len(values) > 1 else values[0]
    return value


def _slice_sources(
    frames: list[_Frame], order: list[int], headers: dict[Path, Dataset], stripped: dict[Path, Dataset]
) -> tuple[SliceSource, ...]:
    """One :class:`SliceSource` per slice ``k`` (``frames[order[k]]``)."""
    sources = []
    for index in order:
        frame = frames[index]
        values = Dataset()
        if frame.group is not None:
            for keyword, (sequence, inner) in ENHANCED_PER_FRAME.items():
                found = _group_value(headers[frame.file], frame.group, sequence, inner)
                if found not in (None, ""):
                    setattr(values, keyword, _as_classic(keyword, found))
        multi = int(headers[frame.file].get("NumberOfFrames", 1) or 1) > 1
        number = frame.number + 1 if multi and frame.number is not None else None
        sources.append(SliceSource(stripped[frame.file], values, number))
    return tuple(sources)


def _template(
    path: Path,
    files: list[tuple[Path, Dataset]],
    all_frames: list[_Frame],
    frames: list[_Frame],
    first_volume: list[_Frame],
    order: list[int],
    geometry: Geometry,
    shape: tuple[int, ...],
    thickness,
) -> DicomTemplate:
    """The :class:`DicomTemplate` of a read series (headers without pixels or functional groups)."""
    headers = dict(files)
    used = {first_volume[i].file for i in order}
    stripped = {file: _template_header(headers[file], thickness) for file in used}
    first = first_volume[order[0]]
    header = stripped[first.file]
    return DicomTemplate(
        header=header,
        geometry=geometry,
        shape=tuple(int(n) for n in shape),
        frames_summary=_frames_summary(files, all_frames, frames),
        slices=_slice_sources(first_volume, order, headers, stripped),
        padding_value=_padding_value(header, first),
        rescaled="RescaleSlope" in header or "RescaleIntercept" in header,
    )


def _padding_value(header: Dataset, frame: _Frame) -> float | None:
    """PixelPaddingValue after the rescale; a signed image's value written as unsigned (GE: 63536 for -2000) is
    read as the signed value it stands for."""
    value = header.get("PixelPaddingValue")
    if value is None or value == "":
        return None
    value = int(np.atleast_1d(value)[0])
    if int(header.get("PixelRepresentation", 0) or 0) == 1 and value > np.iinfo(np.int16).max:
        value -= 1 << 16
    return value * frame.slope + frame.intercept


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
        if _is_segmentation(header):
            return _read_segmentation(path, header)
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
    all_frames = [f for file, header in files for f in _frames_of(file, header, alone=len(files) == 1)]
    if all_frames[0].tile is not None:  # a mosaic: the slices are its tiles
        rows, columns = all_frames[0].tile[2:]
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
    bits = int(first.get("BitsAllocated", 16) or 16)
    stored_bytes = max(1, bits // 8)
    # compressed or packed (bits < 8) pixels: memory bound only
    on_disk = sum(file.stat().st_size for file in headers) if raw and bits >= 8 else None
    check_claimed_size(path, (columns, rows, n_frames), stored_bytes, on_disk, False, memory_itemsize=8)
    pixels = _PixelSource(headers)
    array = np.empty((columns, rows, len(order), len(volumes)), dtype=np.float64)
    for t, volume_frames in enumerate(volumes):
        for k, index in enumerate(order):
            array[:, :, k, t] = pixels(volume_frames[index])
    stored_dtype = np.result_type(*pixels.dtypes)
    if any(f.slope != int(f.slope) or f.intercept != int(f.intercept) for f in frames):
        stored_dtype = np.result_type(stored_dtype, np.float32)  # e.g. DoseGridScaling 1e-6: Gy, not integers
    source_dtype = exact_dtype(array, stored_dtype)
    modality = str(first.get("Modality", "")).upper()
    template = _template(path, files, all_frames, frames, volumes[0], order, geometry, array.shape[:3], thickness)
    return Volume(
        array=(array[..., 0] if fourth_axis is None else array).astype(source_dtype),
        geometry=geometry,
        modality=modality if modality in ("CT", "MR") else "OT",
        source_dtype=source_dtype,
        source_path=str(path),
        source_format="dicom",
        dicom_template=template,
        fourth_axis=fourth_axis,
        source_info={"sop_class": str(first.get("SOPClassUID", "") or "")},
    )


def _ds(value: float) -> str:
    """A decimal string (DICOM DS, at most 16 characters) with as many significant digits as fit."""
    for digits in range(15, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DICOM decimal string")


def _stored_pixels(values: np.ndarray, rescale: bool = True) -> tuple[np.ndarray, float, float, float]:
    """Integers to store, ``(slope, intercept)`` so that ``stored * slope + intercept`` gives the values back, and
    the factor the values were divided by when no rescale may be written (else 1).

    With ``rescale`` (CT, secondary capture): integer values that fit 16 bits are stored as they are (slope 1,
    intercept 0; int16 when any is negative); anything else is mapped linearly onto uint16 (0 .. 65535).
    Without (the MR Image IOD has no Rescale Slope/Intercept): values are rounded to integers and stored as they are
    when they fit int16/uint16; otherwise divided by the smallest factor that makes them fit (reported, so that
    the writer can say so in DerivationDescription)."""
    low, high = float(values.min()), float(values.max())
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(np.mod(values, 1) == 0))
    if not rescale:
        rounded = values if integral else np.rint(values.astype(np.float64))
        low, high = float(rounded.min()), float(rounded.max())
        if low >= np.iinfo(np.int16).min and high <= np.iinfo(np.int16).max:
            return rounded.astype(np.int16 if low < 0 else np.uint16), 1.0, 0.0, 1.0
        if low >= 0 and high <= np.iinfo(np.uint16).max:
            return rounded.astype(np.uint16), 1.0, 0.0, 1.0
        limit = np.iinfo(np.int16).max if low < 0 else np.iinfo(np.uint16).max
        factor = float(_ds(max(abs(low), abs(high)) / limit * (1 + 1e-9)))
        stored = np.clip(np.rint(values.astype(np.float64) / factor), -limit - 1 if low < 0 else 0, limit)
        return stored.astype(np.int16 if low < 0 else np.uint16), 1.0, 0.0, factor
    if integral and low >= np.iinfo(np.int16).min and high <= np.iinfo(np.int16).max:
        signed = low < 0 or values.dtype in (np.int8, np.int16)
        return values.astype(np.int16 if signed else np.uint16), 1.0, 0.0, 1.0
    if integral and low >= 0 and high <= np.iinfo(np.uint16).max:
        return values.astype(np.uint16), 1.0, 0.0, 1.0
    # DS values hold at most 16 characters: round the coefficients first, then quantise with the rounded ones
    intercept = float(_ds(low))
    slope = float(_ds((high - intercept) / 65535.0)) if high > intercept else 1.0
    stored = np.clip(np.rint((values.astype(np.float64) - intercept) / slope), 0, 65535)
    return stored.astype(np.uint16), slope, intercept, 1.0


def _series_description(volume: Volume, template: DicomTemplate | None) -> str:
    """Source description + `` SR x2`` (one factor when all axes agree, else ``x1x1x2`` in (i, j, k) order); no
    leading or trailing spaces."""
    if template is None:
        return "rmisr_monai SR"
    factors = [n_out / n_in for n_out, n_in in zip(volume.array.shape, template.shape)]
    label = f"x{factors[0]:g}" if len(set(factors)) == 1 else "x" + "x".join(f"{f:g}" for f in factors)
    suffix = f" SR {label}"
    base = str(template.header.get("SeriesDescription", "") or "").strip()
    return (base[: LO_MAX - len(suffix)] + suffix).strip()


def _image_type(modality: str, source: Dataset) -> list[str]:
    """DERIVED\\\\SECONDARY, then the source's values 3 ... (MOSAIC dropped: the output is not one), with the value 3
    the IOD requires: AXIAL or LOCALIZER for CT (AXIAL when the source has another), OTHER for MR without one."""
    values = [str(v) for v in np.atleast_1d(source.get("ImageType", None) or [])]
    rest = [v for v in values[2:] if v.upper() != "MOSAIC"]
    if modality == "CT" and (not rest or rest[0].upper() not in CT_IMAGE_TYPE_3):
        rest = ["AXIAL", *rest[1:]]
    if modality == "MR" and not rest:
        rest = [MR_IMAGE_TYPE_3]
    return ["DERIVED", "SECONDARY", *rest]


def _code(value: str, scheme: str, meaning: str) -> DicomSequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return DicomSequence([item])


def _derivation_text(provenance: Provenance | None, divided_by: float) -> str:
    text = provenance.text() if provenance is not None else (
        f"Super-resolved by rmisr_monai {package_version()}. {RESEARCH_NOTICE}"
    )  # fmt: skip
    if divided_by != 1.0:
        text = f"Stored values are the intensities divided by {_ds(divided_by)}. " + text
    return text[:ST_MAX]


def _provenance_elements(ds: Dataset, source: Dataset, provenance: Provenance | None, text: str) -> None:
    """DerivationDescription, ContributingEquipmentSequence (+ ours), SoftwareVersions (+ ours), ImageComments."""
    version = provenance.package_version if provenance is not None else package_version()
    ds.DerivationDescription = text
    equipment = Dataset()
    equipment.Manufacturer = "rmisr_monai"
    if provenance is not None:
        equipment.ManufacturerModelName = provenance.model[:LO_MAX]
    equipment.SoftwareVersions = f"rmisr_monai {version}"[:LO_MAX]
    equipment.ContributionDateTime = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
    equipment.ContributionDescription = text
    equipment.PurposeOfReferenceCodeSequence = _code(*PROCESSING_EQUIPMENT)
    earlier = [copy.deepcopy(item) for item in (source.get("ContributingEquipmentSequence", None) or [])]
    ds.ContributingEquipmentSequence = DicomSequence([*earlier, equipment])
    software = [str(v) for v in np.atleast_1d(source.get("SoftwareVersions", None) or []) if str(v)]
    ds.SoftwareVersions = [*software, f"rmisr_monai {version}"[:LO_MAX]]
    comment = RESEARCH_NOTICE if provenance is None else f"{RESEARCH_NOTICE} {provenance.short(LT_NOTE)}"
    ds.ImageComments = comment


def _filled_uid(ds: Dataset, keyword: str) -> None:
    """A Type 1 UID: a new one when the source's is missing or empty (a PACS rejects an empty one)."""
    if not str(ds.get(keyword, "") or "").strip():
        setattr(ds, keyword, generate_uid())


def _series_dataset(volume: Volume, template: DicomTemplate | None) -> Dataset:
    """Attributes shared by every slice of the derived series."""
    source = template.header if template is not None else Dataset()
    ds = Dataset()
    for keyword in SERIES_KEYWORDS:
        if keyword in source:
            ds[keyword] = copy.deepcopy(source[keyword])
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator"):  # fmt: skip
        if keyword not in ds:
            setattr(ds, keyword, "")  # type 2: present, empty -- no patient data invented
    body_part = str(ds.get("BodyPartExamined", "") or "").upper().replace(" ", "")
    if "Laterality" not in ds and body_part not in UNPAIRED_BODY_PARTS:
        ds.Laterality = ""  # type 2C, needed unless the body part is unpaired: present and empty says "unknown"
    _filled_uid(ds, "StudyInstanceUID")
    _filled_uid(ds, "FrameOfReferenceUID")
    for keyword, value in REQUIRED_DEFAULTS[volume.modality].items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    if volume.modality == "OT":  # no image plane module in secondary capture: PatientOrientation is type 2 then
        ds.PatientOrientation = ""
    ds.Modality = volume.modality
    ds.SOPClassUID = SOP_CLASSES[volume.modality]
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(source.get("SeriesNumber", 0) or 0) + DERIVED_SERIES_NUMBER_OFFSET
    ds.SeriesDescription = _series_description(volume, template)
    ds.ImageType = _image_type(volume.modality, source)
    now = datetime.datetime.now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(volume.array.shape[1]), int(volume.array.shape[0])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def _regular_thickness(volume: Volume) -> float:
    steps = volume.geometry.plane_steps(volume.array.shape[2])
    return float(np.median(steps)) if steps.size else volume.geometry.spacing[2]


def _source_reference(source: SliceSource) -> Dataset | None:
    """A SourceImageSequence item for one source slice (None when the source has no SOP instance UID)."""
    uid = str(source.header.get("SOPInstanceUID", "") or "").strip()
    sop_class = str(source.header.get("SOPClassUID", "") or "").strip()
    if not uid or not sop_class:
        return None
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = uid
    if source.frame is not None:
        item.ReferencedFrameNumber = source.frame
    item.PurposeOfReferenceCodeSequence = _code(*SOURCE_FOR_PROCESSING)
    return item


def _copy_slice_attributes(ds: Dataset, volume: Volume, template: DicomTemplate, position: float) -> None:
    """The acquisition attributes of the source slice nearest to continuous source index ``position``, its
    thickness (scaled by the slice-count ratio when the slice axis was upscaled), and the source slices whose
    planes bracket it as SourceImageSequence."""
    slices = template.slices
    nearest = slices[int(np.clip(np.rint(position), 0, len(slices) - 1))]
    options = nearest.element("ScanOptions")
    values = options.value if options is not None and options.value not in (None, "") else []
    gated = bool({str(v) for v in np.atleast_1d(values)} & GATED_SCAN_OPTIONS)
    for keyword in SLICE_KEYWORDS:
        element = nearest.element(keyword)
        if element is not None and (keyword != "TriggerTime" or gated):
            ds[keyword] = copy.deepcopy(element)
    thickness = nearest.element("SliceThickness")
    value = thickness.value if thickness is not None else None
    if value not in (None, ""):
        ratio = template.shape[2] / volume.array.shape[2]
        ds.SliceThickness = _ds(float(value) * ratio)
    else:
        ds.SliceThickness = _ds(_regular_thickness(volume))
    bracket = sorted({int(np.floor(position)), int(np.ceil(position))})
    items = [_source_reference(slices[i]) for i in bracket if 0 <= i < len(slices)]
    items = [item for item in items if item is not None]
    if items:
        ds.SourceImageSequence = DicomSequence(items)


def _instance_numbers(template: DicomTemplate | None, n_slices: int) -> list[int]:
    """1 .. n along the slice axis, or n .. 1 when the source numbered its slices against it (GE, many others):
    readers that anchor an uncorrected tilted stack at instance 1 (dcm2niix) then place the output as the source."""
    numbers = [s.header.get("InstanceNumber") for s in template.slices] if template is not None else []
    try:
        descending = len(numbers) > 1 and int(numbers[0]) > int(numbers[-1])
    except (TypeError, ValueError):
        descending = False
    return list(range(n_slices, 0, -1)) if descending else list(range(1, n_slices + 1))


def pixel_padding_value(volume: Volume) -> float | None:
    """The source's PixelPaddingValue after its rescale (HU for CT; GE's unsigned spelling of a signed value read
    as meant), or None: what no output voxel should go below (interpolation undershoots it at the field-of-view
    edge). :func:`write_dicom_series` clips to it; other writers and the engine can call this."""
    template = volume.dicom_template
    return template.padding_value if isinstance(template, DicomTemplate) else None


def _padding_element(pad: float | None, stored: np.ndarray, slope: float, intercept: float, factor: float):
    """PixelPaddingValue in the output's stored values (VR SS for signed pixels, US otherwise), or None."""
    if pad is None:
        return None
    value = float(np.rint((pad / factor - intercept) / slope))
    info = np.iinfo(stored.dtype)
    if not info.min <= value <= info.max:
        return None
    return DataElement(0x00280120, "SS" if stored.dtype == np.int16 else "US", int(value))


def write_dicom_series(volume: Volume, folder: Path, provenance: Provenance | Any | None = None) -> None:
    """Write ``volume`` (values already in the output dtype) as a derived series into the existing ``folder``.

    One file per slice (``IM00001.dcm`` ...), single-frame even when the source was an enhanced multi-frame image
    or a mosaic, each slice in its own plane (tilted and unevenly spaced stacks keep every slice's position:
    in-plane SR moves the first pixel centre by the half-pixel rule only), Explicit VR Little Endian, uncompressed.

    * UIDs: new SeriesInstanceUID and SOPInstanceUIDs; StudyInstanceUID and FrameOfReferenceUID (and the patient and
      study modules) kept from the source DICOM, else -- absent or empty -- generated; type 2 patient tags empty.
    * Per slice, from the source slice in its plane (:class:`SliceSource`): :data:`SLICE_KEYWORDS` (windows,
      GantryDetectorTilt, kernel, sequence, flip angle, acquisition date and time, PatientOrientation, ...),
      its own SliceThickness (scaled by ``n_source / n_output`` when the slice axis was upscaled), and a
      SourceImageSequence naming the source slice(s) whose planes bracket it (with the frame number of a
      multi-frame source). Once, from the first slice: :data:`SERIES_KEYWORDS` (Laterality, ProtocolName, series
      date and time, equipment...).
    * ImageType ``DERIVED\\\\SECONDARY`` + the source's value 3 onwards as the IOD requires (:func:`_image_type`).
    * Pixels (:func:`_stored_pixels`): CT and secondary capture with Rescale Slope/Intercept; MR without them (the
      MR Image IOD has none) unless the source carried them; values below the source's PixelPaddingValue are
      clipped up to it and PixelPaddingValue is written in the stored values.
    * SeriesDescription: the source's, stripped, + `` SR x<factor>``; the research-use notice in ImageComments;
      provenance (:class:`rmisr_monai.io.provenance.Provenance`, or a mapping) in DerivationDescription, a
      ContributingEquipmentSequence item (Processing Equipment) and SoftwareVersions.
    """
    provenance = as_provenance(provenance)
    template = volume.dicom_template if isinstance(volume.dicom_template, DicomTemplate) else None
    values = volume.array
    pad = template.padding_value if template is not None else None
    if pad is not None:
        values = np.maximum(values, np.asarray(pad).astype(values.dtype))
    rescale = volume.modality != "MR" or (template is not None and template.rescaled)
    stored, slope, intercept, factor = _stored_pixels(values, rescale)
    orientation, pixel_spacing, positions, locations = dicom_slice_planes(volume.geometry, volume.array.shape[2])
    series = _series_dataset(volume, template)
    _provenance_elements(series, template.header if template else Dataset(), provenance,
                         _derivation_text(provenance, factor))  # fmt: skip
    series.PixelRepresentation = int(stored.dtype == np.int16)
    if rescale:
        series.RescaleSlope, series.RescaleIntercept = _ds(slope), _ds(intercept)
        # Hounsfield units for CT; "US" (unspecified) for secondary capture, whose Modality LUT macro needs one
        if volume.modality != "MR":
            series.RescaleType = "HU" if volume.modality == "CT" else "US"
    padding = _padding_element(pad, stored, slope, intercept, factor)
    if padding is not None:
        series[padding.tag] = padding
    series.ImageOrientationPatient = [_ds(v) for v in orientation]
    series.PixelSpacing = [_ds(v) for v in pixel_spacing]
    steps = volume.geometry.plane_steps(stored.shape[2])
    if volume.geometry.is_regular:  # an uneven stack has no single spacing: each slice keeps its own position
        series.SpacingBetweenSlices = _ds(float(steps[0]) if steps.size else volume.geometry.spacing[2])
    series.SliceThickness = _ds(_regular_thickness(volume))
    sources = None
    if template is not None and len(template.slices) == template.shape[2]:
        sources = slice_correspondence(template.geometry, template.shape[2], volume.geometry, stored.shape[2])
    numbers = _instance_numbers(template, stored.shape[2])
    for k in range(stored.shape[2]):
        ds = copy.deepcopy(series)
        if sources is not None:
            _copy_slice_attributes(ds, volume, template, float(sources[k]))
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.SliceLocation = _ds(locations[k])
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype(stored.dtype.newbyteorder("<")).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.save_as(folder / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
