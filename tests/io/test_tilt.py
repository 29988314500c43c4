"""Gantry tilt and uneven slice spacing, on copies of a real CT series edited with pydicom, checked against the DICOM
tags, the untilted series, nibabel, SimpleITK and pynrrd."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from rmisr_monai.cli import main
from rmisr_monai.io import read_volume
from rmisr_monai.io.geometry import ras_to_lps_affine
from tests.io.scanner_files import TILT_Y_PER_SLICE, positions, real_slices, save_series, tilt

BRIGHT = (21, 30, 2)  # (i, j, k) of the marker voxel put into the series
MARKER_HU = 3000


def _mark(k, ds):
    if k == BRIGHT[2]:
        pixels = ds.pixel_array.copy()
        pixels[BRIGHT[1], BRIGHT[0]] = MARKER_HU - int(ds.RescaleIntercept)  # (row, column) = (j, i)
        ds.PixelData = pixels.tobytes()


@pytest.fixture
def slices():
    return real_slices(5)


@pytest.fixture
def tilted(tmp_path, slices):
    return save_series(slices, tmp_path / "tilted", lambda k, ds: (tilt(k, ds), _mark(k, ds)))


@pytest.fixture
def straight(tmp_path, slices):
    return save_series(slices, tmp_path / "straight", _mark)


def _tags(slices):
    """Per slice (ascending z): ImagePositionPatient, row and column directions, (row, column) spacing."""
    out = []
    for k, ds in enumerate(slices):
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float) + [0.0, TILT_Y_PER_SLICE * k, 0.0]
        out.append((ipp, iop[:3], iop[3:], np.asarray(ds.PixelSpacing, dtype=float)))
    return out


def _upscale(source, target, *options):
    assert main(["upscale", str(source), str(target), "--scale", "2", "--model", "bicubic", "--quiet", *options]) == 0


def test_tilted_series_read_with_exact_sheared_affine(tilted, straight, slices):
    volume = read_volume(tilted)
    assert volume.geometry.is_sheared and volume.geometry.is_regular
    assert volume.geometry.tilt_degrees() == pytest.approx(np.degrees(np.arctan2(TILT_Y_PER_SLICE, 5.0)), abs=1e-3)
    for k, (ipp, row, col, spacing) in enumerate(_tags(slices)):
        for i, j in [(0, 0), (63, 0), (0, 47), (17, 29)]:
            expected = ipp + row * spacing[1] * i + col * spacing[0] * j
            np.testing.assert_allclose(volume.geometry.index_to_world([(i, j, k)])[0], expected, atol=1e-4)
    np.testing.assert_array_equal(volume.array, read_volume(straight).array)


def test_tilted_series_to_dicom_keeps_each_slice_plane(tmp_path, tilted):
    _upscale(tilted, tmp_path / "out")
    ins = {round(float(p[2]), 3): p for p in positions(tilted).values()}
    source = {round(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]), 3):
              pydicom.dcmread(f, stop_before_pixels=True) for f in tilted.iterdir()}  # fmt: skip
    outputs = [pydicom.dcmread(f) for f in sorted((tmp_path / "out").iterdir())]
    assert len(outputs) == len(ins) == 5
    for out in outputs:
        src = source[round(float(out.ImagePositionPatient[2]), 3)]
        iop = np.asarray(src.ImageOrientationPatient, dtype=float)
        np.testing.assert_allclose(np.asarray(out.ImageOrientationPatient, dtype=float), iop, atol=1e-6)
        assert (out.Rows, out.Columns) == (2 * src.Rows, 2 * src.Columns)
        spacing = np.asarray(src.PixelSpacing, dtype=float)
        np.testing.assert_allclose(np.asarray(out.PixelSpacing, dtype=float), spacing / 2, atol=1e-6)
        expected = np.asarray(src.ImagePositionPatient, dtype=float) - 0.25 * (
            spacing[1] * iop[:3] + spacing[0] * iop[3:]
        )
        np.testing.assert_allclose(np.asarray(out.ImagePositionPatient, dtype=float), expected, atol=1e-4)


def _output_centres(affine_lps, shape):
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    index = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    return (affine_lps @ index)[:3].T, np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)


def test_tilted_series_to_nifti_exact_sheared_affine(tmp_path, tilted, straight, slices):
    _upscale(tilted, tmp_path / "tilted.nii.gz")
    _upscale(straight, tmp_path / "straight.nii.gz")
    image = nib.load(tmp_path / "tilted.nii.gz")
    assert image.shape == (128, 96, 5)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 0  # qform cannot shear
    affine = ras_to_lps_affine(image.affine)
    world, index = _output_centres(affine, image.shape)
    tags = _tags(slices)
    # every output voxel centre (i', j', k) is input (i' / 2 - 0.25, j' / 2 - 0.25) in the plane of slice k
    expected = np.stack([tags[k][0] + tags[k][1] * tags[k][3][1] * (i / 2 - 0.25) + tags[k][2] * tags[k][3][0] *
                         (j / 2 - 0.25) for i, j, k in index])  # fmt: skip
    np.testing.assert_allclose(world, expected, atol=1e-4)
    # SR is in-plane: the voxels are those of the untilted series
    np.testing.assert_array_equal(np.asarray(image.dataobj), np.asarray(nib.load(tmp_path / "straight.nii.gz").dataobj))
    # the marker's world position: within half an output voxel of the input voxel's
    data = np.asarray(image.dataobj)
    peak = np.unravel_index(np.argmax(data), data.shape)
    found = affine[:3, :3] @ np.asarray(peak, dtype=float) + affine[:3, 3]
    ipp, row, col, spacing = tags[BRIGHT[2]]
    marker = ipp + row * spacing[1] * BRIGHT[0] + col * spacing[0] * BRIGHT[1]
    assert np.all(np.abs(found - marker) <= 0.5 * spacing.max() / 2 + 1e-6)
    assert peak[2] == BRIGHT[2]


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha"])
def test_tilted_series_to_nrrd_and_mha_keep_the_shear(tmp_path, tilted, suffix):
    out = tmp_path / f"tilted{suffix}"
    _upscale(tilted, out)
    nifti_like = read_volume(tilted)
    image = sitk.ReadImage(str(out))  # independent reader: ITK keeps the non-orthogonal direction
    direction = np.reshape(image.GetDirection(), (3, 3))
    np.testing.assert_allclose(direction, nifti_like.geometry.matrix, atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), (0.796875 / 2, 0.796875 / 2, nifti_like.geometry.spacing[2]))
    if suffix != ".mha":
        _, header = nrrd.read(str(out))
        np.testing.assert_allclose(header["space directions"].T, direction * image.GetSpacing(), atol=1e-6)


def test_tilted_nifti_refused_by_simpleitk_and_read_back_by_us(tmp_path, tilted):
    _upscale(tilted, tmp_path / "tilted.nii.gz")
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(tmp_path / "tilted.nii.gz"))  # what the README says about ITK and sheared NIfTI
    back = read_volume(tmp_path / "tilted.nii.gz")
    assert back.geometry.is_sheared


def test_resample_gives_orthogonal_grid_with_marker_in_place(tmp_path, tilted, slices):
    assert main(["upscale", str(tilted), str(tmp_path / "r.nii.gz"), "--scale", "2", "--model", "bicubic",
                 "--quiet", "--resample"]) == 0  # fmt: skip
    image = sitk.ReadImage(str(tmp_path / "r.nii.gz"))  # orthogonal now: ITK reads it
    direction = np.reshape(image.GetDirection(), (3, 3))
    np.testing.assert_allclose(direction, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing()[2], 5.0, atol=1e-5)
    data = sitk.GetArrayFromImage(image).T
    peak = np.unravel_index(np.argmax(data), data.shape)
    found = np.asarray(image.TransformIndexToPhysicalPoint([int(v) for v in peak]))
    ipp, row, col, spacing = _tags(slices)[BRIGHT[2]]
    marker = ipp + row * spacing[1] * BRIGHT[0] + col * spacing[0] * BRIGHT[1]
    assert np.all(np.abs(found - marker) <= 0.5 * spacing.max() / 2 + 1e-6)


# ------------------------------------------------------------------------------------------ uneven slice spacing


@pytest.fixture
def uneven(tmp_path, slices):
    return save_series([s for k, s in enumerate(slices) if k != 2], tmp_path / "uneven")  # slice 2 missing: 5, 10 mm


def test_uneven_series_to_dicom_keeps_every_position(tmp_path, uneven):
    volume = read_volume(uneven)
    assert not volume.geometry.is_regular
    _upscale(uneven, tmp_path / "out")
    outs = sorted(positions(tmp_path / "out").values(), key=lambda p: p[2])
    ins = sorted(positions(uneven).values(), key=lambda p: p[2])
    spacing = 0.796875
    for out, src in zip(outs, ins, strict=True):
        np.testing.assert_allclose(out, src - 0.25 * spacing * np.array([1.0, 1.0, 0.0]), atol=1e-4)
    assert "SpacingBetweenSlices" not in pydicom.dcmread(next((tmp_path / "out").iterdir()), stop_before_pixels=True)


def test_uneven_series_to_nifti_refused_before_work(tmp_path, uneven, capsys):
    assert main(["upscale", str(uneven), str(tmp_path / "u.nii.gz"), "--scale", "2", "--model", "bicubic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "5 to 10 mm" in err and "--resample" in err and "super-resolution" not in err
    assert list(tmp_path.glob("u.*")) == []


def test_uneven_series_resampled_keeps_the_real_slices(tmp_path, uneven, straight):
    assert main(["upscale", str(uneven), str(tmp_path / "u.nii.gz"), "--scale", "2", "--model", "bicubic",
                 "--quiet", "--resample", "--dtype", "float32"]) == 0  # fmt: skip
    _upscale(straight, tmp_path / "s.nii", "--dtype", "float32")
    got = np.asarray(nib.load(tmp_path / "u.nii.gz").dataobj)
    full = np.asarray(nib.load(tmp_path / "s.nii").dataobj)
    assert got.shape == full.shape  # 0, 5, (10), 15, 20 mm -> 5 planes 5 mm apart
    np.testing.assert_allclose(nib.load(tmp_path / "u.nii.gz").affine, nib.load(tmp_path / "s.nii").affine, atol=1e-4)
    for k in (0, 1, 3, 4):  # real planes: exactly the upscaled slices
        np.testing.assert_allclose(got[..., k], full[..., k], atol=1e-3)
    np.testing.assert_allclose(got[..., 2], (full[..., 1] + full[..., 3]) / 2, atol=1e-2)  # the missing one


def test_info_reports_tilt_and_uneven_spacing(tilted, uneven, capsys):
    assert main(["info", str(tilted)]) == 0
    out = capsys.readouterr().out
    assert "tilt: 16.70 degrees (gantry tilt" in out and "slice_spacing: even: 5 mm" in out
    assert main(["info", str(uneven)]) == 0
    out = capsys.readouterr().out
    assert "slice_spacing: uneven: 5 to 10 mm" in out and "tilt: none" in out
