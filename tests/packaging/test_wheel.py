"""The package as a wheel: ``pip wheel --no-deps -w DIST .`` builds exactly one ``rmisr_monai-*.whl`` of at most
25 MB that holds the package, its sample and exactly the weights files the registry can choose (every current
entry's file, with its sha256; no superseded or unlisted file), the version of ``rmisr_monai.__version__`` and the
``rmisr`` command; nothing of the repository beside the package (tests, bundles, benchmarks, Slicer extension).

The build runs on a copy of what setup.py reads (no stale ``build/`` folder of the checkout can leak into it) and
without build isolation, so no package index is needed. The fresh-venv check needs the index and minutes: it runs
when ``RMISR_WHEEL_INSTALL_TEST=1``. It installs torch==2.13.0, then the wheel with its ``bundle`` extra, into a new
venv run outside the checkout (no ``PYTHONPATH``, working folder a temporary one), and there runs ``rmisr demo DIR``,
``rmisr upscale`` with every default model of the registry (in-plane at its scale, the arbitrary-scale ones
through-plane), each bundle's ``configs/inference.json`` from a copy of the bundle folder standing alone, and
``twine check`` on the wheel.
"""

from __future__ import annotations

import email
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import rmisr_monai
from tests.conftest import REPO_ROOT

MAX_WHEEL_BYTES = 25 * 10**6
SOURCES = ("setup.py", "MANIFEST.in", "README.md", "LICENSE", "rmisr_monai")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, source / name)
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
        cwd=source, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wheels = list(dist.iterdir())
    assert len(wheels) == 1 and wheels[0].name.startswith("rmisr_monai-") and wheels[0].suffix == ".whl", wheels
    return wheels[0]


def _registry() -> list[dict]:
    return json.loads((REPO_ROOT / "rmisr_monai" / "weights" / "registry.json").read_text())["models"]


def test_one_wheel_of_bounded_size_with_the_version(wheel):
    assert wheel.name == f"rmisr_monai-{rmisr_monai.__version__}-py3-none-any.whl"
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES
    with zipfile.ZipFile(wheel) as z:
        info = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(z.read(info))
        entry_points = z.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert metadata["Name"] == "rmisr-monai" and metadata["Version"] == rmisr_monai.__version__
    assert "torch==2.13.0" in metadata.get_all("Requires-Dist")
    assert "rmisr = rmisr_monai.cli:main" in entry_points


def test_the_wheel_holds_exactly_the_weights_the_registry_can_choose(wheel):
    current = {e["file"]: e["sha256"] for e in _registry() if e.get("file") and e.get("status") != "superseded"}
    superseded = {e["name"] for e in _registry() if e.get("status") == "superseded"}
    assert current and "rmisr_bl64_x2.pt" in current
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        weights = {n.removeprefix("rmisr_monai/weights/"): z.read(n) for n in names if n.endswith(".pt")}
        assert "rmisr_monai/weights/registry.json" in names
    assert set(weights) == set(current)  # no superseded or unlisted file, none missing
    assert all(hashlib.sha256(data).hexdigest() == current[file] for file, data in weights.items())
    assert not any(Path(file).stem in superseded for file in weights)


def test_the_wheel_holds_the_package_and_nothing_else_of_the_repository(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"rmisr_monai", f"rmisr_monai-{rmisr_monai.__version__}.dist-info"}
    assert "rmisr_monai/sample/ct_demo_abdomen_int16.nii.gz" in names and "rmisr_monai/cli.py" in names
    package = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "rmisr_monai").rglob("*.py")}
    assert package <= set(names)  # every module ships
    assert not [n for n in names if n.endswith((".pyc", ".tmp")) or "__pycache__" in n]


def _small_volume(path: Path, modality: str, slices: int = 2) -> Path:
    """A 40 x 40 x ``slices`` NIfTI with structure: CT in HU with air around a body, MR uint8."""
    rng = np.random.default_rng(0)
    i, j = np.mgrid[:40, :40]
    body = (i - 20) ** 2 + (j - 20) ** 2 < 15**2
    if modality == "CT":
        plane = np.where(body, 40 + 400 * ((i // 5 + j // 7) % 2), -1000)
        array = np.stack([plane + rng.integers(-20, 20, plane.shape) for _ in range(slices)], -1).astype(np.int16)
    else:
        plane = np.where(body, 80 + 100 * ((i // 4 + j // 6) % 2), 0)
        array = np.stack([plane + rng.integers(0, 20, plane.shape) for _ in range(slices)], -1).astype(np.uint8)
    nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    return path


@pytest.mark.skipif(os.environ.get("RMISR_WHEEL_INSTALL_TEST") != "1", reason="set RMISR_WHEEL_INSTALL_TEST=1")
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo_every_default_and_each_bundle(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()

    def run(command: list[str], timeout: int = 1800) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    run([*pip, "torch==2.13.0"])
    run([*pip, f"{wheel}[bundle]", "twine"])
    where = run([python, "-c", "import rmisr_monai; print(rmisr_monai.__file__)"]).stdout.strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(REPO_ROOT), where
    run([python, "-m", "twine", "check", "--strict", str(wheel)])

    out = tmp_path / "demo"
    run([str(venv / "bin" / "rmisr"), "demo", str(out)])
    assert list(out.glob("*.nii.gz")) and list(out.glob("*_quality.png"))

    defaults = [e for e in _registry() if e.get("file") and e.get("status") != "superseded" and e.get("default", True)]
    assert {e["scale"] for e in defaults if not e.get("arbitrary_scale")} == {2, 3, 4}
    for entry in defaults:
        source = _small_volume(work / f"{entry['modality']}.nii.gz", entry["modality"], slices=4)
        target = work / f"{entry['name']}.nii.gz"
        through = ["--through-plane", "--axis", "z"] if entry.get("arbitrary_scale") else []
        run([str(venv / "bin" / "rmisr"), "upscale", str(source), str(target), "--scale", str(entry["scale"]),
             "--model", entry["name"], "--quiet", *through])  # fmt: skip
        shape = nib.load(target).shape
        s = int(entry["scale"])
        assert shape == ((40, 40, 4 * s) if through else (40 * s, 40 * s, 4)), (entry["name"], shape)

    for bundle in sorted(p for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file()):
        copy = tmp_path / "bundles" / bundle.name
        shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("train_output", "eval", "inference_output"))
        data = tmp_path / "data" / bundle.name
        data.mkdir(parents=True)
        modality = json.loads((copy / "configs" / "inference.json").read_text())["modality"]
        _small_volume(data / "scan.nii.gz", modality, slices=4)
        result_dir = tmp_path / "results" / bundle.name
        run([python, "-m", "monai.bundle", "run", "--config_file", str(copy / "configs" / "inference.json"),
             "--bundle_root", str(copy), "--dataset_dir", str(data), "--output_dir", str(result_dir),
             "--device", "cpu"])  # fmt: skip
        assert [p.name for p in result_dir.glob("*.nii.gz")] == ["scan.nii.gz"], bundle.name
