"""A STAND-IN for the few parts of 3D Slicer's Python API the Super-resolution module uses -- not Slicer.

Slicer cannot be installed on the test machines, so these tests import the module with this stand-in in
``sys.modules["slicer"]`` (and a minimal ``qt``). It is built on real VTK objects (``vtkImageData``,
``vtkMatrix4x4``, ``vtkTable``) and follows Slicer's documented behaviour, read from Slicer/Slicer (main):

* ``Base/Python/slicer/util.py``: ``arrayFromVolume`` returns a numpy view of the image scalars shaped
  ``tuple(reversed(imageData.GetDimensions()))`` (KJI); ``updateVolumeFromArray`` sets the image dimensions from the
  reversed array shape, allocates the scalars and copies the array in, leaving the node's IJKToRAS untouched;
  ``addVolumeFromArray(narray, ijkToRAS, name)``; ``arrayFromVTKMatrix`` / ``vtkMatrixFromArray``;
  ``launchConsoleProcess(args, useStartupEnvironment=True, updateEnvironment=None, cwd=None)`` is a
  ``subprocess.Popen`` with stdout piped, stderr merged into it and text mode; ``tryWithErrorDisplay`` shows the
  error of the block it wraps and re-raises it.
* ``Libs/MRML/Core/vtkMRMLVolumeNode.cxx``: the node stores spacing, origin and a direction matrix;
  ``GetIJKToRASMatrix`` is ``directions * spacing`` with the origin as translation, ``SetIJKToRASMatrix`` splits a
  matrix back into those (column norms, normalised columns, translation). The image data has spacing 1, origin 0.
* ``Libs/MRML/Core/vtkMRMLScalarVolumeDisplayNode``: window/level, auto window/level, colour node ID, interpolation
  and threshold accessors; ``Modules/Loadable/Markups/MRML/vtkMRMLMarkupsROINode``: centre, size and
  ``GetRASBounds`` (axis-aligned box in world coordinates); ``vtkMRMLTableNode.GetTable`` is a ``vtkTable``.

Only these calls exist here; anything else the module might call fails loudly (AttributeError).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import types
import unittest

import numpy as np
import vtk
from vtk.util import numpy_support


class StandInScene:
    """``slicer.mrmlScene``: holds nodes; ``AddNewNodeByClass`` / ``RemoveNode`` / ``Clear``."""

    StartCloseEvent = "StartCloseEvent"
    EndCloseEvent = "EndCloseEvent"

    def __init__(self) -> None:
        self.nodes: list = []
        self._count = 0

    def AddNewNodeByClass(self, className: str, name: str = ""):
        node = NODE_CLASSES[className]()
        self._count += 1
        node.SetName(name or f"{className.removeprefix('vtkMRML')}_{self._count}")
        self.nodes.append(node)
        return node

    def RemoveNode(self, node) -> None:
        self.nodes.remove(node)

    def Clear(self) -> None:
        self.nodes.clear()

    def GetFirstNodeByClass(self, className: str):
        return next((n for n in self.nodes if isinstance(n, NODE_CLASSES[className])), None)


class _Named:
    def __init__(self) -> None:
        self._name = ""
        self.modified = 0

    def GetName(self) -> str:
        return self._name

    def SetName(self, name: str) -> None:
        self._name = name

    def Modified(self) -> None:
        self.modified += 1


class StandInScalarVolumeDisplayNode(_Named):
    """``vtkMRMLScalarVolumeDisplayNode`` accessors the module uses."""

    def __init__(self) -> None:
        super().__init__()
        self._color = "vtkMRMLColorTableNodeGrey"
        self._auto = True
        self._window, self._level = 256.0, 128.0
        self._interpolate = True
        self._apply_threshold = False
        self._threshold = (-1e30, 1e30)

    def GetColorNodeID(self):
        return self._color

    def SetAndObserveColorNodeID(self, color_id) -> None:
        self._color = color_id

    def GetAutoWindowLevel(self) -> bool:
        return self._auto

    def SetAutoWindowLevel(self, value: bool) -> None:
        self._auto = bool(value)

    def GetWindow(self) -> float:
        return self._window

    def GetLevel(self) -> float:
        return self._level

    def SetWindowLevel(self, window: float, level: float) -> None:
        self._window, self._level = float(window), float(level)

    def GetInterpolate(self) -> bool:
        return self._interpolate

    def SetInterpolate(self, value: bool) -> None:
        self._interpolate = bool(value)

    def GetApplyThreshold(self) -> bool:
        return self._apply_threshold

    def SetApplyThreshold(self, value: bool) -> None:
        self._apply_threshold = bool(value)

    def GetLowerThreshold(self) -> float:
        return self._threshold[0]

    def GetUpperThreshold(self) -> float:
        return self._threshold[1]

    def SetThreshold(self, lower: float, upper: float) -> None:
        self._threshold = (float(lower), float(upper))


class StandInScalarVolumeNode(_Named):
    """``vtkMRMLScalarVolumeNode``: image data + spacing/origin/directions (vtkMRMLVolumeNode's storage)."""

    ImageDataModifiedEvent = "ImageDataModifiedEvent"

    def __init__(self) -> None:
        super().__init__()
        self._image = None
        self._spacing = np.ones(3)
        self._origin = np.zeros(3)
        self._directions = np.eye(3)
        self._display = None
        self.events: list = []

    def GetImageData(self):
        return self._image

    def SetAndObserveImageData(self, image) -> None:
        self._image = image

    def GetIJKToRASMatrix(self, matrix: vtk.vtkMatrix4x4) -> None:
        for row in range(3):
            for col in range(3):
                matrix.SetElement(row, col, self._directions[row, col] * self._spacing[col])
            matrix.SetElement(row, 3, self._origin[row])
        for col in range(3):
            matrix.SetElement(3, col, 0.0)
        matrix.SetElement(3, 3, 1.0)

    def SetIJKToRASMatrix(self, matrix: vtk.vtkMatrix4x4) -> None:
        m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        self._spacing = np.linalg.norm(m[:3, :3], axis=0)
        self._directions = m[:3, :3] / self._spacing
        self._origin = m[:3, 3].copy()

    def GetSpacing(self) -> tuple:
        return tuple(self._spacing)

    def GetOrigin(self) -> tuple:
        return tuple(self._origin)

    def GetParentTransformNode(self):
        return None

    def CreateDefaultDisplayNodes(self) -> None:
        if self._display is None:
            self._display = StandInScalarVolumeDisplayNode()

    def GetDisplayNode(self):
        return self._display

    def StorableModified(self) -> None:
        pass

    def InvokeEvent(self, event, data=None) -> None:
        self.events.append(event)


class StandInMarkupsROINode(_Named):
    """``vtkMRMLMarkupsROINode`` (not rotated, no parent transform): centre, size, world bounds."""

    def __init__(self) -> None:
        super().__init__()
        self._center = np.zeros(3)
        self._size = np.zeros(3)

    def SetCenter(self, x: float, y: float, z: float) -> None:
        self._center = np.array([x, y, z], dtype=float)

    def SetSize(self, x: float, y: float, z: float) -> None:
        self._size = np.array([x, y, z], dtype=float)

    def GetRASBounds(self, bounds: list) -> None:
        low, high = self._center - self._size / 2, self._center + self._size / 2
        bounds[:] = [low[0], high[0], low[1], high[1], low[2], high[2]]


class StandInTableNode(_Named):
    """``vtkMRMLTableNode``: a real ``vtkTable``."""

    def __init__(self) -> None:
        super().__init__()
        self._table = vtk.vtkTable()

    def GetTable(self) -> vtk.vtkTable:
        return self._table

    def GetNumberOfRows(self) -> int:
        return self._table.GetNumberOfRows()

    def GetCellText(self, row: int, column: int) -> str:
        return self._table.GetColumn(column).GetValue(row)


NODE_CLASSES = {
    "vtkMRMLScalarVolumeNode": StandInScalarVolumeNode,
    "vtkMRMLMarkupsROINode": StandInMarkupsROINode,
    "vtkMRMLTableNode": StandInTableNode,
}


# ---- slicer.util (Base/Python/slicer/util.py) ----


def arrayFromVolume(volumeNode) -> np.ndarray:
    image = volumeNode.GetImageData()
    shape = tuple(reversed(image.GetDimensions()))
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def updateVolumeFromArray(volumeNode, narray: np.ndarray) -> None:
    if narray.ndim != 3:
        raise RuntimeError(f"Unsupported numpy array shape: {narray.shape}")
    image = volumeNode.GetImageData()
    if image is None:
        image = vtk.vtkImageData()
        volumeNode.SetAndObserveImageData(image)
    image.SetDimensions(tuple(reversed(narray.shape)))
    image.AllocateScalars(numpy_support.get_vtk_array_type(narray.dtype), 1)
    arrayFromVolume(volumeNode)[:] = narray
    volumeNode.StorableModified()
    volumeNode.Modified()
    volumeNode.InvokeEvent(StandInScalarVolumeNode.ImageDataModifiedEvent, volumeNode)


def arrayFromVTKMatrix(vmatrix: vtk.vtkMatrix4x4) -> np.ndarray:
    narray = np.eye(4)
    vmatrix.DeepCopy(narray.ravel(), vmatrix)
    return narray


def vtkMatrixFromArray(narray: np.ndarray) -> vtk.vtkMatrix4x4:
    vmatrix = vtk.vtkMatrix4x4()
    vmatrix.DeepCopy(np.asarray(narray, dtype=np.float64).ravel())
    return vmatrix


def addVolumeFromArray(narray, ijkToRAS=None, name=None, nodeClassName=None):
    node = scene.AddNewNodeByClass(nodeClassName or "vtkMRMLScalarVolumeNode", name or "")
    if ijkToRAS is not None:
        node.SetIJKToRASMatrix(vtkMatrixFromArray(ijkToRAS))
    updateVolumeFromArray(node, np.asarray(narray))
    return node


def launchConsoleProcess(args, useStartupEnvironment=True, updateEnvironment=None, cwd=None):
    env = os.environ.copy()  # the stand-in's "startup environment" is this process's
    if updateEnvironment:
        env.update(updateEnvironment)
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=cwd
    )


