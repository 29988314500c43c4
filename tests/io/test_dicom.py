"""DICOM series: real series against MANIFEST.md and SimpleITK, compressed syntaxes, bad series, derived output, PHI."""

from __future__ import annotations

import dataclasses
import logging

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from rmisr_monai.errors import InputFileError, OutputFileError
from rmisr_monai.io import describe, read_volume, rescaled_geometry, write_volume
from tests.io.conftest import GE_SERIES, copy_files, medical, series_files, synthetic_volume

# MANIFEST.md values: (shape, spacing, origin, direction row-major, dtype, min, max)
MANIFEST_SERIES = {
    "ct_siemens_biograph_abdomen_j2k": (
        (512, 512, 20), (0.9766, 0.9766, 2), (-249.5117, -437.5117, -804.5), (1, 0, 0, 0, 1, 0, 0, 0, 1),
        np.int16, -1024, 1839,
    ),
    "mr_siemens_prisma_t1_sag_brain": (
        (256, 256, 35), (1.0156, 1.0156, 4.8), (81.6, -130.0, 130.0), (0, 0, -1, 1, 0, 0, 0, -1, 0),
        np.uint16, 0, 1948,
    ),
    GE_SERIES: (
        (512, 512, 20), (0.7969, 0.7969, 5), (-198.2, -204.0, -330.0), (1, 0, 0, 0, 1, 0, 0, 0, 1),
        np.int16, -3024, 1252,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MANIFEST_SERIES))
def test_real_series_match_manifest(name):
    shape, spacing, origin, direction, dtype, low, high = MANIFEST_SERIES[name]
    volume = read_volume(medical("dicom_series", name))
    assert volume.array.shape == shape and volume.array.dtype == dtype and volume.source_dtype == dtype
    np.testing.assert_allclose(volume.geometry.spacing, spacing, atol=1e-4)
    np.testing.assert_allclose(volume.geometry.origin, origin, atol=1e-4)
    np.testing.assert_allclose(np.ravel(volume.geometry.direction), direction, atol=1e-6)
    assert (volume.array.min(), volume.array.max()) == (low, high)
    assert volume.modality == name[:2].upper() and volume.source_format == "dicom"


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_same_as_sitk(volume, image, atol=1e-4):
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=atol)
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=atol)
    np.testing.assert_allclose(np.ravel(volume.geometry.direction), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image).transpose(2, 1, 0))


def test_uncompressed_series_equals_simpleitk():
    folder = medical("dicom_series", GE_SERIES)
    _assert_same_as_sitk(read_volume(folder), _sitk_series(folder))


def test_sagittal_series_equals_simpleitk():
    folder = medical("dicom_series", "mr_siemens_prisma_t1_sag_brain")
    _assert_same_as_sitk(read_volume(folder), _sitk_series(folder))


# groups of MANIFEST.md that decode to identical pixels, with the value range after rescale
# (the Siemens file is a mosaic of 35 slices: read as the volume it holds, tests/io/test_readers.py)
IDENTICAL_GROUPS = [
    ("nema_mr1_small", ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                        "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"],
     127, 2145, 1),
    ("siemens_trio_mr_ts", [f"{n}.dcm" for n in range(1, 10)], 0, 2362, 35),
    ("cq500_head_ct", ["693_UNCR.dcm", "693_J2KR.dcm"], -3024, 1468, 1),
    ("nema_mr2_shoulder", ["MR2_UNCR.dcm", "MR2_J2KR.dcm", "JPEGLossless_1s_1f_u_16_12.dcm"], 0.0001, 2245.6, 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("group", "names", "low", "high", "slices"), IDENTICAL_GROUPS, ids=[g[0] for g in IDENTICAL_GROUPS]
)
def test_compressed_single_files_decode_identically(group, names, low, high, slices):
    volumes = [read_volume(medical("dicom_compressed", group, name)) for name in names]
    reference = volumes[0]
    assert reference.array.shape[2] == slices
    np.testing.assert_allclose([reference.array.min(), reference.array.max()], [low, high], atol=0.05)
    for volume in volumes[1:]:
        np.testing.assert_array_equal(volume.array, reference.array)
        assert volume.geometry == reference.geometry


