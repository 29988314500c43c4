"""Reading training items: 2D pictures and DICOM files, slices of real CT volumes (shared data; skipped if absent)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from rmisr_monai.data.images import image_items, read_image_2d
from rmisr_monai.data.pairs import PairedPatchDataset
from rmisr_monai.data.slices import PADDED_COPY_MARK, read_volume_array, rim_tile_corners, volume_slice_items
from rmisr_monai.errors import ConfigurationError, InputFileError
from rmisr_monai.transforms.field_of_view import FieldOfViewPad
from rmisr_monai.transforms.intensity import IntensityNormalization
from tests.conftest import shared_path


def test_png_gray_and_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    read_rgb = read_image_2d(path, "rgb")
    np.testing.assert_array_equal(read_rgb, np.moveaxis(rgb, -1, 0).astype(np.float32))
    gray = read_image_2d(path)
    np.testing.assert_allclose(gray[0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
    # Pillow's own "L" conversion rounds the same luma to integers
    pil_l = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    assert np.abs(gray[0] - pil_l).max() <= 1.0


def test_16_bit_png_keeps_its_range(tmp_path):
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(read_image_2d(path)[0], values.astype(np.float32))


def test_real_chest_xray_png():
    path = shared_path("data", "medical", "images_2d", "xray_chest_nih_00000001_000.png")
    items = image_items([path])
    image = items[0]["label"]
    assert image.shape == (1, 512, 512) and image.dtype == np.float32 and items[0]["source"] == str(path)
    np.testing.assert_array_equal(image[0], np.asarray(Image.open(path).convert("L"), dtype=np.float32))


@pytest.mark.parametrize("name", ["nema-ct1_jpll.dcm", "nema-ct1_j2ki.dcm", "CT1_JLSN.dcm"])
def test_compressed_ct_dicom_in_hu(name):
    path = shared_path("data", "medical", "dicom_compressed", "nema_ct1_chest", name)
    ds = pydicom.dcmread(path)
    image = read_image_2d(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image[0], expected.astype(np.float32))
    assert image.min() < -900  # air in HU


def test_lossless_dicom_variants_agree():
    folder = shared_path("data", "medical", "dicom_compressed", "nema_mr1_small")
    reference = read_image_2d(folder / "MR_small.dcm")
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        np.testing.assert_array_equal(read_image_2d(folder / name), reference)


def test_multiframe_and_missing_files_raise(tmp_path):
    multi = shared_path("data", "medical", "dicom_compressed", "emri_small_multiframe", "emri_small.dcm")
    with pytest.raises(InputFileError, match="multi-frame"):
        read_image_2d(multi)
    with pytest.raises(InputFileError, match="no such file"):
        read_image_2d(tmp_path / "absent.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputFileError, match="not a readable image"):
        read_image_2d(junk)


def test_volume_written_and_read_back(tmp_path):
    volume = np.random.default_rng(1).normal(size=(4, 6, 5)).astype(np.float32)
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        path = tmp_path / f"vol{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
        # SimpleITK arrays are (k, j, i); the reader returns Volume's (i, j, k)
        np.testing.assert_array_equal(read_volume_array(path), volume.transpose(2, 1, 0))
    items = volume_slice_items([tmp_path / "vol.mha"], axis=2)
    assert len(items) == 4 and items[3]["slice"] == 3
    np.testing.assert_array_equal(items[3]["label"][0], volume[3].T)
    assert len(volume_slice_items([tmp_path / "vol.mha"], axis=0)) == 5


def test_real_ct_slices_normalised_per_volume_and_air_skipped():
    path = shared_path("data", "medical", "ct", "totalseg_abdomen_ct_3mm.nii.gz")
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)  # (k, j, i)
    every = volume_slice_items([path], normalization=IntensityNormalization.ct())  # axis 2: k
    assert len(every) == volume.shape[0]
    k = volume.shape[0] // 2
    expected = np.clip((volume[k].T + 1024.0) / 4095.0, 0.0, 1.0)
    np.testing.assert_allclose(every[k]["label"][0].numpy(), expected, rtol=0, atol=1e-6)
    assert every[k]["label"].applied_operations[0]["extra_info"]["intensity"]["kind"] == "ct"
    body = volume_slice_items([path], normalization=IntensityNormalization.ct(), foreground_threshold=-500.0,
                              min_foreground_fraction=0.2)
    kept = {item["slice"] for item in body}
    fractions = (volume > -500.0).mean(axis=(1, 2))
    assert kept == {int(i) for i in np.flatnonzero(fractions >= 0.2)}
    sample = PairedPatchDataset(body, scale=2, patch_size=16, seed=0)[0]
    assert sample["image"].shape == (1, 16, 16) and sample["label"].shape == (1, 32, 32)


def test_dicom_series_folder():
    folder = shared_path("data", "medical", "dicom_series", "ct_ge_lightspeed16_abdomen_subset")
    volume = read_volume_array(folder)
    assert volume.ndim == 3 and volume.shape[:2] == (512, 512) and volume.min() < -900
    with pytest.raises(InputFileError, match="no DICOM"):
        read_volume_array(folder.parent.parent / "images_2d")


def _write(path, array_ijk):
    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0))), str(path))
    return path


def test_fov_padding_copies_only_whole_unpadded_ct_fields(tmp_path):
    rng = np.random.default_rng(2)
    ct = np.full((256, 256, 2), -1000.0, np.float32)
    ct[64:192, 80:176] = rng.normal(40.0, 20.0, size=(128, 96, 2))  # a body inside the reconstruction circle
    paths = [
        _write(tmp_path / "ct.nii.gz", ct),
        _write(tmp_path / "crop.nii.gz", ct[:200, :200]),  # a crop: no scanner circle to draw
        _write(tmp_path / "padded.nii.gz", np.where(ct == -1000.0, -3024.0, ct).astype(np.float32)),
        _write(tmp_path / "mr.nii.gz", rng.uniform(0, 500, size=(256, 256, 2)).astype(np.float32)),
    ]
    percentiles = IntensityNormalization.for_modality("MR")
    plain = volume_slice_items(paths, normalization=percentiles)
    items = volume_slice_items(paths, normalization=percentiles, fov_padding=(-3024.0, -2048.0))
    extra = [item for item in items if "padded with" in item["source"]]
    assert len(plain) == 8 and len(items) == 12 and len(extra) == 4
    assert {item["source"] for item in extra} == {
        f"{paths[0]} (padded with -3024 outside the field of view)",
        f"{paths[0]} (padded with -2048 outside the field of view)",
    }
    raw = volume_slice_items(paths[:1], fov_padding=(-2048.0,))  # stored units: the padding itself is visible
    y, x = np.meshgrid(np.arange(256) - 127.5, np.arange(256) - 127.5, indexing="ij")
    outside = np.abs(x) - 0.5 >= np.sqrt(128.0**2 - y**2)  # GE's staircase: the row's chord misses the voxel
    np.testing.assert_array_equal(raw[2]["label"][0][outside], -2048.0)
    np.testing.assert_array_equal(raw[2]["label"][0][~outside], ct[:, :, 0][~outside])
    # each padded copy is normalised by its own percentiles: padding at 0, air lifted well above it
    padded = extra[0]["label"][0].numpy()
    assert padded[0, 0] == pytest.approx(0.0, abs=1e-6) and 0.4 < padded[128, 20] < 0.99


@pytest.mark.parametrize("n", [256, 384, 512])
@pytest.mark.parametrize("crop", [64, 96, 128, 192])
def test_every_crop_of_a_rim_tile_crosses_the_rim(n, crop):
    """Squares 5/4 of the crop on the rim: every crop position holds padding and field of view (summed-area table)."""
    tile = crop + crop // 4
    if tile > n:
        pytest.skip("tile larger than the slice")
    outside = FieldOfViewPad(0.0).outside(n, n).numpy().astype(np.int64)
    table = np.pad(outside, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    corners = rim_tile_corners(n, n, tile)
    assert len(set(corners)) == len(corners) >= 4 and (len(corners) == 8 or 2 * tile > n)
    for i0, j0 in corners:
        assert 0 <= i0 <= n - tile and 0 <= j0 <= n - tile
        i, j = np.meshgrid(np.arange(i0, i0 + tile - crop + 1), np.arange(j0, j0 + tile - crop + 1), indexing="ij")
        padded = table[i + crop, j + crop] - table[i, j + crop] - table[i + crop, j] + table[i, j]
        assert (padded > 0).all() and (padded < crop * crop).all()
    with pytest.raises(ConfigurationError, match="does not fit"):
        rim_tile_corners(100, 120, 101)


def test_padded_copies_as_rim_tiles_are_cut_from_the_padded_slice(tmp_path):
    ct = np.random.default_rng(4).normal(-300.0, 300.0, size=(256, 256, 3)).clip(-1000, 2000).astype(np.float32)
    path = _write(tmp_path / "ct.nii.gz", ct)
    whole = volume_slice_items([path], fov_padding=(-3024.0,))
    tiles = volume_slice_items([path], fov_padding=(-3024.0,), fov_rim_tile=80)
    assert [i["source"] for i in tiles[:3]] == [str(path)] * 3 and len(tiles) == 3 + 3 * 8
    padded_slices = {item["slice"]: item["label"] for item in whole[3:]}
    corners = rim_tile_corners(256, 256, 80)
    for k, item in enumerate(tiles[3:]):
        i0, j0 = corners[k % 8]
        assert item["source"].endswith(PADDED_COPY_MARK) and item["label"].shape == (1, 80, 80)
        np.testing.assert_array_equal(item["label"], padded_slices[item["slice"]][:, i0 : i0 + 80, j0 : j0 + 80])
        assert item["label"].base is None  # a copy: the whole padded slice is not kept alive
