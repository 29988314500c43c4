"""Headers that claim more voxels than their file (or the memory) can hold are refused before any allocation, in
one line naming the file; geometry errors name the file too."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rmisr_monai.cli import main
from rmisr_monai.errors import InputFileError
from rmisr_monai.io import limits
from rmisr_monai.io.limits import DEFLATE_MAX_RATIO, check_claimed_size
from rmisr_monai.io.read import read_volume

HUGE = (30000, 30000, 30000)


def _huge_nifti(tmp_path, compressed: bool):
    small = tmp_path / "small.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), small)
    header = bytearray(small.read_bytes()[:400])
    struct.pack_into("<8h", header, 40, 3, *HUGE, 1, 1, 1, 1)  # dim[0..7]
    path = tmp_path / ("huge.nii.gz" if compressed else "huge.nii")
    path.write_bytes(gzip.compress(bytes(header)) if compressed else bytes(header))
    return path


def _huge_text_header(tmp_path, name: str):
    sizes = " ".join(map(str, HUGE))
    if name.endswith(".mha"):
        text = f"ObjectType = Image\nNDims = 3\nDimSize = {sizes}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    else:
        text = f"NRRD0004\ntype: short\ndimension: 3\nsizes: {sizes}\nencoding: gzip\nendian: little\n\n"
    path = tmp_path / name
    path.write_bytes(text.encode() + b"\x00" * 300)
    return path


@pytest.mark.parametrize("kind", ["nii", "nii.gz", "mha", "nrrd"])
def test_a_400_byte_file_claiming_30000_cubed_is_refused_in_one_line(tmp_path, capsys, monkeypatch, kind):
    if kind.startswith("nii"):
        path = _huge_nifti(tmp_path, kind == "nii.gz")
    else:
        path = _huge_text_header(tmp_path, f"h.{kind}")

    def no_allocation(*args, **kwargs):
        raise AssertionError("voxels were allocated")

    monkeypatch.setattr(np, "asanyarray", no_allocation)  # nibabel reads the voxels through it
    with pytest.raises(InputFileError, match=r"30000 x 30000 x 30000 voxels .* file holds only"):
        read_volume(path)
    monkeypatch.undo()
    out = tmp_path / "out.nii.gz"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["upscale", str(path), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path.name in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_claimed_size_bounds():
    path = Path("x.nii")
    check_claimed_size(path, (10, 10, 10), 2, 2000, compressed=False)  # exactly fits
    with pytest.raises(InputFileError, match="holds only 1,999 bytes"):
        check_claimed_size(path, (10, 10, 10), 2, 1999, compressed=False)
    check_claimed_size(path, (10, 10, 10), 2, -(-2000 // DEFLATE_MAX_RATIO), compressed=True)
    with pytest.raises(InputFileError, match="of compressed data"):
        check_claimed_size(path, (100, 100, 100), 2, 1, compressed=True)


def test_more_than_the_free_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "ok.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), path)
    monkeypatch.setattr(limits, "available_memory", lambda: 512)  # 8^3 int16 = 1024 bytes
    claim = r"ok.nii: the header claims 8 x 8 x 8 voxels, 1,024 bytes in memory, more than the 512 bytes free"
    with pytest.raises(InputFileError, match=claim):
        read_volume(path)
    monkeypatch.setattr(limits, "available_memory", lambda: 4096)
    assert read_volume(path).array.shape == (8, 8, 8)


@pytest.mark.parametrize("value, reason", [(0.0, "zero-length axis"), (np.nan, "finite")])
def test_geometry_errors_name_the_file(tmp_path, capsys, value, reason):
    path = tmp_path / "flat.nii"
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), None)
    image.set_sform(np.eye(4), code=1)
    image.header["qform_code"] = 0
    nib.save(image, path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<f", data, 320, value)  # srow_z[2]: a degenerate or NaN third axis in the sform
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=rf"flat.nii: .*{reason}"):
        read_volume(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rmisr: error: {path}: ") and err.count("\n") == 1


def test_dicom_series_claiming_huge_slices_is_refused(tmp_path, capsys):
    import pydicom

    from tests.cli.synthetic import write_ct_series

    series = write_ct_series(tmp_path / "series")
    for file in series.iterdir():
        ds = pydicom.dcmread(file)
        ds.Rows = ds.Columns = 65535
        ds.save_as(file)
    with pytest.raises(InputFileError, match=r"series: the header claims 65535 x 65535 x 4 voxels .* holds only"):
        read_volume(series)
    assert main(["info", str(series)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
