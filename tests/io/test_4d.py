"""4D volumes (NIfTI, NRRD, MHA) and detached NRRD (.nhdr): read, upscaled volume by volume, written back with the
fourth axis and its metadata; checked with nibabel, pynrrd and SimpleITK."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from rmisr_monai.cli import main
from rmisr_monai.errors import OutputFileError
from rmisr_monai.io import read_volume, write_volume
from tests.io.conftest import medical, synthetic_volume

TR = 2.5  # s between volumes
T = 3


@pytest.fixture
def four_d(tmp_path):
    """A crop of a real T2 head MR repeated as 3 volumes (different intensities), TR 2.5 s, toffset 1.5 s."""
    image = nib.load(medical("mr", "brain_t2w_int16.nii.gz"))
    crop = np.asarray(image.dataobj)[90:130, 100:136, 28:32]
    data = np.stack([crop // (t + 1) for t in range(T)], axis=3).astype(np.int16)
    out = nib.Nifti1Image(data, image.affine)
    out.header.set_zooms((*image.header.get_zooms()[:3], TR))
    out.header.set_xyzt_units("mm", "sec")
    out.header["toffset"] = 1.5
    out.header["slice_duration"] = 0.05
    path = tmp_path / "fmri.nii.gz"
    nib.save(out, path)
    return path


def _upscale(source, target, *options):
    return main(["upscale", str(source), str(target), "--scale", "2", "--model", "bicubic", "--quiet", *options])


def test_four_d_nifti_upscaled_volume_by_volume(tmp_path, four_d):
    assert _upscale(four_d, tmp_path / "out.nii.gz") == 0
    source, result = nib.load(four_d), nib.load(tmp_path / "out.nii.gz")
    assert result.shape == (80, 72, 4, T)
    zooms = source.header.get_zooms()
    np.testing.assert_allclose(result.header.get_zooms(), (zooms[0] / 2, zooms[1] / 2, zooms[2], TR), rtol=1e-6)
    assert result.header.get_xyzt_units() == ("mm", "sec")
    assert float(result.header["toffset"]) == pytest.approx(1.5)
    assert float(result.header["slice_duration"]) == pytest.approx(0.05)
    # each volume equals the 3D upscale of that volume
    for t in (0, T - 1):
        frame = nib.Nifti1Image(np.asarray(source.dataobj)[..., t], source.affine)
        nib.save(frame, tmp_path / f"frame{t}.nii.gz")
        assert _upscale(tmp_path / f"frame{t}.nii.gz", tmp_path / f"frame{t}_x2.nii.gz") == 0
        expected = nib.load(tmp_path / f"frame{t}_x2.nii.gz")
        np.testing.assert_array_equal(np.asarray(result.dataobj)[..., t], np.asarray(expected.dataobj))
        np.testing.assert_allclose(result.affine, expected.affine, atol=1e-5)


def test_info_describes_the_fourth_axis(four_d, capsys):
    assert main(["info", str(four_d)]) == 0
    assert "fourth_axis: 3 volumes along time, every 2.5 s (each volume is upscaled)" in capsys.readouterr().out


def test_four_d_to_dicom_refused(tmp_path, four_d, capsys):
    assert _upscale(four_d, tmp_path / "out") == 2
    assert "cannot be written as a DICOM series" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nhdr"])
def test_four_d_itk_round_trip(tmp_path, four_d, suffix):
    volume = read_volume(four_d)
    write_volume(volume, tmp_path / f"v{suffix}")
    image = sitk.ReadImage(str(tmp_path / f"v{suffix}"))  # independent reader
    assert image.GetDimension() == 4 and image.GetSpacing()[3] == pytest.approx(TR)
    back = read_volume(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.fourth_axis.step == pytest.approx(TR)
    np.testing.assert_allclose(back.geometry.affine(), volume.geometry.affine(), atol=1e-6)


# ------------------------------------------------------------------------------------------------------- .nhdr


def test_detached_nrrd_written_by_pynrrd_is_read(tmp_path):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / "attached.nrrd")
    data, header = nrrd.read(str(tmp_path / "attached.nrrd"))
    nrrd.write(str(tmp_path / "detached.nhdr"), data, header, detached_header=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attached.nrrd", "detached.nhdr", "detached.raw.gz"]
    back = read_volume(tmp_path / "detached.nhdr")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.geometry.affine(), volume.geometry.affine(), atol=1e-9)


def test_detached_nrrd_written_and_read_by_pynrrd(tmp_path):
    volume = synthetic_volume()
    write_volume(volume, tmp_path / "out.nhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nhdr", "out.raw.gz"]  # no temporary left
    data, header = nrrd.read(str(tmp_path / "out.nhdr"))
    assert header["data file"] == "out.raw.gz"
    np.testing.assert_array_equal(data, volume.array)
    np.testing.assert_allclose(header["space directions"].T, volume.geometry.affine()[:3, :3], atol=1e-9)
    with pytest.raises(OutputFileError, match="exists"):
        write_volume(dataclasses.replace(volume, array=volume.array + 1), tmp_path / "out.nhdr")
    write_volume(dataclasses.replace(volume, array=volume.array + 1), tmp_path / "out.nhdr", overwrite=True)
    np.testing.assert_array_equal(read_volume(tmp_path / "out.nhdr").array, volume.array + 1)


def test_nhdr_through_the_cli(tmp_path):
    write_volume(synthetic_volume(), tmp_path / "in.nhdr")
    assert _upscale(tmp_path / "in.nhdr", tmp_path / "out.nhdr") == 0
    assert read_volume(tmp_path / "out.nhdr").array.shape == (24, 20, 6)
    assert (tmp_path / "out.raw.gz").is_file()