def test_lossy_jpeg_ls_close_to_lossless():
    lossless = read_volume(medical("dicom_compressed", "nema_ct1_chest", "nema-ct1_jpll.dcm"))
    near = read_volume(medical("dicom_compressed", "nema_ct1_chest", "CT1_JLSN.dcm"))
    difference = np.abs(near.array.astype(np.int32) - lossless.array)
    assert difference.max() <= 4 and difference.max() > 0  # MANIFEST.md: near-lossless, at most 4
    assert (lossless.array.min(), lossless.array.max()) == (-3024, 1254)


def test_multiframe_without_geometry_and_missing_geometry_refused():
    path = medical("dicom_compressed", "emri_small_multiframe", "emri_small.dcm")
    with pytest.raises(InputFileError, match="multi-frame DICOM .10 frames. without per-frame functional groups"):
        read_volume(path)  # MANIFEST.md: this enhanced MR has no functional-group geometry
    path = medical("dicom_compressed", "nema_cr_radiographs", "RG3_J2KR.dcm")
    with pytest.raises(InputFileError, match="missing") as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_missing_decoder_named(monkeypatch):
    def no_decoder(self):
        raise RuntimeError("Unable to decode the pixel data: no plugin available")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    path = medical("dicom_compressed", "nema_mr1_small", "MR_small_jp2klossless.dcm")
    with pytest.raises(InputFileError, match="JPEG 2000 Image Compression.*pylibjpeg-openjpeg") as info:
        read_volume(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- bad series (copies edited with pydicom)


def _expect(folder, match):
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(InputFileError, match=match) as info:
        read_volume(folder)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
    return str(info.value)


def test_several_series_refused_and_selectable(tmp_path, ge_copy):
    folder = ge_copy[0].parent
    philips = copy_files(series_files("ct_philips_brilliance16p_chest_subset")[:3], folder)
    uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in (ge_copy[0], philips[0])}
    message = _expect(folder, "2 DICOM series")
    assert all(uid in message for uid in uids)
    philips_uid = str(pydicom.dcmread(philips[0], stop_before_pixels=True).SeriesInstanceUID)
    assert read_volume(folder, series_uid=philips_uid).array.shape == (512, 512, 3)
    with pytest.raises(InputFileError, match="not found"):
        read_volume(folder, series_uid="1.2.3")


