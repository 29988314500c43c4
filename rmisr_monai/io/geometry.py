"""Voxel-grid geometry: the ONLY module of the project that does spacing / origin / direction arithmetic.

Convention (ITK / DICOM, world coordinates in **LPS** millimetres):

* ``spacing[a]`` is the voxel size along **array** axis ``a`` (axes ``(i, j, k)`` = ITK/NIfTI index order);
* ``origin`` is the world position of the **centre** of voxel ``(0, 0, 0)``;
* ``direction`` is a 3x3 matrix whose **column** ``a`` is the LPS unit vector of array axis ``a``.

So ``world = origin + direction @ (spacing * index)``, i.e. :meth:`Geometry.affine`. NIfTI and MONAI use RAS world
coordinates: :func:`lps_to_ras_affine` / :func:`ras_to_lps_affine` flip the first two world axes. DICOM slice
stacks are turned into a :class:`Geometry` by :func:`dicom_stack_geometry` and back by :func:`dicom_slice_planes`.

Slice stacks as scanners write them:

* **gantry tilt** (slice positions advance off the slice normal by a constant step): the third direction column is
  the unit step vector, not the normal, so the affine is *sheared* (``direction`` not orthonormal); it is still one
  exact affine, and every voxel centre lies where the DICOM planes put it.
* **uneven slice spacing** (missing slices, two thicknesses): no affine holds the slices, so
  ``Geometry.slice_positions`` keeps the world position of voxel ``(0, 0, k)`` of every slice; the affine is then
  nominal (first-to-last step) and :attr:`Geometry.is_regular` is false. :func:`orthogonal_resampling` gives the
  regular orthogonal grid (dcm2niix-style) that :mod:`rmisr_monai.io.resample` interpolates onto, on request.
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
    "orthogonal_resampling",
    "stack_summary",
    "slice_correspondence",
    "SHEAR_TOLERANCE",
]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Relative tolerance on slice steps and on the in-plane drift of slice positions (DICOM positions carry ~1e-3 mm
# decimal rounding; real missing slices or tilts are 10-100 % of a step).
SLICE_STEP_TOLERANCE = 0.01
# A direction column whose largest |component| is below this is reported as oblique by orientation_code.
OBLIQUE_TOLERANCE = 1e-4
# max |D^T D - I| above which a direction counts as sheared (non-orthogonal axes): 1e-3 is a 0.06 degree tilt
SHEAR_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Geometry:
    """Position of a 3D voxel grid in LPS world space (see the module docstring for the convention).

    ``slice_positions`` is None for a regular grid; for a stack of parallel but unevenly spaced slices it holds the
    LPS position of voxel ``(0, 0, k)`` of each slice ``k`` (the affine is then the nominal first-to-last one).
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, ...], ...]
    slice_positions: tuple[tuple[float, float, float], ...] | None = None

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
        if self.slice_positions is not None:
            positions = np.asarray(self.slice_positions, dtype=np.float64)
            if positions.ndim != 2 or positions.shape[1] != 3 or not np.all(np.isfinite(positions)):
                raise ValueError(f"slice_positions must be finite (K, 3) points, got shape {positions.shape}")
            object.__setattr__(self, "slice_positions", tuple(tuple(float(v) for v in p) for p in positions))

    @property
    def is_regular(self) -> bool:
        """True when one affine places every voxel (no per-slice positions)."""
        return self.slice_positions is None

    @property
    def is_sheared(self) -> bool:
        """True when the axes are not orthogonal (a gantry-tilted stack), see :data:`SHEAR_TOLERANCE`."""
        return self.orthonormality_error() > SHEAR_TOLERANCE

    def slice_normal(self) -> np.ndarray:
        """Unit normal of the slice planes (``i x j`` axes), LPS."""
        normal = np.cross(self.matrix[:, 0], self.matrix[:, 1])
        return normal / np.linalg.norm(normal)

    def tilt_degrees(self) -> float:
        """Angle between the slice axis and the slice normal: 0 for an orthogonal grid, the gantry tilt otherwise."""
        cosine = abs(float(self.matrix[:, 2] @ self.slice_normal()))
        return float(np.degrees(np.arccos(min(1.0, cosine))))

    def plane_steps(self, n_slices: int) -> np.ndarray:
        """Distances (mm) between consecutive slice planes along the slice normal, ``n_slices - 1`` values."""
        origins = self.index_to_world([(0.0, 0.0, float(k)) for k in range(int(n_slices))])
        return np.diff(origins @ self.slice_normal())

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
        if self.slice_positions is None:
            return points @ self.affine()[:3, :3].T + np.asarray(self.origin)
        # uneven stack: in-plane by the affine, from the slice's own position (linear between slices)
        positions = np.asarray(self.slice_positions)
        ks = np.arange(len(positions), dtype=np.float64)
        start = np.stack([np.interp(points[:, 2], ks, positions[:, a]) for a in range(3)], axis=1)
        return points[:, :2] @ (self.matrix[:, :2] * np.asarray(self.spacing[:2])).T + start

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
    shift = geometry.matrix @ ((new - old) / 2.0)
    positions = None
    if geometry.slice_positions is not None:
        if n_in[2] != n_out[2]:
            raise ValueError(
                "unevenly spaced slices: the slice axis cannot be rescaled (upscale in-plane along the slice axis, "
                "or resample the slices onto a regular grid first)"
            )
        positions = tuple(map(tuple, np.asarray(geometry.slice_positions) + shift))
    return Geometry(tuple(new), tuple(np.asarray(geometry.origin) + shift), geometry.direction, positions)


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
    """DICOM slice positions cannot make a stack (duplicates, non-orthogonal rows and columns); ``slices`` are the
    offending positions (input order)."""

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
        Slice steps equal within :data:`SLICE_STEP_TOLERANCE` give a regular grid: along the normal, or along the
        common step vector when the positions drift across the plane (gantry tilt, a sheared affine). Other steps
        (missing slices, mixed thicknesses) give ``slice_positions`` (see :class:`Geometry`).

    Raises:
        SliceStackError: duplicate positions, or rows and columns that are not orthogonal.
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
    spacing = [float(pixel_spacing[1]), float(pixel_spacing[0]), float(fallback_step)]
    axis, slice_positions = normal, None
    if len(order) > 1:
        sorted_points = points[order]
        _check_distinct(projected[order], sorted_points, order)
        steps = np.diff(sorted_points, axis=0)
        mean = (sorted_points[-1] - sorted_points[0]) / (len(order) - 1)
        tolerance = SLICE_STEP_TOLERANCE * float(np.median(steps @ normal))
        if np.linalg.norm(steps - mean, axis=1).max() > tolerance:
            slice_positions = tuple(map(tuple, sorted_points))
        if slice_positions is None and np.linalg.norm(mean - (mean @ normal) * normal) <= tolerance:
            spacing[2] = float(np.mean(steps @ normal))  # no tilt: the normal, as every reader does
        else:
            spacing[2] = float(np.linalg.norm(mean))
            axis = mean / spacing[2]
    direction = np.stack([row, col, axis], axis=1)
    return Geometry(tuple(spacing), tuple(points[order[0]]), tuple(map(tuple, direction)), slice_positions), order


