"""The test tiers (CONTRIBUTING.md, "Tests"): the measured slow lists in ``tests/conftest.py`` name tests that exist,
so that a renamed module or test does not slip back into the fast tier unnoticed."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT, SLOW_MODULES, SLOW_TESTS


def test_every_slow_module_exists():
    assert sorted(m for m in SLOW_MODULES if not (REPO_ROOT / m).is_file()) == []


def test_every_slow_test_exists():
    missing = []
    for node in SLOW_TESTS:
        path, name = node.split("::")
        source = REPO_ROOT / path
        names = {
            f.name for f in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
            if isinstance(f, ast.FunctionDef)
        } if source.is_file() else set()  # fmt: skip
        if name.split("[")[0] not in names:
            missing.append(node)
    assert missing == []
