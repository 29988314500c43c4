"""The module's Lib and Logic on REAL MRML nodes (slicer-core), the packaged engine, the worker in this Python.

Real: vtkMRMLScene and its nodes, ``slicer.util.addVolumeFromArray`` / ``arrayFromVolume`` /
``updateVolumeFromArray`` (int64 refused, 2D -> one slice, 4D -> components), transforms, tables. The module file
runs with the framework stand-ins of conftest.py (no Qt in slicer-core).
"""

import os
import sys

import numpy as np
import pytest
from conftest import MODULE_DIR


def _matrix(node):
    return slicer_util().arrayFromVTKMatrix(_vtk_ijk_to_ras(node))


def _vtk_ijk_to_ras(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return m


def slicer_util():
    import slicer

    return slicer.util


def _to_world(node):
    """IJKToRAS with the node's parent transforms applied (what the views show)."""
    import vtk

    matrix = _matrix(node)
    parent = node.GetParentTransformNode()
    if parent is not None:
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        matrix = slicer_util().arrayFromVTKMatrix(to_world) @ matrix
    return matrix


# IJKToRAS matrices: flipped axes (LPS-like, negative spacing directions), permuted axes, oblique
FLIPPED = [
    np.diag([-0.7, -0.9, 2.5, 1.0]),
    np.array([[0, 0, -1.5, 10], [-0.8, 0, 0, -20], [0, 1.1, 0, 33.3], [0, 0, 0, 1.0]]),
    np.array([[0.6 * np.cos(0.4), -0.7 * np.sin(0.4), 0, 1], [0.6 * np.sin(0.4), 0.7 * np.cos(0.4), 0, 2],
              [0, 0, -3.0, 3], [0, 0, 0, 1.0]]),
]  # fmt: skip


def test_the_engine_is_the_packaged_one_and_no_torch_is_imported_by_the_lib(real_slicer):
    from SuperResolutionLib import geometry, job, models, nodes  # noqa: F401

    import rmisr_monai

    assert os.path.dirname(rmisr_monai.__file__) == str(MODULE_DIR / "rmisr_monai")
    assert "torch" not in sys.modules
    assert models.registry_entries() and models.sample_ct_path() is not None


@pytest.mark.parametrize("ijk_to_ras", FLIPPED)
def test_node_to_engine_geometry_matches_slicer_and_round_trips(real_slicer, ijk_to_ras):
    from SuperResolutionLib import nodes

    array = np.random.default_rng(0).integers(-1000, 2000, (5, 7, 6)).astype(np.int16)
    node = real_slicer.util.addVolumeFromArray(array, ijk_to_ras, name="in")
    volume = nodes.volume_from_node(node)
    ijk = np.array([[0, 0, 0], [5, 6, 4], [2, 3, 1]], dtype=float)
    ras = (_matrix(node) @ np.c_[ijk, np.ones(3)].T)[:3].T
    lps = volume.geometry.index_to_world(ijk)
    np.testing.assert_allclose(lps * (-1, -1, 1), ras, atol=1e-9)  # the engine's LPS world = Slicer's RAS world
    np.testing.assert_array_equal(volume.array[5, 6, 4], array[4, 6, 5])  # IJK vs Slicer's KJI
    copy = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "copy")
    nodes.update_node_from_volume(copy, volume)
    np.testing.assert_array_equal(real_slicer.util.arrayFromVolume(copy), array)
    np.testing.assert_allclose(_matrix(copy), ijk_to_ras, atol=1e-12)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"])
def test_voxel_types_survive_the_trip(real_slicer, dtype):
    from SuperResolutionLib import nodes

    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    array = np.array([[[info.min, info.max], [0, 1]]], dtype=dtype)
    node = real_slicer.util.addVolumeFromArray(array, name="in")
    volume = nodes.volume_from_node(node)
    assert volume.array.dtype == np.dtype(dtype)
    copy = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "copy")
    nodes.update_node_from_volume(copy, volume)
    out = real_slicer.util.arrayFromVolume(copy)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_int64_is_refused_by_slicer_and_the_module_stores_float64_exactly(real_slicer):
    import dataclasses

    from SuperResolutionLib import nodes

    node = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "x")
    with pytest.raises(RuntimeError, match="long long"):
        real_slicer.util.updateVolumeFromArray(node, np.zeros((2, 2, 2), np.int64))
    source = real_slicer.util.addVolumeFromArray(np.arange(8, dtype=np.int32).reshape(2, 2, 2), name="in")
    volume = nodes.volume_from_node(source)
    big = dataclasses.replace(volume, array=volume.array.astype(np.int64) + 2**40)
    nodes.update_node_from_volume(node, big)
    out = real_slicer.util.arrayFromVolume(node)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.arange(8).reshape(2, 2, 2) + 2**40)


