"""Super-resolution: upscale a CT or MRI volume with rmisr_monai's volume engine, from Slicer's Modules menu.

Thin module file (Slicer's scripted-module template, Utilities/Templates/Modules/Scripted/TemplateKey.py): Module,
parameter node, Widget, Logic facade and Test. Everything that is not GUI lives in ``SuperResolutionLib`` and the
heavy work in a worker process (``Scripts/super_resolution_worker.py``). The engine, ``rmisr_monai``, is part of the
module folder (``slicer_extension/package.py``, the CMake install rule); PyTorch and the engine's requirements
are installed from the package index, with consent, on first use (``SuperResolutionLib.dependencies``). Neither
Slicer's start-up nor opening the module imports torch: the model menu is read from the registry file.

Supported: Slicer >= 5.10. Its Python is 3.12; the engine needs Python >= 3.10 (and torch >= 2.8 for MONAI 1.6),
so Slicer 5.4-5.8 (Python 3.9) cannot run it: there the module loads and says so on Apply.
"""

import logging
import os
import shutil
import sys
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from SuperResolutionLib import dependencies
from SuperResolutionLib.job import DEVICES, MODES, SELF_ENSEMBLES, THICK_AXES, start_job
from SuperResolutionLib.models import (
    BICUBIC,
    CHECKPOINT,
    SAMPLE_SHA256,
    SCALE_RANGE,
    engine_dir,
    model_choices,
    registry_entries,
    sample_ct_path,
)

POLL_MILLISECONDS = 100
MINIMUM_PYTHON = (3, 10)  # the engine's python_requires; Slicer >= 5.10


class SuperResolution(ScriptedLoadableModule):
    """Module description shown in Slicer (title, category, help, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Super-resolution (RMISR)")
        self.parent.categories = [_("Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = []  # no named contributors yet (a placeholder was removed)
        self.parent.helpText = _(
            "FOR RESEARCH USE ONLY: super-resolved images can invent or hide findings; they are not for diagnosis. "
            "Every output volume records the model, its sha256 and the options that made it.\n"
            "Upscale a CT or MRI volume slice by slice with a super-resolution network (or bicubic interpolation), "
            "in-plane on the axial, coronal or sagittal slices, or through-plane for thick slices. The result keeps "
            "the input's physical extent, orientation and display settings; a quality table reports its "
            "back-projection consistency and, given a reference, PSNR and SSIM. See the extension's README.md.\n"
            "Papers: S. Ren, K. Guo, J. Ma, F. Zhu, B. Hu, H. Zhou, 'Realistic medical image super-resolution with "
            "pyramidal feature multi-distillation networks for intelligent healthcare systems', Neural Computing and "
            "Applications, 2021, doi:10.1007/s00521-021-06287-x (RMISR); Y. Wang, Q. Zhao, P. Qin, Y. Hu, C. Zong, "
            "'Super-resolution reconstruction algorithm of medical image based on lightweight dense neural network', "
            "Journal of Computer Applications 42(8), 2022, doi:10.11772/j.issn.1001-9081.2021061093 (dense network)."
        )
        self.parent.acknowledgementText = _(
            "Thanks to the authors of the RMISR and lightweight dense network papers above. Built on MONAI and "
            "PyTorch (through the PyTorch extension); the structure follows Slicer's scripted-module template and the "
            "MONAIAuto3DSeg and TotalSegmentator extensions. Demo CT: TotalSegmentator test data (Wasserthal et al., "
            "Apache-2.0)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the demo CT shipped with rmisr_monai in the Sample Data module (when it can be found)."""
    import SampleData

    path = sample_ct_path()
    if path is None:
        logging.info("Super-resolution: the demo CT is not in this module folder (rmisr_monai/sample)")
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Super-resolution",
        sampleName="RMISRDemoCT",
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "SuperResolution.png"),
        uris=path.as_uri(),
        fileNames="ct_demo_abdomen_int16.nii.gz",
        checksums=f"SHA256:{SAMPLE_SHA256}",
        nodeNames="RMISRDemoCT",
    )


