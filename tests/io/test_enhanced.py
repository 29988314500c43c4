"""Enhanced (multi-frame) DICOM assembled with pydicom from a real single-frame CT series: same voxels and affine as
the series, through read_volume and `rmisr upscale`; stacks listed and picked."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from rmisr_monai.cli import main
from rmisr_monai.errors import InputFileError
from rmisr_monai.io import read_volume
from tests.io.scanner_files import enhanced, real_slices, save_series

SHUFFLED = [3, 0, 4, 1, 2]  # frames stored out of slice order


@pytest.fixture
def files(tmp_path):
    slices = real_slices(5)
    series = save_series(slices, tmp_path / "series")
    path = tmp_path / "enhanced.dcm"
    enhanced(slices, order=SHUFFLED).save_as(path, enforce_file_format=True)
    return series, path


def test_enhanced_file_is_compressed_multiframe_without_top_level_geometry(files):
    ds = pydicom.dcmread(files[1], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless and int(ds.NumberOfFrames) == 5
    assert "ImagePositionPatient" not in ds and "PixelSpacing" not in ds and "RescaleIntercept" not in ds


def test_enhanced_reads_like_the_series(files):
    series, path = (read_volume(p) for p in files)
    np.testing.assert_array_equal(path.array, series.array)
    assert path.array.dtype == series.array.dtype and path.modality == "CT"
    np.testing.assert_allclose(path.geometry.affine(), series.geometry.affine(), atol=1e-4)


def test_enhanced_upscaled_like_the_series(tmp_path, files):
    for name, source in zip(("series", "enhanced"), files):
        assert main(["upscale", str(source), str(tmp_path / f"{name}.nii.gz"), "--scale", "2", "--model", "bicubic",
                     "--quiet"]) == 0  # fmt: skip
    a, b = (nib.load(tmp_path / f"{n}.nii.gz") for n in ("series", "enhanced"))
    assert a.shape == b.shape == (128, 96, 5)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(b.dataobj), np.asarray(a.dataobj))


def test_enhanced_to_dicom_is_single_frame(tmp_path, files):
    assert main(["upscale", str(files[1]), str(tmp_path / "out"), "--scale", "2", "--model", "bicubic", "--quiet"]) == 0
    outputs = [pydicom.dcmread(f) for f in (tmp_path / "out").iterdir()]
    assert len(outputs) == 5 and all("NumberOfFrames" not in ds for ds in outputs)
    assert {(ds.Rows, ds.Columns) for ds in outputs} == {(96, 128)}


def test_several_stacks_listed_and_picked(tmp_path, capsys):
    slices = real_slices(3)
    path = tmp_path / "stacks.dcm"
    enhanced(slices, stacks=("1", "2"), rle=False).save_as(path, enforce_file_format=True)
    with pytest.raises(InputFileError, match=r"2 stacks of frames \(pick one with stack=N\): 1: 3 frames.*2: 3"):
        read_volume(path)
    one, two = read_volume(path, stack="1"), read_volume(path, stack="2")
    np.testing.assert_array_equal(one.array, two.array)
    np.testing.assert_allclose(np.subtract(two.geometry.origin, one.geometry.origin), [0, 0, 1000.0], atol=1e-6)
    assert main(["info", str(path), "--stack", "2"]) == 0
    assert "frames: 6 frames in 1 file(s) (1 enhanced multi-frame); 2 stacks, stack 2 read (3 frames)" in (
        capsys.readouterr().out
    )
    assert main(["upscale", str(path), str(tmp_path / "x.nii.gz"), "--scale", "2", "--model", "bicubic"]) == 2
    assert "--stack" in capsys.readouterr().err and not (tmp_path / "x.nii.gz").exists()


def test_temporal_positions_make_a_4d_volume(tmp_path):
    slices = real_slices(3)
    path = tmp_path / "dynamic.dcm"
    enhanced(slices, order=[2, 0, 1], times=2).save_as(path, enforce_file_format=True)
    volume = read_volume(path)
    series = read_volume(save_series(slices, tmp_path / "series"))
    assert volume.array.shape == (64, 48, 3, 2) and volume.fourth_axis.kind == "time"
    np.testing.assert_array_equal(volume.array[..., 0], series.array)
    np.testing.assert_array_equal(volume.array[..., 1], series.array + 100)
    assert (
        main(["upscale", str(path), str(tmp_path / "x.nii.gz"), "--scale", "2", "--model", "bicubic", "--quiet"]) == 0
    )
    assert nib.load(tmp_path / "x.nii.gz").shape == (128, 96, 3, 2)
