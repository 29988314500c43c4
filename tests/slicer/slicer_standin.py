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

* Class hierarchy as in MRML: ``vtkMRMLLabelMapVolumeNode`` is a ``vtkMRMLScalarVolumeNode`` (``IsA``,
  ``GetFirstNodeByClass`` return labelmaps for the scalar class); volumes observe a parent transform node
  (``SetAndObserveTransformNodeID`` / ``GetParentTransformNode``); ``updateVolumeFromArray`` refuses int64 ("long
  long") and turns 1D/2D arrays into single-slice volumes and 4D arrays into multi-component ones.
* Qt and the module framework (what ``slicer-core`` lacks): ``qt.QTimer`` fires its slots while active when the test
  calls ``slicer.app.processEvents()`` (the event loop); ``ScriptedLoadableModuleWidget.setup()`` gives ``layout``
  and ``resourcePath``; ``slicer.util.loadUI`` builds a widget per named widget of the .ui file (properties and
  calls the module uses) and ``childWidgetVariables`` returns them by name; ``parameterNodeWrapper`` gives a class
  whose instances hold the annotated defaults.

Which tests use what: test_widget.py and test_logic.py run the module file (SuperResolution.py) under this stand-in;
the same Lib and Logic code runs on REAL MRML nodes from the ``slicer-core`` wheel in test_real_mrml.py (see
tests/slicer/real_mrml/), with this stand-in providing only qt, slicer.app and slicer.ScriptedLoadableModule there.
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
        node._id = f"{className}{self._count}"
        node._scene = self
        self.nodes.append(node)
        return node

    def GetNodeByID(self, node_id):
        return next((n for n in self.nodes if n.GetID() == node_id), None)

    def GetNodesByClass(self, className: str) -> list:
        return [n for n in self.nodes if isinstance(n, NODE_CLASSES[className])]

    def RemoveNode(self, node) -> None:
        self.nodes.remove(node)

    def Clear(self) -> None:
        self.nodes.clear()

    def GetFirstNodeByClass(self, className: str):
        return next((n for n in self.nodes if isinstance(n, NODE_CLASSES[className])), None)


class _Named:
    CLASS_NAME = "vtkMRMLNode"

    def __init__(self) -> None:
        self._name = ""
        self._id = None
        self._scene = None
        self.modified = 0

    def GetID(self):
        return self._id

    def GetClassName(self) -> str:
        return self.CLASS_NAME

    def IsA(self, className: str) -> bool:
        return any(getattr(k, "CLASS_NAME", None) == className for k in type(self).__mro__)

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


class _TransformableNode(_Named):
    """``vtkMRMLTransformableNode``: observes a parent transform node by ID."""

    CLASS_NAME = "vtkMRMLTransformableNode"
    _transform_id = None

    def SetAndObserveTransformNodeID(self, node_id) -> None:
        self._transform_id = node_id or None

    def GetTransformNodeID(self):
        return self._transform_id

    def GetParentTransformNode(self):
        return None if self._transform_id is None else self._scene.GetNodeByID(self._transform_id)


class StandInLinearTransformNode(_TransformableNode):
    """``vtkMRMLLinearTransformNode``: a matrix to parent."""

    CLASS_NAME = "vtkMRMLLinearTransformNode"

    def __init__(self) -> None:
        super().__init__()
        self._matrix = vtk.vtkMatrix4x4()

    def SetMatrixTransformToParent(self, matrix) -> None:
        self._matrix.DeepCopy(matrix)

    def GetMatrixTransformToParent(self, matrix) -> None:
        matrix.DeepCopy(self._matrix)


class StandInScalarVolumeNode(_TransformableNode):
    """``vtkMRMLScalarVolumeNode``: image data + spacing/origin/directions (vtkMRMLVolumeNode's storage)."""

    CLASS_NAME = "vtkMRMLScalarVolumeNode"
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

    def CreateDefaultDisplayNodes(self) -> None:
        if self._display is None:
            self._display = StandInScalarVolumeDisplayNode()

    def GetDisplayNode(self):
        return self._display

    def StorableModified(self) -> None:
        pass

    def InvokeEvent(self, event, data=None) -> None:
        self.events.append(event)


class StandInLabelMapVolumeNode(StandInScalarVolumeNode):
    """``vtkMRMLLabelMapVolumeNode``: a scalar volume subclass (as in MRML)."""

    CLASS_NAME = "vtkMRMLLabelMapVolumeNode"


class StandInMarkupsROINode(_Named):
    """``vtkMRMLMarkupsROINode`` (not rotated, no parent transform): centre, size, world bounds."""

    CLASS_NAME = "vtkMRMLMarkupsROINode"

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

    CLASS_NAME = "vtkMRMLTableNode"

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
    "vtkMRMLLabelMapVolumeNode": StandInLabelMapVolumeNode,
    "vtkMRMLLinearTransformNode": StandInLinearTransformNode,
    "vtkMRMLMarkupsROINode": StandInMarkupsROINode,
    "vtkMRMLTableNode": StandInTableNode,
}