def test_a_2d_array_is_one_slice_and_4d_or_labelmaps_are_refused_in_one_sentence(real_slicer):
    from SuperResolutionLib import nodes

    flat = real_slicer.util.addVolumeFromArray(np.ones((7, 9), np.int16), name="slice")
    assert nodes.volume_from_node(flat).array.shape == (9, 7, 1)
    with pytest.raises(ValueError):  # Slicer itself: a scalar volume node cannot take a 4D array
        real_slicer.util.addVolumeFromArray(np.ones((3, 4, 5, 3), np.uint8), name="bad")
    vector = real_slicer.util.addVolumeFromArray(np.ones((3, 4, 5, 3), np.uint8), name="rgb",
                                                 nodeClassName="vtkMRMLVectorVolumeNode")  # fmt: skip
    with pytest.raises(ValueError, match="3 values per voxel"):
        nodes.volume_from_node(vector)
    labels = real_slicer.util.addVolumeFromArray(np.ones((3, 4, 5), np.uint8),
                                                 nodeClassName="vtkMRMLLabelMapVolumeNode")  # fmt: skip
    assert real_slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is not None
    with pytest.raises(ValueError, match="labelmap"):
        nodes.volume_from_node(labels)


def test_first_image_volume_skips_labelmaps(real_slicer):
    import SuperResolution

    labels = real_slicer.util.addVolumeFromArray(np.ones((3, 4, 5), np.uint8),
                                                 nodeClassName="vtkMRMLLabelMapVolumeNode")  # fmt: skip
    image = real_slicer.util.addVolumeFromArray(np.ones((3, 4, 5), np.int16), name="CT")
    assert real_slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is labels  # Slicer's own answer
    assert SuperResolution.firstImageVolume() is image


def test_quality_table_on_a_real_table_node(real_slicer):
    from SuperResolutionLib import nodes

    table = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "q")
    nodes.fill_table(table, ["Measure", "Value"], [("Voxels", "1x2x3 -> 2x4x3"), ("Device", "CPU")])
    assert table.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == 2
    assert table.GetCellText(1, 0) == "Device" and table.GetCellText(0, 1) == "1x2x3 -> 2x4x3"


def _bright(shape=(6, 14, 12), at=(2, 6, 5)):
    array = np.full(shape, -1000, np.int16)
    array[at] = 2000
    return array


def _bright_world(node):
    array = real_slicer_util_array(node)
    ijk = np.argwhere(array == array.max())[:, ::-1].astype(float)
    return (_to_world(node) @ np.c_[ijk, np.ones(len(ijk))].T)[:3].mean(axis=1)


def real_slicer_util_array(node):
    return slicer_util().arrayFromVolume(node)


@pytest.mark.parametrize("ijk_to_ras", FLIPPED[1:])
def test_whole_job_under_a_parent_transform_through_the_worker(real_slicer, ijk_to_ras):
    import SuperResolution

    node = real_slicer.util.addVolumeFromArray(_bright(), ijk_to_ras, name="CT")
    transform = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    c, s = np.cos(0.5), np.sin(0.5)
    transform.SetMatrixTransformToParent(real_slicer.util.vtkMatrixFromArray(
        np.array([[c, -s, 0, 50.0], [s, c, 0, -7.0], [0, 0, 1, 12.5], [0, 0, 0, 1]])))  # fmt: skip
    node.SetAndObserveTransformNodeID(transform.GetID())
    before = real_slicer.mrmlScene.GetNumberOfNodes()
    logic = SuperResolution.SuperResolutionLogic()
    assert logic.pythonExecutable == sys.executable  # the worker runs in this Python: torch + index packages only
    output, table = logic.process(node, "bicubic", 2.0, mode="axial", device="cpu", showResult=False)
    assert real_slicer.mrmlScene.GetNumberOfNodes() > before
    assert output.GetTransformNodeID() == transform.GetID()  # shown where the input is
    result = real_slicer.util.arrayFromVolume(output)
    assert result.dtype == np.int16 and sorted(result.shape) != sorted(_bright().shape)
    np.testing.assert_allclose(_bright_world(output), _bright_world(node), atol=1e-9)
    rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
    assert rows["Device"] == "CPU" and rows["Precision"] == "fp32" and rows["Time"].endswith(" s")


def test_an_roi_on_a_transformed_volume_is_refused_before_anything_starts(real_slicer):
    import SuperResolution

    node = real_slicer.util.addVolumeFromArray(_bright(), name="CT")
    transform = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    node.SetAndObserveTransformNodeID(transform.GetID())
    roi = real_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(5, 6, 2)
    roi.SetSize(4, 4, 4)
    before = real_slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="harden its transform"):
        SuperResolution.SuperResolutionLogic().process(node, "bicubic", 2.0, roi=roi, device="cpu", showResult=False)
    assert real_slicer.mrmlScene.GetNumberOfNodes() == before
