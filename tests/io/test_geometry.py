"""Geometry: affine round trips, corner box preserved by rescaling, RAS/LPS and DICOM plane conversions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rmisr_monai.io.geometry import (
    Geometry,
    SliceStackError,
    dicom_slice_planes,
    dicom_stack_geometry,
    lps_to_ras_affine,
    orientation_code,
    orthogonal_resampling,
    ras_to_lps_affine,
    rescaled_geometry,
)
from tests.io.conftest import oblique_geometry


def test_affine_maps_index_to_world_by_hand():
    # rows of the matrix; its columns are the axes: i -> +y (P), j -> -x (R), k -> +z (S)
    g = Geometry((2.0, 3.0, 4.0), (10.0, 20.0, 30.0), ((0, -1, 0), (1, 0, 0), (0, 0, 1)))
    # voxel (1, 1, 1) -> origin + 2 * (0, 1, 0) + 3 * (-1, 0, 0) + 4 * (0, 0, 1)
    np.testing.assert_allclose(g.affine() @ [1, 1, 1, 1], [7.0, 22.0, 34.0, 1.0])
    np.testing.assert_allclose(g.index_to_world([[1, 1, 1]]), [[7.0, 22.0, 34.0]])


def test_from_affine_round_trip_oblique():
    g = oblique_geometry()
    back = Geometry.from_affine(g.affine())
    np.testing.assert_allclose(back.spacing, g.spacing, atol=1e-12)
    np.testing.assert_allclose(back.origin, g.origin, atol=1e-12)
    np.testing.assert_allclose(back.matrix, g.matrix, atol=1e-12)
    assert g.orthonormality_error() < 1e-12


@pytest.mark.parametrize("factors", [(2, 2, 2), (1.5, 1.5, 1.5), (2, 1.5, 1), (1, 1, 2), (0.5, 1, 1.5)])
def test_rescaled_geometry_keeps_corner_box(factors):
    g = oblique_geometry()
    in_shape = (20, 16, 12)
    out_shape = tuple(int(round(n * f)) for n, f in zip(in_shape, factors))
    r = rescaled_geometry(g, in_shape, out_shape)
    np.testing.assert_allclose(r.corners_box(out_shape), g.corners_box(in_shape), atol=1e-4)
    np.testing.assert_allclose(r.spacing, np.array(g.spacing) / factors, rtol=1e-12)
    assert r.direction == g.direction


def test_corners_box_identity_by_hand():
    g = Geometry((1.0, 2.0, 3.0), (0.0, 0.0, 0.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    box = g.corners_box((4, 5, 6))
    expected = np.array(list(itertools.product((-0.5, 3.5), (-1.0, 9.0), (-1.5, 16.5))))
    np.testing.assert_allclose(box, expected)


def test_ras_lps_conversion():
    g = oblique_geometry()
    ras = lps_to_ras_affine(g.affine())
    point = np.array([3.0, 4.0, 5.0, 1.0])
    lps_world = g.affine() @ point
    np.testing.assert_allclose(ras @ point, [-lps_world[0], -lps_world[1], lps_world[2], 1.0])
    np.testing.assert_allclose(ras_to_lps_affine(ras), g.affine())


@pytest.mark.parametrize(
    ("direction", "code"),
    [
        (((1, 0, 0), (0, 1, 0), (0, 0, 1)), "LPS"),
        (((-1, 0, 0), (0, -1, 0), (0, 0, 1)), "RAS"),
        (((0, 0, -1), (1, 0, 0), (0, -1, 0)), "PIR"),  # the Prisma sagittal series of MANIFEST.md
    ],
)
def test_orientation_code(direction, code):
    assert orientation_code(Geometry((1, 1, 1), (0, 0, 0), direction)) == code


def test_orientation_code_oblique():
    assert orientation_code(oblique_geometry()).startswith("oblique")


def test_invalid_geometry_refused():
    with pytest.raises(ValueError, match="spacing"):
        Geometry((1.0, 0.0, 1.0), (0, 0, 0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    with pytest.raises(ValueError, match="invertible"):
        Geometry((1.0, 1.0, 1.0), (0, 0, 0), ((1, 0, 0), (1, 0, 0), (0, 0, 1)))


def test_dicom_planes_round_trip_oblique():
    g = oblique_geometry()
    orientation, pixel_spacing, positions, locations = dicom_slice_planes(g, 7)
    shuffled = [3, 0, 6, 1, 5, 2, 4]
    back, order = dicom_stack_geometry(orientation, pixel_spacing, [positions[i] for i in shuffled])
    assert [shuffled[i] for i in order] == list(range(7))
    np.testing.assert_allclose(back.affine(), g.affine(), atol=1e-9)
    np.testing.assert_allclose(np.diff(locations), g.spacing[2])


def _stack(zs, xs=None):
    xs = xs if xs is not None else [0.0] * len(zs)
    return [(x, 0.0, z) for x, z in zip(xs, zs)]


IDENTITY_IOP = (1, 0, 0, 0, 1, 0)


def test_dicom_stack_errors():
    with pytest.raises(SliceStackError, match="duplicate") as info:
        dicom_stack_geometry(IDENTITY_IOP, (1, 1), _stack([0, 2, 2, 4]))
    assert sorted(info.value.slices) == [1, 2]
    with pytest.raises(SliceStackError, match="not orthogonal"):
        dicom_stack_geometry((1, 0, 0, 1, 0.1, 0), (1, 1), _stack([0, 2]))


def test_dicom_uneven_stack_keeps_positions():
    g, order = dicom_stack_geometry(IDENTITY_IOP, (1, 1), _stack([6, 0, 2, 8, 10]))
    assert order == [1, 2, 0, 3, 4] and not g.is_regular
    np.testing.assert_allclose(g.index_to_world([(0, 0, k) for k in range(5)]), _stack([0, 2, 6, 8, 10]))
    np.testing.assert_allclose(g.plane_steps(5), [2, 4, 2, 2])
    moved = rescaled_geometry(g, (4, 4, 5), (8, 8, 5))  # in-plane x2: every slice's first centre moves -0.25
    np.testing.assert_allclose(moved.index_to_world([(0, 0, k) for k in range(5)]),
                               np.asarray(_stack([0, 2, 6, 8, 10])) - [0.25, 0.25, 0])  # fmt: skip
    with pytest.raises(ValueError, match="slice axis cannot be rescaled"):
        rescaled_geometry(g, (4, 4, 5), (4, 4, 10))


def test_dicom_tilted_stack_is_sheared():
    g, _ = dicom_stack_geometry(IDENTITY_IOP, (1, 1), _stack([0, 2, 4, 6], xs=[0, 0.5, 1.0, 1.5]))
    assert g.is_regular and g.is_sheared
    assert g.tilt_degrees() == pytest.approx(np.degrees(np.arctan2(0.5, 2)))
    np.testing.assert_allclose(g.index_to_world([(2, 3, 3)]), [[1.5 + 2, 3, 6]])
    target, source_k, offsets = orthogonal_resampling(g, (4, 4, 4))
    assert target.orthonormality_error() < 1e-12 and target.spacing == (1.0, 1.0, 2.0)
    np.testing.assert_allclose(source_k, [0, 1, 2, 3])
    np.testing.assert_allclose(offsets, [[0, 0], [-0.5, 0], [-1.0, 0], [-1.5, 0]])  # the tilt undone in-plane


def test_dicom_single_slice_uses_fallback_step():
    g, order = dicom_stack_geometry((0, 1, 0, 0, 0, -1), (0.5, 0.25), [(1, 2, 3)], fallback_step=4.0)
    assert order == [0]
    assert g.spacing == (0.25, 0.5, 4.0)
    np.testing.assert_allclose(g.matrix[:, 2], [-1, 0, 0])  # row x column
