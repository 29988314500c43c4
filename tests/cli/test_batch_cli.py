"""``rmisr upscale IN_FOLDER OUT_FOLDER`` and ``rmisr upscale LIST.csv OUT_FOLDER``: one output per input at the same
relative path, a bad input reported and skipped, exit status, a second run that writes nothing, readable
permissions, rank shares; outputs read back with nibabel / SimpleITK."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from rmisr_monai.cli import main
from tests.cli.synthetic import write_ct_series

SHAPE = (9, 8, 3)


def _nifti(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(-1000, 1000, size=SHAPE).astype(np.int16)
    nib.save(nib.Nifti1Image(array, np.diag([0.7, 0.8, 2.0, 1.0])), path)
    return path


@pytest.fixture
def scans(tmp_path) -> Path:
    root = tmp_path / "scans"
    _nifti(root / "p1" / "t1.nii.gz", 0)
    _nifti(root / "p2" / "visit" / "ct.nii", 1)
    sitk.WriteImage(sitk.ReadImage(str(root / "p1" / "t1.nii.gz")), str(root / "p2" / "other.nrrd"))
    (root / "p3").mkdir()
    (root / "p3" / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 not a real stream")
    return root


def _files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture
def umask022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_folder_in_folder_out(scans, tmp_path, capsys, umask022):
    out = tmp_path / "out"
    argv = ["upscale", str(scans), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]
    assert main(argv) == 2  # one input failed
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("rmisr: error: ")]
    assert len(errors) == 1 and "broken.nii.gz" in errors[0] and "Traceback" not in captured.err
    assert "3 done, 0 skipped (output exists), 1 failed" in captured.out
    files = {k for k, _ in _files(out).items() if (out / k).is_file()}
    volumes = {"p1/t1.nii.gz", "p2/visit/ct.nii", "p2/other.nrrd"}
    assert files == volumes | {"p1/t1.json", "p2/visit/ct.json", "p2/other.json"}  # each with its sidecar
    for name in ("p1/t1.nii.gz", "p2/visit/ct.nii"):  # NIfTI stays NIfTI, each in-plane axis doubled
        image = nib.load(out / name)
        assert isinstance(image, nib.Nifti1Image) and image.shape == (18, 16, 3)
        np.testing.assert_allclose(image.header.get_zooms(), (0.35, 0.4, 2.0), rtol=1e-6)
    assert sitk.ReadImage(str(out / "p2" / "other.nrrd")).GetSize() == (18, 16, 3)
    # readable by others: 0644 files, 0755 folders
    for path in out.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    # the second run writes nothing new; the bad input still fails
    before = _files(out)
    assert main(argv) == 2
    assert "0 done, 3 skipped (output exists), 1 failed" in capsys.readouterr().out
    assert _files(out) == before
    (scans / "p3" / "broken.nii.gz").unlink()
    assert main(argv) == 0
    assert _files(out) == before


def test_csv_list_with_outputs_and_scales(tmp_path, capsys):
    a, b = _nifti(tmp_path / "in" / "a.nii.gz", 2), _nifti(tmp_path / "in" / "b.nii.gz", 3)
    listing = tmp_path / "list.csv"
    listing.write_text(f"input,output,scale\n{a},,\nin/b.nii.gz,b_x3.nrrd,3\n")
    out = tmp_path / "out"
    assert main(["upscale", str(listing), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]) == 0
    assert nib.load(out / "a.nii.gz").shape == (18, 16, 3)
    assert sitk.ReadImage(str(out / "b_x3.nrrd")).GetSize() == (27, 24, 3)
    assert "2 done" in capsys.readouterr().out and b.exists()


def test_series_folder_stays_one_series_and_series_under_a_folder_are_found(tmp_path, capsys):
    series = write_ct_series(tmp_path / "study" / "series1")
    out_series = tmp_path / "sr_series"
    assert main(["upscale", str(series), str(out_series), "--scale", "2", "--model", "bicubic", "--quiet"]) == 0
    assert len(list(out_series.iterdir())) == 4  # one derived DICOM series, a file per slice
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "study"), str(out), "--scale", "2", "--model", "bicubic",
                 "--output-ext", ".nii.gz", "--quiet"]) == 0
    assert nib.load(out / "series1.nii.gz").shape == (16, 16, 4)
    assert main(["upscale", str(tmp_path / "study"), str(out), "--scale", "2", "--model", "bicubic",
                 "--series-uid", "1.2.3"]) == 2
    assert "--series-uid" in capsys.readouterr().err


def test_ranks_share_the_folder(scans, tmp_path, capsys, monkeypatch):
    (scans / "p3" / "broken.nii.gz").unlink()
    out = tmp_path / "out"
    done = []
    for rank in (0, 1):  # what torchrun --nproc_per_node=2 runs, one process after the other
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(["upscale", str(scans), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]) == 0
        done.append(capsys.readouterr().out)
    assert "2 done" in done[0] and "rank 0 of 2" in done[0] and "1 done" in done[1] and "rank 1 of 2" in done[1]
    assert len([p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]) == 3


def test_memory_error_is_one_line_and_writes_nothing(scans, tmp_path, capsys, monkeypatch):
    from rmisr_monai.inference.batch import BatchUpscaler

    real = BatchUpscaler.upscale_traced

    def out_of_memory_on_ct(self, volume, scale=None):
        if volume.source_path.endswith("ct.nii"):
            raise MemoryError
        return real(self, volume, scale)

    monkeypatch.setattr(BatchUpscaler, "upscale_traced", out_of_memory_on_ct)
    src = scans / "p2" / "visit" / "ct.nii"
    single = tmp_path / "single"
    single.mkdir()
    assert main(["upscale", str(src), str(single / "sr.nii"), "--scale", "2", "--model", "bicubic", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(src) in err and "out of memory" in err and "--tile" in err
    assert list(single.iterdir()) == []
    out = tmp_path / "out"
    assert main(["upscale", str(scans), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert f"rmisr: error: {src}: out of memory while upscaling; try a smaller --tile or --batch" in captured.err
    assert "2 done, 0 skipped (output exists), 2 failed" in captured.out
    assert not (out / "p2" / "visit").exists()
