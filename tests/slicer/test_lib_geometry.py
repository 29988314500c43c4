"""SuperResolutionLib.geometry: Slicer node geometry <-> rmisr_monai, checked against SimpleITK."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from SuperResolutionLib import geometry as g

from tests.slicer.conftest import oblique_ijk_to_ras

FLIP = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS


def _sitk_image(ijk_to_ras: np.ndarray, shape_ijk) -> sitk.Image:
    """The same grid as a SimpleITK image (LPS), built from first principles."""
    image = sitk.Image([int(n) for n in shape_ijk], sitk.sitkInt16)
    lps = FLIP @ ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps / spacing).ravel().tolist())
    image.SetOrigin((FLIP @ ijk_to_ras[:3, 3]).tolist())
    return image


def test_kji_ijk_matches_simpleitk_index_order():
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(-100, 100, (4, 5, 6)).astype(np.int16))  # KJI, like arrayFromVolume
    kji = sitk.GetArrayFromImage(image)
    ijk = g.ijk_from_kji(kji)
    assert ijk.shape == tuple(image.GetSize())
    for index in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        assert ijk[index] == image.GetPixel(*index)
    assert np.array_equal(g.kji_from_ijk(ijk), kji)
    assert np.shares_memory(ijk, kji)  # a view, as documented


def test_geometry_round_trip_and_world_points_match_simpleitk():
    ijk_to_ras = oblique_ijk_to_ras()
    geometry = g.geometry_from_ijk_to_ras(ijk_to_ras)
    image = _sitk_image(ijk_to_ras, (12, 14, 6))
    np.testing.assert_allclose(geometry.spacing, image.GetSpacing(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(geometry.origin, image.GetOrigin(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.ravel(geometry.direction), image.GetDirection(), rtol=0, atol=1e-12)
    for index in [(0.0, 0.0, 0.0), (11.0, 3.0, 5.0), (2.5, -0.5, 1.25)]:
        lps = np.asarray(image.TransformContinuousIndexToPhysicalPoint(index))
        ras = (g.ijk_to_ras_from_geometry(geometry) @ np.array([*index, 1.0]))[:3]
        np.testing.assert_allclose(FLIP @ ras, lps, atol=1e-12)
    np.testing.assert_allclose(g.ijk_to_ras_from_geometry(geometry), ijk_to_ras, atol=1e-13)


@pytest.mark.parametrize("start", [(0, 0, 0), (3, 5, 2), (11, 13, 5)])
def test_cropped_geometry_matches_simpleitk_region_of_interest(start):
    ijk_to_ras = oblique_ijk_to_ras()
    image = _sitk_image(ijk_to_ras, (12, 14, 6))
    size = [12 - start[0], 14 - start[1], 6 - start[2]]
    crop = sitk.RegionOfInterest(image, size, list(start))
    geometry = g.cropped_geometry(g.geometry_from_ijk_to_ras(ijk_to_ras), start)
    np.testing.assert_allclose(geometry.origin, crop.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(geometry.spacing, crop.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(np.ravel(geometry.direction), crop.GetDirection(), atol=1e-12)


def _centres_inside(ijk_to_ras, bounds, shape):
    indices = np.array(list(itertools.product(*(range(n) for n in shape))), dtype=float)
    ras = indices @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
    low, high = np.array(bounds[0::2]), np.array(bounds[1::2])
    return indices[np.all((ras >= low - 1e-9) & (ras <= high + 1e-9), axis=1)].astype(int)


def test_roi_ranges_are_the_voxels_inside_an_axis_aligned_roi():
    ijk_to_ras = oblique_ijk_to_ras(angle=0.0)
    shape = (12, 14, 6)
    centre = (ijk_to_ras @ np.array([5.0, 6.0, 2.0, 1.0]))[:3]
    bounds = [centre[0] - 1.6, centre[0] + 2.2, centre[1] - 3.0, centre[1] + 0.5, centre[2] - 2.6, centre[2] + 2.6]
    ranges = g.roi_index_ranges(ijk_to_ras, bounds, shape)
    inside = _centres_inside(ijk_to_ras, bounds, shape)
    tight = [(int(inside[:, a].min()), int(inside[:, a].max()) + 1) for a in range(3)]
    assert [(r.start, r.stop) for r in ranges] == tight


def test_roi_ranges_of_an_oblique_volume_hold_every_voxel_inside_and_are_clipped():
    ijk_to_ras = oblique_ijk_to_ras()
    shape = (12, 14, 6)
    centre = (ijk_to_ras @ np.array([2.0, 12.0, 1.0, 1.0]))[:3]
    bounds = [centre[0] - 6, centre[0] + 6, centre[1] - 6, centre[1] + 6, centre[2] - 20, centre[2] + 20]
    ranges = g.roi_index_ranges(ijk_to_ras, bounds, shape)
    inside = _centres_inside(ijk_to_ras, bounds, shape)
    for axis, r in enumerate(ranges):
        assert 0 <= r.start <= inside[:, axis].min() and inside[:, axis].max() < r.stop <= shape[axis]
    assert ranges[2] == slice(0, 6)  # the ROI is thicker than the volume: clipped


def test_roi_outside_the_volume_is_refused():
    with pytest.raises(ValueError, match="does not contain any voxel"):
        g.roi_index_ranges(oblique_ijk_to_ras(), [500, 510, 500, 510, 500, 510], (12, 14, 6))


def test_plane_axes_and_thick_axis():
    axial = oblique_ijk_to_ras(angle=0.2)
    assert [g.slice_axis_for_plane(axial, p) for p in ("axial", "coronal", "sagittal")] == [2, 1, 0]
    # a sagittal acquisition: i runs A->P, j runs S->I, k runs R->L
    sagittal = np.eye(4)
    sagittal[:3, :3] = np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]]) * [0.5, 0.5, 4.0]
    assert [g.slice_axis_for_plane(sagittal, p) for p in ("axial", "coronal", "sagittal")] == [1, 0, 2]
    assert g.thick_axis((0.5, 0.5, 4.0)) == 2 and g.thick_axis((3.0, 0.7, 0.7)) == 0
    assert g.thick_axis((1.0, 1.0, 1.0)) == 2  # isotropic: the scan's usual slice axis
    with pytest.raises(ValueError, match="plane"):
        g.slice_axis_for_plane(axial, "oblique")
