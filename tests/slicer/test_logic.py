"""The module's Logic end to end under the Slicer stand-in (tests/slicer/slicer_standin.py): scene nodes -> worker
process (run for real, bicubic on small volumes) -> scene nodes; cancel, failure and refusal leave the scene as it
was."""

from __future__ import annotations

import numpy as np
import pytest

from tests.slicer.conftest import bright_volume, oblique_ijk_to_ras


def _input(slicer, ijk_to_ras, **kwargs):
    node = slicer.util.addVolumeFromArray(bright_volume(**kwargs), ijk_to_ras, name="CT")
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(350, 40)
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
    return node


def test_the_module_self_test_passes_under_the_standin(slicer):
    """SuperResolutionTest (the test Slicer runs): in-plane on an oblique volume and through-plane in an ROI into an
    existing node with a reference, checking spacing, origin and directions exactly, the bright voxel's world
    position, the untouched input, the copied display and the quality table (SuperResolution.py)."""
    import SuperResolution

    test = SuperResolution.SuperResolutionTest()
    test.runTest()
    assert [fit for _, fit in slicer.util.shown] == [True, True]  # each result shown, fitted to the views
    assert {type(n).__name__ for n in slicer.mrmlScene.nodes} == {
        "StandInScalarVolumeNode", "StandInMarkupsROINode", "StandInTableNode"
    }


def test_the_self_test_without_packages_still_tests_the_geometry_and_says_what_it_left_out(slicer, monkeypatch):
    import SuperResolution
    from SuperResolutionLib import dependencies

    monkeypatch.setattr(dependencies, "missing_packages", lambda *a: ["torch >=2.8"])
    ran, said = [], []
    test = SuperResolution.SuperResolutionTest()
    monkeypatch.setattr(test, "delayDisplay", said.append)
    for name in ("test_NodeRoundTrip", "test_RequirementsAndEngine", "test_InPlaneGeometry"):
        real = getattr(test, name)
        monkeypatch.setattr(test, name, lambda real=real, name=name: ran.append(name) or real())
    test.runTest()
    assert ran == ["test_NodeRoundTrip", "test_RequirementsAndEngine"]
    assert said[-1] == "Worker runs not tested: not installed in Slicer's Python: torch >=2.8"


def test_the_demo_ct_is_registered_with_sample_data(slicer, monkeypatch):
    import hashlib
    import sys
    import types
    from pathlib import Path
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    import SuperResolution

    registered = []
    logic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kwargs: registered.append(kwargs))
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic))
    SuperResolution.registerSampleData()
    (source,) = registered
    path = Path(url2pathname(urlparse(source["uris"]).path))
    assert path.is_file() and path.name == source["fileNames"]
    assert source["checksums"] == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(source["thumbnailFileName"]).is_file() and source["nodeNames"] == "RMISRDemoCT"


def test_cancel_leaves_no_node_and_no_files(slicer):
    import SuperResolution

    node = _input(slicer, oblique_ijk_to_ras())
    job = SuperResolution.SuperResolutionLogic().start(node, "bicubic", 2.0, device="cpu")
    assert job.folder.is_dir()
    job.cancel()
    assert not job.folder.exists() and job.worker.proc.returncode is not None
    with pytest.raises(Exception, match="cancelled"):
        job.finish()
    assert slicer.mrmlScene.nodes == [node] and slicer.util.shown == []


def test_a_failing_worker_reports_its_sentence_and_leaves_no_node(slicer, tmp_path):
    import SuperResolution
    from SuperResolutionLib.process import WorkerFailed

    fake = tmp_path / "python"  # stands for PythonSlicer: answers like the worker does for a missing checkpoint
    fake.write_text('#!/bin/sh\necho "rmisr: loading"\n'
                    'echo \'@rmisr {"kind": "error", "text": "my.pt: weights file not found"}\'\nexit 2\n')
    fake.chmod(0o755)
    node = _input(slicer, oblique_ijk_to_ras())
    logic = SuperResolution.SuperResolutionLogic()
    logic.pythonExecutable = str(fake)
    logged = []
    with pytest.raises(WorkerFailed, match="^my.pt: weights file not found$"):
        logic.process(node, "checkpoint", 2.0, checkpoint="my.pt", log=logged.append)
    assert logged == ["rmisr: loading"]
    assert slicer.mrmlScene.nodes == [node]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"model": "rmisr_bl:CT", "mode": "through-plane"}, "in-plane only"),
        ({"model": "rmisr_bl:CT", "scale": 5.0}, "cannot upscale x5"),
        ({"model": "nope"}, "unknown model"),
        ({"mode": "oblique"}, "mode must be one of"),
    ],
)
def test_impossible_choices_fail_before_anything_starts(slicer, options, message):
    import SuperResolution

    node = _input(slicer, oblique_ijk_to_ras())
    options = {"model": "bicubic", "scale": 2.0, **options}
    with pytest.raises(ValueError, match=message):
        SuperResolution.SuperResolutionLogic().start(node, options.pop("model"), options.pop("scale"), **options)
    assert slicer.mrmlScene.nodes == [node]
    with pytest.raises(ValueError, match="must differ from the input"):
        SuperResolution.SuperResolutionLogic().start(node, "bicubic", 2.0, output_node=node)


def test_engine_axis_from_the_mode(slicer):
    from SuperResolutionLib.job import engine_axis

    sagittal_scan = np.eye(4)  # i: A->P, j: S->I, k: R->L (a sagittal acquisition, thick slices along k)
    sagittal_scan[:3, :3] = np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]]) * [0.5, 0.5, 4.0]
    spacing = (0.5, 0.5, 4.0)
    assert engine_axis(sagittal_scan, spacing, "axial") == (1, False)
    assert engine_axis(sagittal_scan, spacing, "sagittal") == (2, False)
    assert engine_axis(sagittal_scan, spacing, "through-plane") == (2, True)  # largest spacing
    assert engine_axis(sagittal_scan, spacing, "through-plane", "coronal") == (0, True)
    with pytest.raises(ValueError, match="thick axis must be one of"):
        engine_axis(sagittal_scan, spacing, "through-plane", "k")