shown: list = []


def setSliceViewerLayers(background=None, fit=False, **layers) -> None:
    shown.append((background, fit))


scene = StandInScene()


class _App:
    def testingEnabled(self) -> bool:
        return True

    def connect(self, *args) -> None:
        pass


class _ScriptedLoadableModule:
    def __init__(self, parent=None) -> None:
        self.parent = parent


class _ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent


class _VTKObservationMixin:
    def __init__(self) -> None:
        self.observations: list = []

    def addObserver(self, obj, event, method) -> None:
        self.observations.append((obj, event, method))

    def removeObserver(self, obj, event, method) -> None:
        self.observations = [o for o in self.observations if o != (obj, event, method)]

    def removeObservers(self) -> None:
        self.observations.clear()


errors: list = []


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    """Like Slicer's: on an exception, show ``message`` and the error (here: record them), then re-raise."""
    try:
        yield
    except Exception as error:
        if show:
            errors.append(f"{message}\n\n{error}" if message else str(error))
        raise


class _QTimer:
    """``qt.QTimer``: the tests call the connected slot themselves."""

    def __init__(self) -> None:
        self.active = False
        self.slots: list = []

    def setInterval(self, msec: int) -> None:
        self.interval = msec

    def connect(self, signal: str, slot) -> None:
        self.slots.append(slot)

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class _ScriptedLoadableModuleLogic:
    def __init__(self, parent=None) -> None:
        self.moduleName = self.__class__.__name__.removesuffix("Logic")


