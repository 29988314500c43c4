"""The volume engine: slice-wise super-resolution of a 3D volume by a 2D network.

One implementation serves the CLI, the :class:`~rmisr_monai.transforms.super_resolve.SuperResolve` transform, the
bundles and Slicer:

* :func:`upscale_array` works on a channel-first array ``(C, I, J, K)``: it cuts the volume into 2D slices, batches
  them, tiles large slices (:mod:`rmisr_monai.inference.tiling`), runs the network (CPU or CUDA, channels-last,
  reduced precision where it is measured to be safe and fast, out-of-memory fallback), and streams the stitched
  slices into a preallocated output (``np.empty``, or an unlinked ``np.memmap`` for large outputs) from a writer
  thread while the next batch runs; intensities are normalised before and restored after the network, and what a
  clipping window removed (CT padding at -2048 HU, metal) comes back through bicubic.
* Memory: unless given, the batch and the tile come from a budget, the peak-RSS bound
  ``1.5 x (input + output in their stored dtypes) + 1 GiB`` (:func:`default_memory_limit`) minus the process's base
  size, the input and the output; the network's bytes per pixel are measured on a small probe
  (:func:`~rmisr_monai.inference.tiling.forward_peak_bytes`).
* Precision (:func:`resolve_precision`): ``"fp32"`` is the reference; ``"auto"`` uses float16 autocast on CUDA and
  bfloat16 autocast on CPUs with native bf16 (AMX or AVX512-BF16, read from ``/proc/cpuinfo``) except for CT
  intensities and for networks without parameters (the interpolators), and fp32 elsewhere (benchmarks/RESULTS.md §7
  and §13 give the measured errors and speed).
* :func:`upscale_volume` wraps it for a :class:`~rmisr_monai.io.volume.Volume`; the new geometry comes from
  :func:`rmisr_monai.io.geometry.rescaled_geometry` (the only place with spacing/origin arithmetic).

Two modes along ``axis`` (index axis of the ``(i, j, k)`` array; ``"x"``/``"y"``/``"z"`` name ``0``/``1``/``2``):

* in-plane (default): each slice orthogonal to ``axis`` is upscaled by ``(s, s)`` on its two axes; ``axis`` keeps
  its length.
* through-plane (``through_plane=True``, thick slices): only ``axis`` is upscaled, by running an arbitrary-scale
  network with ``(s, 1.0)`` on the slices that contain ``axis`` (``axis`` is their row direction).

Every upscaled axis of ``n`` voxels gets ``round(n * s)`` voxels (network contract). Arbitrary-scale networks are
run at the *effective* scale ``round(n * s) / n`` of each axis, so that the samples lie exactly where the new
geometry (same voxel-corner box, :func:`~rmisr_monai.io.geometry.rescaled_geometry`) puts them; it equals ``s``
whenever ``n * s`` is an integer. Sub-pixel networks need an integer ``s`` (then always ``n * s``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from rmisr_monai.core.arrays import cast_to_dtype
from rmisr_monai.core.axes import resolve_axis, scaled_length
from rmisr_monai.core.intensity import IntensityNormalization
from rmisr_monai.core.options import DEFAULT_TILE_OVERLAP, PRECISIONS, RunOptions
from rmisr_monai.core.runtime import cpu_has_fast_bf16, device_name, resolve_device
from rmisr_monai.errors import ConfigurationError, RmisrError
from rmisr_monai.inference.allocator import keep_freed_memory
from rmisr_monai.inference.ensemble import dihedral_transforms, self_ensemble
from rmisr_monai.inference.tiling import (
    SKIP_RANGE,
    forward_peak_bytes,
    global_statistics_layers,
    halved_tile,
    memory_limit_from_free,
    plan_tiles,
    run_tiled,
    run_tiled_exact,
    tile_sides,
)
from rmisr_monai.ops.resize import imresize

__all__ = [
    "RunOptions",
    "upscale_volume",
    "upscale_array",
    "run_options",
    "output_spatial_shape",
    "resolve_axis",
    "resolve_device",
    "slice_layout",
    "resolve_precision",
    "cpu_has_fast_bf16",
    "default_memory_limit",
    "DEFAULT_TILE_OVERLAP",
    "MEMMAP_THRESHOLD_BYTES",
    "PRECISIONS",
]

# outputs larger than this go to an unlinked temporary memmap instead of RAM
MEMMAP_THRESHOLD_BYTES = 2 << 30
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 1 << 30
# kept free of the budget for what the probe does not see (oneDNN scratch, Python objects, the progress bar)
MEMORY_MARGIN_BYTES = 96 << 20
# resident bytes of a network call per byte of tensors the probe counts: oneDNN buffers and allocator slack grow
# with the activations (a whole 512^2 slice through the engine: 64-feature RMISR-BL 354 MiB counted, 576-634 MiB
# resident; 32 features 236 counted, ~450 resident). Chosen by measurement (benchmarks/volume.py, the 512 x 512 x 20
# CT x2 with the 64-feature default, target 1099 MiB): 1 -> 1242 MiB, 2 -> 1165, 3 -> 1019 (benchmarks/RESULTS.md §13)
RESIDENT_PER_COUNTED_BYTE = 3.0
# resident size of the process before any data: Python, torch, MONAI and this package with the CLI's imports and a
# shipped model loaded (515 MiB measured on the project CPU). A fixed figure, not the current RSS, so that a host
# application's own memory (Slicer, a notebook) does not shrink the tiles to nothing.
PROCESS_BASE_BYTES = 512 << 20
# most slices per network call when the budget allows more (the former fixed default on the CPU: batches amortise
# the per-call overhead on small slices and tiles); on CUDA larger batches keep the GPU busy
MAX_AUTO_BATCH = {"cpu": 4, "cuda": 16}
# on the CPU one call takes at most this many LR pixels (and at least one slice): it already keeps the cores busy.
# Batches of whole 512^2 slices gained no speed and each slice held ~150 MiB more than the probe counts (oneDNN
# buffers and allocator slack: a 512 x 512 x 300 CT x2 peaked at 2634 MiB in batches of 3, target 2149;
# benchmarks/RESULTS.md §9)
CPU_CALL_PIXELS = 512 * 512
# side of the probe slice the network's bytes per pixel are measured on
PROBE_SIDE = 64

logger = logging.getLogger(__name__)


def slice_layout(
    axis: int, through_plane: bool, shape: tuple[int, ...] | None = None
) -> tuple[int, int, int]:
    """``(slice_axis, row_axis, col_axis)`` of the 2D slices: slices are taken along ``slice_axis``; the network
    sees ``row_axis`` as H and ``col_axis`` as W. Through-plane: ``axis`` is the row axis and the slices are
    taken along the shorter other axis of ``shape`` (the lower one on a tie or without ``shape``), so that the
    network sees the largest planes: a few thin slabs of a scan give full-size planes, not strips as narrow as the
    slab, whose borders and global statistics would dominate."""
    others = [a for a in range(3) if a != axis]
    if through_plane:
        if shape is not None and shape[others[1]] < shape[others[0]]:
            others.reverse()
        return others[0], axis, others[1]
    return axis, others[0], others[1]


def _axis_scales(scale: float, axis: int, through_plane: bool) -> tuple[float, float, float]:
    """Scale of each index axis."""
    s = [1.0, 1.0, 1.0]
    if through_plane:
        s[axis] = scale
    else:
        for a in range(3):
            if a != axis:
                s[a] = scale
    return s[0], s[1], s[2]


def output_spatial_shape(
    shape: tuple[int, int, int], scale: float, axis: str | int = "z", through_plane: bool = False
) -> tuple[int, int, int]:
    """Spatial shape of the result: ``round(n * s)`` on each upscaled axis."""
    scales = _axis_scales(float(scale), resolve_axis(axis), through_plane)
    return tuple(scaled_length(int(n), s) for n, s in zip(shape, scales))  # type: ignore[return-value]


def _network_in_channels(net: nn.Module) -> int | None:
    value = getattr(net, "in_channels", None)
    if isinstance(value, int):
        return value
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def resolve_precision(
    precision: str, device: torch.device, learned: bool = True
) -> torch.dtype | None:
    """The autocast dtype of the network call, or ``None`` for fp32.

    ``"fp32"``: ``None``. ``"bf16"`` / ``"fp16"``: that dtype on any device. ``"auto"``: fp32 for a network without
    parameters (``learned=False``: the interpolators are references, and cheap); else float16 on CUDA; bfloat16 on
    a CPU with native bf16 (:func:`cpu_has_fast_bf16`), CT included: with the first convolution and the
    reconstruction in fp32 (:attr:`_Runner.FP32_UNDER_BF16`) bf16 is within 0.01 dB of fp32 on the held-out CT of
    ``benchmarks/scans.json`` at x2/x3/x4 (``benchmarks/precision_ct.py``; max 9 HU); fp32 elsewhere. Neither the
    modality nor the intensity recipe changes the choice.
    """
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return _AUTOCAST_DTYPES.get(precision)
    if not learned:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def default_memory_limit(input_bytes: int, output_bytes: int) -> int:
    """Peak resident memory allowed by default: ``1.5 x (input + output in their stored dtypes) + 1 GiB``."""
    return int(1.5 * (input_bytes + output_bytes)) + GIB


def _check_network(net: nn.Module, scale: float, through_plane: bool) -> bool:
    """Validate ``scale`` against the network; returns whether ``forward`` takes a scale."""
    arbitrary = bool(getattr(net, "arbitrary_scale", False))
    if through_plane and not arbitrary:
        need = "through-plane upscaling needs an arbitrary-scale network (it runs the network with (s, 1.0))"
        raise ConfigurationError(
            f"{need}; use a network built with upsampler='meta', or model='bicubic'",
            cli=f"{need}; use an arbitrary-scale (meta) model, or --model bicubic",
        )
    if not (np.isfinite(scale) and scale > 0):
        raise ConfigurationError(f"scale must be finite and > 0, got {scale!r}")
    if not arbitrary:
        fixed = getattr(net, "scale", None)
        fixed = fixed[0] if isinstance(fixed, (tuple, list)) else fixed
        if fixed is not None and abs(float(fixed) - scale) > 1e-9:
            fixed_scale = f"this network has the fixed scale {float(fixed):g} (sub-pixel upsampler), got {scale:g}"
            raise ConfigurationError(
                f"{fixed_scale}; use its scale, a meta network, or model='bicubic'",
                cli=f"{fixed_scale}; use its --scale, an arbitrary-scale (meta) model, or --model bicubic",
            )
        if abs(scale - round(scale)) > 1e-9:
            raise ConfigurationError(f"a sub-pixel network needs an integer scale, got {scale:g}")
    return arbitrary


def _as_normalization(intensity: Any) -> IntensityNormalization | None:
    if intensity is None or isinstance(intensity, IntensityNormalization):
        return intensity
    if isinstance(intensity, Mapping):
        return IntensityNormalization.from_dict(intensity)
    raise ConfigurationError(f"intensity must be None, an IntensityNormalization or its dict, got {type(intensity)}")


def _allocate(shape: tuple[int, ...], dtype: np.dtype, threshold: int) -> np.ndarray:
    """``np.empty``, or above ``threshold`` bytes an ``np.memmap`` on a temporary file that is unlinked at once
    (its pages go back to the disk when the array is dropped; nothing is left behind on a crash or Ctrl-C)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= threshold:
        return np.empty(shape, dtype=dtype)
    fd, path = tempfile.mkstemp(prefix="rmisr-engine-", suffix=".raw")
    try:
        with os.fdopen(fd, "wb+") as f:
            f.truncate(nbytes)
            mm = np.memmap(f, dtype=dtype, mode="r+", shape=shape)
    finally:
        os.unlink(path)
    logger.info("output of %.1f GiB kept in a temporary memory map", nbytes / 2**30)
    return mm