@parameterNodeWrapper
class SuperResolutionParameterNode:
    """The module's settings, saved with the scene.

    inputVolume: volume to upscale (never modified). outputVolume: where the result goes (None: a new volume).
    roi: only the voxels inside are upscaled. referenceVolume: high-resolution volume on the result's grid for
    PSNR/SSIM. qualityTable: where the quality table goes (None: a new table). model: key of the model menu item.
    scale: upscaling factor. mode: axial/coronal/sagittal (in-plane) or through-plane. thickAxis: through-plane axis
    (auto = largest spacing). device: auto (GPU when available), cuda or cpu. selfEnsemble: "model" (the model's
    recipe) or how many flipped / turned copies of each slice are averaged. checkpointPath: a user's .pt file.
    computeQuality: fill the quality table after each run.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    roi: vtkMRMLMarkupsROINode
    referenceVolume: vtkMRMLScalarVolumeNode
    qualityTable: vtkMRMLTableNode
    model: str = BICUBIC
    scale: Annotated[float, WithinRange(*SCALE_RANGE)] = 2.0
    mode: Annotated[str, Choice(list(MODES))] = "axial"
    thickAxis: Annotated[str, Choice(list(THICK_AXES))] = "auto"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    selfEnsemble: Annotated[str, Choice(list(SELF_ENSEMBLES))] = "model"
    checkpointPath: str = ""
    computeQuality: bool = True


class SuperResolutionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node, runs the Logic without blocking, shows progress and Cancel."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._choices = []
        self._job = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MILLISECONDS)
        self._timer.connect("timeout()", self.onPoll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SuperResolution.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SuperResolutionLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.scaleComboBox.connect("currentIndexChanged(int)", self.onScaleChanged)
        self.ui.scaleSpinBox.connect("valueChanged(double)", self.onScaleChanged)
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self.onCheckpointChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setVisible(False)
        self.refreshModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancelButton()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancelButton()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = firstImageVolume()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def refreshModels(self) -> None:
        """Fill the model menu from the engine's registry file (bicubic and checkpoint without one); no torch."""
        self._choices = self.logic.modelChoices()
        self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for index, choice in enumerate(self._choices):
            self.ui.modelComboBox.addItem(choice.label)
            self.ui.modelComboBox.setItemData(index, choice.description, qt.Qt.ToolTipRole)
        self.ui.modelComboBox.blockSignals(False)
        self._updateGUI()

    def _choice(self):
        key = self._parameterNode.model if self._parameterNode else BICUBIC
        by_key = {c.key: c for c in self._choices}
        return by_key.get(key, by_key[BICUBIC])  # a model of another installation: bicubic

    def _updateGUI(self, caller=None, event=None) -> None:
        """Model, scale and checkpoint widgets (the other widgets are bound by connectGui); Apply's state."""
        if self._parameterNode is None or not self._choices:
            return
        choice = self._choice()
        for widget in (self.ui.modelComboBox, self.ui.scaleComboBox, self.ui.scaleSpinBox):
            widget.blockSignals(True)
        self.ui.modelComboBox.currentIndex = self._choices.index(choice)
        self.ui.scaleComboBox.clear()
        for scale in choice.scales:
            self.ui.scaleComboBox.addItem(f"x{scale:g}", scale)
        discrete = choice.scale_range is None
        self.ui.scaleComboBox.setVisible(discrete)
        self.ui.scaleSpinBox.setVisible(not discrete)
        if discrete:
            scale = min(choice.scales, key=lambda s: abs(s - self._parameterNode.scale))
            self.ui.scaleComboBox.currentIndex = choice.scales.index(scale)
        else:
            self.ui.scaleSpinBox.minimum, self.ui.scaleSpinBox.maximum = choice.scale_range
            self.ui.scaleSpinBox.value = self._parameterNode.scale
        for widget in (self.ui.modelComboBox, self.ui.scaleComboBox, self.ui.scaleSpinBox):
            widget.blockSignals(False)
        if self.ui.checkpointPathLineEdit.currentPath != self._parameterNode.checkpointPath:
            self.ui.checkpointPathLineEdit.blockSignals(True)
            self.ui.checkpointPathLineEdit.currentPath = self._parameterNode.checkpointPath
            self.ui.checkpointPathLineEdit.blockSignals(False)
        self.ui.checkpointPathLineEdit.setVisible(choice.key == CHECKPOINT)
        self.ui.checkpointLabel.setVisible(choice.key == CHECKPOINT)
        self.ui.thickAxisComboBox.enabled = self._parameterNode.mode == "through-plane"
        running = self._job is not None
        ready = self._parameterNode.inputVolume is not None and not running
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Upscale the input volume") if ready else _("Select an input volume")

    def onModelChanged(self, index: int) -> None:
        if self._parameterNode and 0 <= index < len(self._choices):
            choice = self._choices[index]
            if choice.scale_range is None and choice.scales:
                self._parameterNode.scale = min(choice.scales, key=lambda s: abs(s - self._parameterNode.scale))
            if not choice.through_plane and self._parameterNode.mode == "through-plane":
                self._parameterNode.mode = "axial"
            self._parameterNode.model = choice.key

    def onScaleChanged(self, *args) -> None:
        if self._parameterNode is None or not self._choices:
            return
        choice = self._choice()
        if choice.scale_range is not None:
            self._parameterNode.scale = float(self.ui.scaleSpinBox.value)
        elif 0 <= self.ui.scaleComboBox.currentIndex < len(choice.scales):
            self._parameterNode.scale = choice.scales[self.ui.scaleComboBox.currentIndex]

    def onCheckpointChanged(self, path: str) -> None:
        if self._parameterNode:
            self._parameterNode.checkpointPath = path

    def onApplyButton(self) -> None:
        # no wait cursor over the consent question and the install (minutes); the status line says what happens
        with slicer.util.tryWithErrorDisplay(_("Super-resolution could not start."), waitCursor=False):
            if not self.logic.setupDependencies(status=self._showStatus):
                self.ui.statusLabel.text = _("Not started: the packages it needs are not installed")
                return
        with slicer.util.tryWithErrorDisplay(_("Super-resolution could not start."), waitCursor=True):
            self.refreshModels()
            p = self._parameterNode
            self._job = self.logic.start(
                p.inputVolume,
                p.model,
                p.scale,
                mode=p.mode,
                thick_axis_plane=p.thickAxis,
                roi=p.roi,
                device=p.device,
                self_ensemble=p.selfEnsemble,
                reference=p.referenceVolume if p.computeQuality else None,
                checkpoint=p.checkpointPath,
                output_node=p.outputVolume,
                table_node=p.qualityTable,
                quality=p.computeQuality,
            )
            self.ui.progressBar.value = 0
            self.ui.progressBar.setVisible(True)
            self.ui.cancelButton.setVisible(True)
            self.ui.statusLabel.text = _("Starting...")
            self._timer.start()
            self._updateGUI()

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.app.processEvents()

    def onPoll(self) -> None:
        """Timer: progress from the worker's lines; when it has ended, the result into the scene."""
        job = self._job
        if job is None:
            self._timer.stop()
            return
        finished = job.worker.finished
        for message in job.worker.poll():
            if message.kind == "progress":
                self.ui.progressBar.value = int(round(100 * message.fraction))
                self.ui.statusLabel.text = message.text
        if not finished:
            return
        self._timer.stop()
        self._job = None
        try:  # tryWithErrorDisplay shows the error, then re-raises it
            with slicer.util.tryWithErrorDisplay(_("Super-resolution failed."), waitCursor=True):
                outputNode, tableNode = job.finish()
                if self._parameterNode:
                    self._parameterNode.outputVolume = outputNode
                    if tableNode is not None:
                        self._parameterNode.qualityTable = tableNode
                self.ui.statusLabel.text = _("Done: {name} ({summary})").format(
                    name=outputNode.GetName(), summary=job.summary_text()
                )
                logging.info("Super-resolution: %s (%s)", outputNode.GetName(), job.summary_text())
        finally:
            self._endRun()

    def onCancelButton(self) -> None:
        if self._job is None:
            return
        self._timer.stop()
        self._job.cancel()
        self._job = None
        self.ui.statusLabel.text = _("Cancelled; nothing was added to the scene")
        self._endRun()

    def _endRun(self) -> None:
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setVisible(False)
        self._updateGUI()


