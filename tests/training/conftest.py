"""Small synthetic training data shared by the tests of ``rmisr_monai.training``."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image


@pytest.fixture()
def data(tmp_path):
    """An MR volume (40 x 40 x 6) and three grey pictures, the last narrower than a 32-pixel HR patch."""
    rng = np.random.default_rng(3)
    volume = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(500, 80, (40, 40, 6)).astype(np.int16), np.eye(4)), volume)
    pictures = []
    for i, shape in enumerate([(48, 56), (40, 40), (20, 60)]):  # the last one is narrower than the HR patch
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode="L").save(path)
        pictures.append(path)
    return volume, pictures


@pytest.fixture()
def ct(tmp_path):
    """Two 256 x 256 CT slices of a whole, unpadded field: air with a soft-tissue body."""
    path = tmp_path / "ct.nii.gz"
    body = np.full((256, 256, 2), -1000, np.int16)
    body[90:170, 60:200] = 40
    nib.save(nib.Nifti1Image(body, np.eye(4)), path)
    return path
