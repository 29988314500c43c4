"""A quality check's outputs: the printed table, a CSV and a JSON of the scores, and the PNG figure.

File names under the report folder (:func:`report_paths`): ``<name>_x<scale>_quality.{png,csv,json}``, ``<name>``
being the input's file name without its volume suffix (or the DICOM folder's name). All three are checked before
anything is written and each is written atomically (:mod:`rmisr_monai.io.atomic`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rmisr_monai.evaluation.figure import quality_figure
from rmisr_monai.evaluation.quality import METRICS, QualityReport
from rmisr_monai.io.atomic import atomic_output, check_output_path
from rmisr_monai.io.volume import FILE_FORMATS

__all__ = ["CSV_FIELDS", "format_table", "report_paths", "write_report"]

CSV_FIELDS = ("method", *METRICS, "seconds")
_HEADINGS = {"method": "method", "psnr": "PSNR dB", "ssim": "SSIM", "edge_psnr": "edge PSNR dB",
             "backprojection_psnr": "back-proj. PSNR dB", "seconds": "seconds"}  # fmt: skip
_MIN_WIDTH = 7


def format_table(report: QualityReport) -> str:
    """The scores as an aligned text table, under a line saying what was scored."""
    width = max(len("method"), *(len(s.method) for s in report.scores))
    columns = [(_HEADINGS[k], max(len(_HEADINGS[k]), _MIN_WIDTH)) for k in CSV_FIELDS[1:]]
    a_min, a_max = report.intensity.get("a_min"), report.intensity.get("a_max")
    scored = "" if a_min is None else f"scored on its 0.5-99.5 percentile range {float(a_min):g} to {float(a_max):g}; "
    lines = [
        (
            f"x{report.scale:g} quality on {len(report.slices)} slices along axis {'ijk'[report.axis]} "
            f"({report.modality}; {scored}HR {'x'.join(map(str, report.hr_shape))}, "
            f"LR {'x'.join(map(str, report.lr_shape))} simulated from it by bicubic)"
        ),
        f"{'method':<{width}}" + "".join(f"  {h:>{w}}" for h, w in columns),
    ]
    for s in report.scores:
        cells = (f"{s.psnr:.2f}", f"{s.ssim:.4f}", f"{s.edge_psnr:.2f}", f"{s.backprojection_psnr:.2f}")
        cells += (f"{s.seconds:.2f}",)
        lines.append(f"{s.method:<{width}}" + "".join(f"  {c:>{w}}" for c, (_, w) in zip(cells, columns)))
    for method, trained in report.training.items():
        if trained:
            lines.append(f"note: {method} was trained on this scan; its scores here are optimistic (held-out figures: "
                         "README)")
        elif trained is False:
            lines.append(f"note: {method} was not trained on this scan")
    return "\n".join(lines)


def report_paths(out_dir: str | os.PathLike, input: str | os.PathLike, scale: float) -> dict[str, Path]:
    """``{"png", "csv", "json"}`` paths of a report (module docstring)."""
    name = Path(str(input).rstrip("/")).name
    for suffix in sorted(FILE_FORMATS, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem = f"{name}_x{scale:g}_quality"
    return {kind: Path(out_dir) / f"{stem}.{kind}" for kind in ("png", "csv", "json")}


def _write_text(path: Path, text: str, overwrite: bool) -> None:
    with atomic_output(path, overwrite=overwrite) as temp:
        temp.write_text(text, encoding="utf-8")


def write_report(report: QualityReport, out_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, Path]:
    """Write the CSV, JSON and PNG of ``report`` into ``out_dir`` (created if missing); returns their paths.

    Raises:
        OutputFileError: one of them exists without ``overwrite`` (nothing is written then), or a write fails.
    """
    paths = report_paths(out_dir, report.input, report.scale)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        check_output_path(path, overwrite=overwrite)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for s in report.scores:
        writer.writerow({k: getattr(s, k) for k in CSV_FIELDS})
    _write_text(paths["csv"], table.getvalue(), overwrite)
    _write_text(paths["json"], json.dumps(report.to_dict(), indent=2) + "\n", overwrite)
    quality_figure(report, paths["png"], overwrite=overwrite)
    return paths
