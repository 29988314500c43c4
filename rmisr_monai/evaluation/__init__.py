"""Quality check on a user's own scan: degrade, upscale with bicubic and the chosen models, score, report, figure."""

from rmisr_monai.evaluation.figure import quality_figure
from rmisr_monai.evaluation.quality import (
    BASELINE,
    METRICS,
    MethodScores,
    QualityReport,
    degrade_volume,
    evaluate,
    evaluate_volume,
    score_slices,
)
from rmisr_monai.evaluation.report import format_table, report_paths, write_report

__all__ = [
    "BASELINE",
    "METRICS",
    "MethodScores",
    "QualityReport",
    "degrade_volume",
    "evaluate",
    "evaluate_volume",
    "format_table",
    "quality_figure",
    "report_paths",
    "score_slices",
    "write_report",
]
