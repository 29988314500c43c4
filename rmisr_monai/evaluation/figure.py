"""The picture of a quality check, drawn to be read by a radiologist: one slice as LR, bicubic, each method and HR.

Layout (:func:`quality_figure`), one column per image (LR, bicubic, each method, HR):

* **CT** in two windows, one row each: soft tissue (W 400 / L 40 HU) and lung (W 1500 / L -600 HU); **other
  modalities** in one row between the HR slice's 1st and 99th percentiles.
* a **zoom** row: the square (a quarter of the shorter side) where bicubic's mean absolute error is largest,
  outlined in yellow above; the figure says so (it is where a method can gain most, not a typical region).
* an **error** row: ``|method - HR|`` in the scan's units (HU for CT) on one colour scale, and under HR the map of
  where the first learned method is **worse than bicubic** (red) or better (blue): ``|method - HR| - |bicubic -
  HR|``, with the share of pixels worse, better and within a tolerance of 1 % of the scoring range.
* the LR panel says the LR image was **simulated from this scan** (the HR slice shrunk by bicubic), each method's
  title gives its PSNR / SSIM and whether the scan is in its training data; a **mm scale bar** and the patient
  directions (R/L, A/P, S/I from the LPS direction matrix) are drawn on the first panel; the caption states the
  scoring range and how the slice and the zoom were chosen.

Images are oriented as radiologists view them: axial with the patient's right on the viewer's left and anterior up,
coronal with superior up, sagittal with anterior on the left (:func:`display_orientation`). Pixels are drawn in mm
(non-square pixels keep their shape). Written through :func:`rmisr_monai.io.atomic.atomic_output` with
matplotlib's Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rmisr_monai.evaluation.quality import BASELINE, QualityReport
from rmisr_monai.io.atomic import atomic_output

__all__ = [
    "BODY_THRESHOLD_HU",
    "CT_DISPLAY_WINDOW_HU",
    "CT_WINDOWS_HU",
    "INSET_FRACTION",
    "Orientation",
    "body_mask",
    "display_orientation",
    "quality_figure",
    "scale_bar_length",
    "worse_than_baseline",
    "worst_square",
]

INSET_FRACTION = 0.25  # side of the zoomed square as a fraction of the slice's shorter side
DISPLAY_PERCENTILES = (1.0, 99.0)
# (name, width, level) in HU: the standard soft-tissue and lung windows
CT_WINDOWS_HU = (("soft tissue", 400.0, 40.0), ("lung", 1500.0, -600.0))
# the zoom is shown in whichever of these shows most of its pixels unsaturated (a vertebra in the bone window)
CT_ZOOM_WINDOWS_HU = (*CT_WINDOWS_HU, ("bone", 1800.0, 400.0))
CT_DISPLAY_WINDOW_HU = (-160.0, 240.0)  # the soft-tissue window as (low, high): W 400, L 40
ERROR_PERCENTILE = 99.5  # top of the shared error colour scale (bicubic's error)
# "as good as bicubic": within this many HU (CT: about the noise of a soft-tissue region), or this fraction of the
# body's 99th percentile (other modalities)
WORSE_TOLERANCE_HU = 10.0
WORSE_TOLERANCE = 0.01
# the body: the largest connected region above this (CT, HU; lungs and bowel gas are filled in as holes), or above
# BODY_FRACTION of the HR slice's 99th percentile (other modalities); outside it the scanner's padding, the rim of
# the reconstruction circle and the air are no anatomy, and their errors say nothing to a reader
BODY_THRESHOLD_HU = -500.0
BODY_FRACTION = 0.1
MIN_BODY_SHARE = 0.05  # a smaller "body" (a phantom, a crop of air) is not trusted: the whole slice counts
SCALE_BAR_STEPS_MM = (1, 2, 5, 10, 20, 50, 100, 200)
_PANEL_INCHES = 2.7
CAPTION_WIDTH = 150  # characters per caption line
# LPS letters of each world axis: (negative end, positive end)
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


@dataclass(frozen=True)
class Orientation:
    """How a 2D image ``(rows, cols)`` is put on screen: ``transpose`` first, then the flips; ``left``, ``right``,
    ``top``, ``bottom``: the patient directions at the screen's edges (empty when unknown)."""

    transpose: bool = False
    flip_down: bool = False
    flip_across: bool = False
    left: str = ""
    right: str = ""
    top: str = ""
    bottom: str = ""
    plane: str = ""

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = image.T if self.transpose else image
        if self.flip_down:
            out = out[::-1]
        if self.flip_across:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def spacing(self, spacing: tuple[float, float]) -> tuple[float, float]:
        """``(down, across)`` spacing on screen."""
        return (spacing[1], spacing[0]) if self.transpose else (spacing[0], spacing[1])


