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
import functools
import logging
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from rmisr_monai.errors import ConfigurationError, RmisrError
from rmisr_monai.inference.allocator import keep_freed_memory
from rmisr_monai.inference.ensemble import dihedral_transforms, self_ensemble
from rmisr_monai.inference.tiling import (
    DEFAULT_TILE_OVERLAP,
    forward_peak_bytes,
    halved_tile,
    plan_tiles,
    run_tiled,
    scaled_length,
    tile_sides,
)
from rmisr_monai.io.write import cast_to_dtype
from rmisr_monai.ops.resize import imresize
from rmisr_monai.transforms.intensity import IntensityNormalization

__all__ = [
    "upscale_volume",
    "upscale_array",
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
AXIS_NAMES = {"x": 0, "y": 1, "z": 2, "i": 0, "j": 1, "k": 2}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
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


def resolve_axis(axis: str | int) -> int:
    """``"x"|"y"|"z"`` (or ``"i"|"j"|"k"``, or ``0|1|2``, also as strings) -> index axis of the ``(i, j, k)`` array."""
    if isinstance(axis, str):
        key = axis.strip().lower()
        if key in AXIS_NAMES:
            return AXIS_NAMES[key]
        if key in ("0", "1", "2"):
            return int(key)
    elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and 0 <= int(axis) <= 2:
        return int(axis)
    raise ConfigurationError(f"axis must be x, y, z or 0, 1, 2, got {axis!r}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA -> ``ConfigurationError``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigurationError(f"unknown device {device!r}; use auto, cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return dev


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


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16 in ``/proc/cpuinfo``; ``False`` where it
    cannot be read). Elsewhere oneDNN emulates bf16 convolutions, far slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(
    precision: str,
    device: torch.device,
    intensity: IntensityNormalization | None = None,
    amp: bool = True,
    learned: bool = True,
    hounsfield: bool = False,
) -> torch.dtype | None:
    """The autocast dtype of the network call, or ``None`` for fp32.

    ``"fp32"``: ``None``. ``"bf16"`` / ``"fp16"``: that dtype on any device. ``"auto"``: fp32 for a network without
    parameters (``learned=False``: the interpolators are references, and cheap); else float16 on CUDA (unless
    ``amp=False``); bfloat16 on a CPU with native bf16 (:func:`cpu_has_fast_bf16`) unless the input is in
    Hounsfield units: ``intensity`` is a CT window, or ``hounsfield`` (a CT input under any recipe, e.g. the
    percentile-normalised CT defaults): bf16's 8-bit mantissa gave 22-33 HU maximum errors on CT slices
    (benchmarks/RESULTS.md §7, §13; float16 2.9 HU); fp32 elsewhere.
    """
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return _AUTOCAST_DTYPES.get(precision)
    if not learned:
        return None
    if device.type == "cuda":
        return torch.float16 if amp else None
    in_hounsfield = hounsfield or (intensity is not None and intensity.kind == "ct")
    if device.type == "cpu" and cpu_has_fast_bf16() and not in_hounsfield:
        return torch.bfloat16
    return None


def default_memory_limit(input_bytes: int, output_bytes: int) -> int:
    """Peak resident memory allowed by default: ``1.5 x (input + output in their stored dtypes) + 1 GiB``."""
    return int(1.5 * (input_bytes + output_bytes)) + GIB


def _check_network(net: nn.Module, scale: float, through_plane: bool) -> bool:
    """Validate ``scale`` against the network; returns whether ``forward`` takes a scale."""
    arbitrary = bool(getattr(net, "arbitrary_scale", False))
    if through_plane and not arbitrary:
        raise ConfigurationError(
            "through-plane upscaling needs an arbitrary-scale network (it runs the network with (s, 1.0)); "
            "use a network built with upsampler='meta', or --model bicubic"
        )
    if not (np.isfinite(scale) and scale > 0):
        raise ConfigurationError(f"scale must be finite and > 0, got {scale!r}")
    if not arbitrary:
        fixed = getattr(net, "scale", None)
        fixed = fixed[0] if isinstance(fixed, (tuple, list)) else fixed
        if fixed is not None and abs(float(fixed) - scale) > 1e-9:
            raise ConfigurationError(
                f"this network has the fixed scale {float(fixed):g} (sub-pixel upsampler), got scale {scale:g}; "
                "use its scale, a meta network, or --model bicubic"
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

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, memory_format=torch.channels_last, non_blocking=True)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            y = self_ensemble(self._network, x, self.ensemble, self.scale_arg)
        return y.contiguous()

    def _network(self, x: torch.Tensor, pair: tuple[float, float] | None) -> torch.Tensor:
        y = self.net(x, pair) if self.arbitrary else self.net(x)
        if isinstance(y, (tuple, list)):  # defensive: training-mode dual outputs; the SR image is first
            y = y[0]
        return y

    def __call__(self, x: torch.Tensor, pair: tuple[float, float]) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        while True:
            try:
                out = run_tiled(self._forward, x, pair, self.tile, self.overlap)
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
                    f"out of memory even with tile {self.tile} on the CPU; use a smaller --tile or --batch"
                ) from None


