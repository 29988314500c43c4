"""The bundles' training data (``rmisr_monai.training.datasets``): volumes, DICOM series folders and 2D images under
a folder, split by file, random training patches and whole-slice validation pairs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from rmisr_monai.data.images import read_image_2d
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.write import write_volume
from rmisr_monai.ops.resize import imresize
from rmisr_monai.training.datasets import SliceDatasets, split_files, training_files
from tests.bundles.conftest import write_crops
from tests.conftest import shared_path


@pytest.fixture
def mixed_folder(tmp_path):
    """A NIfTI crop, the same crop as a derived DICOM series folder, and a single-frame CT DICOM slice (2D)."""
    root = tmp_path / "data"
    root.mkdir()
    nifti = write_crops(tmp_path / "crops", "CT")[0]
    shutil.copy(nifti, root / nifti.name)
    write_volume(read_volume(nifti), root / "b_series")
    shutil.copy(shared_path("data", "medical", "dicom_compressed", "nema_ct1_chest", "CT_small.dcm"), root / "c.dcm")
    return root


def test_files_are_found_and_split_by_file(mixed_folder):
    files = training_files(mixed_folder)
    names = [f.removeprefix(str(mixed_folder) + "/") for f in files]
    assert names == ["b_series", "c.dcm", "chest.nii.gz"]  # the series folder is one volume, its files are not listed
    train, val = split_files(files, 0.2)
    assert (train, val) == (files[:2], files[2:])
    with pytest.raises(ConfigurationError, match="at least two files"):
        split_files(files[:1], 0.2)
    (mixed_folder.parent / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no volume"):
        training_files(mixed_folder.parent / "empty")


def test_patches_and_whole_slice_pairs(mixed_folder):
    data = SliceDatasets(mixed_folder, "CT", scale=2, patch_size=8, val_slices=2)
    assert (data.intensity["kind"], data.intensity["a_min"], data.intensity["a_max"]) == ("ct", -1024.0, 3071.0)
    assert len(data.train.data) == 3 + 1  # the 3 slices of the series and the 2D DICOM slice
    patch = data.train[0]
    assert patch["image"].shape == (1, 8, 8) and patch["label"].shape == (1, 16, 16)
    assert 0.0 <= float(patch["label"].min()) and float(patch["label"].max()) <= 1.0
    pairs = [data.validation[i] for i in range(len(data.validation))]
    assert [p["slice"] for p in pairs] == [0, 2]  # 2 evenly spaced whole slices of the held-out NIfTI
    expected = read_volume(mixed_folder / "chest.nii.gz").array.astype(np.float32)
    for pair in pairs:
        hr = np.clip((expected[..., pair["slice"]] + 1024.0) / 4095.0, 0.0, 1.0)  # CT window, independently
        np.testing.assert_allclose(pair["label"][0].numpy(), hr, atol=1e-6)
        torch.testing.assert_close(pair["image"], imresize(pair["label"], 0.5))  # MATLAB bicubic x1/2 of HR
        assert pair["image"].shape == (1, 24, 24) and pair["scale"].tolist() == [2.0, 2.0]


def test_ct_window_maps_the_padded_range_for_training_and_validation(mixed_folder):
    """ct_window (the shipped wide CT models' -3072..3071): recorded in the recipe and applied to every slice."""
    data = SliceDatasets(mixed_folder, "CT", scale=2, patch_size=8, val_slices=2, ct_window=(-3072, 3071))
    assert (data.intensity["kind"], data.intensity["a_min"], data.intensity["a_max"]) == ("ct", -3072.0, 3071.0)
    expected = read_volume(mixed_folder / "chest.nii.gz").array.astype(np.float32)
    for pair in (data.validation[i] for i in range(len(data.validation))):
        hr = np.clip((expected[..., pair["slice"]] + 3072.0) / 6143.0, 0.0, 1.0)
        np.testing.assert_allclose(pair["label"][0].numpy(), hr, atol=1e-6)
    dicom_slice = next(item for item in data.train.data if item["source"].endswith(".dcm"))
    hu = read_image_2d(dicom_slice["source"])
    np.testing.assert_allclose(np.asarray(dicom_slice["label"]), np.clip((hu + 3072.0) / 6143.0, 0, 1), atol=1e-6)