def display_orientation(
    direction: tuple[tuple[float, ...], ...] | np.ndarray | None, plane_axes: tuple[int, int] | None
) -> Orientation:
    """The radiological display of the slice whose rows and columns run along index axes ``plane_axes`` of a grid
    with LPS ``direction`` (columns: index axes). The world axis closest to the slice normal names the plane: axial
    (S): +L across, +P down; coronal (P): +L across, +I down; sagittal (L): +P across, +I down. Without geometry:
    rows across, columns down (the first index across), no letters."""
    if direction is None or plane_axes is None:
        return Orientation(transpose=True)
    d = np.asarray(direction, dtype=np.float64)
    rows, cols = d[:, plane_axes[0]], d[:, plane_axes[1]]
    normal = np.cross(rows, cols)
    plane = int(np.argmax(np.abs(normal)))
    across_world, down_world, down_sign = {2: (0, 1, 1.0), 1: (0, 2, -1.0), 0: (1, 2, -1.0)}[plane]
    # the image axis that runs most along the world axis shown across
    transpose = abs(rows[across_world]) > abs(cols[across_world])
    across_vec, down_vec = (rows, cols) if transpose else (cols, rows)
    flip_across = across_vec[across_world] < 0
    flip_down = down_sign * down_vec[down_world] < 0
    neg, pos = _LETTERS[across_world]
    up, low = _LETTERS[down_world] if down_sign > 0 else _LETTERS[down_world][::-1]
    name = {2: "axial", 1: "coronal", 0: "sagittal"}[plane]
    return Orientation(transpose, flip_down, flip_across, left=neg, right=pos, top=up, bottom=low, plane=name)


def worst_square(error: np.ndarray, fraction: float = INSET_FRACTION) -> tuple[int, int, int]:
    """``(row, col, side)`` of the square (side ``fraction`` of the shorter axis) with the largest mean ``error``."""
    side = max(4, round(min(error.shape) * fraction))
    side = min(side, *error.shape)
    mean = ndimage.uniform_filter(error.astype(np.float64), size=side, mode="constant")
    half = side // 2
    valid = mean[half : error.shape[0] - (side - half) + 1, half : error.shape[1] - (side - half) + 1]
    r, c = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(r), int(c), side


def body_mask(hr: np.ndarray, modality: str) -> np.ndarray:
    """The patient's body in the HR slice (see :data:`BODY_THRESHOLD_HU`): the largest connected region above the
    threshold with its holes filled; the whole slice when that is under :data:`MIN_BODY_SHARE` of it."""
    threshold = BODY_THRESHOLD_HU if modality == "CT" else BODY_FRACTION * float(np.percentile(hr, 99))
    labels, n = ndimage.label(hr > threshold)
    if n == 0:
        return np.ones(hr.shape, dtype=bool)
    sizes = ndimage.sum_labels(np.ones(hr.shape), labels, index=np.arange(1, n + 1))
    body = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return body if body.mean() >= MIN_BODY_SHARE else np.ones(hr.shape, dtype=bool)


