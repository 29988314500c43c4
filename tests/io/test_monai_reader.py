"""One reader: ``LoadImage(reader=RmisrReader())`` + ``SuperResolved`` give the same geometry and voxels as
``rmisr upscale`` for a tilted series and a 4D NIfTI; MONAI's default reader does not keep the tilt."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from rmisr_monai.cli import main
from rmisr_monai.errors import InputFileError
from rmisr_monai.io.monai_reader import RmisrReader
from rmisr_monai.transforms.super_resolve import SuperResolved
from rmisr_monai.weights import load_model
from tests.io.scanner_files import real_slices, save_series, tilt
from tests.io.test_4d import four_d  # noqa: F401 (fixture)


def _pipeline(path, **reader):
    net, _ = load_model("bicubic")
    load = Compose([LoadImaged("image", reader=RmisrReader(**reader)), EnsureChannelFirstd("image")])
    loaded = load({"image": str(path)})["image"]
    return loaded, SuperResolved("image", net, 2, device="cpu")({"image": loaded})["image"]


def _cli(source, target):
    args = ["upscale", str(source), str(target), "--scale", "2", "--model", "bicubic", "--quiet", "--dtype", "float32"]
    assert main(args) == 0
    return nib.load(target)


def test_tilted_series_same_geometry_as_the_cli(tmp_path):
    series = save_series(real_slices(5), tmp_path / "tilted", tilt)
    loaded, result = _pipeline(series)
    cli = _cli(series, tmp_path / "cli.nii.gz")
    assert tuple(result.shape) == (1, *cli.shape)
    np.testing.assert_allclose(result.affine.numpy(), cli.affine, atol=1e-4)  # sheared, exactly as the CLI writes
    np.testing.assert_allclose(result[0].numpy(), np.asarray(cli.dataobj), atol=1e-3)
    # MONAI's default reader (ITK/GDCM) puts the tilted slices on an orthogonal grid: the last slice is off
    default = LoadImaged("image")({"image": str(series)})["image"]
    last = [0, 0, 4, 1]
    assert np.linalg.norm(default.affine.numpy() @ last - loaded.affine.numpy() @ last) > 1.0


def test_four_d_volumes_become_channels(tmp_path, four_d):  # noqa: F811
    loaded, result = _pipeline(four_d)
    cli = _cli(four_d, tmp_path / "cli.nii.gz")
    assert tuple(loaded.shape) == (3, 40, 36, 4) and tuple(result.shape) == (3, 80, 72, 4)
    np.testing.assert_allclose(result.affine.numpy(), cli.affine, atol=1e-4)
    np.testing.assert_allclose(np.moveaxis(result.numpy(), 0, -1), np.asarray(cli.dataobj), atol=1e-3)


def test_uneven_series_refused_or_resampled(tmp_path):
    series = save_series([s for k, s in enumerate(real_slices(4)) if k != 1], tmp_path / "uneven")
    reader = RmisrReader()
    with pytest.raises(InputFileError, match="5 to 10 mm"):
        reader.get_data(reader.read(series))
    loaded, _ = _pipeline(series, resample=True)
    assert tuple(loaded.shape) == (1, 64, 48, 4)
    np.testing.assert_allclose(np.linalg.norm(loaded.affine.numpy()[:3, :3], axis=0)[2], 5.0, atol=1e-5)
