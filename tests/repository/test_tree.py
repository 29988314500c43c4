"""The repository stays lean: no large tracked file outside the shipped weights, no superseded weights shipped.

Slicer's ExtensionsIndex refuses repositories over 100 MB and a wheel that users pip-install should not carry model
files that no default can choose; both rules are read off ``git ls-files`` and the registry, not assumed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rmisr_monai.weights import WEIGHTS_DIR, read_registry

ROOT = Path(__file__).resolve().parents[2]
LARGE_FILE_BYTES = 5 * 1000 * 1000  # the project rule: nothing over 5 MB outside rmisr_monai/weights/


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_over_5_mb_outside_the_weights_folder():
    large = [
        f"{p.relative_to(ROOT)} ({p.stat().st_size / 1e6:.1f} MB)"
        for p in _tracked_files()
        if p.is_file() and p.stat().st_size > LARGE_FILE_BYTES and WEIGHTS_DIR not in p.resolve().parents
    ]
    assert not large, f"tracked files over 5 MB outside rmisr_monai/weights/: {large}"


def test_no_training_checkpoint_is_tracked():
    names = [p.relative_to(ROOT).as_posix() for p in _tracked_files()]
    assert not [n for n in names if n.endswith("resume.pt") or Path(n).name.startswith("checkpoint_")]


def test_the_weights_folder_holds_exactly_the_files_of_current_registry_entries():
    """Every shipped .pt is the file of a current entry, and every current entry's file is there: a superseded
    model leaves the package with its file."""
    current = {e["file"] for e in read_registry() if e.get("status", "current") == "current"}
    superseded = [e for e in read_registry() if e.get("status") == "superseded"]
    on_disk = {p.name for p in WEIGHTS_DIR.glob("*.pt")}
    assert on_disk == current
    assert all("file" not in e and e.get("replaced_by") for e in superseded)
    assert sum((WEIGHTS_DIR / f).stat().st_size for f in current) < 25 * 1000 * 1000


def test_every_modality_and_scale_has_exactly_one_default():
    defaults = [e for e in read_registry() if e.get("default")]
    keys = [(e["modality"], "any" if e.get("arbitrary_scale") else e["scale"]) for e in defaults]
    assert len(keys) == len(set(keys))
    assert set(keys) == {(m, s) for m in ("CT", "MR") for s in (2, 3, 4, "any")}
    assert all(e.get("status") == "current" for e in defaults)


def test_the_slow_tier_names_existing_test_modules():
    from tests.conftest import SLOW_MODULES

    assert SLOW_MODULES and all((ROOT / name).is_file() for name in SLOW_MODULES)