def upscale_array(
    array: np.ndarray | torch.Tensor,
    network: nn.Module,
    scale: float,
    *,
    axis: str | int = "z",
    through_plane: bool = False,
    intensity: IntensityNormalization | Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    batch_size: int | None = None,
    amp: bool = True,
    progress: bool = True,
    memmap_threshold: int = MEMMAP_THRESHOLD_BYTES,
    out_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    memory_limit: int | None = None,
    modality: str | None = None,
    ensemble: int = 1,
) -> np.ndarray:
    """Upscale a channel-first volume ``(C, I, J, K)`` (or ``(I, J, K)``) slice by slice; float32 result.

    Args:
        array: the volume, numpy or torch (any dtype; the network sees ``float32``).
        network: a 2D SR network (network contract); put in eval mode here. Subpixel networks must be at ``scale``.
        scale: factor of each upscaled axis (integer or fractional for arbitrary-scale networks).
        axis: the slice axis (in-plane) or the thick axis (through-plane): ``"x"|"y"|"z"`` or ``0|1|2``.
        through_plane: upscale only ``axis`` with ``(s, 1.0)`` (arbitrary-scale networks only).
        intensity: the normalisation to ``[0, 1]`` (``IntensityNormalization`` or its dict, e.g. a checkpoint's
            ``"intensity"``); fitted on the whole volume (MR percentiles), applied before the network and undone
            after. ``None``: intensities go to the network as they are (right for the non-learned interpolators).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``.
        tile: window side in input pixels for large slices (``None``: whole slices when ``batch_size`` is given, else
            chosen with the batch from the memory budget: whole slices when one fits).
        tile_overlap: context pixels kept around each window's core; tiled equals untiled when it covers the
            network's receptive radius (see :mod:`~rmisr_monai.inference.tiling` for networks with global pooling).
        batch_size: slices per network call (``None``: from the memory budget, at most ``MAX_AUTO_BATCH``).
        amp: ``False`` turns off the float16 autocast that ``precision="auto"`` uses on CUDA.
        progress: show a tqdm progress bar over slices.
        memmap_threshold: outputs above this many bytes are held in an unlinked temporary memory map.
        out_dtype: dtype of the result (default ``float32``); each batch of slices is cast on the way in by
            :func:`rmisr_monai.io.write.cast_to_dtype` (integers: clipped, rounded half to even), so a volume
            written as int16 never exists in float32 as a whole.
        precision: ``"auto"`` (default, :func:`resolve_precision`), ``"fp32"`` (the reference path), ``"bf16"`` or
            ``"fp16"`` (autocast to that dtype on any device).
        modality: the input's modality (``Volume.modality``; :func:`upscale_volume` passes it): ``"CT"`` keeps
            ``"auto"`` off bf16 whatever the intensity recipe (:func:`resolve_precision`).
        memory_limit: peak resident bytes the automatic batch and tile aim at (default
            :func:`default_memory_limit` of this input and output).
        ensemble: geometric self-ensemble, the mean over 1 (off), 2, 4 or 8 flipped and rotated copies of each
            window (:mod:`rmisr_monai.inference.ensemble`): ``n`` times the network's work.

    Returns:
        Array ``(C', I', J', K')`` (``(I', J', K')`` for a 3D input), ``C'`` the network's output channels.

    Raises:
        ConfigurationError: bad axis/scale/device/tile, or a network that cannot do the requested mode.
    """
    scale = float(scale)
    ax = resolve_axis(axis)
    dtype = np.dtype(np.float32 if out_dtype is None else out_dtype)
    if batch_size is not None and batch_size < 1:
        raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
    if tile is not None and tile < 1:
        raise ConfigurationError(f"tile must be >= 1, got {tile}")
    network.eval()
    arbitrary = _check_network(network, scale, through_plane)
    dev = resolve_device(device)
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
    autocast_dtype = resolve_precision(precision, dev, norm, amp, learned, hounsfield=modality == "CT")
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
            n_slices, vol.nbytes, out_bytes, memory_limit, int(tile_overlap), tile,
        )
        runner.tile = runner.initial_tile = tile
    logger.debug("batches of %d slice(s), tile %s, autocast %s", batch_size, runner.tile, autocast_dtype)
    out: np.ndarray | None = None
    dst: np.ndarray | None = None

    def store(s0: int, y: torch.Tensor, excess: torch.Tensor | None) -> None:
        if norm is not None:
            y = norm.inverse(y)
        if excess is not None:
            # intensities the window clipped come back through bicubic (IntensityNormalization.excess); bicubic is
            # linear, so this equals bicubic(x) - bicubic(clip(x)) and is zero wherever the input is in the window
            y = y + imresize(excess, None, output_shape=y.shape[-2:])
        dst[s0 : s0 + y.shape[0]] = cast_to_dtype(y.numpy(), dtype)

    # one writer thread: the inverse normalisation, the cast and the store of a batch overlap the next network call
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rmisr-store") as writer, tqdm(
        total=n_slices, desc="super-resolution", unit="slice", disable=not progress, leave=False
    ) as bar:
        pending: Future | None = None
        for s0 in range(0, n_slices, batch_size):
            chunk = np.ascontiguousarray(src[s0 : s0 + batch_size], dtype=np.float32)
            x = torch.from_numpy(chunk)
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
            pending = writer.submit(store, s0, y, excess)
        pending.result()
        bar.update(n)
    assert out is not None
    return out[0] if squeeze and out.shape[0] == 1 else out


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
    """``(tile, batch)`` from the memory budget: the limit, less the process base (:data:`PROCESS_BASE_BYTES`), the
    input, the output and a margin. A slice costs ``network`` bytes per input pixel plus the engine's
    buffers (the float32 input and its normalised copy, the stitched float32 output, its restored copy and the
    cast; two batches of output are alive while the writer thread stores one). A given ``tile`` is kept and only
    the batch is chosen (windows of a batch run together)."""
    limit = default_memory_limit(input_bytes, output_bytes) if memory_limit is None else int(memory_limit)
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


def upscale_volume(volume, network: nn.Module, scale: float, **options: Any):
    """Super-resolve a :class:`~rmisr_monai.io.volume.Volume`; returns a new ``Volume`` (array of ``out_dtype``,
    default float32; geometry from :func:`~rmisr_monai.io.geometry.rescaled_geometry`; other fields kept).
    ``network``, ``scale`` and the keyword-only ``options`` (names and defaults) are those of :func:`upscale_array`,
    which receives them unchanged; pass the dtype that will be written as ``out_dtype`` to keep the peak memory at
    input + output as stored.
    """
    from rmisr_monai.io.geometry import rescaled_geometry

    if getattr(volume, "fourth_axis", None) is not None:  # 4D: each 3D volume comes back through here
        from rmisr_monai.inference.series import upscale_series

        return upscale_series(volume, network, scale, **options)
    array = volume.array
    out = upscale_array(array, network, scale, **{"modality": volume.modality, **options})
    in_shape = tuple(array.shape[-3:])
    out_shape = tuple(out.shape[-3:])
    geometry = rescaled_geometry(volume.geometry, in_shape, out_shape)
    return _replace_volume(volume, array=out, geometry=geometry)
