"""Atomic outputs: nothing half-written on KeyboardInterrupt or ENOSPC, no silent overwrite, umask permissions."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import nibabel as nib
import pytest

from rmisr_monai.errors import OutputFileError
from rmisr_monai.io import atomic_output, check_output_path, write_volume
from rmisr_monai.io import write as write_module
from rmisr_monai.io.atomic import current_umask
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

    def disk_full(volume, path, provenance=None):
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

    def disk_full(volume, path, provenance=None):
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(write_module._WRITERS, "nifti", disk_full)
    with pytest.raises(OutputFileError, match="No space left"):
        write_volume(volume, target, overwrite=True)
    assert target.read_bytes() == before and _listing(tmp_path) == ["out.nii.gz"]
    assert nib.load(target).shape == volume.array.shape


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                       (0o077, 0o600, 0o700)])
def test_outputs_get_the_umask_permissions(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert current_umask() == mask
    # the reference: what a plain open() and mkdir() give under this umask
    (tmp_path / "plain.txt").write_bytes(b"")
    (tmp_path / "plain_dir").mkdir()
    assert (_mode(tmp_path / "plain.txt"), _mode(tmp_path / "plain_dir")) == (file_mode, dir_mode)
    volume = synthetic_volume()
    for name in ("out.nii.gz", "out.nrrd", "out.mha"):
        write_volume(volume, tmp_path / name)
        assert _mode(tmp_path / name) == file_mode, name
    write_volume(volume, tmp_path / "series")
    assert _mode(tmp_path / "series") == dir_mode
    assert {_mode(f) for f in (tmp_path / "series").iterdir()} == {file_mode}


@pytest.mark.parametrize("name", ["out.nii.gz", "series"])
def test_overwrite_keeps_the_existing_mode(tmp_path, umask, name):
    umask(0o022)
    volume = synthetic_volume()
    target = tmp_path / name
    write_volume(volume, target)
    os.chmod(target, 0o750 if target.is_dir() else 0o640)
    write_volume(volume, target, overwrite=True)
    assert _mode(target) == (0o750 if target.is_dir() else 0o640)
