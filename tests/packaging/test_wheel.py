"""The package as a wheel: ``pip wheel --no-deps -w DIST .`` builds exactly one ``rmisr_monai-*.whl`` of at most
25 MB that holds the package, its sample and exactly the weights files the registry can choose (every current
entry's file, with its sha256; no superseded or unlisted file), the version of ``rmisr_monai.__version__`` and the
``rmisr`` command; nothing of the repository beside the package (tests, bundles, benchmarks, Slicer extension).

The build runs on a copy of what setup.py reads (no stale ``build/`` folder of the checkout can leak into it) and
without build isolation, so no package index is needed. The fresh-venv check (install torch==2.13.0, then the wheel,
then ``rmisr demo DIR``) needs the index and minutes: it runs when ``RMISR_WHEEL_INSTALL_TEST=1``.
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


@pytest.mark.skipif(os.environ.get("RMISR_WHEEL_INSTALL_TEST") != "1", reason="set RMISR_WHEEL_INSTALL_TEST=1")
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=1800)
    subprocess.run([*pip, str(wheel)], check=True, timeout=1800)
    out = tmp_path / "demo"
    result = subprocess.run(
        [str(venv / "bin" / "rmisr"), "demo", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(out.glob("*.nii.gz")) and list(out.glob("*_quality.png"))
