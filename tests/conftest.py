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