def _check_distinct(projected: np.ndarray, points: np.ndarray, order: list[int]) -> None:
    """Raises :class:`SliceStackError` when two slices (sorted) share a plane."""
    steps = np.diff(projected)
    duplicates = [k for k, s in enumerate(steps) if s <= SLICE_STEP_TOLERANCE * max(float(np.median(steps)), 1e-3)]
    if duplicates:
        k = duplicates[0]
        raise SliceStackError(
            f"{len(duplicates)} duplicate slice position(s), e.g. {np.round(points[k], 4).tolist()} twice",
            [order[k], order[k + 1]],
        )


def stack_summary(geometry: Geometry, n_slices: int) -> dict[str, float | bool]:
    """What a user should know about a slice stack: ``tilt_degrees``, the smallest and largest distance between
    slice planes (``min_step``/``max_step``, mm) and whether they are ``uneven``."""
    steps = geometry.plane_steps(n_slices)
    low, high = (float(steps.min()), float(steps.max())) if steps.size else (geometry.spacing[2],) * 2
    return {
        "tilt_degrees": geometry.tilt_degrees(),
        "min_step": low,
        "max_step": high,
        "uneven": not geometry.is_regular,
    }


def orthogonal_resampling(geometry: Geometry, shape: Sequence[int]) -> tuple[Geometry, np.ndarray, np.ndarray]:
    """The regular orthogonal grid for a tilted or unevenly spaced stack, and where its slices come from.

    The target keeps the in-plane axes, spacing and size and the first slice's first pixel; its third axis is the
    slice normal, with the smallest plane distance of the stack as step (no through-plane detail is lost), from the
    first to the last input plane (dcm2niix's tilt correction, extended to uneven steps).

    Returns:
        ``(target, source_k, offsets)``: for each target slice ``k``, ``source_k[k]`` is the continuous input slice
        index of its plane and ``offsets[k] = (di, dj)`` the input in-plane index of its voxel ``(0, 0)``: target
        voxel ``(i, j, k)`` is input voxel ``(i + di, j + dj, source_k[k])``.
    """
    n_k = _shape3(shape)[2]
    normal = geometry.slice_normal()
    starts = geometry.index_to_world([(0.0, 0.0, float(k)) for k in range(n_k)])
    planes = starts @ normal
    steps = np.diff(planes)
    step = float(steps.min()) if steps.size else geometry.spacing[2]
    n_out = int(np.floor((planes[-1] - planes[0]) / step + 1e-6)) + 1
    source_k = np.interp(planes[0] + step * np.arange(n_out), planes, np.arange(n_k, dtype=np.float64))
    sources = geometry.index_to_world(np.stack([np.zeros(n_out), np.zeros(n_out), source_k], axis=1))
    targets = starts[0] + np.outer(step * np.arange(n_out), normal)
    in_plane = geometry.matrix[:, :2] * np.asarray(geometry.spacing[:2])
    offsets = np.linalg.lstsq(in_plane, (targets - sources).T, rcond=None)[0].T
    direction = np.stack([geometry.matrix[:, 0], geometry.matrix[:, 1], normal], axis=1)
    target = Geometry((geometry.spacing[0], geometry.spacing[1], step), tuple(starts[0]), tuple(map(tuple, direction)))
    return target, source_k, offsets


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


def slice_correspondence(source: Geometry, n_source: int, target: Geometry, n_target: int) -> np.ndarray:
    """For each slice of ``target``, the continuous index of the ``source`` slice in its plane (planes compared
    along the source's slice normal; clipped to ``[0, n_source - 1]``): ``k`` itself when the slice counts agree."""
    if int(n_source) == int(n_target):
        return np.arange(int(n_target), dtype=np.float64)
    normal = source.slice_normal()
    planes = source.index_to_world([(0.0, 0.0, float(k)) for k in range(int(n_source))]) @ normal
    wanted = target.index_to_world([(0.0, 0.0, float(k)) for k in range(int(n_target))]) @ normal
    if planes.size == 1:
        return np.zeros(int(n_target))
    if planes[-1] < planes[0]:
        return np.interp(-wanted, -planes, np.arange(int(n_source), dtype=np.float64))
    return np.interp(wanted, planes, np.arange(int(n_source), dtype=np.float64))
