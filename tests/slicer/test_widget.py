"""The module's Widget under the Slicer stand-in: model menu, scale controls, Apply with progress, Cancel, errors.

The widgets of the .ui file are replaced by the small Qt stand-ins below (the names come from the .ui file, checked
in test_extension_files.py), and the worker by a fast fake that answers on the line protocol, so these tests check
the Widget's own logic; the real worker runs in test_logic.py.
"""

from __future__ import annotations

import sys
import time
import types
import xml.etree.ElementTree as ET

import pytest

from tests.slicer.conftest import MODULE_DIR, bright_volume, oblique_ijk_to_ras

FAKE_WORKER = f"""#!{sys.executable}
import json, shutil, sys
args = sys.argv[1:]
value = lambda name: args[args.index(name) + 1]
say = lambda **fields: print("@rmisr " + json.dumps(fields), flush=True)
if "--weights" in args:
    say(kind="error", text=value("--weights") + ": weights file not found")
    sys.exit(2)
for done in range(1, 5):
    say(kind="progress", fraction=done / 4, text=f"{{done}} / 4 slices")
shutil.copy(value("--input"), value("--output"))
report = {{"shape_in": [12, 14, 6], "shape_out": [12, 14, 6], "data_range": 3000.0,
          "back_projection_psnr": None, "back_projection_mae": 0.0}}
open(value("--quality"), "w").write(json.dumps(report))
say(kind="done", output=value("--output"), quality=value("--quality"))
"""


class Widget:
    """A Qt widget stand-in: the properties and calls the module uses."""

    def __init__(self) -> None:
        self.enabled, self.visible, self.text, self.toolTip = True, True, "", ""
        self.value, self.minimum, self.maximum = 0.0, 0.0, 99.0
        self.currentIndex, self.currentPath = -1, ""
        self.items: list = []
        self.blocked = False

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
        pass

    @property
    def count(self) -> int:
        return len(self.items)


def _ui():
    names = [w.get("name") for w in ET.parse(MODULE_DIR / "Resources/UI/SuperResolution.ui").getroot().iter("widget")]
    return types.SimpleNamespace(**{name: Widget() for name in names})


def _parameters(node):
    fields = dict(inputVolume=node, outputVolume=None, roi=None, referenceVolume=None, qualityTable=None,
                  model="bicubic", scale=2.0, mode="axial", thickAxis="auto", device="cpu", selfEnsemble="model",
                  checkpointPath="",
                  computeQuality=True)
    return types.SimpleNamespace(**fields, connectGui=lambda ui: "tag", disconnectGui=lambda tag: None)


@pytest.fixture
def widget(slicer, tmp_path):
    import SuperResolution

    fake = tmp_path / "PythonSlicer"
    fake.write_text(FAKE_WORKER)
    fake.chmod(0o755)
    node = slicer.util.addVolumeFromArray(bright_volume(), oblique_ijk_to_ras(), name="CT")
    node.CreateDefaultDisplayNodes()
    w = SuperResolution.SuperResolutionWidget()
    w.ui = _ui()
    w.ui.progressBar.visible = w.ui.cancelButton.visible = False  # as setup() leaves them
    w.logic = SuperResolution.SuperResolutionLogic()
    w.logic.pythonExecutable = str(fake)
    w._parameterNode = _parameters(node)
    w.refreshModels()
    return w


def _run_until_done(widget, seconds=30.0):
    deadline = time.monotonic() + seconds
    values = []
    while widget._job is not None and time.monotonic() < deadline:
        widget.onPoll()
        values.append(widget.ui.progressBar.value)
        time.sleep(0.02)
    assert widget._job is None, "the fake worker did not finish"
    return values


