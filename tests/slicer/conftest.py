"""Fixtures of the Slicer-extension tests: the module folder on ``sys.path``, the Slicer stand-in, small volumes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION = REPO_ROOT / "slicer_extension"
MODULE_DIR = EXTENSION / "SuperResolution"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

# checks that run inside the slicer-core venv only (test_real_mrml.py starts them there)
collect_ignore = ["real_mrml"]

# modules that import ``slicer`` when loaded: imported afresh under each test's stand-in
_SLICER_MODULES = ("SuperResolution", "SuperResolutionLib.job", "SuperResolutionLib.nodes")


@pytest.fixture
def slicer(monkeypatch):
    """The stand-in ``slicer`` module (tests/slicer/slicer_standin.py), installed for one test."""
    pytest.importorskip("vtk", reason="the Slicer stand-in is built on vtk (pip install -e '.[test]')")
    from tests.slicer import slicer_standin

    for name in _SLICER_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = slicer_standin.install(monkeypatch)
    yield module
    for name in _SLICER_MODULES:
        sys.modules.pop(name, None)


def bright_volume(shape_kji=(6, 14, 12), bright_kji=(2, 6, 5), dtype=np.int16) -> np.ndarray:
    """KJI array of zeros (air-like -1000) with one bright voxel."""
    array = np.full(shape_kji, -1000, dtype=dtype)
    array[bright_kji] = 2000
    return array


def oblique_ijk_to_ras(spacing=(0.7, 0.9, 2.5), origin=(12.5, -40.25, 101.0), angle=0.3) -> np.ndarray:
    """A rotated (about S) IJKToRAS matrix with uneven spacing and an odd origin."""
    c, s = np.cos(angle), np.sin(angle)
    directions = np.array([[-c, s, 0.0], [-s, -c, 0.0], [0.0, 0.0, 1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = directions * np.asarray(spacing)
    matrix[:3, 3] = origin
    return matrix
