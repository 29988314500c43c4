"""The in-memory volume every reader returns and every writer takes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmisr_monai.io.geometry import Geometry

__all__ = ["Volume", "FourthAxis", "MODALITIES", "FILE_FORMATS", "NIFTI_TIME_UNITS", "exact_dtype", "file_format"]

MODALITIES = ("CT", "MR", "OT")
# Single-file formats by file name ending (lower case); a folder is a DICOM series.
FILE_FORMATS = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}
# NIfTI xyzt_units time codes (nibabel names) <-> FourthAxis units
NIFTI_TIME_UNITS = {"sec": "s", "msec": "ms", "usec": "us", "hz": "hz", "ppm": "ppm", "rads": "rad/s"}
# Candidates for the dtype of rescaled integer values, tried in this order after the stored dtype.
_INTEGER_CANDIDATES = (np.int16, np.uint16, np.int32)


def file_format(path: str | os.PathLike) -> str | None:
    """``"nifti"``, ``"nrrd"`` or ``"mha"`` from the end of a file name (any case); None for anything else."""
    name = Path(path).name.lower()
    return next((kind for suffix, kind in FILE_FORMATS.items() if name.endswith(suffix)), None)


def exact_dtype(values: np.ndarray, stored: np.dtype) -> np.dtype:
    """The dtype that holds rescaled ``values`` exactly: the stored dtype when it does (no rescale, or a rescale
    that stays in range), else the first of int16, uint16, int32 that does (e.g. uint16 + intercept -1024 ->
    int16), else float32 (non-integer values, such as a slope of 2.0078)."""
    stored = np.dtype(stored).newbyteorder("=")
    if np.issubdtype(stored, np.floating) or values.size == 0:
        return stored
    if not np.issubdtype(values.dtype, np.integer) and not np.all(np.mod(values, 1) == 0):
        return np.dtype(np.float32)
    low, high = values.min(), values.max()
    for candidate in (stored, *_INTEGER_CANDIDATES):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.float64)


@dataclass(frozen=True)
class FourthAxis:
    """The fourth axis of a 4D volume (time series, echoes, diffusion weightings...), kept as it was read.

    Attributes:
        kind: what the volumes are, in words: ``"time"`` (NIfTI with a time unit, DICOM temporal positions),
            ``"echo"``, ``"b-value"``, or ``"volumes"`` when the file does not say.
        step: distance between volumes in ``unit`` (NIfTI ``pixdim[4]``, e.g. the TR of an fMRI run); 0 if unknown.
        unit: ``"s"``, ``"ms"``, ``"us"``, ``"hz"``, ``"ppm"``, ``"rad/s"`` or ``""`` (NIfTI ``xyzt_units`` time part).
        offset: value of the first volume in ``unit`` (NIfTI ``toffset``).
        values: one value per volume when the source lists them (echo times in ms, b-values in s/mm^2...).
        slice_duration: NIfTI ``slice_duration`` (time to acquire one slice, in ``unit``), 0 if unknown.
    """

    kind: str = "volumes"
    step: float = 0.0
    unit: str = ""
    offset: float = 0.0
    values: tuple[float, ...] | None = None
    slice_duration: float = 0.0

    def describe(self, n_volumes: int) -> str:
        """Plain words, e.g. ``"12 volumes along time, every 2 s"``."""
        text = f"{n_volumes} volumes along {self.kind}"
        if self.step:
            text += f", every {self.step:g} {self.unit}".rstrip()
        if self.values:
            text += ": " + ", ".join(f"{v:g}" for v in self.values)
        return text


@dataclass
class Volume:
    """A 3D scalar image (or a series of them along a fourth axis) with its world geometry.

    Attributes:
        array: 3D array, axes ``(i, j, k)`` = ITK/NIfTI index order (NOT SimpleITK's ``GetArrayFromImage``
            ``(k, j, i)`` order); values after the file's rescaling (HU for CT). A 4D volume is ``(i, j, k, t)``,
            every ``array[..., t]`` on the same grid, and has ``fourth_axis``.
        geometry: spacing / origin / direction, see :mod:`rmisr_monai.io.geometry`.
        modality: ``"CT"``, ``"MR"`` or ``"OT"`` (unknown): the DICOM Modality, or for other formats the heuristic
            of :func:`rmisr_monai.io.read.guess_modality`.
        source_dtype: the dtype that holds the input's values exactly after rescaling (e.g. int16 for CT HU
            stored as uint16 with intercept -1024; float32 when the rescaled values are not integers).
        source_path: the file or folder that was read.
        source_format: ``"nifti"``, ``"nrrd"``, ``"mha"`` or ``"dicom"``.
        dicom_template: for DICOM input, the :class:`rmisr_monai.io.dicom.DicomTemplate` (headers without pixels)
            used to write a derived series; never printed.
        fourth_axis: for a 4D volume, what its fourth axis is (:class:`FourthAxis`); None for 3D.
        source_info: what the reader learnt of the file besides voxels and geometry, for the writers and the label-map
            check (no patient data): NIfTI ``descrip``, ``sform_code``, ``qform_code``, ``intent_code``; NRRD / MHA
            ``segmentation`` (the header has Slicer ``Segment*`` keys); ``sop_class`` of DICOM.
    """

    array: np.ndarray
    geometry: Geometry
    modality: str
    source_dtype: np.dtype
    source_path: str
    source_format: str
    dicom_template: object | None = field(default=None, repr=False)
    fourth_axis: FourthAxis | None = None
    source_info: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if np.ndim(self.array) != (3 if self.fourth_axis is None else 4):
            raise ValueError(f"expected a 3D array (4D with fourth_axis), got shape {np.shape(self.array)}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        self.source_dtype = np.dtype(self.source_dtype)

    def frames(self) -> list[Volume]:
        """The 3D volumes of a 4D volume (views, no copy), or ``[self]`` for a 3D one."""
        if self.fourth_axis is None:
            return [self]
        return [
            Volume(self.array[..., t], self.geometry, self.modality, self.source_dtype, self.source_path,
                   self.source_format, self.dicom_template, source_info=self.source_info)
            for t in range(self.array.shape[3])
        ]  # fmt: skip

    def __repr__(self) -> str:
        # the array and the DICOM headers stay out of logs and tracebacks
        return (
            f"Volume(shape={tuple(self.array.shape)}, dtype={self.array.dtype}, geometry={self.geometry}, "
            f"modality={self.modality!r}, source_dtype={self.source_dtype}, source_format={self.source_format!r}, "
            f"source_path={self.source_path!r}, fourth_axis={self.fourth_axis})"
        )
