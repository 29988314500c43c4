"""Shared test fixtures: where the read-only shared data lives, and a skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RMISR_SHARED", REPO_ROOT.parent / "shared"))
DATA = SHARED / "data"
PEERS = SHARED / "peers"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_path(*parts: str) -> Path:
    """Path below ``../shared``; skips the calling test with a clear reason when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (set RMISR_SHARED to the shared folder)")
    return path


@pytest.fixture
def data_dir() -> Path:
    return shared_path("data")


# a learned network small enough for any test: EDSR-baseline with 4 features and 1 block, x2, CT HU window
TINY_NETWORK = ("edsr_baseline", {"in_channels": 1, "scale": 2, "features": 4, "num_blocks": 1})
TINY_INTENSITY = {"kind": "ct", "a_min": -1024.0, "a_max": 3071.0, "clip": True}


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """A checkpoint (package format) of :data:`TINY_NETWORK` with seeded random weights, in ``tmp_path``."""
    from rmisr_monai.networks import get_network
    from rmisr_monai.weights import save_checkpoint

    torch.manual_seed(0)
    name, kwargs = TINY_NETWORK
    return save_checkpoint(tmp_path / "tiny.pt", get_network(name, **kwargs), name, kwargs, TINY_INTENSITY)


# test modules that took over 20 s on 2 cores (`pytest --durations=50`, 2026-12-07, AMD EPYC, shared machine): the
# fast tier leaves them out (pytest.ini)
SLOW_MODULES = {
    "tests/bundles/test_bundle_workflows.py",
    "tests/bundles/test_model_zoo_ci.py",
    "tests/cli/test_fuzz.py",
    "tests/inference/test_adapt.py",
    "tests/inference/test_exact_tiling.py",
    "tests/inference/test_fast_paths.py",
    "tests/inference/test_shipped_models.py",
    "tests/networks/test_rlfn.py",
    "tests/networks/test_imdn_official.py",
    "tests/packaging/test_wheel.py",
    "tests/slicer/test_real_mrml.py",
    "tests/training/test_training.py",
}
# single tests of otherwise fast modules that took over 10 s on their own (same measurement); node ids
SLOW_TESTS = {
    "tests/slicer/test_logic.py::test_the_module_self_test_passes_under_the_standin",
}


def pytest_collection_modifyitems(config, items):
    """Mark each test by its module: ``slow`` from :data:`SLOW_MODULES` (or the test from :data:`SLOW_TESTS`),
    ``shared_data`` and ``subprocess`` from what the module's source uses."""
    sources: dict[Path, str] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in sources:
            sources[path] = path.read_text(encoding="utf-8")
        source = sources[path]
        relative = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name
        if relative in SLOW_MODULES or f"{relative}::{item.name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if "shared_path(" in source or "data_dir" in source or "PEERS" in source:
            item.add_marker(pytest.mark.shared_data)
        if "subprocess" in source:
            item.add_marker(pytest.mark.subprocess)
