"""The extension as Slicer builds and loads it: CMake lists, the .ui file against the Widget, the icon, module
files that compile, and nothing imported at Slicer start-up that Slicer lacks."""

from __future__ import annotations

import ast
import py_compile
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from tests.slicer.conftest import EXTENSION, MODULE_DIR, REPO_ROOT

MODULE = "SuperResolution"
UI = MODULE_DIR / "Resources" / "UI" / f"{MODULE}.ui"


def _cmake_list(text: str, variable: str) -> list[str]:
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [line.strip().replace("${MODULE_NAME}", MODULE) for line in body.splitlines() if line.strip()]


def test_extension_cmake_has_the_metadata_and_depends_on_pytorch():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf"set\(EXTENSION_{field} ", text), field
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert f"add_subdirectory(slicer_extension/{MODULE})" in text and "find_package(Slicer REQUIRED)" in text
    assert "package.py\" --engine-only" in (MODULE_DIR / "CMakeLists.txt").read_text()  # the engine at build time
    assert "${Slicer_EXTENSION_CPACK}" in text


def test_module_cmake_lists_every_script_and_resource_that_exists():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert f"set(MODULE_NAME {MODULE})" in text and "slicerMacroBuildScriptedModule(" in text
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    python_files = [p for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts]
    on_disk = sorted(p.relative_to(MODULE_DIR).as_posix() for p in python_files)
    assert sorted(scripts) == on_disk
    resource_files = sorted(
        p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()
    )
    assert sorted(resources) == resource_files
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def _ui_tree():
    return ET.parse(UI).getroot()


def test_ui_parses_and_holds_every_widget_the_widget_class_uses():
    root = _ui_tree()
    names = {w.get("name") for w in root.iter("widget")}
    assert root.find("class").text == MODULE and root.find("widget").get("class") == "qMRMLWidget"
    source = (MODULE_DIR / f"{MODULE}.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used and used <= names, sorted(used - names)
    # every custom widget class used is declared
    declared = {c.find("class").text for c in root.iter("customwidget")}
    classes = {w.get("class") for w in root.iter("widget")}
    assert {c for c in classes if not c.startswith("Q")} <= declared
    # node selectors get the scene
    receivers = {c.find("receiver").text for c in root.iter("connection")}
    selectors = {w.get("name") for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors == receivers


def _parameter_fields() -> dict[str, ast.AST]:
    tree = ast.parse((MODULE_DIR / f"{MODULE}.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{MODULE}ParameterNode")
    return {n.target.id: n for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_ui_parameter_bindings_name_parameter_node_fields_and_choices_match(slicer):
    fields = _parameter_fields()
    bound = {}
    for widget in _ui_tree().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget
    assert set(bound) <= set(fields) and len(bound) >= 8
    from SuperResolutionLib.job import DEVICES, MODES, SELF_ENSEMBLES, THICK_AXES

    menus = (("mode", MODES), ("thickAxis", THICK_AXES), ("device", DEVICES), ("selfEnsemble", SELF_ENSEMBLES))
    for name, values in menus:
        items = [i.find("property/string").text for i in bound[name].findall("item")]
        assert items == list(values), name


def test_python_files_compile(tmp_path):
    for path in MODULE_DIR.rglob("*.py"):
        py_compile.compile(str(path), doraise=True, cfile=str(tmp_path / "compiled.pyc"))


def test_icon_is_a_real_128_pixel_image():
    image = Image.open(MODULE_DIR / "Resources" / "Icons" / f"{MODULE}.png")
    assert image.size == (128, 128)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # not a flat placeholder


def test_module_loads_without_torch_or_rmisr_monai():
    """What Slicer does at start-up: import the module file and create the Module object. torch and rmisr_monai
    are made unimportable; the import must not need them (they are installed on first use)."""
    pytest.importorskip("vtk")
    code = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "rmisr_monai", "monai", "SimpleITK", "nibabel"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        sys.path[:0] = [{str(REPO_ROOT)!r}, {str(MODULE_DIR)!r}]
        class Patch:
            def setitem(self, mapping, key, value):
                mapping[key] = value
        from tests.slicer import slicer_standin
        slicer_standin.install(Patch())
        import types, SuperResolution
        module = SuperResolution.SuperResolution(types.SimpleNamespace())
        help = module.parent.helpText
        assert module.parent.categories == ["Filtering"] and "10.1007/s00521-021-06287-x" in help
        assert "10.11772/j.issn.1001-9081.2021061093" in help and module.parent.acknowledgementText
        assert help.startswith("FOR RESEARCH USE ONLY") and "invent or hide findings" in help
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "rmisr_monai", "monai"))
        print("loaded:", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_readmes_describe_install_controls_and_limits():
    text = (EXTENSION / "README.md").read_text()
    for needed in ("Additional module paths", "ExtensionsIndex", "Limits", "Cancel", "ROI", "through-plane"):
        assert needed in text, needed
    texts = [w.find("property/string") for w in _ui_tree().iter("widget") if w.get("class") == "QLabel"]
    labels = {t.text.rstrip(":") for t in texts if t is not None and t.text}
    missing = sorted(label for label in labels if label not in text)
    assert not missing, f"controls not described in the README: {missing}"
    assert "slicer_extension" in (REPO_ROOT / "README.md").read_text()


def test_what_slicer_imports_at_start_up_parses_as_python_3_9():
    """Slicer 5.4-5.8 (Python 3.9) must load the module and say on Apply that it needs Slicer 5.10: the module file
    and the Lib it imports are Python 3.9 syntax (the engine and the worker need 3.10, checked before they run)."""
    files = [MODULE_DIR / f"{MODULE}.py", *(MODULE_DIR / f"{MODULE}Lib").glob("*.py")]
    for path in files:
        if path.name != "worker.py":  # runs in the worker process only, after the version check
            ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
    source = (MODULE_DIR / f"{MODULE}.py").read_text()
    assert "MINIMUM_PYTHON = (3, 10)" in source and "needs Slicer 5.10 or later" in source
