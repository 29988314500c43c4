"""Installing on first use (SuperResolutionLib.dependencies): what is asked for, how pip is called, versions.

Real pieces: the module's ``Resources/requirements.txt``, the engine's declared requirements (the installed
rmisr-monai metadata), ``packaging`` as the reference for version comparison. Stand-ins: ``PyTorchUtils`` (a
Slicer extension), ``slicer.util.pip_install`` (records its argument list) and the installed versions.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from SuperResolutionLib import dependencies

from tests.slicer.conftest import MODULE_DIR

REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"


def test_requirements_are_the_engines_own_without_torch_and_with_pydicom_unversioned():
    declared = {}
    for line in importlib.metadata.requires("rmisr-monai"):
        if "extra" not in line:
            r = dependencies.Requirement(line.split(";")[0].replace(" ", ""))
            declared[r.name.lower()] = sorted(r.specs)
    lines = dependencies.read_requirements(REQUIREMENTS)
    assert not any(line.startswith("torch") for line in lines)  # PyTorchUtils chooses the build
    for line in lines:
        r = dependencies.Requirement(line)
        if r.name == "pydicom":
            assert r.specs == []  # Slicer 5.10's pydicom 2.4.4 serves; never upgraded
        elif r.name != "psutil":  # the extension's own (the worker's process-tree kill)
            assert sorted(r.specs) == declared[r.name.lower()], r.name


@pytest.mark.parametrize(
    "version, spec",
    [("2.13.0+cpu", ">=2.8"), ("2.7.1", ">=2.8"), ("2.8", ">=2.8.0"), ("1.6.1", ">=1.6.1,<1.7"), ("1.7.0", "<1.7"),
     ("1.26.4", ">=1.24,<3"), ("3.0.1", "<3"), ("2.4.4", "==2.4.4"), ("2.4.4", "!=2.4.4"), ("10.0", ">9.9")],
)  # fmt: skip
def test_version_check_agrees_with_packaging(version, spec):
    specs = dependencies.Requirement("x" + spec).specs
    assert dependencies.satisfies(version, specs) == (Version(version) in SpecifierSet(spec, prereleases=True))


class FakeSlicerPython:
    """Installed versions, a PyTorchUtils and a pip_install that "installs" what it is given."""

    def __init__(self, monkeypatch, installed, pip_failures=0, torch_extension=True):
        self.installed = dict(installed)
        self.pip_calls, self.constraints, self.torch_calls = [], [], []
        self.pip_failures = pip_failures
        monkeypatch.setattr(dependencies, "installed_version", self.installed.get)
        if torch_extension:
            fake = self

            class Logic:
                def torchInstalled(self):
                    return "torch" in fake.installed

                def installTorch(self, askConfirmation=False, torchVersionRequirement=None):
                    fake.torch_calls.append((askConfirmation, torchVersionRequirement))
                    fake.installed["torch"] = "2.9.1+cu126"

            monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
        else:
            monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails

    def pip_install(self, arguments):
        assert isinstance(arguments, list)
        self.pip_calls.append(arguments)
        self.constraints.append(open(arguments[arguments.index("-c") + 1], encoding="utf-8").read().split())
        if self.pip_failures:
            self.pip_failures -= 1
            raise RuntimeError("pip exited with 1")
        for line in arguments[2:]:
            r = dependencies.Requirement(line)
            self.installed[r.name] = next((v for op, v in r.specs if op == ">="), "99")


SLICER_5_10 = {"numpy": "1.26.4", "pydicom": "2.4.4", "SimpleITK": "2.4.0", "vtk": "9.4.2", "scipy": "1.14.1"}


def test_declined_installs_nothing(monkeypatch):
    fake = FakeSlicerPython(monkeypatch, SLICER_5_10)
    assert dependencies.install_dependencies(lambda q: False, fake.pip_install, REQUIREMENTS) is False
    assert fake.pip_calls == [] and fake.torch_calls == []


def test_torch_through_pytorch_utils_then_the_rest_with_slicers_packages_pinned(monkeypatch):
    fake = FakeSlicerPython(monkeypatch, SLICER_5_10)
    questions = []
    assert dependencies.install_dependencies(lambda q: questions.append(q) or True, fake.pip_install, REQUIREMENTS)
    assert "torch >=2.8" in questions[0] and "monai >=1.6.1,<1.7" in questions[0] and "pydicom" not in questions[0]
    assert fake.torch_calls == [(False, dependencies.TORCH_REQUIREMENT)]
    (arguments,) = fake.pip_calls  # one list: no shell splitting of paths or markers
    assert arguments[0] == "-c" and sorted(arguments[2:]) == sorted(["monai>=1.6.1,<1.7", "nibabel>=5.0",
                                                                     "tqdm>=4.60", "psutil>=5.9"])  # fmt: skip
    # torch (as PyTorchUtils chose it), numpy, pydicom, SimpleITK, VTK, scipy stay as they are
    assert sorted(fake.constraints[0]) == sorted(
        ["torch==2.9.1+cu126", "numpy==1.26.4", "pydicom==2.4.4", "SimpleITK==2.4.0", "vtk==9.4.2", "scipy==1.14.1"]
    )
    assert fake.installed["pydicom"] == "2.4.4"
    assert dependencies.missing_packages(REQUIREMENTS) == []


def test_a_failed_pip_call_is_retried_then_reported_and_tried_again_on_the_next_apply(monkeypatch):
    fake = FakeSlicerPython(monkeypatch, {**SLICER_5_10, "torch": "2.9.0"}, pip_failures=1)
    assert dependencies.install_dependencies(lambda q: True, fake.pip_install, REQUIREMENTS)
    assert len(fake.pip_calls) == 2
    fake = FakeSlicerPython(monkeypatch, {**SLICER_5_10, "torch": "2.9.0"}, pip_failures=2)
    with pytest.raises(RuntimeError, match=r"monai>=1\.6\.1,<1\.7.*could not be installed from the package index"):
        dependencies.install_dependencies(lambda q: True, fake.pip_install, REQUIREMENTS)
    assert dependencies.install_dependencies(lambda q: True, fake.pip_install, REQUIREMENTS)  # the next Apply


def test_an_old_torch_is_not_replaced_and_the_message_says_how(monkeypatch):
    fake = FakeSlicerPython(monkeypatch, {**SLICER_5_10, "torch": "2.4.1+cu121"})
    with pytest.raises(RuntimeError, match=r"PyTorch 2\.4\.1\+cu121 .* 'PyTorch Utils' module"):
        dependencies.install_dependencies(lambda q: True, fake.pip_install, REQUIREMENTS)
    assert fake.pip_calls == [] and fake.torch_calls == []


def test_a_too_old_package_that_slicer_ships_is_not_upgraded(monkeypatch):
    fake = FakeSlicerPython(monkeypatch, {**SLICER_5_10, "torch": "2.9.0", "numpy": "1.21.6"})
    with pytest.raises(RuntimeError, match=r"Slicer's numpy 1\.21\.6 does not meet numpy>=1\.24,<3"):
        dependencies.install_dependencies(lambda q: True, fake.pip_install, REQUIREMENTS)
    assert fake.pip_calls == []


def test_without_the_pytorch_extension_it_says_so(monkeypatch):
    fake = FakeSlicerPython(monkeypatch, SLICER_5_10, torch_extension=False)
    with pytest.raises(RuntimeError, match="needs the PyTorch extension"):
        dependencies.install_dependencies(lambda q: True, fake.pip_install, REQUIREMENTS)


def test_constraints_name_the_real_installed_versions():
    expected = [f"{n}=={importlib.metadata.version(n)}" for n in dependencies.KEEP if _has(n)]
    assert dependencies.constraints() == expected and any(c.startswith("torch==") for c in expected)


def _has(name):
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
