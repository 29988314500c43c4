"""Edge PSNR: PSNR between the Laplacian gradient maps of the SR and HR images (RMISR, Ren et al. 2021, eqs. 6-8).

RMISR-VP is built to restore edges and textures (§4.1, Fig. 7 compares Laplacian gradient maps); this score puts a
number on Fig. 7. The maps are those of :func:`rmisr_monai.ops.laplacian.laplacian_gradient` (the operator of the
network and of its loss), computed on the whole image and then shaved, so that the border rule does not enter the
score. The peak is the **image** ``data_range`` (a second difference spans ``[-2L, 2L]``; any fixed peak only
shifts all scores by the same constant, so the image peak keeps edge PSNR comparable between methods and papers'
usual ranges). The paper defines no such metric; this is the project's reading of its Fig. 7.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import NdarrayOrTensor

from rmisr_monai.metrics.sr_metrics import prepare_pair, psnr_batched, shave_border
from rmisr_monai.ops.laplacian import laplacian_gradient

__all__ = ["edge_psnr"]


def edge_psnr(
    sr: NdarrayOrTensor,
    hr: NdarrayOrTensor,
    data_range: float | None = None,
    shave: int = 0,
    y_channel: bool = False,
    window: Sequence[float] | None = None,
    spatial_dims: int = 2,
    mode: str = "xy",
) -> torch.Tensor:
    """PSNR (dB) of the Laplacian gradient maps; arguments as :func:`rmisr_monai.metrics.psnr`.

    Args:
        mode: ``"xy"`` (per-axis maps, eq. 8) or ``"scalar"`` (their sum), see
            :func:`rmisr_monai.ops.laplacian.laplacian_gradient`.

    Returns ``(N,)`` for a batch, a 0-d tensor otherwise.
    """
    a, b, data_range, batched = prepare_pair(sr, hr, data_range, 0, y_channel, window, spatial_dims)
    lap_a = shave_border(laplacian_gradient(a, mode, spatial_dims), shave, spatial_dims)
    lap_b = shave_border(laplacian_gradient(b, mode, spatial_dims), shave, spatial_dims)
    value = psnr_batched(lap_a, lap_b, data_range)
    return value if batched else value[0]
