"""A quality check on your own scan: degrade it, upscale it back, score every method against the original.

Protocol (the SR papers' one, RMISR Ren et al. 2021 §5, applied to a volume slice by slice):

1. **Degrade.** The HR volume is cropped at the far end of its two in-plane axes to a size the scale reaches
   exactly and shrunk on them by MATLAB-compatible antialiased bicubic
   (:class:`rmisr_monai.transforms.degrade.BicubicDegrade` with ``crop_to_multiple=True``: the LR images of
   training), in the scan's own units (HU for CT); no rounding.
2. **Upscale.** The LR volume goes through the volume engine exactly as ``rmisr upscale`` would run it
   (:class:`rmisr_monai.inference.batch.BatchUpscaler`: same model choice, same intensity mapping), once per
   method; bicubic is always one of them, the baseline.
3. **Score.** Each method's output and the HR volume are mapped to ``[0, 1]`` by the scan's own robust range,
   the 0.5th and 99.5th percentiles of the HR volume (:func:`scoring_normalization`, for CT as for MR: a fixed
   -1024..3071 HU window would put soft tissue into 5 % of the range and score every CT ~7 dB higher than the same
   errors on MR), and clipped to it (:func:`to_scoring_units`); then scored per slice, the ``scale`` border pixels
   shaved, and averaged over slices (slices without any contrast in HR are left out):
   PSNR and SSIM (:mod:`rmisr_monai.metrics.sr_metrics`), edge PSNR (:func:`rmisr_monai.metrics.edge_psnr`) and
   back-projection consistency, the PSNR between the output degraded again and the LR input
   (:func:`rmisr_monai.metrics.back_projection_error`; needs no HR, high for every faithful method).
   **This is the one scoring protocol** of ``rmisr evaluate``, ``rmisr demo``, the bundles' ``evaluate.json``
   (through :func:`evaluate`) and ``benchmarks/quality.py`` (through :func:`scoring_normalization`,
   :func:`to_scoring_units` and :func:`score_slices`).
4. **Training data.** For each learned method the report says whether the scan is among the scans the checkpoint
   records as its training data (``info["data"]``, by file or folder name, :func:`training_status`; the shipped
   sample counts as its source series, :data:`DERIVED_FROM`): scores on a training scan are optimistic.

``max_slices`` limits the work to that many evenly spaced slices (in-plane SR treats slices independently, so their
scores are those of the whole run; only an MR model's percentiles are then fitted on those slices).
The figure's slice (:attr:`QualityReport.slice_index`) is the scored slice with the most structure (largest
standard deviation of the normalised HR slice); :attr:`QualityReport.images` holds it in the scan's own units (HU
for CT).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rmisr_monai.errors import ConfigurationError, InputFileError, RmisrError
from rmisr_monai.inference.batch import BatchUpscaler
from rmisr_monai.inference.engine import resolve_axis, slice_layout
from rmisr_monai.inference.guards import check_run
from rmisr_monai.io.geometry import Geometry, rescaled_geometry
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.metrics import back_projection_error, edge_psnr, psnr, ssim
from rmisr_monai.metrics.sr_metrics import SSIM_WINDOW_SIZE
from rmisr_monai.transforms.degrade import BicubicDegrade
from rmisr_monai.transforms.intensity import MR_PERCENTILES, IntensityNormalization

__all__ = [
    "BASELINE",
    "DERIVED_FROM",
    "METRICS",
    "SCORING_PERCENTILES",
    "MethodScores",
    "QualityReport",
    "degrade_volume",
    "evaluate",
    "evaluate_volume",
    "score_slices",
    "scoring_normalization",
    "to_scoring_units",
    "training_status",
]

BASELINE = "bicubic"
# column name -> what it is (the table, CSV and JSON use these names)
METRICS = {
    "psnr": "PSNR (dB) against HR",
    "ssim": "SSIM against HR",
    "edge_psnr": "PSNR (dB) of the Laplacian gradient maps (RMISR eqs. 6-8)",
    "backprojection_psnr": "PSNR (dB) of the output degraded again against the LR input",
}
_MIN_CONTRAST = 1e-6  # normalised HR slices with a smaller range are constant: no score
# the scoring range of every scan: its HR volume's own 0.5th and 99.5th percentiles (protocol step 3)
SCORING_PERCENTILES = MR_PERCENTILES
# files shipped under another name than the scan they were cut from (rmisr_monai/sample/README.md): the demo's CT is
# a crop of the DICOM series that the shipped models list as "ct_siemens_biograph_abdomen_j2k" in info["data"]
DERIVED_FROM = {"ct_demo_abdomen_int16.nii.gz": "ct_siemens_biograph_abdomen_j2k"}


def scoring_normalization(hr: np.ndarray) -> IntensityNormalization:
    """The scoring map of a scan (protocol step 3): its HR volume's :data:`SCORING_PERCENTILES` to ``[0, 1]``,
    clipped; fitted on ``hr`` (``a_min``, ``a_max`` are then the range in the scan's units)."""
    return IntensityNormalization.mr(*SCORING_PERCENTILES, clip=True).fit(np.asarray(hr))


def to_scoring_units(array: np.ndarray, norm: IntensityNormalization) -> np.ndarray:
    """``array`` (scan units) mapped by ``norm`` (:func:`scoring_normalization`) and clipped to ``[0, 1]``, float64."""
    return np.clip(norm.forward(np.asarray(array, dtype=np.float64)), 0.0, 1.0)


def scan_names(path: str | os.PathLike) -> list[str]:
    """The names a scan may have in a checkpoint's ``info["data"]``: its file or folder name, and the scan it was
    derived from (:data:`DERIVED_FROM`)."""
    name = Path(str(path).rstrip("/")).name
    return [name] + ([DERIVED_FROM[name]] if name in DERIVED_FROM else [])


def training_status(meta: dict[str, Any] | None, path: str | os.PathLike) -> bool | None:
    """Whether the scan at ``path`` is in the training data a checkpoint records (``meta["info"]["data"]``, as
    :func:`rmisr_monai.weights.load_model` returns it; names compared with :func:`scan_names`); ``None`` for an
    interpolator or a checkpoint that records none."""
    data = ((meta or {}).get("info") or {}).get("data")
    if not meta or meta.get("path") is None or not data:
        return None
    trained = {Path(str(d).rstrip("/")).name for d in data}
    return any(name in trained for name in scan_names(path))


@dataclass
class MethodScores:
    """One method's scores (averages over the scored slices) and its upscaling time."""

    method: str
    psnr: float
    ssim: float
    edge_psnr: float
    backprojection_psnr: float
    seconds: float


@dataclass
class QualityReport:
    """What :func:`evaluate_volume` found: scores per method, the protocol's settings, the figure's slice.

    Attributes:
        input: the HR file or folder.
        scale, axis: the SR factor and the slice axis (index axis of the ``(i, j, k)`` array).
        modality: ``"CT"``, ``"MR"`` or ``"OT"``; ``intensity``: the scoring normalisation (its dict).
        hr_shape, lr_shape: shapes of the (cropped) HR and of the LR volume.
        slices: the scored slice indices along ``axis``; ``slice_index``: the figure's slice.
        scores: one :class:`MethodScores` per method, bicubic first.
        images: for the figure, the 2D ``slice_index`` slice of ``"LR"``, each method and ``"HR"``, rows and
            columns along ``plane_axes``; in the scan's units (``image_units="original"``, HU for CT) or mapped by
            ``intensity`` (``"normalised"``).
        image_units: ``"original"`` or ``"normalised"`` (see ``images``).
        spacing: HR pixel spacing (mm) along the image's rows and columns (``plane_axes``); ``None`` if unknown.
        direction: the scan's 3x3 LPS direction matrix (columns: index axes); ``None`` if unknown.
        plane_axes: the index axes of the images' rows and columns.
        training: per method, whether the scan is in its training data (:func:`training_status`; ``None``:
            interpolator or not recorded).
    """

    input: str
    scale: float
    axis: int
    modality: str
    intensity: dict[str, Any]
    hr_shape: tuple[int, int, int]
    lr_shape: tuple[int, int, int]
    slices: list[int]
    slice_index: int
    scores: list[MethodScores] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    image_units: str = "normalised"
    spacing: tuple[float, float] | None = None
    direction: tuple[tuple[float, ...], ...] | None = None
    plane_axes: tuple[int, int] | None = None
    training: dict[str, bool | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form without the images."""
        return {
            "input": self.input,
            "scale": self.scale,
            "axis": self.axis,
            "modality": self.modality,
            "intensity": self.intensity,
            "hr_shape": list(self.hr_shape),
            "lr_shape": list(self.lr_shape),
            "slices": list(self.slices),
            "slice_index": self.slice_index,
            "scoring_range": [self.intensity.get("a_min"), self.intensity.get("a_max")],
            "metrics": dict(METRICS),
            "scores": [vars(s).copy() for s in self.scores],
            "in_training_data": dict(self.training),
        }


def _in_plane_axes(axis: int) -> tuple[int, int]:
    _, row, col = slice_layout(axis, through_plane=False)
    return row, col


def degrade_volume(
    volume: Volume, scale: float, axis: str | int = "z", through_plane: bool = False
) -> tuple[Volume, Volume]:
    """``(hr, lr)``: ``volume`` cropped to what the scale reaches exactly, and its bicubic degradation on the two
    in-plane axes of slices along ``axis`` (float32, original units, geometry of the same field of view); with
    ``through_plane``, on ``axis`` alone (a thick-slice scan, what ``--through-plane --axis`` upscales).

    Raises:
        ConfigurationError: ``scale < 1`` or a volume too small for it.
    """
    ax = resolve_axis(axis)
    axes = (ax,) if through_plane else _in_plane_axes(ax)
    degrader = BicubicDegrade(float(scale), axes=axes, crop_to_multiple=True)
    image = torch.from_numpy(np.asarray(volume.array, dtype=np.float32))[None]
    hr = degrader.crop(image)[0].numpy()
    lr = degrader(image)[0].numpy()
    regular = Geometry(volume.geometry.spacing, volume.geometry.origin, volume.geometry.direction)
    hr_volume = Volume(hr, regular, volume.modality, np.float32, volume.source_path, volume.source_format)
    lr_geometry = rescaled_geometry(regular, hr.shape, lr.shape)
    lr_volume = Volume(lr, lr_geometry, volume.modality, np.float32, volume.source_path, volume.source_format)
    return hr_volume, lr_volume


def _scored_slices(
    volume: Volume, axis: int, max_slices: int | None, slice_range: tuple[float, float] = (0.0, 1.0)
) -> list[int]:
    """The indices along ``axis``: ``max_slices`` evenly spaced from ``lo * (n - 1)`` to ``hi * (n - 1)``
    (``slice_range``, rounded, duplicates dropped; as ``benchmarks/quality.py`` picks them), or every slice in that
    range (``max_slices=None``)."""
    n = volume.array.shape[axis]
    lo, hi = (float(f) for f in slice_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigurationError(f"slice_range must be two fractions 0 <= lo <= hi <= 1, got {list(slice_range)}")
    if max_slices is not None and max_slices < 1:
        raise ConfigurationError(f"max_slices must be >= 1, got {max_slices}")
    if max_slices is None:
        first, last = int(np.ceil(lo * (n - 1) - 1e-9)), int(np.floor(hi * (n - 1) + 1e-9))
        return list(range(first, last + 1))
    return sorted({int(k) for k in np.linspace(lo * (n - 1), hi * (n - 1), min(n, max_slices)).round()})


def _stack(array: np.ndarray, axis: int) -> torch.Tensor:
    """``(N, 1, H, W)`` float64 slices along ``axis`` (rows and columns in the engine's layout)."""
    _, row, col = slice_layout(axis, through_plane=False)
    return torch.from_numpy(np.ascontiguousarray(np.transpose(array, (axis, row, col)), dtype=np.float64))[:, None]


def score_slices(
    method: str,
    sr: torch.Tensor,
    hr: torch.Tensor,
    lr: torch.Tensor,
    scale: float | tuple[float, float],
    seconds: float = 0.0,
    shave: int | None = None,
) -> MethodScores:
    """:class:`MethodScores` of normalised ``(N, 1, H, W)`` slices (protocol in the module docstring).

    Args:
        method: the method's name; ``sr``, ``hr``: its output and the reference; ``lr``: the input it was given.
        scale: the SR factor, or ``(rows, columns)`` factors (``(s, 1.0)`` through-plane).
        seconds: the method's upscaling time, reported as is.
        shave: border pixels left out (default: ``ceil`` of the largest factor).
    """
    factors = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
    shave = int(np.ceil(max(factors))) if shave is None else int(shave)
    return MethodScores(
        method=method,
        psnr=float(psnr(sr, hr, data_range=1.0, shave=shave).mean()),
        ssim=float(ssim(sr, hr, data_range=1.0, shave=shave).mean()),
        edge_psnr=float(edge_psnr(sr, hr, data_range=1.0, shave=shave).mean()),
        backprojection_psnr=float(back_projection_error(sr, lr, data_range=1.0, scale=factors).psnr.mean()),
        seconds=seconds,
    )


def evaluate_volume(
    volume: Volume,
    scale: float = 2.0,
    models: Sequence[str] | None = None,
    weights: Sequence[str | os.PathLike] = (),
    axis: str | int = "z",
    max_slices: int | None = None,
    through_plane: bool = False,
    slice_range: tuple[float, float] = (0.0, 1.0),
    round_lr: bool = False,
    **run_options: Any,
) -> QualityReport:
    """Degrade ``volume``, upscale it back with bicubic and each method, and score them (module docstring).

    Args:
        volume: the HR scan.
        scale: the SR factor.
        models: shipped model / network / interpolator names (:mod:`rmisr_monai.inference.selection`); ``None``
            (and no ``weights``): the shipped default for the scale and modality, if there is one. Bicubic is
            always scored, first.
        weights: checkpoint files, each one more method (named by its file name).
        axis: the slice axis (``"x"|"y"|"z"`` or ``0|1|2``); with ``through_plane``, the thick axis.
        max_slices: score at most this many evenly spaced slices (``None``: all).
        through_plane: degrade and upscale ``axis`` alone (a thick-slice scan, as ``rmisr upscale
            --through-plane`` runs it); the scored slices are then those along the third index axis (``k``), or
            along ``i`` when ``axis`` is ``k``, each holding ``axis`` (scored with factors ``(s, 1)``).
        slice_range: pick the slices from this fraction of the scan to that one (``(0.2, 0.8)``: its middle 60 %,
            as ``benchmarks/quality.py`` does).
        round_lr: store the LR rounded to whole numbers as int16, as a low-resolution file would be
            (``benchmarks/quality.py``'s LR); only for scans whose units make whole numbers fine and fit int16 (CT
            in HU, MR of a few hundred or thousand grey levels), not for a scan in ``[0, 1]``.
        run_options: ``device``, ``tile``, ``tile_overlap``, ``batch_size``, ``amp``, ``progress`` for the engine
            (:class:`~rmisr_monai.inference.batch.BatchUpscaler`).

    Raises:
        ConfigurationError: bad scale/axis or a volume whose slices are too small to score at this scale.
        WeightsError: a named model cannot be loaded.
    """
    from rmisr_monai.weights import default_model

    thick = resolve_axis(axis)
    through_plane = bool(through_plane)
    ax = (0 if thick == 2 else 2) if through_plane else thick  # the axis the scored slices are taken along
    scale = float(scale)
    indices = _scored_slices(volume, ax, max_slices, slice_range)
    subset = Volume(
        np.take(volume.array, indices, axis=ax), volume.geometry, volume.modality, volume.source_dtype,
        volume.source_path, volume.source_format,
    )  # fmt: skip
    hr, lr = degrade_volume(subset, scale, thick, through_plane=through_plane)
    if round_lr:
        lr = Volume(
            np.round(lr.array).astype(np.int16), lr.geometry, lr.modality, np.int16, lr.source_path,
            lr.source_format,
        )  # fmt: skip
    factors = tuple(scale if (a == thick or not through_plane) else 1.0 for a in _in_plane_axes(ax))
    shave = int(np.ceil(scale))
    in_plane = [hr.array.shape[a] - 2 * shave for a in _in_plane_axes(ax)]
    if min(in_plane) < SSIM_WINDOW_SIZE:
        raise InputFileError(
            volume.source_path, f"slices of {hr.array.shape} voxels are too small to score at x{scale:g}"
        )
    methods: list[tuple[str, dict[str, Any]]] = [(BASELINE, {"model": BASELINE})]
    if models is None and not weights:
        try:
            methods.append((default_model(scale, volume.modality, arbitrary_scale=through_plane)["name"], {}))
        except RmisrError:
            pass  # nothing shipped for this scale: bicubic alone
    methods += [(m, {"model": m}) for m in models or () if m != BASELINE]
    methods += [(Path(w).name, {"weights": str(w)}) for w in weights]

    norm = scoring_normalization(hr.array)
    hr_stack = _stack(to_scoring_units(hr.array, norm), ax)
    spread = hr_stack.flatten(1)
    keep = (spread.max(dim=1).values - spread.min(dim=1).values) > _MIN_CONTRAST
    if not bool(keep.any()):
        raise InputFileError(volume.source_path, "no slice has any contrast in the scoring intensity range")
    lr_all = _stack(to_scoring_units(lr.array, norm), ax)
    figure_pos = int(torch.where(keep, hr_stack.flatten(1).std(dim=1), -1.0).argmax())
    row, col = _in_plane_axes(ax)
    report = QualityReport(
        input=str(volume.source_path),
        scale=scale,
        axis=ax,
        modality=volume.modality,
        intensity=norm.to_dict(),
        hr_shape=tuple(int(n) for n in hr.array.shape),
        lr_shape=tuple(int(n) for n in lr.array.shape),
        slices=[indices[i] for i in range(len(indices)) if keep[i]],
        slice_index=indices[figure_pos],
        image_units="original",
        spacing=(hr.geometry.spacing[row], hr.geometry.spacing[col]),
        direction=hr.geometry.direction,
        plane_axes=(row, col),
    )
    report.images["LR"] = _plane(lr.array, ax, figure_pos)
    # the input checks (rmisr_monai.inference.guards) judge the scan itself, as `rmisr upscale` would see it, not the
    # LR simulated from it: bicubic over- and undershoots at a sharp edge (CT padding of -3024 HU outside the field
    # of view next to air) would make the LR look like no CT although it is this CT made smaller
    allow_extrapolation = bool(run_options.pop("allow_extrapolation", False))
    for name, choice in methods:
        upscaler = BatchUpscaler(
            scale=scale, axis=thick, through_plane=through_plane, dtype="float32", allow_extrapolation=True,
            **choice, **run_options,
        )  # fmt: skip
        network, meta = upscaler.network(scale, volume.modality)  # loaded before the clock starts
        check_run(volume, scale, network, meta, method=meta.get("source"), allow_extrapolation=allow_extrapolation)
        report.training[name] = training_status(meta, volume.source_path)
        started = time.perf_counter()
        sr = upscaler.upscale(lr).array
        seconds = time.perf_counter() - started
        scored = _stack(to_scoring_units(sr, norm), ax)
        report.scores.append(
            score_slices(name, scored[keep], hr_stack[keep], lr_all[keep], factors, seconds, shave=shave)
        )
        report.images[name] = _plane(sr, ax, figure_pos)
    report.images["HR"] = _plane(hr.array, ax, figure_pos)
    return report


def _plane(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` as float32, rows and columns along the two other axes in order."""
    return np.ascontiguousarray(np.take(array, index, axis=axis), dtype=np.float32)


def evaluate(hr_path: str | os.PathLike, scale: float = 2.0, **options: Any) -> QualityReport:
    """:func:`evaluate_volume` on the scan at ``hr_path`` (any format :func:`rmisr_monai.io.read.read_volume`
    reads); ``options`` as :func:`evaluate_volume`. The bundle's ``evaluate.json`` and ``rmisr evaluate`` call it."""
    return evaluate_volume(read_volume(hr_path), scale, **options)
