"""The quality panel: back-projection consistency of a result and PSNR/SSIM against a reference, as table rows.

* Back-projection consistency (:mod:`rmisr_monai.metrics.consistency`): each upscaled slice, downscaled again by
  MATLAB bicubic onto the input grid, should give back the input slice. PSNR (dB) and mean absolute error are over
  the whole volume, with the input's intensity range (max - min) as the PSNR peak. It needs no ground truth.
* Against a reference on the output's grid (same shape, same geometry): PSNR over the volume and the mean 2D SSIM
  of the slices the engine processed (:func:`rmisr_monai.metrics.psnr`, :func:`rmisr_monai.metrics.ssim`), with
  the reference's range as peak.

Slices follow the engine's layout (:func:`rmisr_monai.inference.engine.slice_layout`): in-plane the slices
orthogonal to the axis; through-plane only the thick axis is upscaled, so it is checked along that axis alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["GRID_TOLERANCE_MM", "quality_report", "table_rows", "check_same_grid", "TABLE_COLUMNS"]

GRID_TOLERANCE_MM = 1e-3  # reference and output grids agree when spacing/origin differ by less than this
TABLE_COLUMNS = ("Measure", "Value", "Meaning")


def _slices(array: np.ndarray, axis: int, through_plane: bool, lines: bool = False):
    """``(N, 1, H, W)`` float64 tensor of the 2D slices the engine processed; with ``lines`` and through-plane,
    ``(N, 1, L)`` lines along the thick axis (the only upscaled one, so the only one to downscale again)."""
    import torch

    from rmisr_monai.inference.engine import slice_layout

    slice_axis, row_axis, col_axis = slice_layout(axis, through_plane, np.shape(array))
    if through_plane and lines:
        moved = np.moveaxis(np.asarray(array, dtype=np.float64), axis, -1)
        return torch.from_numpy(np.ascontiguousarray(moved.reshape(-1, 1, moved.shape[-1])))
    slices = np.transpose(np.asarray(array, dtype=np.float64), (slice_axis, row_axis, col_axis))
    return torch.from_numpy(np.ascontiguousarray(slices[:, None]))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(float(value)) else None


def _peak(array: np.ndarray) -> float:
    span = float(np.max(array)) - float(np.min(array))
    return span if span > 0 else 1.0


def check_same_grid(reference, shape: Sequence[int], geometry) -> None:
    """Raise ``ValueError`` unless ``reference`` (a Volume) lies on the grid ``shape`` + ``geometry``."""
    if tuple(reference.array.shape) != tuple(int(n) for n in shape):
        raise ValueError(
            f"the reference volume has {tuple(reference.array.shape)} voxels but the result has {tuple(shape)}; "
            "pick a reference on the result's grid (e.g. the high-resolution scan the input was made from)"
        )
    ref = reference.geometry
    gaps = (
        np.abs(np.subtract(ref.spacing, geometry.spacing)).max(),
        np.abs(np.subtract(ref.origin, geometry.origin)).max(),
        np.abs(ref.matrix - geometry.matrix).max(),
    )
    if max(gaps) > GRID_TOLERANCE_MM:
        raise ValueError(
            "the reference volume is not on the result's grid (spacing, origin or direction differ by "
            f"{max(gaps):.4g}); resample it onto the result first"
        )


def quality_report(lr, sr, axis: str | int, through_plane: bool, reference=None) -> dict[str, Any]:
    """Scores of the result ``sr`` of the input ``lr`` (Volumes), and against ``reference`` (a Volume) if given.

    Returns:
        JSON-ready dict: ``shape_in``, ``shape_out``, ``back_projection_psnr`` (dB, ``None`` when exact),
        ``back_projection_mae``, ``data_range``; with a reference ``psnr`` (dB, ``None`` when identical),
        ``ssim`` (``None`` when a slice is under the SSIM window), ``reference_range``.
    """
    import torch

    from rmisr_monai.inference import resolve_axis
    from rmisr_monai.metrics import back_project, psnr, ssim
    from rmisr_monai.metrics.sr_metrics import SSIM_WINDOW_SIZE

    ax = resolve_axis(axis)
    low, high = _slices(lr.array, ax, through_plane, lines=True), _slices(sr.array, ax, through_plane, lines=True)
    down = back_project(high, tuple(low.shape[2:]))
    peak = _peak(lr.array)
    # every slice has the same size: one volume-wide PSNR over all of them
    spatial = len(low.shape) - 1
    report: dict[str, Any] = {
        "shape_in": list(lr.array.shape),
        "shape_out": list(sr.array.shape),
        "data_range": peak,
        "back_projection_psnr": _finite(psnr(down[:, 0], low[:, 0], data_range=peak, spatial_dims=spatial)),
        "back_projection_mae": float(torch.mean(torch.abs(down - low))),
    }
    if reference is not None:
        check_same_grid(reference, sr.array.shape, sr.geometry)
        ref_peak = _peak(reference.array)
        result, ref = _slices(sr.array, ax, through_plane), _slices(reference.array, ax, through_plane)
        report["reference_range"] = ref_peak
        report["psnr"] = _finite(psnr(result[:, 0], ref[:, 0], data_range=ref_peak, spatial_dims=3))
        small = min(result.shape[2:]) < SSIM_WINDOW_SIZE
        report["ssim"] = None if small else float(ssim(result, ref, data_range=ref_peak).mean())
    return report


def _number(value: float | None, unit: str, digits: int, none: str) -> str:
    return none if value is None else f"{value:.{digits}f}{unit}"


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(measure, value, meaning)`` rows of the quality table for a :func:`quality_report`."""
    shape = "x".join(str(n) for n in report["shape_in"]) + " -> " + "x".join(str(n) for n in report["shape_out"])
    rows = [
        ("Voxels", shape, "input (or ROI) grid -> result grid"),
        (
            "Back-projection PSNR",
            _number(report["back_projection_psnr"], " dB", 2, "exact"),
            "result downscaled by bicubic vs the input; higher = more consistent with the input (no reference needed)",
        ),
        (
            "Back-projection MAE",
            _number(report["back_projection_mae"], "", 3, "0"),
            "mean absolute difference of the same, in the input's units (HU for CT)",
        ),
    ]
    if "psnr" in report:
        rows.append(("PSNR vs reference", _number(report["psnr"], " dB", 2, "identical"), "over the volume"))
        rows.append(
            (
                "SSIM vs reference",
                _number(report["ssim"], "", 4, "n/a (slices under 11 voxels)"),
                "mean 2D SSIM of the upscaled slices (1 = identical)",
            )
        )
    if "seconds" in report:
        rows.append(("Time", f"{report['seconds']:.1f} s", "reading, super-resolution, writing and scoring"))
    if "device" in report:
        rows.append(("Device", str(report["device"]), "where the network ran (GPU name or CPU)"))
    if "precision" in report:
        rows.append(("Precision", str(report["precision"]), "arithmetic of the network call (fp32, bf16 or fp16)"))
    return rows
