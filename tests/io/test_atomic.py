"""Atomic outputs: nothing half-written on KeyboardInterrupt or ENOSPC, no silent overwrite."""

from __future__ import annotations

import errno
from pathlib import Path

import nibabel as nib
import pytest

from rmisr_monai.errors import OutputFileError
from rmisr_monai.io import atomic_output, check_output_path, write_volume
from rmisr_monai.io import write as write_module
from tests.io.conftest import synthetic_volume


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_renames_temp_onto_target(tmp_path):
    target = tmp_path / "out.nii.gz"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path and temp.name.endswith(".nii.gz") and temp != target
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _listing(tmp_path) == ["out.nii.gz"]


@pytest.mark.parametrize("is_dir", [False, True])
def test_keyboard_interrupt_leaves_nothing(tmp_path, is_dir):
    target = tmp_path / ("out" if is_dir else "out.nrrd")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target, is_dir=is_dir) as temp:
            (temp / "IM1.dcm" if is_dir else temp).write_bytes(b"partial")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("is_dir", [False, True])
def test_keyboard_interrupt_keeps_existing_output(tmp_path, is_dir):
    target = tmp_path / ("out" if is_dir else "out.mha")
    if is_dir:
        target.mkdir()
        (target / "old.dcm").write_bytes(b"old")
    else:
        target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target, overwrite=True, is_dir=is_dir) as temp:
            (temp / "new.dcm" if is_dir else temp).write_bytes(b"new")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == [target.name]
    assert (target / "old.dcm" if is_dir else target).read_bytes() == b"old"


def test_overwrite_replaces_folder(tmp_path):
    target = tmp_path / "series"
    target.mkdir()
    (target / "old.dcm").write_bytes(b"old")
    with atomic_output(target, overwrite=True, is_dir=True) as temp:
        (temp / "new.dcm").write_bytes(b"new")
    assert _listing(target) == ["new.dcm"]
    assert _listing(tmp_path) == ["series"]


def test_existing_output_refused_before_writing(tmp_path):
    target = tmp_path / "out.nii"
    target.write_bytes(b"old")
    with pytest.raises(OutputFileError, match="already exists"):
        check_output_path(target, overwrite=False)
    entered = False
    with pytest.raises(OutputFileError, match="already exists"):
        with atomic_output(target):
            entered = True
    assert not entered and target.read_bytes() == b"old" and _listing(tmp_path) == ["out.nii"]
    with pytest.raises(OutputFileError, match="already exists"):
        write_volume(synthetic_volume(), target)
    assert target.read_bytes() == b"old"


def test_missing_folder_and_kind_mismatch_refused(tmp_path):
    with pytest.raises(OutputFileError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.nii", overwrite=True)
    (tmp_path / "dir.nii").mkdir()
    with pytest.raises(OutputFileError, match="is a folder"):
        with atomic_output(tmp_path / "dir.nii", overwrite=True):
            pass
    nested = tmp_path / "home"
    (nested / "sub").mkdir(parents=True)
    with pytest.raises(OutputFileError, match="sub-folders"):
        with atomic_output(nested, overwrite=True, is_dir=True):
            pass
    assert (nested / "sub").is_dir()


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nrrd", "series"])
def test_enospc_during_write(tmp_path, monkeypatch, name):
    target = tmp_path / name
    volume = synthetic_volume()

    def disk_full(volume, path):
        (path / "IM00001.dcm" if path.is_dir() else path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    for kind in write_module._WRITERS:
        monkeypatch.setitem(write_module._WRITERS, kind, disk_full)
    with pytest.raises(OutputFileError, match="No space left"):
        write_volume(volume, target)
    assert _listing(tmp_path) == []


def test_enospc_keeps_existing_output(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    volume = synthetic_volume()
    write_volume(volume, target)
    before = target.read_bytes()

    def disk_full(volume, path):
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(write_module._WRITERS, "nifti", disk_full)
    with pytest.raises(OutputFileError, match="No space left"):
        write_volume(volume, target, overwrite=True)
    assert target.read_bytes() == before and _listing(tmp_path) == ["out.nii.gz"]
    assert nib.load(target).shape == volume.array.shape
