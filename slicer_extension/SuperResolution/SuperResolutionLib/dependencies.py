"""Installing what the module needs on first use, after asking (standard library only).

The engine (``rmisr_monai``) is not installed: it is part of the module folder (``slicer_extension/package.py``
puts it there). What comes from the package index:

1. PyTorch through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the build
   for the computer's GPU driver; MONAI 1.6 needs torch >= 2.8. A torch that is there but older is not replaced
   behind the user's back (the way SlicerMONAIAuto3DSeg does it): the message says how to update it.
2. ``Resources/requirements.txt`` (MONAI, SimpleITK, nibabel, scipy, tqdm, psutil, pydicom, numpy), with
   ``pip install -c CONSTRAINTS ...``: the constraints pin every package of :data:`KEEP` that Slicer's Python already
   has to its installed version, so that no requirement's dependency replaces Slicer's own numpy, pydicom, SimpleITK,
   VTK or the torch PyTorchUtils chose (pydicom is required unversioned: Slicer 5.10's 2.4.4 serves, the engine
   imports it for DICOM folders, which the module never passes). Arguments go to ``pip_install`` as a list (no
   shell splitting: a path with spaces or backslashes stays one argument).

Each pip call is tried twice; a failure is not remembered, so the next Apply checks and tries again. Versions are
checked before and after (:func:`unmet`); what still cannot be had is named in the error.

Nothing is imported here: :func:`unmet` reads installed versions from package metadata (no torch at start-up).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "TORCH_REQUIREMENT",
    "KEEP",
    "Requirement",
    "parse_requirement",
    "read_requirements",
    "satisfies",
    "installed_version",
    "unmet",
    "missing_packages",
    "constraints",
    "install_dependencies",
]

TORCH_REQUIREMENT = ">=2.8"  # MONAI 1.6.1's requirement
REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
# distributions Slicer ships (or PyTorchUtils chose): never replaced, pinned to what is installed
KEEP = ("torch", "numpy", "pydicom", "SimpleITK", "vtk", "scipy")
PIP_TRIES = 2
_OPERATORS = ("==", "!=", ">=", "<=", ">", "<")


class Requirement:
    """A requirement line ``name[spec,spec]`` (no extras or markers): name and ``(operator, version)`` pairs."""

    def __init__(self, line: str) -> None:
        text = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", text)
        if not match:
            raise ValueError(f"not a requirement: {line!r}")
        self.line = text
        self.name = match.group(1)
        self.specs: list[tuple[str, str]] = []
        for part in filter(None, (p.strip() for p in match.group(2).split(","))):
            operator = next((op for op in _OPERATORS if part.startswith(op)), None)
            if operator is None:
                raise ValueError(f"unsupported version specifier {part!r} in {line!r}")
            self.specs.append((operator, part[len(operator) :].strip()))

    def __repr__(self) -> str:
        return f"Requirement({self.line!r})"


def parse_requirement(line: str) -> Requirement:
    return Requirement(line)


def read_requirements(path: str | os.PathLike = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version (``"2.13.0+cpu"`` -> ``(2, 13, 0)``; pre-release tags dropped)."""
    numbers = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not numbers:
        raise ValueError(f"cannot read the version {version!r}")
    parts = [int(p) for p in numbers.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def satisfies(version: str, specs: Sequence[tuple[str, str]]) -> bool:
    """Whether ``version`` meets every ``(operator, version)`` (numeric release comparison)."""
    have = _release(version)
    for operator, wanted in specs:
        want = _release(wanted)
        ok = {
            "==": have == want,
            "!=": have != want,
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
        }[operator]
        if not ok:
            return False
    return True


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, from its metadata (nothing imported); None when absent."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet(lines: Sequence[str]) -> list[tuple[Requirement, str | None]]:
    """``(requirement, installed version or None)`` for each line that the installed packages do not satisfy."""
    result = []
    for line in lines:
        requirement = Requirement(line)
        version = installed_version(requirement.name)
        if version is None or not satisfies(version, requirement.specs):
            result.append((requirement, version))
    return result


def missing_packages(requirements_path: str | os.PathLike = REQUIREMENTS_FILE) -> list[str]:
    """What is missing or too old, as words for the user (torch first); empty when everything is there."""
    return [
        f"{r.name} {','.join(op + v for op, v in r.specs)}".strip() + ("" if have is None else f" (have {have})")
        for r, have in unmet([f"torch{TORCH_REQUIREMENT}", *read_requirements(requirements_path)])
    ]


def constraints(keep: Sequence[str] = KEEP) -> list[str]:
    """``name==version`` for each distribution of ``keep`` that is installed (pip's constraints file lines)."""
    return [f"{name}=={version}" for name in keep if (version := installed_version(name)) is not None]


def _pip(pip_install: Callable[[list], None], arguments: list[str], what: str) -> None:
    error: BaseException | None = None
    for _ in range(PIP_TRIES):
        try:
            pip_install(list(arguments))
            importlib.invalidate_caches()
            return
        except Exception as failure:  # Slicer raises CalledProcessError; the log holds pip's own words
            error = failure
    raise RuntimeError(
        f"{what} could not be installed from the package index ({error}); see the Python console"
    ) from error


def _install_torch() -> None:
    try:
        import PyTorchUtils
    except ImportError as error:
        raise RuntimeError(
            "this module needs the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart Slicer"
        ) from error
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if not logic.torchInstalled():
        logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
    importlib.invalidate_caches()
    if installed_version("torch") is None:
        raise RuntimeError("PyTorch could not be installed by the PyTorch extension; see the Python console")


def install_dependencies(
    confirm: Callable[[str], bool],
    pip_install: Callable[[list], None],
    requirements_path: str | os.PathLike = REQUIREMENTS_FILE,
    install_torch: Callable[[], None] = _install_torch,
) -> bool:
    """Install what :func:`missing_packages` reports, after ``confirm(question)`` says yes.

    Args:
        confirm: asks the user (``slicer.util.confirmOkCancelDisplay`` in Slicer); nothing is installed on False.
        pip_install: ``slicer.util.pip_install`` (given a list of arguments).
        requirements_path: ``Resources/requirements.txt``.
        install_torch: installs PyTorch (default: through the PyTorch extension).

    Returns:
        True when every requirement is met afterwards; False when the user declined.

    Raises:
        RuntimeError: the PyTorch extension is missing, torch is too old, a package cannot be had, or a version is
            still wrong afterwards (in words, naming the package).
    """
    missing = missing_packages(requirements_path)
    if not missing:
        return True
    question = (
        f"The Super-resolution module needs {', '.join(missing)} in Slicer's Python. Install them now? PyTorch "
        "comes through the PyTorch extension, the others from the Python package index; this may take several "
        "minutes."
    )
    if not confirm(question):
        return False
    torch = installed_version("torch")
    if torch is None:
        install_torch()
    elif not satisfies(torch, Requirement(f"torch{TORCH_REQUIREMENT}").specs):
        raise RuntimeError(
            f"PyTorch {torch} is installed but this module needs torch{TORCH_REQUIREMENT}: update it with the "
            f"'PyTorch Utils' module (version requirement {TORCH_REQUIREMENT}) and restart Slicer"
        )
    lines = read_requirements(requirements_path)
    kept = {name.lower() for name in KEEP}
    fixed = [(r, have) for r, have in unmet(lines) if r.name.lower() in kept and have is not None]
    if fixed:  # a package Slicer ships is too old for a requirement: upgrading it could break Slicer itself
        r, have = fixed[0]
        raise RuntimeError(
            f"Slicer's {r.name} {have} does not meet {r.line} and is not replaced (Slicer itself uses it); "
            "a newer Slicer is needed"
        )
    wanted = [r.line for r, _ in unmet(lines)]
    if wanted:
        with tempfile.TemporaryDirectory(prefix="SlicerSuperResolution-pip-") as folder:
            pins = Path(folder) / "constraints.txt"
            pins.write_text("\n".join(constraints()) + "\n", encoding="utf-8")
            _pip(pip_install, ["-c", str(pins), *wanted], ", ".join(wanted))
    still = unmet([f"torch{TORCH_REQUIREMENT}", *lines])
    if still:
        names = ", ".join(f"{r.line} (have {have or 'none'})" for r, have in still)
        raise RuntimeError(f"after installing, {names} still not met; see the Python console")
    return True