def worse_than_baseline(
    method: np.ndarray, baseline: np.ndarray, hr: np.ndarray, tolerance: float, mask: np.ndarray | None = None
) -> tuple[np.ndarray, float, float, float]:
    """``(difference, worse, better, strictly_worse)``: ``|method - hr| - |baseline - hr|`` per pixel (positive: the
    method is worse), the shares of the pixels in ``mask`` (default all) where it is worse / better by more than
    ``tolerance``, and where it is worse at all."""
    difference = np.abs(method - hr) - np.abs(baseline - hr)
    inside = difference[mask] if mask is not None else difference.ravel()
    return (
        difference,
        float((inside > tolerance).mean()),
        float((inside < -tolerance).mean()),
        float((inside > 0).mean()),
    )


def scale_bar_length(width_mm: float) -> float:
    """The longest of :data:`SCALE_BAR_STEPS_MM` not over a quarter of ``width_mm`` (at least the smallest)."""
    fits = [s for s in SCALE_BAR_STEPS_MM if s <= width_mm / 4]
    return float(fits[-1] if fits else SCALE_BAR_STEPS_MM[0])


def _original(report: QualityReport, image: np.ndarray) -> np.ndarray:
    """A report image in the scan's units (``"normalised"`` images are mapped back with the report's range)."""
    if report.image_units == "original":
        return np.asarray(image, dtype=np.float64)
    a_min, a_max = float(report.intensity["a_min"]), float(report.intensity["a_max"])
    return np.asarray(image, dtype=np.float64) * (a_max - a_min) + a_min


def _windows(report: QualityReport, hr: np.ndarray) -> list[tuple[str, float, float]]:
    """``(row label, low, high)`` of each grey-level row."""
    if report.modality == "CT":
        return [(f"{name}\nW {w:g} / L {lvl:g} HU", lvl - w / 2, lvl + w / 2) for name, w, lvl in CT_WINDOWS_HU]
    low, high = np.percentile(hr, DISPLAY_PERCENTILES)
    label = f"{DISPLAY_PERCENTILES[0]:g}-{DISPLAY_PERCENTILES[1]:g} percentile"
    return [(label, float(low), float(max(high, low + 1e-6)))]


def _zoom_window(report: QualityReport, region: np.ndarray, windows) -> tuple[str, float, float]:
    """The grey levels of the zoom: for CT the window of :data:`CT_ZOOM_WINDOWS_HU` that saturates the fewest of the
    HR square's pixels (the narrower one on a tie, listed first); else the first row's."""
    if report.modality != "CT":
        return windows[0]
    best = min(
        CT_ZOOM_WINDOWS_HU,
        key=lambda w: (float(((region < w[2] - w[1] / 2) | (region > w[2] + w[1] / 2)).mean()), w[1]),
    )
    name, width, level = best
    return f"{name} W {width:g} / L {level:g}", level - width / 2, level + width / 2


def _units(report: QualityReport) -> str:
    return "HU" if report.modality == "CT" else "signal units"


def _training_note(value: bool | None) -> str:
    return {True: "IN its training data", False: "not in its training data", None: ""}[value]