def firstImageVolume():
    """The first scalar volume of the scene that is not a labelmap (``GetFirstNodeByClass`` also returns
    labelmaps, a subclass), or None."""
    return next(
        (n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")),
        None,
    )


class SuperResolutionLogic(ScriptedLoadableModuleLogic):
    """Facade usable without the GUI: ``process`` runs to the end; ``start`` returns a job the GUI polls.

    The work itself is in ``SuperResolutionLib.job`` (scene <-> files, worker process) and the worker.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # the interpreter of the worker: Slicer's launcher, or outside Slicer this Python
        self.pythonExecutable = shutil.which("PythonSlicer") or sys.executable

    def getParameterNode(self):
        return SuperResolutionParameterNode(super().getParameterNode())

    def setupDependencies(self, status=None) -> bool:
        """Install PyTorch and the engine's requirements on first use, after asking; False when the user declined.

        Raises:
            RuntimeError: this Slicer's Python is too old, the module folder lacks its engine, or a package cannot
                be had (in words).
        """
        if sys.version_info[:2] < MINIMUM_PYTHON:
            raise RuntimeError(
                "this module needs Slicer 5.10 or later (Python {}.{}+); this Slicer has Python {}.{}".format(
                    *MINIMUM_PYTHON, *sys.version_info[:2]
                )
            )
        if engine_dir() is None:
            raise RuntimeError("the module folder has no rmisr_monai engine; reinstall the extension")
        if not dependencies.missing_packages():
            return True
        if slicer.app.testingEnabled():
            raise RuntimeError(
                "not installed in Slicer's Python (nothing is installed in testing mode): "
                + ", ".join(dependencies.missing_packages())
            )

        def confirm(question):
            if not slicer.util.confirmOkCancelDisplay(question):
                return False
            if status is not None:
                status(_("Installing PyTorch and the packages it needs (see the Python console)..."))
            return True

        return dependencies.install_dependencies(confirm, slicer.util.pip_install)

    def modelChoices(self):
        """The model menu: the engine's shipped models (read from its registry file, no torch), bicubic,
        checkpoint file."""
        return model_choices(registry_entries())

    def start(self, inputVolume, model: str, scale: float, **options):
        """Start a run; ``model`` is a menu key (:meth:`modelChoices`), ``options`` are those of
        ``SuperResolutionLib.job.start_job`` (mode, thick_axis_plane, roi, device, self_ensemble, reference, checkpoint,
        output_node, table_node, quality, log). Returns the job (``SuperResolutionLib.job.UpscaleJob``)."""
        choices = {c.key: c for c in self.modelChoices()}
        if model not in choices:
            raise ValueError(f"unknown model {model!r}; available: {', '.join(choices)}")
        return start_job(inputVolume, choices[model], scale, python=self.pythonExecutable, **options)

    def process(self, inputVolume, model: str, scale: float, progress=None, showResult: bool = True, **options):
        """Run to the end (blocking); returns ``(outputVolume, qualityTable)``. ``progress(fraction, text)`` is called
        as the worker reports; ``options`` are those of :meth:`start`."""
        job = self.start(inputVolume, model, scale, **options)
        try:
            job.worker.wait(progress)
        except BaseException:
            job.cancel()
            raise
        return job.finish(show=showResult)


class SuperResolutionTest(ScriptedLoadableModuleTest):
    """Runs the Logic on synthetic volumes (needs rmisr-monai installed in Slicer's Python).

    pytest runs this class too, under a stand-in for Slicer (tests/slicer/test_logic.py), so it uses only plain
    Slicer calls.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        """The node <-> engine geometry and the requirements always (no torch needed); the two runs through the
        worker when torch and the engine's requirements are installed (they are not on a bare Slicer: said so)."""
        self.setUp()
        self.test_NodeRoundTrip()
        self.setUp()
        self.test_RequirementsAndEngine()
        missing = dependencies.missing_packages()
        if missing:
            self.delayDisplay(f"Worker runs not tested: not installed in Slicer's Python: {', '.join(missing)}")
            return
        self.setUp()
        self.test_InPlaneGeometry()
        self.setUp()
        self.test_ThroughPlaneAndROI()

    def test_NodeRoundTrip(self):
        """A node's voxels and oblique geometry through the engine's Volume and back into a new node: exact."""
        import numpy as np
        from SuperResolutionLib import nodes

        ijkToRAS = self._ijkToRAS((0.7, 0.9, 2.5))
        node, array = self._volume(ijkToRAS)
        copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Copy")
        nodes.update_node_from_volume(copy, nodes.volume_from_node(node))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), array)
        np.testing.assert_allclose(self._matrix(copy), ijkToRAS, atol=1e-12)

    def test_RequirementsAndEngine(self):
        """The module folder holds its engine with its default weights; every requirement line parses."""
        entries = registry_entries()
        self.assertTrue(entries, "no shipped models in the engine's registry")
        self.assertIsNotNone(sample_ct_path())
        for line in dependencies.read_requirements():
            dependencies.Requirement(line)

    @staticmethod
    def _ijkToRAS(spacing, angle=0.3):
        """IJKToRAS rotated about S, with uneven spacing and an origin off zero."""
        import numpy as np

        c, s = np.cos(angle), np.sin(angle)
        matrix = np.eye(4)
        matrix[:3, :3] = np.array([[-c, s, 0.0], [-s, -c, 0.0], [0.0, 0.0, 1.0]]) * np.asarray(spacing)
        matrix[:3, 3] = (12.5, -40.25, 101.0)
        return matrix

    @staticmethod
    def _matrix(node):
        import numpy as np

        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])

    def _brightRAS(self, node):
        """World position of the brightest voxel (the mean when several tie: bicubic x2 of one bright voxel peaks
        on the two new voxels around its centre)."""
        import numpy as np

        array = slicer.util.arrayFromVolume(node)
        ijk = np.argwhere(array == array.max())[:, ::-1].astype(float)
        return (self._matrix(node) @ np.c_[ijk, np.ones(len(ijk))].T)[:3].mean(axis=1)

    def _volume(self, ijkToRAS, shape=(6, 14, 12), bright=(2, 6, 5)):
        """A KJI ``shape`` volume of -1000 with one voxel of 2000 at KJI ``bright``, window/level 350/40."""
        import numpy as np

        array = np.full(shape, -1000, dtype=np.int16)
        array[bright] = 2000
        node = slicer.util.addVolumeFromArray(array, ijkToRAS, name="SyntheticInput")
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetAutoWindowLevel(False)
        node.GetDisplayNode().SetWindowLevel(350, 40)
        return node, array

    def test_InPlaneGeometry(self):
        """Bicubic x2 on the axial slices of an oblique volume: exact spacing, origin, directions, bright voxel."""
        import numpy as np

        self.delayDisplay("In-plane x2")
        ijkToRAS = self._ijkToRAS((0.7, 0.9, 2.5))
        node, array = self._volume(ijkToRAS)
        fractions = []
        output, table = SuperResolutionLogic().process(
            node, BICUBIC, 2.0, mode="axial", device="cpu", progress=lambda fraction, text: fractions.append(fraction)
        )
        result = slicer.util.arrayFromVolume(output)
        self.assertEqual(result.shape, (6, 28, 24))
        self.assertEqual(result.dtype, array.dtype)
        np.testing.assert_allclose(output.GetSpacing(), (0.35, 0.45, 2.5), rtol=1e-14)
        matrix = self._matrix(output)
        np.testing.assert_allclose(matrix[:3, :3] / (0.35, 0.45, 2.5), ijkToRAS[:3, :3] / (0.7, 0.9, 2.5), atol=1e-15)
        # the box of voxel corners is kept: the new voxel (0, 0, 0) sits a quarter of an old voxel inside
        np.testing.assert_allclose(output.GetOrigin(), (ijkToRAS @ (-0.25, -0.25, 0.0, 1.0))[:3], atol=1e-12)
        np.testing.assert_allclose(self._brightRAS(output), self._brightRAS(node), atol=1e-9)
        # the input is untouched; the display settings are the input's; the quality table is filled
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
        np.testing.assert_array_equal(self._matrix(node), ijkToRAS)
        self.assertEqual((output.GetDisplayNode().GetWindow(), output.GetDisplayNode().GetLevel()), (350, 40))
        self.assertEqual(table.GetCellText(0, 1), "12x14x6 -> 24x28x6")
        self.assertEqual(table.GetCellText(1, 0), "Back-projection PSNR")
        self.assertEqual(fractions, sorted(fractions))
        self.assertEqual(fractions[-1], 1.0)
        self.delayDisplay("In-plane test passed")

    def test_ThroughPlaneAndROI(self):
        """Through-plane x2 (thick axis found from the spacing) inside an ROI around the bright voxel, into an
        existing volume, scored against a reference on the result's grid."""
        import numpy as np

        self.delayDisplay("Through-plane x2 in an ROI")
        ijkToRAS = self._ijkToRAS((0.8, 0.8, 3.0), angle=0.0)
        node, array = self._volume(ijkToRAS, shape=(8, 14, 12), bright=(4, 6, 5))
        centre = self._brightRAS(node)
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        roi.SetCenter(*centre)
        roi.SetSize(3.0, 3.0, 7.0)  # voxel centres within 1.5 mm across and 3.5 mm along S: 3 x 3 x 3 voxels
        # the ROI holds IJK (4..6, 5..7, 3..5); the result's voxel (0, 0, 0) sits a quarter voxel below along k
        expected = ijkToRAS.copy()
        expected[:3, 2] /= 2
        expected[:3, 3] = (ijkToRAS @ (4.0, 5.0, 2.75, 1.0))[:3]
        reference = slicer.util.addVolumeFromArray(np.repeat(array[3:6, 5:8, 4:7], 2, axis=0), expected, name="Ref")
        existing = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Result")
        output, table = SuperResolutionLogic().process(
            node, BICUBIC, 2.0, mode="through-plane", roi=roi, device="cpu", reference=reference, output_node=existing
        )
        self.assertIs(output, existing)
        self.assertEqual(slicer.util.arrayFromVolume(output).shape, (6, 3, 3))
        np.testing.assert_allclose(output.GetSpacing(), (0.8, 0.8, 1.5), rtol=1e-14)
        np.testing.assert_allclose(self._matrix(output), expected, atol=1e-12)
        np.testing.assert_allclose(self._brightRAS(output), centre, atol=1e-9)
        rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
        self.assertEqual(rows["Voxels"], "3x3x3 -> 3x3x6")
        self.assertTrue(rows["PSNR vs reference"].endswith(" dB"))
        self.assertTrue(rows["SSIM vs reference"].startswith("n/a"))  # 3-voxel slices: under the SSIM window
        self.delayDisplay("Through-plane test passed")