def test_missing_slice_kept_per_slice_and_refused_for_nifti(tmp_path, ge_copy):
    ge_copy[2].unlink()
    volume = read_volume(ge_copy[0].parent)
    assert not volume.geometry.is_regular and volume.array.shape[2] == 4
    expected = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in ge_copy
                      if f.exists())  # fmt: skip
    np.testing.assert_allclose([p[2] for p in volume.geometry.slice_positions], expected)
    with pytest.raises(OutputFileError, match="unevenly spaced slices .5 to 10 mm"):
        write_volume(volume, tmp_path / "out.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()


def test_duplicate_position_refused(ge_copy):
    ds = pydicom.dcmread(ge_copy[1])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(ge_copy[0].parent / "duplicate.dcm")
    message = _expect(ge_copy[0].parent, "duplicate slice position")
    assert ge_copy[1].name in message or "duplicate.dcm" in message


def test_duplicate_positions_with_temporal_positions_are_4d(ge_copy):
    for k, file in enumerate(ge_copy[:4]):
        ds = pydicom.dcmread(file)
        ds.TemporalPositionIdentifier = 1 + k % 2
        if k % 2:  # the second time point at the first one's position
            ds.ImagePositionPatient = pydicom.dcmread(ge_copy[k - 1], stop_before_pixels=True).ImagePositionPatient
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(file)
    ge_copy[4].unlink()
    volume = read_volume(ge_copy[0].parent)
    assert volume.array.shape == (512, 512, 2, 2) and volume.fourth_axis.kind == "time"
    assert volume.fourth_axis.values == (1.0, 2.0)
    second = pydicom.dcmread(ge_copy[3])
    np.testing.assert_array_equal(volume.array[:, :, 1, 1], second.pixel_array.T * second.RescaleSlope +
                                  second.RescaleIntercept)  # fmt: skip


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_missing_geometry_tag_refused(ge_copy, keyword):
    ds = pydicom.dcmread(ge_copy[3])
    delattr(ds, keyword)
    ds.save_as(ge_copy[3])
    message = _expect(ge_copy[0].parent, f"{keyword} is missing")
    assert ge_copy[3].name in message


def test_a_slice_without_columns_is_named(ge_copy):
    """A damaged file keeps Rows but loses Columns (found by tests/cli/test_fuzz.py): one error naming it."""
    ds = pydicom.dcmread(ge_copy[3])
    del ds.Columns
    ds.save_as(ge_copy[3])
    message = _expect(ge_copy[0].parent, "Rows or Columns missing")
    assert ge_copy[3].name in message


def test_non_dicom_files(ge_copy):
    folder = ge_copy[0].parent
    (folder / "README.txt").write_text("notes")
    (folder / "thumbs.db").write_bytes(b"\x00\x01")
    assert read_volume(folder).array.shape == (512, 512, 5)  # ignored
    (folder / "broken.dcm").write_bytes(b"not dicom at all")
    message = _expect(folder, "not a DICOM file")
    assert "broken.dcm" in message


def test_empty_folder_refused(tmp_path):
    with pytest.raises(InputFileError, match="no DICOM image files"):
        read_volume(tmp_path)


def test_per_slice_rescale_applied(ge_copy):
    reference = read_volume(ge_copy[0].parent).array.astype(np.float64)
    ds = pydicom.dcmread(ge_copy[2])
    ds.RescaleSlope, ds.RescaleIntercept = 2, float(ds.RescaleIntercept) - 7
    ds.save_as(ge_copy[2])
    stored = pydicom.dcmread(ge_copy[2]).pixel_array.T.astype(np.float64)  # (i, j)
    volume = read_volume(ge_copy[0].parent)
    np.testing.assert_array_equal(volume.array[:, :, 2], stored * 2 + float(ds.RescaleIntercept))
    np.testing.assert_array_equal(volume.array[:, :, 1], reference[:, :, 1])


# ---------------------------------------------------------------- derived output


def _headers(folder):
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def test_derived_series_from_dicom(tmp_path, ge_copy):
    source = read_volume(ge_copy[0].parent)
    shape = (512, 512, 10)
    upscaled = dataclasses.replace(
        source,
        array=np.repeat(source.array, 2, axis=2).astype(np.float32) + 0.4,
        geometry=rescaled_geometry(source.geometry, source.array.shape, shape),
    )
    write_volume(upscaled, tmp_path / "out")
    image = _sitk_series(tmp_path / "out")
    assert image.GetSize() == shape
    np.testing.assert_allclose(image.GetSpacing(), (0.796875, 0.796875, 2.5), atol=1e-5)
    # the corner box is unchanged: the first slice centre moves half a new step towards the feet
    np.testing.assert_allclose(image.GetOrigin(), (-198.2, -204.0, -330.0 - 1.25), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), np.repeat(source.array, 2, axis=2))

    old = pydicom.dcmread(ge_copy[0], stop_before_pixels=True)
    new = _headers(tmp_path / "out")
    first = new[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert list(first.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]  # CT Image IOD: value 3 AXIAL or LOCALIZER
    assert first.SeriesInstanceUID != old.SeriesInstanceUID and len({d.SeriesInstanceUID for d in new}) == 1
    assert len({d.SOPInstanceUID for d in new}) == 10 and old.SOPInstanceUID not in {d.SOPInstanceUID for d in new}
    assert first.StudyInstanceUID == old.StudyInstanceUID and first.FrameOfReferenceUID == old.FrameOfReferenceUID
    assert first.PatientID == old.PatientID and first.Modality == "CT"
    assert first.SeriesDescription == f"{old.SeriesDescription} SR x1x1x2"
    assert (first.Rows, first.Columns, first.PixelRepresentation, first.BitsAllocated) == (512, 512, 1, 16)
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, 0.0)
    assert float(first.SpacingBetweenSlices) == 2.5 and float(first.SliceThickness) == 2.5  # 5 mm thick, halved
    np.testing.assert_allclose([float(d.ImagePositionPatient[2]) for d in new], -331.25 + 2.5 * np.arange(10))
    assert [float(v) for v in first.PixelSpacing] == [0.796875, 0.796875]


