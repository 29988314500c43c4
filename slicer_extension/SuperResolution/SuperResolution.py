"""Super-resolution: upscale a CT or MRI volume with rmisr_monai's volume engine, from Slicer's Modules menu.

Thin module file (Slicer's scripted-module template, Utilities/Templates/Modules/Scripted/TemplateKey.py): Module,
parameter node, Widget, Logic facade and Test. Everything that is not GUI lives in ``SuperResolutionLib`` and the
heavy work in a worker process (``Scripts/super_resolution_worker.py``). Nothing here imports torch or rmisr_monai
when Slicer starts; they are installed, with consent, on first use.
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
from SuperResolutionLib.job import DEVICES, MODES, THICK_AXES, start_job
from SuperResolutionLib.models import (
    BICUBIC,
    CHECKPOINT,
    SAMPLE_SHA256,
    SCALE_RANGE,
    model_choices,
    sample_ct_path,
)

POLL_MILLISECONDS = 100


class SuperResolution(ScriptedLoadableModule):
    """Module description shown in Slicer (title, category, help, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Super-resolution (RMISR)")
        self.parent.categories = [_("Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["rmisr-monai contributors"]
        self.parent.helpText = _(
            "Upscale a CT or MRI volume slice by slice with a super-resolution network (or bicubic interpolation), "
            "in-plane on the axial, coronal or sagittal slices, or through-plane for thick slices. The result keeps "
            "the input's physical extent, orientation and display settings; a quality table reports its "
            "back-projection consistency and, given a reference, PSNR and SSIM. See the extension's README.md."
        )
        self.parent.acknowledgementText = _(
            "Networks: S. Ren, K. Guo, J. Ma, F. Zhu, B. Hu, H. Zhou, 'Realistic medical image super-resolution with "
            "pyramidal feature multi-distillation networks for intelligent healthcare systems', Neural Computing and "
            "Applications, 2021, doi:10.1007/s00521-021-06287-x; Y. Wang, Q. Zhao, P. Qin, Y. Hu, C. Zong, "
            "'Super-resolution reconstruction algorithm of medical image based on lightweight dense neural network', "
            "Journal of Computer Applications 42(8), 2022, doi:10.11772/j.issn.1001-9081.2021061093. Built on MONAI "
            "and PyTorch; the structure follows Slicer's module template and the MONAIAuto3DSeg and TotalSegmentator "
            "extensions. Demo CT: TotalSegmentator test data (Wasserthal et al., Apache-2.0)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the demo CT shipped with rmisr_monai in the Sample Data module (when it can be found)."""
    import SampleData

    path = sample_ct_path()
    if path is None:
        logging.info("Super-resolution: the demo CT appears in Sample Data once rmisr-monai is installed")
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
    (auto = largest spacing). device: auto (GPU when available), cuda or cpu. checkpointPath: a user's .pt file.
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
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

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
        """Fill the model menu from the registry of the installed rmisr_monai (bicubic and checkpoint otherwise)."""
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
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.model = choice.key
                if choice.scale_range is None and choice.scales:
                    self._parameterNode.scale = min(choice.scales, key=lambda s: abs(s - self._parameterNode.scale))
                if not choice.through_plane and self._parameterNode.mode == "through-plane":
                    self._parameterNode.mode = "axial"

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
        with slicer.util.tryWithErrorDisplay(_("Super-resolution could not start."), waitCursor=True):
            if not self.logic.setupDependencies():
                return
            self.refreshModels()
            p = self._parameterNode
            self._job = self.logic.start(
                p.inputVolume,
                p.model,
                p.scale,
                mode=p.mode,
                thickAxis=p.thickAxis,
                roi=p.roi,
                device=p.device,
                reference=p.referenceVolume if p.computeQuality else None,
                checkpoint=p.checkpointPath,
                outputVolume=p.outputVolume,
                qualityTable=p.qualityTable,
                quality=p.computeQuality,
            )
            self.ui.progressBar.value = 0
            self.ui.progressBar.setVisible(True)
            self.ui.cancelButton.setVisible(True)
            self.ui.statusLabel.text = _("Starting...")
            self._timer.start()
            self._updateGUI()

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
        with slicer.util.tryWithErrorDisplay(_("Super-resolution failed."), waitCursor=True):
            outputNode, tableNode = job.finish()
            if self._parameterNode:
                with slicer.util.NodeModify(self._parameterNode):
                    self._parameterNode.outputVolume = outputNode
                    if tableNode is not None:
                        self._parameterNode.qualityTable = tableNode
            self.ui.statusLabel.text = _("Done: {name}").format(name=outputNode.GetName())
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

    def setupDependencies(self) -> bool:
        """Install PyTorch and rmisr-monai on first use, after asking; False when the user declined."""
        if not dependencies.missing_packages():
            return True
        if slicer.app.testingEnabled():
            raise RuntimeError("rmisr-monai is not installed (dependencies are not installed in testing mode)")
        source = os.environ.get("RMISR_PACKAGE_SOURCE") or qt.QSettings().value(
            dependencies.PACKAGE_SOURCE_SETTING, dependencies.DEFAULT_PACKAGE_SOURCE
        )
        installed = dependencies.install_dependencies(
            slicer.util.confirmOkCancelDisplay,
            slicer.util.pip_install,
            self.resourcePath("requirements.txt"),
            str(source),
        )
        if installed:
            registerSampleData()
        return installed

    def modelChoices(self):
        """The model menu: registry models of the installed rmisr_monai, bicubic, checkpoint file."""
        try:
            from rmisr_monai.weights import read_registry
        except ImportError:
            return model_choices([])
        return model_choices(read_registry())

    def start(
        self,
        inputVolume,
        model: str,
        scale: float,
        mode: str = "axial",
        thickAxis: str = "auto",
        roi=None,
        device: str = "auto",
        reference=None,
        checkpoint: str = "",
        outputVolume=None,
        qualityTable=None,
        quality: bool = True,
        log=None,
    ):
        """Start a run (arguments as in ``SuperResolutionLib.job.start_job``; ``model`` is a menu key)."""
        choices = {c.key: c for c in self.modelChoices()}
        if model not in choices:
            raise ValueError(f"unknown model {model!r}; available: {', '.join(choices)}")
        return start_job(
            inputVolume,
            choices[model],
            scale,
            python=self.pythonExecutable,
            mode=mode,
            thick_axis_plane=thickAxis,
            roi=roi,
            device=device,
            reference=reference,
            checkpoint=checkpoint,
            output_node=outputVolume,
            table_node=qualityTable,
            quality=quality,
            log=log,
        )

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
    """Runs the Logic on synthetic volumes inside Slicer (needs rmisr-monai installed in Slicer's Python)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        if dependencies.missing_packages():
            self.delayDisplay(f"Skipped: not installed in Slicer's Python: {', '.join(dependencies.missing_packages())}")
            return
        self.test_InPlaneGeometry()
        self.test_ThroughPlaneAndROI()

    def _volume(self, spacing, shape=(12, 10, 8), bright=(5, 4, 3)):
        """A volume (KJI ``shape``) with one bright voxel at KJI ``bright``, oblique-free, origin off zero."""
        import numpy as np

        array = np.zeros(shape, dtype=np.int16)
        array[bright] = 1000
        ijkToRAS = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
        ijkToRAS[:3, 3] = (10.0, -20.0, 30.0)
        node = slicer.util.addVolumeFromArray(array, ijkToRAS, name="SyntheticInput")
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetAutoWindowLevel(False)
        node.GetDisplayNode().SetWindowLevel(400, 40)
        return node, array, ijkToRAS

    def _brightRAS(self, node):
        import numpy as np

        array = slicer.util.arrayFromVolume(node)
        kji = np.unravel_index(int(np.argmax(array)), array.shape)
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        return np.array(matrix.MultiplyPoint([kji[2], kji[1], kji[0], 1.0])[:3])

    def test_InPlaneGeometry(self):
        """x2 bicubic on axial slices: spacing halves in-plane, the box and the input stay, display copied."""
        import numpy as np

        self.delayDisplay("In-plane x2")
        node, array, ijkToRAS = self._volume((0.8, 0.8, 2.5))
        logic = SuperResolutionLogic()
        output, table = logic.process(node, BICUBIC, 2.0, mode="axial", device="cpu")
        self.assertEqual(slicer.util.arrayFromVolume(output).shape, (12, 20, 16))
        np.testing.assert_allclose(output.GetSpacing(), (0.4, 0.4, 2.5))
        expected = (ijkToRAS @ np.array([-0.25, -0.25, 0.0, 1.0]))[:3]  # voxel (0,0,0) moves by a quarter voxel
        np.testing.assert_allclose(output.GetOrigin(), expected, atol=1e-9)
        np.testing.assert_allclose(self._brightRAS(output), self._brightRAS(node), atol=0.21)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)
        self.assertEqual(output.GetDisplayNode().GetWindow(), 400)
        self.assertGreater(table.GetNumberOfRows(), 2)
        self.delayDisplay("In-plane test passed")

    def test_ThroughPlaneAndROI(self):
        """Through-plane x2 on the thick axis, restricted to an ROI around the bright voxel."""
        import numpy as np

        self.delayDisplay("Through-plane x2 in an ROI")
        node, _array, _ = self._volume((0.8, 0.8, 3.0))
        centre = self._brightRAS(node)
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        roi.SetCenter(*centre)
        roi.SetSize(4.0, 4.0, 10.0)
        logic = SuperResolutionLogic()
        output, _table = logic.process(node, BICUBIC, 2.0, mode="through-plane", roi=roi, device="cpu")
        np.testing.assert_allclose(output.GetSpacing(), (0.8, 0.8, 1.5))
        np.testing.assert_allclose(self._brightRAS(output), centre, atol=0.8)
        self.delayDisplay("Through-plane test passed")
