"""Readers that used to misread or give false reasons: Siemens MOSAIC (against nibabel), RT Dose grids (against
pydicom's own values), 1-bit DICOM SEG, corrupt MetaImage headers (ITK's own words), projection images; and the
label-map check."""

from __future__ import annotations

import copy
import os
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from rmisr_monai.cli import main
from rmisr_monai.errors import InputFileError
from rmisr_monai.io import read_volume, write_volume
from rmisr_monai.io.labels import is_label_map, label_map_reason
from tests.io.conftest import medical, synthetic_volume
from tests.io.scanner_files import real_slices

NIBABEL_DATA = os.path.join(os.path.dirname(nib.__file__), "nicom", "tests", "data")


def _nibabel_wrapper(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the DICOM readers are highly experimental"
        from nibabel.nicom import dicomwrappers

        return dicomwrappers.wrapper_from_file(str(path))


def test_siemens_mosaic_read_as_the_volume_nibabel_reads():
    path = medical("dicom_compressed", "siemens_trio_mr_ts", "1.dcm")
    volume = read_volume(path)
    wrapper = _nibabel_wrapper(path)
    data = wrapper.get_data()  # nibabel's axes are (row, column, slice); ours (column, row, slice)
    assert volume.array.shape == (64, 64, 35) == data.shape[1::-1] + data.shape[2:]
    np.testing.assert_array_equal(volume.array, data.transpose(1, 0, 2))
    for i, j, k in [(0, 0, 0), (5, 17, 3), (63, 0, 34), (31, 63, 20)]:
        np.testing.assert_allclose(volume.geometry.index_to_world([(i, j, k)])[0],
                                   (wrapper.affine @ [j, i, k, 1.0])[:3], atol=1e-4)  # fmt: skip
    assert "Siemens MOSAIC: 6 x 6 tiles" in volume.dicom_template.frames_summary


def test_info_reports_the_mosaic_volume(capsys):
    path = medical("dicom_compressed", "siemens_trio_mr_ts", "1.dcm")
    assert main(["info", str(path)]) == 0
    assert "shape: (64, 64, 35)" in capsys.readouterr().out


def test_mosaic_whose_pixels_do_not_tile_is_refused_in_one_line(capsys):
    """nibabel's test file 0.dcm claims 48 images of 128 x 128 in 256 x 256 pixels (its pixel data were cut down):
    nibabel's own get_data fails on it; we refuse it naming the sizes."""
    path = os.path.join(NIBABEL_DATA, "0.dcm")
    if not os.path.exists(path):
        pytest.skip("nibabel's test data (nicom/tests/data/0.dcm) not installed with nibabel")
    with pytest.raises(InputFileError, match=r"MOSAIC of 48 images in 7 x 7 tiles.*256 x 256 pixels"):
        read_volume(path)
    assert main(["info", path]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MOSAIC" in err


def test_rt_dose_grid_placed_by_grid_frame_offsets():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    volume = read_volume(path)
    assert volume.array.shape == (10, 10, 15)
    expected = ds.pixel_array.transpose(2, 1, 0) * float(ds.DoseGridScaling)
    np.testing.assert_allclose(volume.array, expected, rtol=1e-6)
    assert volume.array.dtype.kind == "f"  # Gy, not integers
    offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
    for k in (0, 7, 14):
        np.testing.assert_allclose(volume.geometry.index_to_world([(0, 0, k)])[0], ipp + [0, 0, offsets[k]])
    np.testing.assert_allclose(volume.geometry.spacing, (10.0, 10.0, 5.0))


def _seg(tmp_path):
    """A 1-bit BINARY DICOM SEG of 2 segments on 4 frames of 48 x 64 (packed: 8 pixels a byte)."""
    ds = copy.deepcopy(real_slices(1)[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.Modality = "SEG"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.SegmentationType = "BINARY"
    ds.NumberOfFrames = 4
    ds.SegmentSequence = DicomSequence([Dataset(), Dataset()])
    ds.PixelData = np.packbits(np.ones((4, 48, 64), dtype=np.uint8), bitorder="little").tobytes()
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        delattr(ds, keyword)
    ds.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    return tmp_path / "seg.dcm"


def test_one_bit_seg_refused_as_a_label_map_not_as_truncated(tmp_path):
    with pytest.raises(InputFileError) as info:
        read_volume(_seg(tmp_path))
    message = str(info.value)
    assert "DICOM SEG (2 segment(s), binary, 1-bit frames) is a label map" in message
    assert "nearest-neighbour" in message and "truncated" not in message and "corrupt" not in message


def _item(**values) -> DicomSequence:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return DicomSequence([item])


def test_binary_seg_read_as_one_label_volume(tmp_path):
    """Segments 1 and 2 on two planes 5 mm apart (4 frames, 1-bit packed), read as labels 0, 1, 2."""
    path = _seg(tmp_path)
    ds = pydicom.dcmread(path)
    masks = np.zeros((4, 48, 64), dtype=np.uint8)
    masks[0, 5:20, 10:30] = 1  # segment 1, plane z0
    masks[1, 25:40, 35:60] = 1  # segment 2, plane z0
    masks[2, 0:10, 0:10] = 1  # segment 1, plane z0 + 5
    masks[3, 30:48, 0:20] = 1  # segment 2, plane z0 + 5
    ds.PixelData = np.packbits(masks.ravel(), bitorder="little").tobytes()
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    shared = Dataset()
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelMeasuresSequence = _item(PixelSpacing=[0.8, 0.7], SliceThickness=5)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    groups = []
    for frame, (plane, segment) in enumerate([(0, 1), (0, 2), (1, 1), (1, 2)]):
        group = Dataset()
        group.PlanePositionSequence = _item(ImagePositionPatient=[x, y, z + 5 * plane])
        group.SegmentIdentificationSequence = _item(ReferencedSegmentNumber=segment)
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.save_as(path, enforce_file_format=True)
    volume = read_volume(path)
    expected = np.zeros((64, 48, 2), dtype=np.uint8)
    for frame, (plane, segment) in enumerate([(0, 1), (0, 2), (1, 1), (1, 2)]):
        expected[:, :, plane][masks[frame].T.astype(bool)] = segment
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.geometry.spacing, (0.7, 0.8, 5.0))
    assert label_map_reason(volume) == "a DICOM segmentation (SEG)"
    with pytest.raises(Exception, match="cannot be written as a DICOM image series"):
        write_volume(volume, tmp_path / "out")
    write_volume(volume, tmp_path / "labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "labels.nii.gz").dataobj), expected)


def test_corrupt_metaimage_header_gives_itks_reason_and_nothing_on_stderr(tmp_path, capfd):
    write_volume(synthetic_volume(), tmp_path / "ok.mha")
    data = (tmp_path / "ok.mha").read_bytes()
    (tmp_path / "bad.mha").write_bytes(data.replace(b"ElementType = MET_SHORT", b"ElementTypo = MET_SHORT"))
    capfd.readouterr()
    with pytest.raises(InputFileError) as info:
        read_volume(tmp_path / "bad.mha")
    captured = capfd.readouterr()
    message = str(info.value)
    assert "ElementType" in message and "No such file or directory" not in message
    assert captured.err == "" and captured.out == ""  # ITK's lines are in the reason, not loose on stderr


def test_projection_image_with_pixel_spacing_is_one_slice(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Modality = "CR"
    spacing = [float(v) for v in ds.PixelSpacing]
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.ImagerPixelSpacing = spacing
    ds.save_as(tmp_path / "cr.dcm")
    volume = read_volume(tmp_path / "cr.dcm")
    assert volume.array.shape == (ds.Columns, ds.Rows, 1) and volume.modality == "OT"
    np.testing.assert_allclose(volume.geometry.spacing[:2], spacing[::-1])
    np.testing.assert_array_equal(volume.array[:, :, 0], ds.pixel_array.T * float(ds.RescaleSlope)
                                  + float(ds.RescaleIntercept))  # fmt: skip
    del ds.ImagerPixelSpacing
    ds.save_as(tmp_path / "nospacing.dcm")
    with pytest.raises(InputFileError, match="ImagePositionPatient is missing.*PixelSpacing or ImagerPixelSpacing"):
        read_volume(tmp_path / "nospacing.dcm")


def test_real_cr_radiographs_read_as_one_slice_or_refused_for_their_pixel_size():
    path = medical("dicom_compressed", "nema_cr_radiographs", "RG2_JLSL.dcm")  # PixelSpacing 0.2 mm
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    volume = read_volume(path)
    assert volume.array.shape == (ds.Columns, ds.Rows, 1) and volume.geometry.spacing[:2] == (0.2, 0.2)
    with pytest.raises(InputFileError, match="needs PixelSpacing or ImagerPixelSpacing"):  # RG3 has no pixel size
        read_volume(medical("dicom_compressed", "nema_cr_radiographs", "RG3_J2KR.dcm"))


# ---------------------------------------------------------------- label maps


def _blobs(shape=(40, 36, 12), labels=7):
    """Labels 0..labels as spheres, like a segmentation."""
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    array = np.zeros(shape, dtype=np.uint8)
    rng = np.random.default_rng(0)
    for label in range(1, labels + 1):
        centre = rng.uniform(0, shape)
        array[np.linalg.norm(grid - centre, axis=-1) < 7] = label
    return array


def test_label_maps_detected_images_not(tmp_path):
    labels = synthetic_volume(np.uint8)
    labels.array = _blobs()
    assert is_label_map(labels) and "8 distinct values" in label_map_reason(labels)
    for name in ("mr/brain_t1_0p88mm_uint8.nii.gz", "mr/stroke_t1_uint8.nii.gz", "ct/totalseg_abdomen_ct_3mm.nii.gz"):
        assert not is_label_map(read_volume(medical(name))), name  # 8-bit MR: <= 256 values, but not constant
    constant = synthetic_volume()
    constant.array = np.zeros_like(constant.array)
    assert not is_label_map(constant)
    write_volume(labels, tmp_path / "Segmentation.seg.nrrd")
    assert "Slicer segmentation" in label_map_reason(read_volume(tmp_path / "Segmentation.seg.nrrd"))
    write_volume(labels, tmp_path / "labels.nii.gz")
    image = nib.load(tmp_path / "labels.nii.gz")
    image.header.set_intent("label")
    nib.save(image, tmp_path / "intent.nii.gz")
    assert "NIFTI_INTENT_LABEL" in label_map_reason(read_volume(tmp_path / "intent.nii.gz"))
