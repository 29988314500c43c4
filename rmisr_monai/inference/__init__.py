"""The volume engine: slice-wise super-resolution of 3D volumes by 2D networks (tiling, batching, devices), run with
one set of :class:`RunOptions`."""

from rmisr_monai.core.options import RunOptions
from rmisr_monai.inference.batch import BatchSummary, BatchUpscaler
from rmisr_monai.inference.engine import (
    DEFAULT_TILE_OVERLAP,
    output_spatial_shape,
    resolve_axis,
    resolve_device,
    run_options,
    upscale_array,
    upscale_volume,
)
from rmisr_monai.inference.jobs import VolumeJob
from rmisr_monai.inference.tiling import axis_windows, run_tiled

__all__ = [
    "BatchSummary",
    "BatchUpscaler",
    "DEFAULT_TILE_OVERLAP",
    "RunOptions",
    "VolumeJob",
    "axis_windows",
    "output_spatial_shape",
    "resolve_axis",
    "resolve_device",
    "run_options",
    "run_tiled",
    "upscale_array",
    "upscale_volume",
]
