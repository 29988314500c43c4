"""Layers that import one way (issue 35), checked on the source: every import of a module, function-local ones
included, goes to its own layer or a lower one, and the package has no import cycle.

The layers, lowest first (CONTRIBUTING.md, "Layout"). ``rmisr_monai/__init__.py`` only re-exports lazily and is not
ranked. :mod:`rmisr_monai.transforms.super_resolve` is the MONAI transform that runs the volume engine, so it sits
with the engine, above the other transforms.
"""

from __future__ import annotations

import pytest

from tests.repository.imports import PACKAGE, find_cycle, import_graph

LAYERS = (
    ("errors", "core"),
    ("ops",),
    ("networks",),
    ("transforms", "losses", "metrics"),
    ("io",),
    ("data",),
    ("weights",),
    ("inference", "transforms.super_resolve"),
    ("evaluation", "training", "bundles"),
    ("cli",),
)


def rank(module: str) -> int | None:
    """The layer of a module: of the longest ``LAYERS`` entry that names it or a package above it."""
    name = module.removeprefix(PACKAGE + ".")
    best = None
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            if (name == entry or name.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (level, entry)
    return None if best is None else best[0]


def test_every_module_has_a_layer():
    unranked = [m for m in import_graph() if m != PACKAGE and rank(m) is None]
    assert not unranked, f"modules outside every layer (add them to LAYERS and CONTRIBUTING.md): {unranked}"


def test_imports_go_down_the_layers():
    upward = [
        f"{module} (layer {rank(module)}) imports {target} (layer {rank(target)})"
        for module, targets in import_graph().items()
        if module != PACKAGE
        for target in sorted(targets)
        if target != PACKAGE and rank(target) > rank(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("module", ["rmisr_monai.core.options", "rmisr_monai.cli"])
def test_the_command_line_front_door_imports_no_torch(module):
    """``rmisr --help`` and argument errors answer at once: building the parser imports neither torch nor MONAI."""
    import subprocess
    import sys

    code = (
        f"import sys, {module}; from rmisr_monai.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'monai', 'SimpleITK', 'pydicom') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_lazy_transform_names_are_those_of_super_resolve():
    from rmisr_monai import transforms
    from rmisr_monai.transforms import super_resolve

    assert transforms.SUPER_RESOLVE_NAMES == tuple(super_resolve.__all__)
