"""Installing what the module needs on first use, after asking (the way SlicerMONAIAuto3DSeg's
``dependency_handler.py`` and SlicerTotalSegmentator's ``setupPythonRequirements`` do it).

1. PyTorch through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the
   build for the computer's GPU driver; MONAI 1.6 needs torch >= 2.8.
2. rmisr-monai with ``pip --no-deps`` (its own pin of torch must not replace the build PyTorchUtils chose), then the
   requirements its metadata declares except torch (:func:`package_requirements`), and the extension's own
   ``Resources/requirements.txt`` (psutil, to cancel the worker's whole process tree).

Nothing is imported at Slicer start-up: :func:`missing_packages` only looks the packages up.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "TORCH_REQUIREMENT",
    "PACKAGE_SOURCE_SETTING",
    "DEFAULT_PACKAGE_SOURCE",
    "REQUIRED_MODULES",
    "missing_packages",
    "read_requirements",
    "package_requirements",
    "install_dependencies",
]

TORCH_REQUIREMENT = ">=2.8"  # MONAI 1.6.1's requirement
# where pip finds rmisr-monai: a PyPI name, a path to a source checkout or a git URL (QSettings key, or environment)
PACKAGE_SOURCE_SETTING = "SuperResolution/PackageSource"
DEFAULT_PACKAGE_SOURCE = "rmisr-monai"
# importable name -> what it is, for the consent question
REQUIRED_MODULES = {"torch": "PyTorch", "rmisr_monai": "rmisr-monai", "psutil": "psutil"}
DISTRIBUTION = "rmisr-monai"
# requirements left to PyTorchUtils (a pip pin would replace the build it chose for the GPU driver)
TORCH_PACKAGES = ("torch",)


def missing_packages() -> list[str]:
    """Names (``REQUIRED_MODULES`` values) of the packages that cannot be imported, without importing any."""
    return [label for module, label in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]


def read_requirements(path: str | os.PathLike) -> list[str]:
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def package_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """The install requirements an installed distribution declares, without extras-only ones and without torch."""
    kept = []
    for line in importlib.metadata.requires(distribution) or []:
        requirement, _, marker = line.partition(";")
        name = re.split(r"[\s<>=!~\[(]", requirement.strip(), maxsplit=1)[0]
        if "extra" not in marker and name.lower() not in TORCH_PACKAGES:
            kept.append(line.strip())
    return kept


def install_dependencies(
    confirm: Callable[[str], bool],
    pip_install: Callable[[str], None],
    requirements_path: str | os.PathLike,
    package_source: str = DEFAULT_PACKAGE_SOURCE,
) -> bool:
    """Install what :func:`missing_packages` reports, after ``confirm(question)`` says yes.

    Args:
        confirm: asks the user (``slicer.util.confirmOkCancelDisplay`` in Slicer); nothing is installed on False.
        pip_install: ``slicer.util.pip_install`` (takes one argument string).
        requirements_path: ``Resources/requirements.txt``.
        package_source: the pip specifier of rmisr-monai.

    Returns:
        True when everything is importable afterwards; False when the user declined.

    Raises:
        RuntimeError: the PyTorch extension is missing, or an installation failed (the reason in words).
    """
    missing = missing_packages()
    if not missing:
        return True
    question = (
        f"The Super-resolution module needs {', '.join(missing)}, which are not installed in Slicer's Python. "
        "Install them now? This downloads PyTorch (through the PyTorch extension) and rmisr-monai with its "
        "requirements, which may take several minutes."
    )
    if not confirm(question):
        return False
    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils
        except ImportError as error:
            raise RuntimeError(
                "this module needs the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart"
            ) from error
        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
        if not torch_logic.torchInstalled():
            torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
        if not torch_logic.torchInstalled():
            raise RuntimeError("PyTorch could not be installed; see the Python console for the reason")
    if importlib.util.find_spec("rmisr_monai") is None:
        pip_install(f"--no-deps {package_source}")
        importlib.invalidate_caches()
    # slicer.util.pip_install splits its argument with shlex: quoted, a requirement with a marker stays one argument
    pip_install(shlex.join(package_requirements() + read_requirements(requirements_path)))
    importlib.invalidate_caches()
    still = missing_packages()
    if still:
        raise RuntimeError(f"installation finished but {', '.join(still)} still cannot be imported; see the log")
    return True
