"""The extension as a Slicer user gets it: the packaged module folder, run in a Slicer-like Python without rmisr_monai.

Real pieces: ``slicer_extension/package.py`` (its command line), a venv holding only packages from the index
(tests/slicer/setup_slicer_venv.sh, which .ci/run runs: slicer-core with real MRML, pydicom 2.4.4 as Slicer 5.10
ships it, torch==2.13.0, the module's Resources/requirements.txt), the worker script run there, ``rmisr upscale`` of
this checkout as the reference, and the checks of tests/slicer/real_mrml/ run by pytest inside that venv on real
MRML nodes. Where the venv is missing, the worker tests make their own (index packages only, cached for the
session); the real-MRML checks skip, saying why, only where slicer-core cannot be installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.slicer.conftest import EXTENSION, REPO_ROOT

SLICER_VENV = Path(os.environ.get("RMISR_SLICER_VENV", Path.home() / ".cache" / "rmisr-monai" / "slicer-venv"))
SETUP = Path(__file__).with_name("setup_slicer_venv.sh")


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _has(python: Path, code: str, cwd) -> bool:
    return python.is_file() and subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def packaged(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("extension")
    subprocess.run([sys.executable, str(EXTENSION / "package.py"), str(out)], check=True, capture_output=True)
    return out / "SuperResolution"


@pytest.fixture(scope="session")
def index_python(tmp_path_factory) -> Path:
    """A Python with only index packages: the .ci/run venv, else one made here (minutes; once a session)."""
    python = _python(SLICER_VENV)
    scratch = tmp_path_factory.mktemp("cwd")
    if not _has(python, "import torch, monai, SimpleITK, nibabel, scipy, pydicom", scratch):
        venv = tmp_path_factory.mktemp("index-venv")
        result = subprocess.run(["bash", str(SETUP)], env={**os.environ, "RMISR_SLICER_VENV": str(venv)},
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            pytest.skip(f"no index-only venv could be made (offline?): {result.stderr.strip()[-300:]}")
        python = _python(venv)
    assert not _has(python, "import rmisr_monai", scratch), "the index venv must not hold rmisr_monai"
    return python


def test_package_writes_the_module_folder_with_the_engine_copied_and_only_default_weights(packaged):
    for item in ("SuperResolution.py", "SuperResolutionLib/worker.py", "Scripts/super_resolution_worker.py",
                 "Resources/UI/SuperResolution.ui", "Resources/requirements.txt", "rmisr_monai/__init__.py",
                 "rmisr_monai/sample/ct_demo_abdomen_int16.nii.gz"):  # fmt: skip
        assert (packaged / item).is_file(), item
    manifest = json.loads((packaged / "rmisr_monai/PACKAGED.json").read_text())
    source = REPO_ROOT / "rmisr_monai"
    for relative, digest in manifest["files"].items():
        if relative != "weights/registry.json":  # byte-for-byte copies of the package source
            assert hashlib.sha256((source / relative).read_bytes()).hexdigest() == digest, relative
    sources = {p.relative_to(source).as_posix() for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    assert sources <= set(manifest["files"])
    registry = json.loads((source / "weights/registry.json").read_text())["models"]
    defaults = [e for e in registry if e.get("default", True) and e.get("status", "current") == "current"]
    shipped = json.loads((packaged / "rmisr_monai/weights/registry.json").read_text())["models"]
    assert shipped == defaults and shipped
    weights = sorted(p.name for p in (packaged / "rmisr_monai/weights").glob("*.pt"))
    assert weights == sorted({e["file"] for e in defaults})


def _ct_like(path: Path) -> None:
    """A small int16 CT-like volume (air around a bright blob) on a flipped, oblique grid."""
    grids = np.meshgrid(*(np.linspace(-1, 1, n) for n in (5, 12, 10)), indexing="ij")
    array = (-1000 + 1400 * np.exp(-sum(g**2 for g in grids) / 0.3)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((12.5, -40.25, 101.0))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((-c, s, 0, -s, -c, 0, 0, 0, -1))
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("model", [["--model", "bicubic"], []], ids=["bicubic", "shipped-default"])
def test_packaged_worker_in_an_index_only_python_matches_rmisr_upscale(packaged, index_python, tmp_path, model):
    _ct_like(tmp_path / "in.nrrd")
    worker = [str(index_python), str(packaged / "Scripts/super_resolution_worker.py"), "--input", "in.nrrd",
              "--output", "ours.nrrd", "--scale", "2", "--device", "cpu", *model]  # fmt: skip
    done = subprocess.run(worker, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    cli = [sys.executable, "-m", "rmisr_monai.cli", "upscale", "in.nrrd", "ref.nrrd", "--scale", "2", "--device",
           "cpu", "--quiet", *model]  # fmt: skip
    subprocess.run(cli, cwd=tmp_path, check=True, capture_output=True)
    ours, ref = (sitk.ReadImage(str(tmp_path / name)) for name in ("ours.nrrd", "ref.nrrd"))
    assert ours.GetSize() == ref.GetSize() == (20, 24, 5)
    assert ours.GetSpacing() == ref.GetSpacing() and ours.GetOrigin() == ref.GetOrigin()
    assert ours.GetDirection() == ref.GetDirection() and ours.GetPixelID() == ref.GetPixelID()
    difference = np.abs(sitk.GetArrayFromImage(ours).astype(int) - sitk.GetArrayFromImage(ref))
    assert difference.max() <= (0 if model else 1)  # a learned network: int16 rounding of float sums at most
    line = [line for line in done.stdout.splitlines() if line.startswith('@rmisr {"kind": "done"')][-1]
    assert json.loads(line[len("@rmisr "):])["device"] == "CPU"


def test_real_mrml_checks_pass_inside_the_slicer_core_venv(packaged, tmp_path):
    python = _python(SLICER_VENV)
    if not python.is_file():
        pytest.skip(f"no slicer-core venv at {SLICER_VENV}: run tests/slicer/setup_slicer_venv.sh (.ci/run does)")
    if not _has(python, "import slicer; slicer.vtkMRMLScene()", tmp_path):
        pytest.skip(f"slicer-core is not installable for {python} (setup_slicer_venv.sh said why)")
    folder = Path(__file__).with_name("real_mrml")
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-c", str(folder / "pytest.ini"), "--rootdir", str(folder), str(folder)],
        cwd=tmp_path, env={**os.environ, "RMISR_MODULE_DIR": str(packaged)}, capture_output=True, text=True,
    )
    tail = result.stdout[-3000:]
    assert result.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail and " skipped" not in tail, tail
