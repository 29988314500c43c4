"""Set-up of the checks that run inside the slicer-core venv (tests/slicer/test_real_mrml.py starts them).

REAL: ``slicer`` from the slicer-core wheel (vtkMRMLScene, volume / labelmap / transform / table / ROI nodes,
``slicer.util`` as in Slicer's Base/Python/slicer/util.py). STAND-IN (tests/slicer/slicer_standin.py,
``install_framework``): only ``slicer.app``, ``qt``, ``slicer.ScriptedLoadableModule``, ``parameterNodeWrapper``
and ``i18n``, which slicer-core lacks. The module folder is the PACKAGED one (``RMISR_MODULE_DIR``, written by
slicer_extension/package.py), engine included, and the worker runs in this same Python (as PythonSlicer would).
"""

import os
import sys
from pathlib import Path

import pytest

MODULE_DIR = Path(os.environ["RMISR_MODULE_DIR"])
sys.path.insert(0, str(MODULE_DIR))  # as Slicer puts a scripted module's folder on sys.path
sys.path.append(str(Path(__file__).resolve().parents[1]))  # slicer_standin.py only (no checkout engine on the path)

import slicer  # noqa: E402  (the real one)
import slicer_standin  # noqa: E402

_MODULE_IMPORTS = ("SuperResolution", "SuperResolutionLib.job", "SuperResolutionLib.nodes")


@pytest.fixture
def real_slicer():
    for name in _MODULE_IMPORTS:
        sys.modules.pop(name, None)
    module = slicer_standin.install_framework(slicer)
    assert type(module.mrmlScene).__name__ == "vtkMRMLScene"
    yield module
    module.mrmlScene.Clear(1)
