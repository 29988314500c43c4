"""The picture of a quality check: one slice as LR, bicubic, each method and HR, their error maps, a zoomed inset.

Layout (:func:`quality_figure`), one column per image: the top row shows the slice (LR drawn at the HR size with its
own coarse pixels), each panel titled with the method's PSNR / SSIM; the middle row magnifies the square where
bicubic errs most (its absolute error averaged over the square), outlined in yellow above; the bottom row shows
``|method - HR|`` on one shared colour scale (a darker map is a better method). Intensities are the normalised
``[0, 1]`` ones of the scores, shown in the soft-tissue window (W 400, L 40 HU) for CT and between the HR slice's
1st and 99th percentiles otherwise. Slices are
drawn with the first in-plane index axis across and the second down (radiological view of an axial LPS scan).
Written through :func:`rmisr_monai.io.atomic.atomic_output` with matplotlib's Agg canvas (no display, no global
pyplot state).
"""

from __future__ import annotations

import os

import numpy as np
from scipy.ndimage import uniform_filter

from rmisr_monai.evaluation.quality import BASELINE, QualityReport
from rmisr_monai.io.atomic import atomic_output

__all__ = ["quality_figure", "worst_square", "INSET_FRACTION", "CT_DISPLAY_WINDOW_HU"]

INSET_FRACTION = 0.25  # side of the zoomed square as a fraction of the slice's shorter side
DISPLAY_PERCENTILES = (1.0, 99.0)
CT_DISPLAY_WINDOW_HU = (-160.0, 240.0)  # the abdominal soft-tissue window, width 400 HU, level 40 HU
ERROR_PERCENTILE = 99.5  # top of the shared error colour scale (bicubic's error)
_PANEL_INCHES = 2.6


def worst_square(error: np.ndarray, fraction: float = INSET_FRACTION) -> tuple[int, int, int]:
    """``(row, col, side)`` of the square (side ``fraction`` of the shorter axis) with the largest mean ``error``."""
    side = max(4, int(round(min(error.shape) * fraction)))
    side = min(side, *error.shape)
    mean = uniform_filter(error.astype(np.float64), size=side, mode="constant")
    half = side // 2
    valid = mean[half : error.shape[0] - (side - half) + 1, half : error.shape[1] - (side - half) + 1]
    r, c = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(r), int(c), side


def _display_range(report: QualityReport) -> tuple[float, float]:
    """Grey levels shown: the soft-tissue window for CT, else the HR slice's 1st..99th percentiles (normalised)."""
    if report.intensity.get("kind") == "ct":
        a_min, a_max = report.intensity["a_min"], report.intensity["a_max"]
        return tuple((v - a_min) / (a_max - a_min) for v in CT_DISPLAY_WINDOW_HU)  # type: ignore[return-value]
    low, high = np.percentile(report.images["HR"], DISPLAY_PERCENTILES)
    return float(low), float(high if high > low else low + 1e-6)


def quality_figure(report: QualityReport, path: str | os.PathLike, overwrite: bool = False, dpi: int = 110) -> None:
    """Write the PNG figure of ``report`` (module docstring) to ``path``, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    hr = report.images["HR"]
    methods = [s.method for s in report.scores]
    scores = {s.method: s for s in report.scores}
    panels = ["LR", *methods, "HR"]
    low, high = _display_range(report)
    errors = {m: np.abs(report.images[m] - hr) for m in methods}
    top = float(np.percentile(errors[BASELINE if BASELINE in errors else methods[0]], ERROR_PERCENTILE)) or 1e-6
    r0, c0, side = worst_square(errors[BASELINE if BASELINE in errors else methods[0]])

    aspect = hr.shape[1] / hr.shape[0]  # drawn transposed: first index across
    fig = Figure(figsize=(_PANEL_INCHES * len(panels), _PANEL_INCHES * (2 * aspect + 1) + 0.6), dpi=dpi,
                 layout="constrained")  # fmt: skip
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(panels), squeeze=False, height_ratios=(aspect, 1.0, aspect))
    extent = (-0.5, hr.shape[0] - 0.5, hr.shape[1] - 0.5, -0.5)
    shown = None
    for col, name in enumerate(panels):
        image = report.images[name]
        if name in scores:
            title = f"{name}\n{scores[name].psnr:.2f} dB  SSIM {scores[name].ssim:.4f}"
        else:
            title = f"LR (x{report.scale:g} smaller)\ninput" if name == "LR" else "HR\nreference"
        view, zoom, err = axes[0, col], axes[1, col], axes[2, col]
        for ax in (view, zoom):
            ax.imshow(image.T, cmap="gray", vmin=low, vmax=high, interpolation="nearest", extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
        view.set_title(title, fontsize=8)
        view.add_patch(Rectangle((r0 - 0.5, c0 - 0.5), side, side, fill=False, edgecolor="yellow", linewidth=0.8))
        zoom.set_xlim(r0 - 0.5, r0 + side - 0.5)
        zoom.set_ylim(c0 + side - 0.5, c0 - 0.5)
        for spine in zoom.spines.values():
            spine.set_edgecolor("yellow")
        err.axis("off")
        if name in errors:
            shown = err.imshow(errors[name].T, cmap="inferno", vmin=0.0, vmax=top, interpolation="nearest")
            err.set_title(f"|{name} - HR|", fontsize=8)
    fig.colorbar(shown, ax=axes[2, -1], fraction=0.8, label="absolute error\n(normalised intensity)")
    fig.suptitle(
        f"{os.path.basename(report.input.rstrip('/'))}: x{report.scale:g}, {report.modality}, slice "
        f"{report.slice_index} along axis {'ijk'[report.axis]}",
        fontsize=9,
    )
    with atomic_output(path, overwrite=overwrite, suffix=".png") as temp:
        fig.savefig(temp, format="png", dpi=dpi)