def test_derived_series_from_nifti_geometry(tmp_path):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / "ct")
    image = _sitk_series(tmp_path / "ct")
    np.testing.assert_allclose(image.GetSpacing(), volume.geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), volume.geometry.origin, atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), volume.geometry.matrix, atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), volume.array)
    first = _headers(tmp_path / "ct")[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and first.Modality == "CT"
    assert str(first.PatientName) == "" and first.PatientID == "" and first.StudyInstanceUID
    back = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.geometry.affine(), volume.geometry.affine(), atol=1e-5)


def test_float_values_stored_with_rescale(tmp_path):
    volume = synthetic_volume(np.float32, modality="CT")
    volume.array = volume.array * 0.37 + 2000.0
    write_volume(volume, tmp_path / "ct", dtype=np.float32)
    first = _headers(tmp_path / "ct")[0]
    slope = float(first.RescaleSlope)
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and slope < 1
    back = read_volume(tmp_path / "ct")
    np.testing.assert_allclose(back.array, volume.array, atol=slope / 2 + 1e-6)


def test_mr_float_values_stored_without_rescale(tmp_path):
    """The MR Image IOD has no Rescale Slope/Intercept: values are rounded and stored as they are."""
    volume = synthetic_volume(np.float32, modality="MR")
    volume.array = volume.array * 0.37 + 2000.0
    write_volume(volume, tmp_path / "mr", dtype=np.float32)
    first = _headers(tmp_path / "mr")[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert "RescaleSlope" not in first and "RescaleIntercept" not in first
    assert list(first.ImageType) == ["DERIVED", "SECONDARY", "OTHER"]
    np.testing.assert_array_equal(read_volume(tmp_path / "mr").array, np.rint(volume.array))


def test_dicom_series_to_nifti(tmp_path, ge_copy):
    source = read_volume(ge_copy[0].parent)
    write_volume(source, tmp_path / "ct.nii.gz")
    image = nib.load(tmp_path / "ct.nii.gz")
    # MANIFEST.md LPS origin (-198.2, -204, -330) is RAS (198.2, 204, -330); axes i, j, k = -x, -y, +z in RAS
    np.testing.assert_allclose(image.affine[:3, 3], (198.2, 204.0, -330.0), atol=1e-4)
    np.testing.assert_allclose(np.diag(image.affine)[:3], (-0.796875, -0.796875, 5.0), atol=1e-6)
    data = np.asanyarray(image.dataobj)
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, source.array)


# ---------------------------------------------------------------- patient data


def test_phi_canary(tmp_path, ge_copy, caplog):
    canary = "CANARY^PHI"
    for file in ge_copy:
        ds = pydicom.dcmread(file)
        ds.PatientName = canary
        ds.save_as(file)
    folder = ge_copy[0].parent
    (folder / "notes.txt").write_text("a non-DICOM file: logged at DEBUG")
    caplog.set_level(logging.DEBUG)
    volume = read_volume(folder)
    text = [repr(volume), str(volume), repr(volume.dicom_template), str(describe(volume))]
    write_volume(volume, tmp_path / "out")
    write_volume(volume, tmp_path / "out.nii.gz")
    text.append(str(describe(read_volume(tmp_path / "out"))))
    duplicate = pydicom.dcmread(ge_copy[2])
    duplicate.SOPInstanceUID = pydicom.uid.generate_uid()
    duplicate.save_as(folder / "duplicate.dcm")
    with pytest.raises(InputFileError) as info:
        read_volume(folder)
    text += [str(info.value), caplog.text]
    assert all(canary not in t and "CANARY" not in t for t in text)
    assert "CANARY" not in (tmp_path / "out.nii.gz").read_bytes().decode("latin-1")
    assert {str(d.PatientName) for d in _headers(tmp_path / "out")} == {canary}  # only in the written patient module


def test_mr_values_beyond_16_bits_divided_and_said(tmp_path):
    volume = synthetic_volume(np.float32, modality="MR")
    volume.array = (volume.array + 1024.0) * 100.0  # up to ~140,000: more than uint16 holds
    write_volume(volume, tmp_path / "mr", dtype=np.float32)
    first = _headers(tmp_path / "mr")[0]
    assert "RescaleSlope" not in first
    factor = float(first.DerivationDescription.split("divided by ")[1].split(". ")[0])
    assert volume.array.max() / factor <= 65535 < volume.array.max() / factor * 1.01
    np.testing.assert_allclose(read_volume(tmp_path / "mr").array * factor, volume.array, atol=factor)