# ---- slicer.util (Base/Python/slicer/util.py) ----


def arrayFromVolume(volumeNode) -> np.ndarray:
    image = volumeNode.GetImageData()
    shape = tuple(reversed(image.GetDimensions()))
    # scalar volume classes: the scalars reshaped to KJI (a multi-component image does not fit: Slicer raises too)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def updateVolumeFromArray(volumeNode, narray: np.ndarray) -> None:
    narray = np.asarray(narray)
    components = 1
    if narray.ndim in (1, 2):  # a line or a slice: a single-slice 3D volume (float64, as Slicer's np.zeros)
        narray = np.asarray(narray, dtype=np.float64).reshape((1,) * (3 - narray.ndim) + narray.shape)
    elif narray.ndim == 4:
        components = narray.shape[-1]
    elif narray.ndim != 3:
        raise RuntimeError("Unsupported numpy array shape: " + str(narray.shape))
    vtype = numpy_support.get_vtk_array_type(narray.dtype)
    if vtype == vtk.VTK_LONG_LONG:
        raise RuntimeError("Unsupported numpy array type: long long")
    image = volumeNode.GetImageData()
    if image is None:
        image = vtk.vtkImageData()
        volumeNode.SetAndObserveImageData(image)
    image.SetDimensions(tuple(reversed(narray.shape[:3])))
    image.AllocateScalars(vtype, components)
    target = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    target[:] = narray.reshape(target.shape)
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


def getNodesByClass(className: str) -> list:
    return scene.GetNodesByClass(className)


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


timers: list = []


class _App:
    def testingEnabled(self) -> bool:
        return True

    def connect(self, *args) -> None:
        pass

    def processEvents(self) -> None:
        """One turn of the event loop: every active timer fires once."""
        for timer in list(timers):
            if timer.active:
                for slot in list(timer.slots):
                    slot()


class _ScriptedLoadableModule:
    def __init__(self, parent=None) -> None:
        self.parent = parent


class _Layout:
    def __init__(self) -> None:
        self.widgets: list = []

    def addWidget(self, widget) -> None:
        self.widgets.append(widget)


class _ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent if parent is not None else types.SimpleNamespace(isEntered=True)

    def setup(self) -> None:
        self.layout = _Layout()

    def resourcePath(self, filename: str) -> str:
        module = sys.modules[type(self).__module__]
        return os.path.join(os.path.dirname(module.__file__), "Resources", filename)


class QtWidget:
    """A Qt widget of the .ui file: the properties and calls the module uses (signals are recorded)."""

    def __init__(self, name: str = "") -> None:
        self.objectName = name
        self.enabled, self.visible, self.text, self.toolTip = True, True, "", ""
        self.value, self.minimum, self.maximum = 0.0, 0.0, 99.0
        self.currentIndex, self.currentPath = -1, ""
        self.items: list = []
        self.blocked = False
        self.connections: dict = {}

    def setVisible(self, visible: bool) -> None:
        self.visible = bool(visible)

    def blockSignals(self, block: bool) -> None:
        self.blocked = bool(block)

    def clear(self) -> None:
        self.items, self.currentIndex = [], -1

    def addItem(self, text: str, data=None) -> None:
        self.items.append(text)
        self.currentIndex = max(self.currentIndex, 0)

    def setItemData(self, index: int, value, role) -> None:
        assert 0 <= index < len(self.items)

    def connect(self, signal: str, slot) -> None:
        self.connections.setdefault(signal, []).append(slot)

    def setMRMLScene(self, scene) -> None:
        self.scene = scene

    @property
    def count(self) -> int:
        return len(self.items)


class _UIWidget(QtWidget):
    def __init__(self, path: str) -> None:
        import xml.etree.ElementTree as ET

        super().__init__("ui")
        names = [w.get("name") for w in ET.parse(path).getroot().iter("widget")]
        self.children = {name: QtWidget(name) for name in names}


def loadUI(path: str):
    if not os.path.isfile(path):
        raise RuntimeError(f"Could not load UI file {path}")
    return _UIWidget(path)


def childWidgetVariables(widget):
    return types.SimpleNamespace(**widget.children)


observed: list = []  # (object, event, method) of every observer, so that a parameter node can notify


class _VTKObservationMixin:
    def __init__(self) -> None:
        self.observations: list = []

    def addObserver(self, obj, event, method) -> None:
        self.observations.append((obj, event, method))
        observed.append((obj, event, method))

    def removeObserver(self, obj, event, method) -> None:
        self.observations = [o for o in self.observations if o != (obj, event, method)]
        observed[:] = [o for o in observed if o != (obj, event, method)]

    def removeObservers(self) -> None:
        observed[:] = [o for o in observed if o not in self.observations]
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
    """``qt.QTimer``: fires its slots on ``slicer.app.processEvents()`` while active."""

    def __init__(self) -> None:
        self.active = False
        self.slots: list = []
        timers.append(self)

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
        self._parameter_node = None

    def getParameterNode(self):
        if self._parameter_node is None:
            self._parameter_node = types.SimpleNamespace(moduleName=self.moduleName)
        return self._parameter_node


