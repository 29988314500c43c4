"""The independent DICOM tools the derived-series tests run: dciodvfy (dicom3tools), dcmtk (dcmdump, dcmftest) and
dcm2niix. `.ci/run` installs the Debian packages; each test skips, naming the tool, where one is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

TOOLS = {"dciodvfy": "dicom3tools", "dcmdump": "dcmtk", "dcmftest": "dcmtk", "dcm2niix": "dcm2niix"}
_VALUE_DETAIL = re.compile(r" - \(0x[0-9a-f]{4},0x[0-9a-f]{4}\).*$")


def need(tool: str) -> str:
    """The tool's path; skips the test (naming the Debian package) when it is not installed."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (Debian package {TOOLS[tool]}; .ci/run installs it)")
    return path


def dciodvfy_errors(files: list[Path]) -> set[str]:
    """The error classes dciodvfy reports over ``files``: each ``Error - ...`` line without the value it quotes."""
    found = set()
    for file in files:
        run = subprocess.run([need("dciodvfy"), str(file)], capture_output=True, text=True, timeout=60)
        for line in (run.stdout + run.stderr).splitlines():
            if line.startswith("Error"):
                found.add(_VALUE_DETAIL.sub("", line.strip()))
    return found


def dcmtk_accepts(file: Path) -> tuple[bool, str]:
    """dcmftest (a DICOM Part 10 file) and dcmdump (parses every element, ``-E``: errors on stderr) both pass."""
    form = subprocess.run([need("dcmftest"), str(file)], capture_output=True, text=True, timeout=60)
    dump = subprocess.run([need("dcmdump"), "-q", "-E", str(file)], capture_output=True, text=True, timeout=60)
    ok = form.returncode == 0 and form.stdout.startswith("yes") and dump.returncode == 0 and not dump.stderr.strip()
    return ok, form.stdout + dump.stderr


def dcm2niix(folder: Path, out: Path) -> list[nib.Nifti1Image]:
    """dcm2niix of a series folder: the NIfTI images it writes (sorted by name), ``-z n`` uncompressed."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([need("dcm2niix"), "-z", "n", "-f", "%s_%p", "-o", str(out), str(folder)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return [nib.load(f) for f in sorted(out.glob("*.nii"))]


def corner_box(image: nib.Nifti1Image) -> np.ndarray:
    """World (RAS) bounds ``(2, 3)`` of the voxel-corner box of an image: min and max over its 8 corners."""
    shape = image.shape[:3]
    corners = np.array([[a, b, c, 1.0] for a in (-0.5, shape[0] - 0.5) for b in (-0.5, shape[1] - 0.5)
                        for c in (-0.5, shape[2] - 0.5)])  # fmt: skip
    world = (image.affine @ corners.T).T[:, :3]
    return np.stack([world.min(axis=0), world.max(axis=0)])
