"""The lint rules of ``ruff.toml`` hold on the whole tree (ruff is a test requirement; the test skips with a
reason where it is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run(
        [ruff, "check", "--output-format", "concise", "rmisr_monai", "tests", "benchmarks", "slicer_extension",
         "bundles"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:]