def quality_figure(report: QualityReport, path: str | os.PathLike, overwrite: bool = False, dpi: int = 110) -> None:
    """Write the PNG figure of ``report`` (module docstring) to ``path``, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    orient = display_orientation(report.direction, report.plane_axes)
    spacing = orient.spacing(report.spacing) if report.spacing is not None else None
    images = {name: orient.apply(_original(report, image)) for name, image in report.images.items()}
    hr = images["HR"]
    methods = [s.method for s in report.scores]
    scores = {s.method: s for s in report.scores}
    panels = ["LR", *methods, "HR"]
    base = BASELINE if BASELINE in methods else methods[0]
    learned = [m for m in methods if m != base]
    errors = {m: np.abs(images[m] - hr) for m in methods}
    body = body_mask(hr, report.modality)
    top = float(np.percentile(errors[base][body], ERROR_PERCENTILE)) or 1e-6
    r0, c0, side = worst_square(np.where(_inner(body, report.scale), errors[base], 0.0))
    windows = _windows(report, hr)
    units = _units(report)
    if report.modality == "CT":
        tolerance = WORSE_TOLERANCE_HU
    else:
        tolerance = WORSE_TOLERANCE * float(np.percentile(hr[body], 99))

    dy, dx = spacing if spacing is not None else (1.0, 1.0)
    height_mm, width_mm = hr.shape[0] * dy, hr.shape[1] * dx
    extent = (0.0, width_mm, height_mm, 0.0)
    aspect = height_mm / width_mm
    rows = len(windows) + 2
    ratios = [aspect] * len(windows) + [1.0, aspect]
    fig = Figure(figsize=(_PANEL_INCHES * len(panels) + 0.8, _PANEL_INCHES * sum(ratios) + 1.7), dpi=dpi,
                 layout="constrained")  # fmt: skip
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(panels), squeeze=False, height_ratios=ratios)
    zoom_row, error_row = len(windows), len(windows) + 1
    box = (c0 * dx, r0 * dy, side * dx, side * dy)  # (x, y, w, h) in mm
    zlabel, zlow, zhigh = _zoom_window(report, hr[r0 : r0 + side, c0 : c0 + side], windows)
    for col, name in enumerate(panels):
        image = images[name]
        if name == "LR":
            title = f"LR: simulated from this scan\n(HR shrunk x{report.scale:g} by bicubic)"
        elif name == "HR":
            title = "HR: the original slice\n(reference)"
        else:
            gain = scores[name].psnr - scores[base].psnr
            title = f"{name}\nPSNR {scores[name].psnr:.2f} dB  SSIM {scores[name].ssim:.4f}"
            if name != base:
                title += f"\n{gain:+.2f} dB vs {base}"
            note = _training_note(report.training.get(name))
            title += f"\n({note})" if note else ""
        for row, (label, low, high) in enumerate(windows):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest", extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.add_patch(Rectangle(box[:2], box[2], box[3], fill=False, edgecolor="yellow", linewidth=0.8))
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
        axes[0, col].set_title(title, fontsize=8)
        zoom = axes[zoom_row, col]
        zoom.imshow(image, cmap="gray", vmin=zlow, vmax=zhigh, interpolation="nearest", extent=extent)
        zoom.set_xlim(box[0], box[0] + box[2])
        zoom.set_ylim(box[1] + box[3], box[1])
        zoom.set_xticks([])
        zoom.set_yticks([])
        for spine in zoom.spines.values():
            spine.set_edgecolor("yellow")
        if col == 0:
            zoom.set_ylabel(f"zoom: where {base} errs\nmost in the body\n{zlabel}", fontsize=8)
        err = axes[error_row, col]
        err.set_xticks([])
        err.set_yticks([])
        if name in errors:
            shown = err.imshow(errors[name], cmap="inferno", vmin=0.0, vmax=top, interpolation="nearest", extent=extent)
            err.set_title(f"|{name} - HR| ({units})", fontsize=8)
        elif name == "LR":
            err.axis("off")
            bar_host = err
        elif name == "HR" and learned:
            diff, worse, better, strictly = worse_than_baseline(images[learned[0]], images[base], hr, tolerance, body)
            bound = max(tolerance * 4, float(np.percentile(np.abs(diff[body]), ERROR_PERCENTILE)))
            shown_diff = np.where(body, diff, 0.0)
            cmp = err.imshow(shown_diff, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest", extent=extent)
            err.set_title(
                f"{learned[0]} vs {base} in the body:\nworse by > {tolerance:.3g} {units} (red) {100 * worse:.0f} %, "
                f"better (blue) {100 * better:.0f} %\nworse at all: {100 * strictly:.0f} % of pixels", fontsize=8,
            )  # fmt: skip
            fig.colorbar(cmp, ax=err, fraction=0.05, label=f"|error| - |{base} error| ({units})")
        else:
            err.axis("off")
    # the error scale sits in the empty LR cell of the error row, so that no column is pushed aside
    fig.colorbar(shown, cax=bar_host.inset_axes((0.8, 0.05, 0.07, 0.9)), label=f"absolute error ({units})")
    _annotate(axes[0, 0], orient, width_mm, height_mm, spacing is not None)
    _annotate(axes[zoom_row, 0], Orientation(), box[2], box[3], spacing is not None, origin=box[:2])
    name = os.path.basename(report.input.rstrip("/"))
    fig.suptitle(
        f"{name}: x{report.scale:g} super-resolution, {report.modality}, {orient.plane + ' ' if orient.plane else ''}"
        f"slice index {report.slice_index} along axis {'ijk'[report.axis]} (the scored slice "
        "with the most structure)",
        fontsize=9,
    )
    fig.supxlabel(_caption(report, base, learned, side, units), fontsize=7.5, ha="left", x=0.01)
    with atomic_output(path, overwrite=overwrite, suffix=".png") as temp:
        fig.savefig(temp, format="png", dpi=dpi)


def _inner(body: np.ndarray, scale: float) -> np.ndarray:
    """``body`` eroded by a few pixels: the zoom is looked for away from the body's outline and the rim."""
    return ndimage.binary_erosion(body, iterations=2 * int(np.ceil(scale)) + 2) if body.mean() < 1 else body


