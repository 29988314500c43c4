"""The MONAI model zoo's own CI on every bundle, offline: ``ci/verify_bundle.py -b NAME -m min`` and ``-m full``
(files, version and changelog, metadata against the schema, ``verify_net_in_out``, ``ckpt_export`` to TorchScript),
and the zoo's unit-test runner ``ci/unit_tests/runner.py -b NAME`` with this project's zoo-style test of the bundle
(``zoo_unit_tests/test_<bundle>.py`` on ``zoo_unit_tests/zoo_bundle_test.py``: train, evaluate, infer, each with
``check_properties=True``).

They run as the zoo runs them: from a copy of the zoo's ``ci/`` folder (``../shared/monai/model-zoo``, commit
dfae206) with the bundle copied unmodified into its ``models/``; the official schema is put where the zoo's
``ci/prepare_schema.py`` would download it (``models/<bundle>/eval/schema.json``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundles.conftest import BUNDLE_NAMES, BUNDLES, SCHEMA, ZOO_UNIT_TESTS
from tests.conftest import REPO_ROOT, shared_path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A model-zoo checkout: its ci/ and models/model_info.json, the bundles under models/, the schema in place."""
    source = shared_path("monai", "model-zoo")
    root = tmp_path_factory.mktemp("model-zoo")
    shutil.copytree(source / "ci", root / "ci")
    (root / "models").mkdir()
    shutil.copy(source / "models" / "model_info.json", root / "models" / "model_info.json")
    for name in BUNDLE_NAMES:
        shutil.copytree(BUNDLES / name, root / "models" / name)
        (root / "models" / name / "eval").mkdir()
        shutil.copy(SCHEMA, root / "models" / name / "eval" / "schema.json")
        shutil.copy(ZOO_UNIT_TESTS / f"test_{name}.py", root / "ci" / "unit_tests" / f"test_{name}.py")
    shutil.copy(ZOO_UNIT_TESTS / "zoo_bundle_test.py", root / "ci" / "unit_tests" / "zoo_bundle_test.py")
    return root


def _zoo(zoo: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=zoo, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_verify_bundle_min_and_full(zoo, name):
    result = _zoo(zoo, "ci/verify_bundle.py", "-b", name, "-m", "min")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "metadata format is verified correctly." in result.stdout
    result = _zoo(zoo, "ci/verify_bundle.py", "-b", name, "-m", "full")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for step in ("directory is verified correctly.", "version and changelog are verified correctly.",
                 "metadata format is verified correctly.", "data shape is verified correctly.",
                 "export weights into TorchScript module successfully."):
        assert step in result.stdout, (step, result.stdout[-2000:])
    assert (zoo / "models" / name / "models" / "verify_model.ts").is_file()


def test_verify_bundle_fails_on_a_broken_bundle(zoo, tmp_path):
    """The check is real: the same run on a copy whose model.pt is the package's checkpoint dict fails."""
    import torch

    name = "ct_edge_super_resolution"
    broken = zoo / "models" / "broken_bundle"
    shutil.copytree(zoo / "models" / name, broken)
    state = torch.load(broken / "models" / "model.pt", weights_only=True)
    torch.save({"format": "rmisr-monai/1", "state_dict": state}, broken / "models" / "model.pt")
    try:
        result = _zoo(zoo, "ci/verify_bundle.py", "-b", "broken_bundle", "-m", "full")
    finally:
        shutil.rmtree(broken)
    assert result.returncode != 0 and "export weights into TorchScript" not in result.stdout


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_zoo_unit_test_runner(zoo, name):
    result = _zoo(zoo, "ci/unit_tests/runner.py", "-b", name)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    assert "Ran 2 tests" in text and "\nOK" in text, text[-2000:]