class _Runner:
    """Calls the network on one batch of slices, tiled, on the current device; owns the out-of-memory policy:
    halve the tile and retry; when the tile cannot shrink further, move to the CPU (logged once) and retry."""

    def __init__(self, net, scale_arg, arbitrary, device, tile, overlap, autocast_dtype, ensemble=1):
        self.net = net
        self.ensemble = ensemble
        self.scale_arg = scale_arg
        self.arbitrary = arbitrary
        self.device = device
        self.tile = tile
        self.initial_tile = tile
        self.overlap = overlap
        self.autocast_dtype = autocast_dtype
        self.fell_back = False
        # CCA/ICCA pool over the whole slice: their windows run with the whole slice's statistics (run_tiled_exact)
        self.global_layers = global_statistics_layers(net)
        # constant windows get bicubic (tiling.constant_window_output); only for learned networks whose output has
        # the input's channels (checked on the first batch, which runs every window)
        self.skip_range = SKIP_RANGE if any(True for _ in net.parameters()) else None
        self.channels_kept: bool | None = None

    # kept in float32 under bfloat16 autocast: the first convolution (bf16 would round the image itself to 8
    # significant bits: ~5 HU of soft tissue in a CT normalised over -2048..542 HU) and the reconstruction after the
    # body, which carries the global residual (the image's level). The held-out CT x2 crops of test_fast_paths with
    # the 64-feature default: all bf16 -0.078 dB against fp32 (max 32.9 HU); first and last layers in fp32
    # +0.001 dB (max 2.9 HU); the attention statistics in fp32 changed nothing. These layers are ~10 % of its MACs.
    FP32_UNDER_BF16 = ("head", "tail.lr_conv", "tail.out_conv", "fusion", "lr_conv", "upsampler")

    def _context(self) -> contextlib.ExitStack:
        """Inference mode and the autocast of a network call (bf16: with :attr:`FP32_UNDER_BF16` in float32)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype))
        if self.autocast_dtype == torch.bfloat16:
            device_type, states = self.device.type, []

            def pre(module: nn.Module, args: tuple) -> tuple:
                states.append(torch.is_autocast_enabled(device_type))
                torch.set_autocast_enabled(device_type, False)
                return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

            def post(module: nn.Module, args: tuple, output: Any) -> None:
                torch.set_autocast_enabled(device_type, states.pop())

            for name, module in self.net.named_modules():
                if name in self.FP32_UNDER_BF16:
                    stack.callback(module.register_forward_pre_hook(pre).remove)
                    stack.callback(module.register_forward_hook(post, always_call=True).remove)
        return stack

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, memory_format=torch.channels_last, non_blocking=True)
        with self._context():
            y = self_ensemble(self._network, x, self.ensemble, self.scale_arg)
        return y.contiguous()

    def _forward_exact(self, x: torch.Tensor, pair: tuple[float, float], skip: float | None) -> torch.Tensor:
        """Windows of a network with global statistics, inside the self-ensemble: each transformed copy gets its own
        whole-slice statistics."""

        def member(t: torch.Tensor, member_pair: tuple[float, float] | None) -> torch.Tensor:
            def window(w: torch.Tensor) -> torch.Tensor:
                w = w.to(self.device, memory_format=torch.channels_last, non_blocking=True)
                return self._network(w, member_pair).float()

            # a fixed-scale network gets no pair (its scale is the same on both axes)
            pair_t = pair if member_pair is None else member_pair
            return run_tiled_exact(window, t, pair_t, self.tile, self.overlap, self.global_layers, skip)

        with self._context():
            return self_ensemble(member, x, self.ensemble, self.scale_arg).contiguous()

    def _network(self, x: torch.Tensor, pair: tuple[float, float] | None) -> torch.Tensor:
        y = self.net(x, pair) if self.arbitrary else self.net(x)
        if isinstance(y, (tuple, list)):  # defensive: training-mode dual outputs; the SR image is first
            y = y[0]
        return y

    def __call__(self, x: torch.Tensor, pair: tuple[float, float]) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        while True:
            try:
                skip = self.skip_range if self.channels_kept else None
                if self.global_layers and self.tile is not None:
                    out = self._forward_exact(x, pair, skip)
                else:
                    out = run_tiled(self._forward, x, pair, self.tile, self.overlap, skip_range=skip)
                if self.channels_kept is None:
                    self.channels_kept = out.shape[1] == x.shape[1]
                return out.cpu()
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                smaller = halved_tile(self.tile, h, w, self.overlap)
                if smaller is not None:
                    logger.info("out of memory with tile %s; retrying with tile %d", self.tile, smaller)
                    self.tile = smaller
                    continue
                if self.device.type != "cpu":
                    if not self.fell_back:
                        logger.warning(
                            "out of %s memory even with tile %s; continuing on the CPU", self.device, self.tile
                        )
                    self.fell_back = True
                    self.device = torch.device("cpu")
                    self.net.to(self.device)
                    self.tile = self.initial_tile
                    continue
                raise RmisrError(
                    f"out of memory even with tile {self.tile} on the CPU; use a smaller tile or batch "
                    "(RunOptions.tile, RunOptions.batch)",
                    cli=f"out of memory even with tile {self.tile} on the CPU; use a smaller --tile or --batch",
                ) from None


def run_options(
    options: RunOptions | Mapping[str, Any] | None = None, scale: float | None = None, **changes: Any
) -> RunOptions:
    """The :class:`RunOptions` of an engine call: ``options`` (a ``RunOptions``, its dict, or ``None`` for the
    defaults), then ``scale`` and ``changes`` (field names, or the keyword names of earlier releases:
    ``batch_size`` for ``batch``, ``ensemble`` for ``self_ensemble``)."""
    if options is None:
        options = RunOptions()
    elif isinstance(options, Mapping):
        options = RunOptions.from_dict(options)
    elif not isinstance(options, RunOptions):
        raise ConfigurationError(f"options must be RunOptions, its dict or None, got {type(options).__name__}")
    for old, new in _RENAMED_OPTIONS.items():
        if old in changes:
            changes[new] = changes.pop(old)
    if scale is not None:
        changes["scale"] = scale
    return options.replace(**changes) if changes else options


# keyword names of upscale_array before RunOptions, still accepted
_RENAMED_OPTIONS = {"batch_size": "batch", "ensemble": "self_ensemble"}
# what reports progress: True / False for a tqdm bar, or a callable progress(done, total) called after each batch
Progress = bool | Callable[[int, int], None]


def upscale_array(
    array: np.ndarray | torch.Tensor,
    network: nn.Module,
    scale: float | None = None,
    *,
    options: RunOptions | Mapping[str, Any] | None = None,
    intensity: IntensityNormalization | Mapping[str, Any] | None = None,
    progress: Progress = True,
    memmap_threshold: int = MEMMAP_THRESHOLD_BYTES,
    **changes: Any,
) -> np.ndarray:
    """Upscale a channel-first volume ``(C, I, J, K)`` (or ``(I, J, K)``) slice by slice; float32 result.

    Args:
        array: the volume, numpy or torch (any dtype; the network sees ``float32``).
        network: a 2D SR network (network contract); put in eval mode here. Subpixel networks must be at ``scale``.
        scale: factor of each upscaled axis; given, it replaces ``options.scale``.
        options: the :class:`RunOptions` (or their dict): axis, through-plane, device, precision (``"auto"``:
            :func:`resolve_precision`), batch and tile (``None``: from the memory budget ``memory_limit``, default
            :func:`default_memory_limit`; whole slices when one fits), tile overlap, self-ensemble (``None`` here
            means 1: the model's recipe is applied by :mod:`rmisr_monai.inference.selection`), output dtype (each
            batch of slices is cast on the way in by :func:`rmisr_monai.core.arrays.cast_to_dtype`, so a volume
            written as int16 never exists in float32 as a whole). ``model``, ``weights`` and ``adapt`` are for the
            front ends that choose and adapt the network.
        intensity: the normalisation to ``[0, 1]`` (``IntensityNormalization`` or its dict, e.g. a checkpoint's
            ``"intensity"``); fitted on the whole volume (MR percentiles), applied before the network and undone
            after. ``None``: intensities go to the network as they are (right for the non-learned interpolators).
        progress: a tqdm progress bar over slices (``True``), none (``False``), or ``progress(done, total)`` called
            after each batch of slices is stored.
        memmap_threshold: outputs above this many bytes are held in an unlinked temporary memory map.
        changes: run options by field name, applied over ``options`` (:func:`run_options`).

    Returns:
        Array ``(C', I', J', K')`` (``(I', J', K')`` for a 3D input), ``C'`` the network's output channels.

    Raises:
        ConfigurationError: bad axis/scale/device/tile, or a network that cannot do the requested mode.
    """
    options = run_options(options, scale, **changes)
    scale = options.scale
    ax = resolve_axis(options.axis)
    through_plane = options.through_plane
    tile, batch_size, tile_overlap = options.tile, options.batch, options.tile_overlap
    ensemble = options.self_ensemble or 1
    dtype = np.dtype(np.float32 if options.out_dtype is None else options.out_dtype)
    network.eval()
    arbitrary = _check_network(network, scale, through_plane)
    dev = resolve_device(options.device)
    if dev.type == "cpu":
        keep_freed_memory()
    squeeze = array.ndim == 3
    vol = array[None] if squeeze else array
    if vol.ndim != 4:
        raise ConfigurationError(f"expected a volume (I, J, K) or (C, I, J, K), got shape {tuple(array.shape)}")
    if isinstance(vol, torch.Tensor):
        vol = vol.detach().cpu().numpy()
    vol = np.asarray(vol)
    norm = _as_normalization(intensity)
    if norm is not None:
        norm = norm.fit(vol)

    slice_ax, row_ax, col_ax = slice_layout(ax, through_plane, vol.shape[1:])
    out_spatial = output_spatial_shape(vol.shape[1:], scale, ax, through_plane)
    if arbitrary:
        # the effective scale round(n*s)/n of each axis: the samples then lie where the geometry says (voxel-corner
        # box kept, rescaled_geometry); the nominal s would shift them by up to half an input voxel when n*s is
        # not an integer (7 x 1.5 -> 10 voxels: the last one would sit 0.28 input voxels off)
        n_row, n_col = max(1, vol.shape[1 + row_ax]), max(1, vol.shape[1 + col_ax])
        pair = (out_spatial[row_ax] / n_row, out_spatial[col_ax] / n_col)
    else:
        pair = (scale, scale)
    scale_arg = pair if arbitrary else None
    channels = vol.shape[0]
    net_in = _network_in_channels(network)
    per_channel = channels > 1 and net_in == 1
    if net_in is not None and not per_channel and net_in != channels:
        raise ConfigurationError(f"the network takes {net_in} channels, the image has {channels}")

    # view with (slice, C, row, col) order: slices are read from and written to it
    order = (1 + slice_ax, 0, 1 + row_ax, 1 + col_ax)
    src = np.transpose(vol, order)
    # NHWC: oneDNN (CPU) and cuDNN (CUDA, AMP) convolutions run 2-3x faster than with NCHW (benchmarks/RESULTS.md)
    network.to(dev, memory_format=torch.channels_last)
    learned = any(True for _ in network.parameters())
    autocast_dtype = resolve_precision(options.precision, dev, learned)
    dihedral_transforms(ensemble)  # refuse a bad size before any work
    runner = _Runner(network, scale_arg, arbitrary, dev, tile, int(tile_overlap), autocast_dtype, ensemble)
    n_slices = src.shape[0]
    if n_slices == 0:  # an empty axis: nothing to run, the shape is still defined
        out = np.empty((channels, *out_spatial), dtype=dtype)
        return out[0] if squeeze and channels == 1 else out

    if batch_size is None:
        # the network's bytes per pixel and output channels, from one call on a small probe
        h, w = src.shape[2], src.shape[3]
        probe = torch.zeros(1, 1 if per_channel else channels, min(h, PROBE_SIDE), min(w, PROBE_SIDE))
        peak, net_out = _probe(runner, probe, pair, learned)
        calls = channels if per_channel else 1  # network calls per slice
        out_bytes = int(np.prod(out_spatial)) * net_out * calls * dtype.itemsize
        tile, batch_size = _plan(
            runner, RESIDENT_PER_COUNTED_BYTE * calls * peak / probe[0, 0].numel(), (h, w), channels,
            net_out * calls, pair, dtype,
            n_slices, vol.nbytes, out_bytes, options.memory_limit, int(tile_overlap), tile,
        )
        runner.tile = runner.initial_tile = tile
    logger.debug("batches of %d slice(s), tile %s", batch_size, runner.tile)
    if learned:
        precision = "fp32" if autocast_dtype is None else str(autocast_dtype).removeprefix("torch.")
        logger.info("network on %s in %s", device_name(dev), precision)
    out: np.ndarray | None = None
    dst: np.ndarray | None = None

    def store(s0: int, y: torch.Tensor, excess: torch.Tensor | None, floor: torch.Tensor | None) -> None:
        if norm is not None:
            y = norm.inverse(y)
        if excess is not None:
            # intensities the window clipped come back through bicubic (IntensityNormalization.excess); bicubic is
            # linear, so this equals bicubic(x) - bicubic(clip(x)) and is zero wherever the input is in the window
            y = y + imresize(excess, None, output_shape=y.shape[-2:])
        if floor is not None:
            y = torch.maximum(y, floor if floor.shape[1] == y.shape[1] else floor.amin(dim=1, keepdim=True))
        dst[s0 : s0 + y.shape[0]] = cast_to_dtype(y.numpy(), dtype)

    # one writer thread: the inverse normalisation, the cast and the store of a batch overlap the next network call
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rmisr-store") as writer, _SliceProgress(
        progress, n_slices
    ) as bar:
        pending: Future | None = None
        for s0 in range(0, n_slices, batch_size):
            chunk = np.ascontiguousarray(src[s0 : s0 + batch_size], dtype=np.float32)
            x = torch.from_numpy(chunk)
            # no output below the lowest input value of its slice (and channel): CT padding, MR magnitude >= 0, a
            # constant slice stays constant; sharpening overshoot below that is an artefact, not a finding
            floor = x.amin(dim=(2, 3), keepdim=True) if options.input_floor else None
            excess = None
            if norm is not None:
                excess = norm.excess(x)
                x = norm.forward(x)
            n = x.shape[0]
            if per_channel:
                x = x.reshape(n * channels, 1, *x.shape[2:])
            y = runner(x, pair)
            if per_channel:
                y = y.reshape(n, channels * y.shape[1], *y.shape[2:])
            if excess is not None and excess.shape[1] != y.shape[1]:
                excess = None  # e.g. RGB in, grey out: no voxel-wise correspondence of channels
            if out is None:
                out = _allocate((y.shape[1], *out_spatial), dtype, memmap_threshold)
                dst = np.transpose(out, order)
            if pending is not None:
                pending.result()
                bar.update(batch_size)
            pending = writer.submit(store, s0, y, excess, floor)
        pending.result()
        bar.update(n)
    assert out is not None
    return out[0] if squeeze and out.shape[0] == 1 else out


class _SliceProgress:
    """Slices stored so far, reported to a tqdm bar (``progress`` a bool) or to ``progress(done, total)``."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.callback = progress if callable(progress) else None
        self.bar = tqdm(total=total, desc="super-resolution", unit="slice", disable=not progress or
                        self.callback is not None, leave=False)
        self.done, self.total = 0, total

    def __enter__(self) -> _SliceProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if self.callback is not None:
            self.callback(self.done, self.total)


# (network structure, probe shape, scale pair, device, autocast) -> (peak bytes, output channels) of the probe call
_PROBES: dict[tuple, tuple[int, int]] = {}


def _probe(runner: _Runner, probe: torch.Tensor, pair: tuple[float, float], learned: bool) -> tuple[int, int]:
    """``(peak bytes, output channels)`` of one network call on ``probe``
    (:func:`~rmisr_monai.inference.tiling.forward_peak_bytes`), remembered for networks of the same structure: the
    first call costs ~0.8 s for RMISR-BL (mostly one-off kernel set-up for the probe's shapes), so a batch of
    volumes pays it once, not per volume. ``learned``: the network has parameters; interpolators (none) have
    nothing to remember and nothing costly to probe."""
    net = runner.net
    if not learned:
        peak, y = forward_peak_bytes(runner._forward, probe)
        return peak, int(y.shape[1])
    structure = tuple((name, tuple(t.shape), t.dtype) for name, t in net.state_dict().items())
    key = (repr(net), structure, tuple(probe.shape), pair, runner.device.type, runner.autocast_dtype, runner.ensemble)
    if key not in _PROBES:
        peak, y = forward_peak_bytes(runner._forward, probe)
        _PROBES[key] = (peak, int(y.shape[1]))
    return _PROBES[key]


def _plan(
    runner: _Runner,
    network: float,
    hw: tuple[int, int],
    channels: int,
    out_channels: int,
    pair: tuple[float, float],
    dtype: np.dtype,
    n_slices: int,
    input_bytes: int,
    output_bytes: int,
    memory_limit: int | None,
    overlap: int,
    tile: int | None,
) -> tuple[int | None, int]:
    """``(tile, batch)`` from the memory budget: the limit (default: the peak-RSS target :func:`default_memory_limit`
    raised towards half the free memory, at most 2 GiB above it, :func:`~rmisr_monai.inference.tiling.
    memory_limit_from_free`: whole slices whenever they fit, since windows of a network with global statistics cost
    several passes), less the process base (:data:`PROCESS_BASE_BYTES`), the input, the output and a margin. A slice
    costs ``network`` bytes per input pixel plus the engine's buffers (the float32 input and its normalised copy,
    the stitched float32 output, its restored copy and the cast; two batches of output are alive while the writer
    thread stores one). A given ``tile`` is kept and only the batch is chosen (windows of a batch run together)."""
    target = default_memory_limit(input_bytes, output_bytes)
    limit = memory_limit_from_free(target) if memory_limit is None else int(memory_limit)
    budget = limit - PROCESS_BASE_BYTES - input_bytes - output_bytes - MEMORY_MARGIN_BYTES
    area = pair[0] * pair[1]
    engine = channels * 4 * 2 + 2 * out_channels * area * (4 * 2 + dtype.itemsize)
    h, w = hw
    max_batch = MAX_AUTO_BATCH.get(runner.device.type, 1)
    window = min(tile, h) * min(tile, w) if tile is not None else h * w
    if runner.device.type == "cpu":
        max_batch = max(1, min(max_batch, CPU_CALL_PIXELS // max(1, window)))
    if runner.device.type == "cuda":  # activations live on the GPU; the host holds the engine's buffers
        free = 0.8 * torch.cuda.mem_get_info(runner.device)[0]
        if tile is None:
            tile, batch = plan_tiles(h, w, n_slices, network, free, max_batch, overlap)
        else:
            batch = int(max(1, min(max_batch, n_slices, free // (network * window))))
        host_batch = max(1, int(budget // max(1.0, engine * h * w)))
        return tile, max(1, min(batch, host_batch))
    if tile is not None:
        per_window = network * window + engine * h * w
        return tile, int(max(1, min(max_batch, n_slices, budget // per_window)))
    tile, batch = plan_tiles(h, w, n_slices, network + engine, budget, max_batch, overlap)
    if tile is not None:
        rows, cols = tile_sides(tile)
        logger.info(
            "slices of %dx%d processed in windows of %s x %s pixels to stay within %.1f GiB",
            h, w, rows, cols or w, limit / GIB,
        )
    return tile, batch


def _replace_volume(volume, **changes):
    if dataclasses.is_dataclass(volume):
        return dataclasses.replace(volume, **changes)
    raise TypeError(f"expected an rmisr_monai.io.volume.Volume, got {type(volume).__name__}")


def upscale_volume(
    volume,
    network: nn.Module,
    scale: float | None = None,
    *,
    options: RunOptions | Mapping[str, Any] | None = None,
    intensity: IntensityNormalization | Mapping[str, Any] | None = None,
    progress: Progress = True,
    **changes: Any,
):
    """Super-resolve a :class:`~rmisr_monai.io.volume.Volume`; returns a new ``Volume`` (array of
    ``options.out_dtype``, default float32; geometry from :func:`~rmisr_monai.io.geometry.rescaled_geometry`; other
    fields kept). Arguments as for :func:`upscale_array`; pass the dtype that will
    be written as ``out_dtype`` to keep the peak memory at input + output as stored.

    A 4D volume (time series, echoes, diffusion weightings: ``fourth_axis``) is upscaled 3D volume by 3D volume
    with the same options (intensity normalisation fitted per 3D volume, as for a 3D input) into one preallocated
    ``(I', J', K', T)`` array; the fourth axis (its step, unit, offset, values) is kept unchanged and ``progress``
    counts the slices of all of them.
    """
    from rmisr_monai.io.geometry import rescaled_geometry

    options = run_options(options, scale, **changes)
    frames = volume.frames() if getattr(volume, "fourth_axis", None) is not None else [volume]
    out = None
    for t, frame in enumerate(frames):
        report = progress
        if callable(progress):  # every frame has the same number of slices

            def report(done: int, total: int, t: int = t) -> None:
                progress(t * total + done, len(frames) * total)

        array = upscale_array(
            frame.array, network, options=options, intensity=intensity, progress=report
        )
        if len(frames) == 1:
            out = array
        else:
            if out is None:
                out = np.empty((*array.shape, len(frames)), dtype=array.dtype)
            out[..., t] = array
    in_shape = tuple(volume.array.shape[:3])
    out_shape = tuple(out.shape[:3]) if len(frames) > 1 else tuple(out.shape[-3:])
    geometry = rescaled_geometry(volume.geometry, in_shape, out_shape)
    return _replace_volume(volume, array=out, geometry=geometry)