def _parameter_node_wrapper(cls):
    """``parameterNodeWrapper``: instances hold the annotated defaults (nodes: None); setting a parameter invokes
    the ModifiedEvent observers (as the wrapped vtkMRMLScriptedModuleNode does)."""
    names = tuple(getattr(cls, "__annotations__", {}))

    def __init__(self, node) -> None:
        object.__setattr__(self, "node", node)
        for name in names:
            object.__setattr__(self, name, getattr(cls, name, None))

    def __setattr__(self, name, value) -> None:
        object.__setattr__(self, name, value)
        if name in names:
            for obj, event, method in list(observed):
                if obj is self and event == vtk.vtkCommand.ModifiedEvent:
                    method(self, event)

    cls.__init__ = __init__
    cls.__setattr__ = __setattr__
    cls.connectGui = lambda self, ui: "gui-tag"
    cls.disconnectGui = lambda self, tag: None
    return cls


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
    timers.clear()
    observed.clear()
    slicer = types.ModuleType("slicer")
    slicer.__doc__ = "STAND-IN for 3D Slicer's Python API (tests/slicer/slicer_standin.py)"
    util = types.ModuleType("slicer.util")
    for function in (
        arrayFromVolume, updateVolumeFromArray, arrayFromVTKMatrix, vtkMatrixFromArray, addVolumeFromArray,
        launchConsoleProcess, setSliceViewerLayers, tryWithErrorDisplay, getNodesByClass, loadUI,
        childWidgetVariables,
    ):  # fmt: skip
        setattr(util, function.__name__, function)
    util.VTKObservationMixin = _VTKObservationMixin
    util.errors = errors  # not Slicer: the messages tryWithErrorDisplay showed, for the tests
    util.shown = shown  # not Slicer: what setSliceViewerLayers was asked to show, for the tests
    framework = _framework_modules(slicer)
    slicer.util = util
    slicer.mrmlScene, slicer.app = scene, _App()
    slicer.vtkMRMLScalarVolumeNode = StandInScalarVolumeNode
    slicer.vtkMRMLMarkupsROINode = StandInMarkupsROINode
    slicer.vtkMRMLTableNode = StandInTableNode
    slicer.vtkMRMLVolumeNode = StandInScalarVolumeNode
    slicer.vtkMRMLLabelMapVolumeNode = StandInLabelMapVolumeNode
    for name, module in {"slicer": slicer, "slicer.util": util, **framework}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return slicer


def _framework_modules(slicer: types.ModuleType) -> dict:
    """Stand-ins for what slicer-core lacks (``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``,
    ``slicer.i18n``, ``qt``, ``ctk``), set as attributes of ``slicer``; returns them by module name."""
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    slm.ScriptedLoadableModule = _ScriptedLoadableModule
    slm.ScriptedLoadableModuleWidget = _ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleLogic = _ScriptedLoadableModuleLogic
    slm.ScriptedLoadableModuleTest = _ScriptedLoadableModuleTest
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = _parameter_node_wrapper
    pnw.WithinRange = pnw.Choice = _Validator
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    qt = types.ModuleType("qt")
    qt.QTimer = _QTimer
    qt.Qt = types.SimpleNamespace(ToolTipRole=3)
    slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper, slicer.i18n = slm, pnw, i18n
    return {"slicer.ScriptedLoadableModule": slm, "slicer.parameterNodeWrapper": pnw, "slicer.i18n": i18n,
            "qt": qt, "ctk": types.ModuleType("ctk")}  # fmt: skip


class _StartupEnvironment:
    """``QProcessEnvironment`` of the stand-in app: this process's environment."""

    def keys(self) -> list:
        return list(os.environ)

    def value(self, key: str) -> str:
        return os.environ.get(key, "")


class _FrameworkApp(_App):
    """``slicer.app`` beside REAL MRML: testing mode, the startup environment, the event loop's timers."""

    def startupEnvironment(self) -> _StartupEnvironment:
        return _StartupEnvironment()


def install_framework(real_slicer: types.ModuleType) -> types.ModuleType:
    """Beside the REAL ``slicer`` of the slicer-core wheel (MRML, slicer.util): a fresh ``vtkMRMLScene`` as
    ``slicer.mrmlScene`` and stand-ins for only what slicer-core lacks: ``slicer.app``, ``qt``, ``ctk``,
    ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n``. Returns ``real_slicer``."""
    timers.clear()
    observed.clear()
    real_slicer.mrmlScene = real_slicer.vtkMRMLScene()
    real_slicer.app = _FrameworkApp()
    sys.modules.update(_framework_modules(real_slicer))
    return real_slicer
