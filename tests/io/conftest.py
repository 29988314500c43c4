"""Fixtures for the io tests: real series from ../shared/data/medical (skipped when absent) and synthetic volumes."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rmisr_monai.io.geometry import Geometry
from rmisr_monai.io.volume import Volume
from tests.conftest import shared_path

MEDICAL = ("data", "medical")
GE_SERIES = "ct_ge_lightspeed16_abdomen_subset"  # uncompressed, 5 mm slices, files 1-13 .. 1-32 in z order


def medical(*parts: str) -> Path:
    """A file or folder of ``../shared/data/medical`` (skips the test when absent)."""
    return shared_path(*MEDICAL, *parts)


def series_files(name: str) -> list[Path]:
    """The files of a DICOM series of MANIFEST.md, sorted by ImagePositionPatient z (ascending)."""
    files = sorted(medical("dicom_series", name).iterdir())
    return sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def copy_files(files: Sequence[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(f, folder / f.name)) for f in files]


@pytest.fixture
def ge_copy(tmp_path: Path) -> list[Path]:
    """Five consecutive slices of the GE CT series copied into ``tmp_path / "series"`` (z order)."""
    return copy_files(series_files(GE_SERIES)[:5], tmp_path / "series")


def oblique_geometry() -> Geometry:
    """A rotated (about a skew axis), anisotropic grid with a non-trivial origin."""
    axis = np.array([1.0, 2.0, 3.0]) / np.linalg.norm([1.0, 2.0, 3.0])
    angle = np.radians(25.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    return Geometry((0.7, 0.9, 2.5), (-120.25, 33.5, 71.125), tuple(map(tuple, rotation)))


def synthetic_volume(
    dtype: np.dtype = np.int16, shape: tuple[int, int, int] = (12, 10, 6), modality: str = "CT"
) -> Volume:
    """A small volume with distinct values per voxel (axis order detectable) on the oblique grid."""
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    array = (i * 100 + j * 10 + k - 1024).astype(dtype)  # HU-like: air at -1024
    return Volume(array, oblique_geometry(), modality, np.dtype(dtype), "synthetic", "nifti")
