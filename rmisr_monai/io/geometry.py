"""Voxel-grid geometry: the ONLY module of the project that does spacing / origin / direction arithmetic.

Convention (ITK / DICOM, world coordinates in **LPS** millimetres):

* ``spacing[a]`` is the voxel size along **array** axis ``a`` (axes ``(i, j, k)`` = ITK/NIfTI index order);
* ``origin`` is the world position of the **centre** of voxel ``(0, 0, 0)``;
* ``direction`` is a 3x3 matrix whose **column** ``a`` is the LPS unit vector of array axis ``a``.

So ``world = origin + direction @ (spacing * index)``, i.e. :meth:`Geometry.affine`. NIfTI and MONAI use RAS world
coordinates: :func:`lps_to_ras_affine` / :func:`ras_to_lps_affine` flip the first two world axes. DICOM slice
stacks are turned into a :class:`Geometry` by :func:`dicom_stack_geometry` and back by :func:`dicom_slice_planes`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Geometry",
    "SliceStackError",
    "rescaled_geometry",
    "lps_to_ras_affine",
    "ras_to_lps_affine",
    "orientation_code",
    "dicom_stack_geometry",
    "dicom_slice_planes",
]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Relative tolerance on slice steps and on the in-plane drift of slice positions (DICOM positions carry ~1e-3 mm
# decimal rounding; real missing slices or tilts are 10-100 % of a step).
SLICE_STEP_TOLERANCE = 0.01
# A direction column whose largest |component| is below this is reported as oblique by orientation_code.
OBLIQUE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Geometry:
    """Position of a 3D voxel grid in LPS world space (see the module docstring for the convention)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        spacing = tuple(float(s) for s in self.spacing)
        direction = np.asarray(self.direction, dtype=np.float64)
        if len(spacing) != 3 or len(self.origin) != 3 or direction.shape != (3, 3):
            raise ValueError(f"a 3D geometry needs 3 spacings, 3 origin values and a 3x3 direction, got {self}")
        if not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise ValueError(f"spacing must be finite and positive, got {spacing}")
        if not np.all(np.isfinite(self.origin)) or abs(np.linalg.det(direction)) < 1e-6:
            raise ValueError(f"origin must be finite and direction invertible, got {self.origin}, {direction.tolist()}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in direction))

    @property
    def matrix(self) -> np.ndarray:
        """The direction as a 3x3 float64 array (columns = axis unit vectors)."""
        return np.asarray(self.direction, dtype=np.float64)

    def affine(self) -> np.ndarray:
        """4x4 LPS index -> world matrix: ``world = A @ (i, j, k, 1)``."""
        affine = np.eye(4)
        affine[:3, :3] = self.matrix * np.asarray(self.spacing)
        affine[:3, 3] = self.origin
        return affine

    def index_to_world(self, indices: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """World (LPS) coordinates of continuous voxel indices, shape ``(N, 3)`` -> ``(N, 3)``."""
        points = np.atleast_2d(np.asarray(indices, dtype=np.float64))
        return points @ self.affine()[:3, :3].T + np.asarray(self.origin)

    def corners_box(self, shape: Sequence[int]) -> np.ndarray:
        """World coordinates ``(8, 3)`` of the 8 outer voxel-corner points (index ``-0.5`` and ``n - 0.5``)."""
        bounds = [(-0.5, n - 0.5) for n in _shape3(shape)]
        return self.index_to_world(list(itertools.product(*bounds)))

    def orthonormality_error(self) -> float:
        """``max |D^T D - I|``: 0 for a rigid direction, larger for a sheared affine."""
        return float(np.abs(self.matrix.T @ self.matrix - np.eye(3)).max())

    @classmethod
    def from_affine(cls, affine_lps: np.ndarray) -> Geometry:
        """Inverse of :meth:`affine`: spacing = column norms, direction = normalised columns, origin = translation."""
        affine = np.asarray(affine_lps, dtype=np.float64)
        if affine.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"expected a 4x4 affine, got shape {affine.shape}")
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise ValueError(f"affine has a zero-length axis: {affine.tolist()}")
        return cls(tuple(spacing), tuple(affine[:3, 3]), tuple(map(tuple, affine[:3, :3] / spacing)))

    @classmethod
    def from_itk(cls, spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]) -> Geometry:
        """From ITK/SimpleITK values of a 2D or 3D image (direction flat, row-major); a 2D image gets a third
        axis of spacing 1 mm along the normal of its plane."""
        ndim = len(spacing)
        if ndim == 3:
            return cls(tuple(spacing), tuple(origin), tuple(map(tuple, np.reshape(direction, (3, 3)))))
        if ndim != 2:
            raise ValueError(f"expected a 2D or 3D image, got {ndim} dimensions")
        matrix = np.eye(3)
        matrix[:2, :2] = np.reshape(direction, (2, 2))
        return cls((*spacing, 1.0), (*origin, 0.0), tuple(map(tuple, matrix)))

    def to_itk(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """``(spacing, origin, flat row-major direction)`` as SimpleITK's ``SetSpacing/SetOrigin/SetDirection`` take."""
        return self.spacing, self.origin, tuple(self.matrix.ravel())


def _shape3(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"expected a 3D shape, got {tuple(shape)}")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def rescaled_geometry(geometry: Geometry, in_shape: Sequence[int], out_shape: Sequence[int]) -> Geometry:
    """Geometry of the same field of view sampled on ``out_shape`` voxels instead of ``in_shape``.

    ``spacing_a * n_in / n_out`` on each axis; the origin moves so that the voxel-corner box
    (:meth:`Geometry.corners_box`) is unchanged; the direction is unchanged. This is MONAI's
    ``scale_affine(..., centered=True, align_corners=False)``.
    """
    n_in = np.asarray(_shape3(in_shape), dtype=np.float64)
    n_out = np.asarray(_shape3(out_shape), dtype=np.float64)
    if np.any(n_in <= 0) or np.any(n_out <= 0):
        raise ValueError(f"shapes must be positive, got {tuple(in_shape)} -> {tuple(out_shape)}")
    old = np.asarray(geometry.spacing)
    new = old * n_in / n_out
    # corner of voxel 0 is fixed: origin - D s/2 = origin' - D s'/2
    origin = np.asarray(geometry.origin) + geometry.matrix @ ((new - old) / 2.0)
    return Geometry(tuple(new), tuple(origin), geometry.direction)


def lps_to_ras_affine(affine: np.ndarray) -> np.ndarray:
    """A 4x4 affine mapping to LPS world -> the same mapping to RAS world (NIfTI, MONAI, nibabel)."""
    return _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def ras_to_lps_affine(affine: np.ndarray) -> np.ndarray:
    """A 4x4 affine mapping to RAS world -> the same mapping to LPS world (the inverse of :func:`lps_to_ras_affine`)."""
    return _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def orientation_code(geometry: Geometry) -> str:
    """Three letters naming where each array axis points (nibabel ``aff2axcodes`` convention: ``"LPS"`` for an
    identity LPS direction, ``"RAS"`` for an identity NIfTI affine); ``"oblique (closest XYZ)"`` when an axis is
    not along a world axis."""
    matrix = geometry.matrix
    letters = []
    for column in matrix.T:
        dominant = int(np.argmax(np.abs(column)))
        letters.append(("LPS" if column[dominant] > 0 else "RAI")[dominant])
    code = "".join(letters)
    oblique = np.abs(matrix).max(axis=0).min() < 1.0 - OBLIQUE_TOLERANCE
    return f"oblique (closest {code})" if oblique else code


class SliceStackError(ValueError):
    """DICOM slice positions do not make one regular grid; ``slices`` are the offending positions (input order)."""

    def __init__(self, message: str, slices: Sequence[int]):
        super().__init__(message)
        self.slices = list(slices)


def dicom_stack_geometry(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    positions: Sequence[Sequence[float]],
    fallback_step: float = 1.0,
) -> tuple[Geometry, list[int]]:
    """Geometry of a stack of parallel DICOM slices, and the order that sorts the slices along the normal.

    Args:
        orientation: ImageOrientationPatient (row direction then column direction, LPS), shared by all slices.
        pixel_spacing: PixelSpacing ``(row spacing, column spacing)`` = (spacing along j, spacing along i).
        positions: ImagePositionPatient of each slice (centre of its first pixel), in input order.
        fallback_step: slice spacing used when there is a single slice (SpacingBetweenSlices or SliceThickness).

    Returns:
        ``(geometry, order)``: array axis i runs along the rows (columns index), j down the columns, k along the
        slice normal ``row x column`` in ascending projected position; ``order[k]`` is the input index of slice k.

    Raises:
        SliceStackError: duplicate positions, uneven steps (missing slices) or a gantry tilt (slice step not
            parallel to the normal); the message gives the positions and spacings, ``slices`` the input indices.
    """
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    if abs(float(row @ col)) > 1e-3:
        raise SliceStackError(f"ImageOrientationPatient rows and columns are not orthogonal: {list(orientation)}", [])
    normal = np.cross(row, col)
    points = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    projected = points @ normal
    order = [int(i) for i in np.argsort(projected, kind="stable")]
    step = float(fallback_step)
    if len(order) > 1:
        step = _regular_step(projected, points, normal, order)
    direction = np.stack([row, col, normal], axis=1)
    spacing = (float(pixel_spacing[1]), float(pixel_spacing[0]), step)
    return Geometry(spacing, tuple(points[order[0]]), tuple(map(tuple, direction))), order


def _regular_step(projected: np.ndarray, points: np.ndarray, normal: np.ndarray, order: list[int]) -> float:
    """The common slice step; raises :class:`SliceStackError` for duplicates, gaps and tilts."""
    steps = np.diff(projected[order])
    median = float(np.median(steps))
    duplicates = [k for k, s in enumerate(steps) if s <= SLICE_STEP_TOLERANCE * max(median, 1e-3)]
    if duplicates:
        k = duplicates[0]
        raise SliceStackError(
            f"{len(duplicates)} duplicate slice position(s), e.g. {np.round(points[order[k]], 4).tolist()} twice",
            [order[k], order[k + 1]],
        )
    uneven = [k for k, s in enumerate(steps) if abs(s - median) > SLICE_STEP_TOLERANCE * median]
    if uneven:
        k = uneven[0]
        raise SliceStackError(
            f"uneven slice spacing (missing slices?): steps {steps[uneven].round(4).tolist()} mm where most are "
            f"{median:.4f} mm",
            [order[k], order[k + 1]],
        )
    drift = np.diff(points[order], axis=0) - np.outer(steps, normal)
    tilt = np.linalg.norm(drift, axis=1)
    if tilt.max() > SLICE_STEP_TOLERANCE * median:
        k = int(np.argmax(tilt))
        angle = float(np.degrees(np.arctan2(tilt[k], steps[k])))
        raise SliceStackError(
            f"gantry tilt: slice positions move {tilt[k]:.4f} mm across the plane per {steps[k]:.4f} mm step "
            f"({angle:.2f} degrees); tilted series are not supported (resample them first)",
            [order[k], order[k + 1]],
        )
    return float(np.mean(steps))


def dicom_slice_planes(
    geometry: Geometry, n_slices: int
) -> tuple[list[float], list[float], list[list[float]], list[float]]:
    """DICOM plane tags of a geometry -- the inverse of :func:`dicom_stack_geometry`.

    Returns:
        ``(ImageOrientationPatient, PixelSpacing, ImagePositionPatient of each slice k, SliceLocation of each
        slice k)``; SliceLocation is the position projected on the slice normal ``row x column``.
    """
    matrix = geometry.matrix
    orientation = [*matrix[:, 0].tolist(), *matrix[:, 1].tolist()]
    pixel_spacing = [geometry.spacing[1], geometry.spacing[0]]
    positions = geometry.index_to_world([(0.0, 0.0, float(k)) for k in range(n_slices)])
    locations = positions @ np.cross(matrix[:, 0], matrix[:, 1])
    return orientation, pixel_spacing, positions.tolist(), locations.tolist()