def _annotate(ax, orient: Orientation, width: float, height: float, in_mm: bool, origin=(0.0, 0.0)) -> None:
    """A scale bar (mm) at the bottom left and the patient directions at the edges of ``ax``."""
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]  # readable on bone and on air
    x0, y0 = origin
    if in_mm:
        bar = scale_bar_length(width)
        x, y = x0 + 0.05 * width, y0 + 0.93 * height
        ax.plot([x, x + bar], [y, y], color="white", linewidth=2.5, solid_capstyle="butt",
                path_effects=[patheffects.withStroke(linewidth=4.5, foreground="black")])  # fmt: skip
        ax.text(x + bar / 2, y - 0.025 * height, f"{bar:g} mm", color="white", fontsize=7, ha="center", va="bottom",
                path_effects=outline)  # fmt: skip
    style = {"color": "orange", "fontsize": 8, "fontweight": "bold", "transform": ax.transAxes, "path_effects": outline}
    for text, xy, ha, va in (
        (orient.left, (0.02, 0.5), "left", "center"),
        (orient.right, (0.98, 0.5), "right", "center"),
        (orient.top, (0.5, 0.98), "center", "top"),
        (orient.bottom, (0.5, 0.02), "center", "bottom"),
    ):
        if text:
            ax.text(*xy, text, ha=ha, va=va, **style)


def _caption(report: QualityReport, base: str, learned: list[str], side: int, units: str) -> str:
    lines = [
        (
            f"How this was made: the HR slice was shrunk x{report.scale:g} by antialiased bicubic (the LR image is "
            "simulated from this scan, not acquired), then each method enlarged it back and was compared with the "
            "original."
        ),
    ]
    a_min, a_max = report.intensity.get("a_min"), report.intensity.get("a_max")
    if a_min is not None:
        lines.append(
            f"Scores: PSNR / SSIM over {len(report.slices)} slice(s) on this scan's robust range "
            f"({float(a_min):.0f} to {float(a_max):.0f} {units}: its 0.5th to 99.5th percentiles); error maps in "
            f"{units}."
        )
    lines.append(
        f"Zoom: the {side}x{side}-pixel square (a quarter of the slice side) inside the body where {base}'s mean "
        "error is largest - where a method can gain most, not a typical region. Red/blue map and error scale: "
        "inside the body only (outside it: padding, air, the rim of the reconstruction circle)."
    )
    for name in learned:
        status = report.training.get(name)
        if status:
            lines.append(
                f"{name} was trained on this scan: its scores here are optimistic; see the README for held-out scans."
            )
        elif status is False:
            lines.append(f"{name} was not trained on this scan.")
    return "\n".join(textwrap.fill(line, width=CAPTION_WIDTH, subsequent_indent="  ") for line in lines)
