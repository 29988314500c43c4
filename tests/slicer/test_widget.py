"""The module's Widget under the Slicer stand-in: setup(), model menu, scale controls, Apply with progress driven by
the timer, Cancel, errors.

Stand-in pieces (tests/slicer/slicer_standin.py; slicer-core has no Qt): the widgets of the .ui file (``loadUI``
builds one per named widget; the names are checked against the .ui in test_extension_files.py), the QTimer (fired
by ``slicer.app.processEvents()``), the parameter node wrapper and the MRML scene; the worker is a fast fake that
answers on the line protocol, so these tests check the Widget's own logic. The real worker runs in test_logic.py
and, on real MRML nodes, in test_real_mrml.py.
"""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest

from tests.slicer.conftest import bright_volume, oblique_ijk_to_ras

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
say(kind="done", output=value("--output"), quality=value("--quality"), model="bicubic", device="CPU",
    precision="fp32", seconds=0.25)
"""


@pytest.fixture
def widget(slicer, tmp_path):
    import SuperResolution

    fake = tmp_path / "PythonSlicer"
    fake.write_text(FAKE_WORKER)
    fake.chmod(0o755)
    labels = slicer.util.addVolumeFromArray(np.ones((6, 14, 12), np.uint8), nodeClassName="vtkMRMLLabelMapVolumeNode")
    node = slicer.util.addVolumeFromArray(bright_volume(), oblique_ijk_to_ras(), name="CT")
    node.CreateDefaultDisplayNodes()
    w = SuperResolution.SuperResolutionWidget()
    w.setup()
    assert w._parameterNode.inputVolume is node and labels.IsA("vtkMRMLScalarVolumeNode")  # not the labelmap
    assert not w.ui.progressBar.visible and not w.ui.cancelButton.visible
    w.logic.pythonExecutable = str(fake)
    w._parameterNode.device = "cpu"
    return w


def _run_until_done(widget, seconds=30.0):
    import slicer

    deadline = time.monotonic() + seconds
    values = []
    while widget._job is not None and time.monotonic() < deadline:
        slicer.app.processEvents()  # the event loop: the timer polls the worker
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
    assert widget.ui.statusLabel.text == f"Done: {p.outputVolume.GetName()} (bicubic on CPU, fp32, 0.2 s)"
    assert not widget.ui.progressBar.visible and not widget.ui.cancelButton.visible and widget.ui.applyButton.enabled
    assert not widget._timer.active and slicer.util.errors == []


def test_self_ensemble_menu_reaches_the_worker(widget, slicer):
    from SuperResolutionLib.job import SELF_ENSEMBLES

    from rmisr_monai.inference.ensemble import SELF_ENSEMBLE_SIZES

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



class BrokenTorch(types.ModuleType):
    """A torch whose CUDA libraries fail to load: any use raises OSError (not ImportError)."""

    def __getattr__(self, name):
        raise OSError("libcudart.so.12: cannot open shared object file")


def test_setup_and_the_model_menu_do_not_touch_torch(slicer, monkeypatch):
    import SuperResolution

    monkeypatch.setitem(sys.modules, "torch", BrokenTorch("torch"))
    slicer.util.addVolumeFromArray(bright_volume(), name="CT")
    w = SuperResolution.SuperResolutionWidget()
    w.setup()  # no OSError: neither setup() nor refreshModels() uses torch
    assert "RMISR-BL CT (x2, x3, x4)" in w.ui.modelComboBox.items and w.ui.applyButton.enabled


def test_selectors_offer_one_way_to_create_a_node():
    import xml.etree.ElementTree as ET

    from tests.slicer.conftest import MODULE_DIR

    root = ET.parse(MODULE_DIR / "Resources/UI/SuperResolution.ui").getroot()
    for combo in root.iter("widget"):
        if combo.get("class") != "qMRMLNodeComboBox":
            continue
        props = {p.get("name"): p for p in combo.findall("property")}
        add = props.get("addEnabled") is not None and props["addEnabled"].find("bool").text == "true"
        creates = props.get("noneDisplay") is not None and "create" in props["noneDisplay"].find("string").text.lower()
        assert not (add and creates), combo.get("name")  # two "Create new ..." entries


def test_apply_without_packages_asks_without_a_wait_cursor(widget, slicer, monkeypatch):
    from SuperResolutionLib import dependencies

    cursors = []
    real = slicer.util.tryWithErrorDisplay

    def recording(message=None, show=True, waitCursor=False):
        cursors.append(waitCursor)
        return real(message, show, waitCursor)

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", recording)
    monkeypatch.setattr(dependencies, "missing_packages", lambda *a: ["monai >=1.6.1,<1.7"])
    monkeypatch.setattr(slicer.app, "testingEnabled", lambda: False, raising=False)
    pip = []
    monkeypatch.setattr(slicer.util, "pip_install", pip.append, raising=False)
    asked = []
    def decline(question):
        asked.append(cursors[:])
        return False

    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", decline, raising=False)
    widget.onApplyButton()
    assert asked == [[False]]  # the question came with no wait cursor on
    assert widget._job is None and "Not started" in widget.ui.statusLabel.text and pip == []