class _ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0) -> None:
        print(message)


class _Validator:
    def __init__(self, *args, **kwargs) -> None:
        self.args = args


def install(monkeypatch) -> types.ModuleType:
    """Put the stand-in ``slicer`` (and a ``qt`` with ``QTimer`` only, an empty ``ctk``) into ``sys.modules`` for one
    test; returns it."""
    scene.Clear()
    shown.clear()
    errors.clear()
    slicer = types.ModuleType("slicer")
    slicer.__doc__ = "STAND-IN for 3D Slicer's Python API (tests/slicer/slicer_standin.py)"
    util = types.ModuleType("slicer.util")
    for function in (
        arrayFromVolume, updateVolumeFromArray, arrayFromVTKMatrix, vtkMatrixFromArray, addVolumeFromArray,
        launchConsoleProcess, setSliceViewerLayers, tryWithErrorDisplay,
    ):  # fmt: skip
        setattr(util, function.__name__, function)
    util.VTKObservationMixin = _VTKObservationMixin
    util.errors = errors  # not Slicer: the messages tryWithErrorDisplay showed, for the tests
    util.shown = shown  # not Slicer: what setSliceViewerLayers was asked to show, for the tests
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    slm.ScriptedLoadableModule = _ScriptedLoadableModule
    slm.ScriptedLoadableModuleWidget = _ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleLogic = _ScriptedLoadableModuleLogic
    slm.ScriptedLoadableModuleTest = _ScriptedLoadableModuleTest
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.WithinRange = pnw.Choice = _Validator
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    slicer.util, slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper, slicer.i18n = util, slm, pnw, i18n
    slicer.mrmlScene, slicer.app = scene, _App()
    slicer.vtkMRMLScalarVolumeNode = StandInScalarVolumeNode
    slicer.vtkMRMLMarkupsROINode = StandInMarkupsROINode
    slicer.vtkMRMLTableNode = StandInTableNode
    slicer.vtkMRMLVolumeNode = StandInScalarVolumeNode
    qt = types.ModuleType("qt")
    qt.QTimer = _QTimer
    qt.Qt = types.SimpleNamespace(ToolTipRole=3)
    modules = {
        "slicer": slicer, "slicer.util": util, "slicer.ScriptedLoadableModule": slm,
        "slicer.parameterNodeWrapper": pnw, "slicer.i18n": i18n,
        "qt": qt, "ctk": types.ModuleType("ctk"),
    }  # fmt: skip
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return slicer
