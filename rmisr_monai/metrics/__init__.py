"""SR quality metrics: PSNR/SSIM as SR papers compute them (and on medical intensity ranges), edge PSNR of the
RMISR Laplacian gradient maps, and back-projection consistency with the LR input."""

from __future__ import annotations

from rmisr_monai.metrics import consistency, edge, sr_metrics
from rmisr_monai.metrics.consistency import *  # noqa: F401,F403
from rmisr_monai.metrics.edge import *  # noqa: F401,F403
from rmisr_monai.metrics.sr_metrics import *  # noqa: F401,F403

__all__ = [name for module in (consistency, edge, sr_metrics) for name in module.__all__]
