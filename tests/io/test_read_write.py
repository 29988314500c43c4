"""NIfTI / NRRD / MHA: oblique geometry round trips checked with independent readers, bad inputs, dtype casting."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from rmisr_monai.errors import InputFileError, OutputFileError
from rmisr_monai.io import describe, output_format, read_volume, write_volume
from rmisr_monai.io.geometry import Geometry, lps_to_ras_affine
from rmisr_monai.io.read import guess_modality
from rmisr_monai.io.write import cast_to_dtype
from tests.io.conftest import medical, oblique_geometry, synthetic_volume

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _assert_geometry(actual: Geometry, expected: Geometry, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(actual.spacing, expected.spacing, atol=atol)
    np.testing.assert_allclose(actual.origin, expected.origin, atol=atol)
    np.testing.assert_allclose(actual.matrix, expected.matrix, atol=atol)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz", "v.nrrd", "v.mha", "v.mhd"])
def test_round_trip_oblique(tmp_path, name):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / name)
    back = read_volume(tmp_path / name)
    _assert_geometry(back.geometry, volume.geometry)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.array.dtype == np.int16 and back.source_dtype == np.int16
    assert back.modality == "CT" and back.source_format == output_format(name)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # .mhd: one file, data inside


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nrrd", "v.mha"])
def test_simpleitk_reads_same_geometry(tmp_path, name):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / name)
    image = sitk.ReadImage(str(tmp_path / name))
    g = volume.geometry
    np.testing.assert_allclose(image.GetSpacing(), g.spacing, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), g.origin, atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), g.matrix, atol=1e-5)
    # SimpleITK's array is (k, j, i)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume.array.transpose(2, 1, 0))


def test_nifti_read_back_by_nibabel(tmp_path):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / "v.nii.gz")
    image = nib.load(tmp_path / "v.nii.gz")
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    g = volume.geometry
    for affine in (image.get_sform(), image.get_qform()):
        # nibabel's affine is RAS: flip x and y to compare with the LPS geometry
        np.testing.assert_allclose(LPS_FROM_RAS @ affine[:3, :3], g.matrix * g.spacing, atol=1e-5)
        np.testing.assert_allclose(LPS_FROM_RAS @ affine[:3, 3], g.origin, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), volume.array)


def test_nrrd_read_back_by_pynrrd(tmp_path):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / "v.nrrd")
    data, header = nrrd.read(str(tmp_path / "v.nrrd"))
    assert header["space"] == "left-posterior-superior"
    g = volume.geometry
    # pynrrd: rows of "space directions" are the axis vectors (spacing included), data in (i, j, k) order
    np.testing.assert_allclose(np.asarray(header["space directions"]).T, g.matrix * g.spacing, atol=1e-5)
    np.testing.assert_allclose(header["space origin"], g.origin, atol=1e-5)
    np.testing.assert_array_equal(data, volume.array)


def test_nifti_rule_sform_then_qform_then_pixdim(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    sform = np.diag([2.0, 3.0, 4.0, 1.0])
    sform[:3, 3] = [5, 6, 7]
    qform = np.diag([-1.0, -1.0, 1.0, 1.0])
    image = nib.Nifti1Image(data, None)
    image.set_sform(sform, code=2)
    image.set_qform(qform, code=1)
    nib.save(image, tmp_path / "both.nii")
    g = read_volume(tmp_path / "both.nii").geometry
    assert g.spacing == (2.0, 3.0, 4.0)
    np.testing.assert_allclose(g.origin, [-5, -6, 7])  # RAS (5, 6, 7) in LPS
    image.set_sform(sform, code=0)
    nib.save(image, tmp_path / "qform.nii")
    g = read_volume(tmp_path / "qform.nii").geometry
    np.testing.assert_allclose(g.matrix, np.eye(3), atol=1e-6)  # RAS -x, -y = LPS +x, +y
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_zooms((1.5, 2.5, 3.5))  # sform_code = qform_code = 0
    nib.save(nib.Nifti1Image(data, None, header), tmp_path / "pixdim.nii")
    assert read_volume(tmp_path / "pixdim.nii").geometry.spacing == (1.5, 2.5, 3.5)


def test_nifti_scaling_applied(tmp_path):
    stored = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    image = nib.Nifti1Image(stored, np.eye(4))
    image.header.set_slope_inter(2.5, -10.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    volume = read_volume(tmp_path / "scaled.nii.gz")
    np.testing.assert_allclose(volume.array, stored * 2.5 - 10.0)
    assert volume.source_dtype == np.float32
    image.header.set_slope_inter(1.0, -1024.0)  # integral rescale: an integer dtype that holds it
    nib.save(image, tmp_path / "offset.nii.gz")
    volume = read_volume(tmp_path / "offset.nii.gz")
    assert volume.source_dtype == np.int16 and volume.array.min() == -1024


def test_two_d_image_is_one_slice(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((5, 6), dtype=np.float32), np.eye(4)), tmp_path / "slice.nii")
    assert read_volume(tmp_path / "slice.nii").array.shape == (5, 6, 1)
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((6, 5), dtype=np.int16)), str(tmp_path / "slice.mha"))
    assert read_volume(tmp_path / "slice.mha").array.shape == (5, 6, 1)


def _expect_input_error(path, match):
    with pytest.raises(InputFileError, match=match) as info:
        read_volume(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("shape", [(4, 4, 4, 2, 2), (4, 4, 4, 1, 3), (0, 4, 4)])
def test_not_3d_scalar_refused(tmp_path, shape):
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.float32), np.eye(4)), tmp_path / "bad.nii.gz")
    _expect_input_error(tmp_path / "bad.nii.gz", r"expected a 3D scalar volume, got shape")


def test_rgb_refused(tmp_path):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    _expect_input_error(tmp_path / "rgb.nii", "expected a 3D scalar volume")
    vector = sitk.GetImageFromArray(np.zeros((4, 4, 4, 3), dtype=np.uint8), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "rgb.mha"))
    _expect_input_error(tmp_path / "rgb.mha", "expected a 3D scalar volume")


def test_four_d_with_trailing_singleton_is_3d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), dtype=np.int16), np.eye(4)), tmp_path / "t1.nii")
    assert read_volume(tmp_path / "t1.nii").array.shape == (4, 5, 6)


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nrrd"])
def test_nan_refused(tmp_path, name):
    volume = synthetic_volume(np.float32)
    volume.array[3, 2, 1] = np.nan
    volume.array[0, 0, 0] = np.inf
    write_volume(volume, tmp_path / name)
    _expect_input_error(tmp_path / name, "2 voxels are NaN or infinite")


def test_broken_files_refused(tmp_path):
    write_volume(synthetic_volume(), tmp_path / "plain.nii")
    shutil.copy(tmp_path / "plain.nii", tmp_path / "fake.nii.gz")
    _expect_input_error(tmp_path / "fake.nii.gz", "not gzip-compressed")
    packed = gzip.compress((tmp_path / "plain.nii").read_bytes())
    for fraction in (0.3, 0.9):  # cut inside the header, cut inside the voxels
        (tmp_path / "cut.nii.gz").write_bytes(packed[: int(len(packed) * fraction)])
        _expect_input_error(tmp_path / "cut.nii.gz", "truncated or corrupt gzip")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _expect_input_error(tmp_path / "empty.nii.gz", "empty file")
    _expect_input_error(tmp_path / "missing.nii", "no such file")
    (tmp_path / "junk.mha").write_bytes(b"not an image at all\n")
    _expect_input_error(tmp_path / "junk.mha", "cannot read image")


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([40000.6, -40000.6, -3.5, -2.5, 2.5, 0.49], np.int16, [32767, -32768, -4, -2, 2, 0]),  # half to even
        ([300.0, -1.0, 254.6], np.uint8, [255, 0, 255]),
        ([70000, -5], np.uint16, [65535, 0]),
    ],
)
def test_cast_clips_then_rounds(values, dtype, expected):
    out = cast_to_dtype(np.array(values), dtype)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)


def test_write_uses_source_dtype_and_clips(tmp_path):
    volume = synthetic_volume(np.float32)
    volume.source_dtype = np.dtype(np.int16)
    volume.array[0, 0, 0], volume.array[1, 0, 0], volume.array[2, 0, 0] = 40000.6, -40000.6, -3.5
    write_volume(volume, tmp_path / "v.nii.gz")
    stored = np.asanyarray(nib.load(tmp_path / "v.nii.gz").dataobj)
    assert stored.dtype == np.int16
    assert stored[0, 0, 0] == 32767 and stored[1, 0, 0] == -32768 and stored[2, 0, 0] == -4
    write_volume(volume, tmp_path / "f.nrrd", dtype=np.float32)
    assert nrrd.read(str(tmp_path / "f.nrrd"))[0].dtype == np.float32


def test_uint8_stays_uint8(tmp_path):
    volume = synthetic_volume(np.int16)
    volume.array = (volume.array % 256).astype(np.uint8)
    volume.source_dtype = np.dtype(np.uint8)
    write_volume(volume, tmp_path / "u8.nii.gz")
    back = read_volume(tmp_path / "u8.nii.gz")
    assert back.array.dtype == np.uint8 and back.source_dtype == np.uint8
    np.testing.assert_array_equal(back.array, volume.array)


def test_output_format():
    assert [output_format(p) for p in ["a.nii", "a.NII.GZ", "a.nrrd", "a.mha", "a.mhd", "out_dir"]] == [
        "nifti", "nifti", "nrrd", "mha", "mha", "dicom"
    ]  # fmt: skip
    with pytest.raises(OutputFileError, match="unknown output format"):
        output_format("a.png")


def test_bad_output_dtype(tmp_path):
    with pytest.raises(OutputFileError, match="unsupported output dtype"):
        write_volume(synthetic_volume(), tmp_path / "a.nii", dtype=np.complex64)
    assert not any(tmp_path.iterdir())


def test_guess_modality():
    assert guess_modality(np.array([-1024, 0, 40] * 100)) == "CT"
    assert guess_modality(np.array([0, 10, 4000])) == "MR"
    assert guess_modality(np.array([-5.0, 1.0])) == "OT"


def test_describe_fields():
    volume = synthetic_volume()
    info = describe(volume)
    assert info["shape"] == [12, 10, 6] and info["dtype"] == "int16" and info["modality"] == "CT"
    assert info["min"] == -1024 and info["max"] == 1100 + 90 + 5 - 1024
    assert info["spacing"] == list(oblique_geometry().spacing)
    assert info["orientation"].startswith("oblique")
    np.testing.assert_allclose(info["percentiles"]["p50"], np.percentile(volume.array, 50))


def test_written_affine_matches_lps_to_ras(tmp_path):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / "v.nii")
    expected = lps_to_ras_affine(volume.geometry.affine())
    np.testing.assert_allclose(nib.load(tmp_path / "v.nii").affine, expected, atol=1e-5)


# MANIFEST.md values: (shape, spacing, dtype after scaling, min, max)
MANIFEST_NIFTI = {
    "ct/totalseg_chest_cta_crop_1p5mm.nii.gz": ((120, 126, 164), (1.5, 1.5, 1.5), np.int16, -1078, 3343),
    "mr/brain_pd_2p4mm_uint8.nii.gz": ((191, 256, 54), (0.8579, 0.8594, 2.4), np.uint8, 0, 252),
    "mr/stroke_t2_uint8.nii.gz": ((124, 160, 140), (1, 1, 1), np.float32, 0, 503.969),
    "mr/totalseg_abdomen_mr_3mm.nii.gz": ((117, 91, 20), (3, 3, 3), np.int16, -47, 833),
}


@pytest.mark.parametrize("name", sorted(MANIFEST_NIFTI))
def test_real_nifti_match_manifest_and_simpleitk(name):
    shape, spacing, dtype, low, high = MANIFEST_NIFTI[name]
    path = medical(*name.split("/"))
    volume = read_volume(path)
    assert volume.array.shape == shape and volume.array.dtype == dtype
    np.testing.assert_allclose(volume.geometry.spacing, spacing, atol=1e-4)
    np.testing.assert_allclose([volume.array.min(), volume.array.max()], [low, high], atol=1e-3)
    # SimpleITK (ITK's NIfTI reader, LPS) as the independent reference for the geometry; these files carry one
    # transform (sform only, or sform = qform), so ITK's preference order does not matter
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(np.ravel(volume.geometry.direction), image.GetDirection(), atol=1e-4)


def test_real_nifti_orientation_codes():
    assert describe(read_volume(medical("ct", "totalseg_chest_cta_crop_1p5mm.nii.gz")))["orientation"] == "LPS"
    assert describe(read_volume(medical("ct", "totalseg_abdomen_ct_3mm.nii.gz")))["orientation"] == "RAS"
