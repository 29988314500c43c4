"""Scanner-style DICOM built with pydicom from a real single-frame series: small crops, gantry tilt, uneven
spacing, enhanced multi-frame files (the shared data has no real tilted or geometry-bearing enhanced file)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from tests.io.conftest import GE_SERIES, series_files

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
CROP = (200, 48, 180, 64)  # first row, rows, first column, columns: abdomen, not air; rows != columns on purpose
TILT_Y_PER_SLICE = 1.5  # mm across the plane per 5 mm slice step: about 17 degrees


def cropped(ds: Dataset, crop: tuple[int, int, int, int] = CROP) -> Dataset:
    """``ds`` cut to ``crop``; ImagePositionPatient moved to the new first pixel (from the DICOM tags)."""
    r0, rows, c0, cols = crop
    pixels = ds.pixel_array[r0 : r0 + rows, c0 : c0 + cols].copy()
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=float) + iop[:3] * col_spacing * c0 + iop[3:] * row_spacing * r0
    ds = copy.deepcopy(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = pixels.tobytes()
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    return ds


def real_slices(n: int = 5, series: str = GE_SERIES) -> list[Dataset]:
    """``n`` consecutive slices of a real series (ascending z), cropped."""
    return [cropped(pydicom.dcmread(f)) for f in series_files(series)[:n]]


def save_series(slices: Sequence[Dataset], folder: Path, edit: Callable[[int, Dataset], None] | None = None) -> Path:
    """Write the slices into ``folder`` (one file each, reversed order on disk), after ``edit(k, ds)``."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, ds in enumerate(slices):
        ds = copy.deepcopy(ds)
        if edit is not None:
            edit(k, ds)
        ds.save_as(folder / f"slice{len(slices) - k:03d}.dcm", enforce_file_format=True)
    return folder


def tilt(k: int, ds: Dataset) -> None:
    """Advance slice ``k`` along the scanner y axis as a tilted gantry does (positions leave the slice normal)."""
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y + TILT_Y_PER_SLICE * k, z]


def positions(folder: Path) -> dict[int, np.ndarray]:
    """ImagePositionPatient by InstanceNumber of the files in ``folder``."""
    found = {}
    for f in folder.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        found[int(ds.InstanceNumber)] = np.asarray(ds.ImagePositionPatient, dtype=float)
    return found


def _item(**values) -> DicomSequence:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return DicomSequence([item])


def enhanced(
    slices: Sequence[Dataset],
    order: Sequence[int] | None = None,
    stacks: Sequence[str] = ("1",),
    rle: bool = True,
    times: int = 1,
) -> Dataset:
    """An Enhanced CT image holding ``slices`` as frames (in ``order``), geometry only in the functional groups
    (orientation and pixel measures shared, position and rescale per frame); ``stacks`` repeats the frames as
    further StackIDs, each shifted 1000 mm so that they do not overlap; ``times`` repeats them at the same positions
    as temporal positions 1, 2, ... (pixels of time t: the slice's values + 100 t); RLE Lossless compressed."""
    order = list(order) if order is not None else list(range(len(slices)))
    first = slices[0]
    ds = copy.deepcopy(first)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "RescaleSlope", "RescaleIntercept", "SliceLocation", "InstanceNumber"):  # fmt: skip
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    shared = Dataset()
    shared.PixelMeasuresSequence = _item(PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness)
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=first.ImageOrientationPatient)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames, pixels = [], []
    for (s, stack), t, index in itertools.product(enumerate(stacks), range(times), order):
        src = slices[index]
        group = Dataset()
        x, y, z = (float(v) for v in src.ImagePositionPatient)
        group.PlanePositionSequence = _item(ImagePositionPatient=[x, y, z + 1000.0 * s])
        group.PixelValueTransformationSequence = _item(
            RescaleSlope=src.RescaleSlope, RescaleIntercept=src.RescaleIntercept, RescaleType="HU"
        )
        group.FrameContentSequence = _item(StackID=stack, InStackPositionNumber=index + 1, TemporalPositionIndex=t + 1)
        frames.append(group)
        pixels.append(src.pixel_array + 100 * t)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack(pixels).tobytes()
    if rle:
        ds.compress(RLELossless)
    return ds