def test_model_menu_and_scale_controls_follow_the_choice(widget):
    labels = widget.ui.modelComboBox.items
    keys = [c.key for c in widget._choices]
    assert labels == [c.label for c in widget._choices] and keys[-2:] == ["bicubic", "checkpoint"]
    assert "RMISR-BL CT (x2, x3, x4)" in labels
    # bicubic (the default): a free scale in its range
    assert widget.ui.scaleSpinBox.visible and not widget.ui.scaleComboBox.visible
    assert (widget.ui.scaleSpinBox.minimum, widget.ui.scaleSpinBox.maximum) == (1.1, 8.0)
    # a sub-pixel model: its trained scales only; through-plane is switched back to in-plane
    widget._parameterNode.mode = "through-plane"
    widget.onModelChanged(keys.index("rmisr_bl:CT"))
    widget._updateGUI()
    p = widget._parameterNode
    assert (p.model, p.scale, p.mode) == ("rmisr_bl:CT", 2.0, "axial")
    assert widget.ui.scaleComboBox.visible and not widget.ui.scaleSpinBox.visible
    assert widget.ui.scaleComboBox.items == ["x2", "x3", "x4"] and not widget.ui.thickAxisComboBox.enabled
    widget.ui.scaleComboBox.currentIndex = 2
    widget.onScaleChanged(2)
    assert p.scale == 4.0
    # checkpoint: the file chooser appears
    widget.onModelChanged(keys.index("checkpoint"))
    widget._updateGUI()
    assert widget.ui.checkpointPathLineEdit.visible and widget.ui.checkpointLabel.visible


def test_apply_shows_progress_and_puts_the_result_in_the_scene(widget, slicer):
    widget.onApplyButton()
    assert widget._job is not None and widget._timer.active
    assert widget.ui.progressBar.visible and widget.ui.cancelButton.visible and not widget.ui.applyButton.enabled
    values = _run_until_done(widget)
    assert max(values) == 100 and values == sorted(values)
    p = widget._parameterNode
    assert p.outputVolume in slicer.mrmlScene.nodes and p.qualityTable in slicer.mrmlScene.nodes
    assert widget.ui.statusLabel.text == f"Done: {p.outputVolume.GetName()}"
    assert not widget.ui.progressBar.visible and not widget.ui.cancelButton.visible and widget.ui.applyButton.enabled
    assert not widget._timer.active and slicer.util.errors == []


def test_self_ensemble_menu_reaches_the_worker(widget, slicer):
    from rmisr_monai.inference.ensemble import SELF_ENSEMBLE_SIZES
    from SuperResolutionLib.job import SELF_ENSEMBLES

    assert SELF_ENSEMBLES == ("model", *(str(n) for n in SELF_ENSEMBLE_SIZES))  # the worker's choices, as text
    widget.onApplyButton()  # "model": the worker follows the model's recipe
    assert "--self-ensemble" not in widget._job.worker.proc.args
    _run_until_done(widget)
    widget._parameterNode.selfEnsemble = "8"
    widget.onApplyButton()
    args = widget._job.worker.proc.args
    assert args[args.index("--self-ensemble") + 1] == "8"
    _run_until_done(widget)
    widget._parameterNode.selfEnsemble = "3"
    with pytest.raises(ValueError):
        widget.onApplyButton()
    assert "self-ensemble must be one of model, 1, 2, 4, 8" in slicer.util.errors[-1]


def test_cancel_adds_nothing(widget, slicer):
    before = list(slicer.mrmlScene.nodes)
    widget.onApplyButton()
    folder = widget._job.folder
    widget.onCancelButton()
    assert widget._job is None and not folder.exists() and slicer.mrmlScene.nodes == before
    assert widget.ui.statusLabel.text.startswith("Cancelled") and widget.ui.applyButton.enabled
    widget.onCancelButton()  # nothing running: harmless


def test_worker_error_is_shown_in_words_and_the_panel_recovers(widget, slicer):
    before = list(slicer.mrmlScene.nodes)
    widget._parameterNode.model, widget._parameterNode.checkpointPath = "checkpoint", "/data/mine.pt"
    widget.onApplyButton()
    with pytest.raises(Exception, match="weights file not found"):
        _run_until_done(widget)
    assert slicer.util.errors == ["Super-resolution failed.\n\n/data/mine.pt: weights file not found"]
    assert slicer.mrmlScene.nodes == before and not widget.ui.progressBar.visible and widget.ui.applyButton.enabled


def test_apply_refuses_an_impossible_choice_in_words(widget, slicer):
    widget._parameterNode.model, widget._parameterNode.scale = "rmisr_bl:CT", 5.0
    with pytest.raises(ValueError):
        widget.onApplyButton()
    start = "Super-resolution could not start.\n\nRMISR-BL CT (x2, x3, x4) cannot upscale x5"
    assert slicer.util.errors[0].startswith(start)
    assert widget._job is None and not widget.ui.progressBar.visible

