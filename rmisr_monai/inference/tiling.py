"""Overlapping tiles of a 2D slice batch whose network output is larger than its input, stitched without blending.

Why not MONAI's :func:`~monai.inferers.sliding_window_inference` (1.6.1, ``monai/inferers/utils.py``): it accepts
outputs larger than the window, but

* it *averages* overlapping windows (``mode="constant"``/``"gaussian"``), so the border artefacts of every window
  (zero padding inside the network, within its receptive field of the window edge) leak into the result and a tiled
  result is never equal to the untiled one;
* it places a window's output at ``int(start * zoom)`` and sizes the result ``int(size * zoom)``: at a fractional
  scale (1.5, 2.5) the windows land half a pixel off and the size differs from the contract's ``round(size * s)``.

Here each window is cut back to its *core* (the part farther than ``overlap`` input pixels from a window edge that is
not an image edge); cores tile the slice exactly, so with ``overlap`` >= the network's receptive radius a tiled result
equals the untiled one. At a fractional scale ``s = p/q`` every window starts at a multiple of ``q`` input pixels, so
that its output starts at the integer ``start * s`` and samples the same positions as the whole slice would.

Networks with *global* statistics (IMDN's CCA and RMISR's ICCA pool mean/std/entropy over the whole slice) would see
another pool in every window (a 512^2 CT slice in three bands differed from the whole slice by up to 107 HU).
:func:`run_tiled_exact` gives them the whole-slice result. Design: the statistic of attention layer ``k`` depends on
the exact features of every layer before it over the whole slice, and those depend on the statistics of layers
``< k``; the statistics are mergeable sums (:meth:`~rmisr_monai.networks.blocks.attention.ContrastChannelAttention.
partial_statistics`). So pass ``k`` runs every window up to layer ``k`` only (the forward is stopped there), with the
statistics of layers ``< k`` already fixed to their whole-slice values, and adds up layer ``k``'s sums over the
window's *core* (the cores partition the slice, and with ``overlap`` >= the receptive radius a core's features equal
the whole slice's); the last pass runs the windows to the end with every statistic fixed. Memory stays that of one
window; the work is ``1 + sum_k (share of the network before layer k)`` times the tiled work (RMISR-BL, four ICCA:
about 3.3x; IMDN, six CCA: about 4.5x). Keeping the features of the whole slice between layers instead would cost
one pass but hold several full-size maps (RMISR-BL: the block input, its fused map, the head and the tail's sum, 1 KiB
per LR pixel of the 1.35 KiB the whole-slice call holds), and it needs each network's structure. The exact windows
are therefore a fallback: the engine runs whole slices whenever its memory budget allows
(:func:`memory_limit_from_free`: the budget follows the free memory).

Constant windows (:func:`constant_window_output`): a window whose input is constant to within ``skip_range`` in every
channel (scanner padding, air, an empty MR slice) gets the bicubic result (equal to the whole-slice bicubic in its
core), without the network. The network output there differs from bicubic by a bounded amount (``tests/inference/
test_exact_tiling.py`` measures it on real CT and MR).

Memory: :func:`forward_peak_bytes` measures what one network call holds at its peak (every tensor it creates, tracked
through ``TorchDispatchMode``, on a small probe; convolutional networks scale with the pixels), and :func:`plan_tiles`
picks the largest batch of whole slices, else the largest tile, whose estimate fits a byte budget.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rmisr_monai.core.axes import scaled_length
from rmisr_monai.core.options import DEFAULT_TILE_OVERLAP
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.io.limits import available_memory
from rmisr_monai.networks.blocks.attention import ContrastChannelAttention
from rmisr_monai.ops.resize import imresize

__all__ = [
    "DEFAULT_TILE_OVERLAP",
    "Window", "axis_windows", "scale_alignment", "scaled_length", "run_tiled", "halved_tile", "MAX_ALIGNMENT",
    "forward_peak_bytes", "plan_tiles", "tile_sides", "MIN_CORE", "MIN_PLANNED_CORE", "global_statistics_layers",
    "run_tiled_exact", "constant_window_output", "SKIP_RANGE", "memory_limit_from_free", "FREE_MEMORY_SHARE",
    "MAX_EXTRA_BYTES"]

# largest denominator q of a fractional scale p/q for which windows are aligned (1.5 -> 2, 1.25 -> 4, 2.4 -> 5)
MAX_ALIGNMENT = 64
_ALIGN_TOL = 1e-6
# smallest window core an out-of-memory retry halves the tile down to
MIN_CORE = 8
# smallest window core a memory plan chooses: smaller cores spend most of the time on the overlap
MIN_PLANNED_CORE = 128

logger = logging.getLogger(__name__)


def scale_alignment(s: float) -> int | None:
    """Smallest ``q <= MAX_ALIGNMENT`` with ``q * s`` an *even* integer, or ``None`` (then that axis is not tiled).

    Integer: a window starting at a multiple of ``q`` has its output at an integer offset. Even: Python's ``round``
    rounds halves to even, so ``round(n*s) - a*s == round((n - a)*s)`` only for even ``a*s`` (37 x 1.5 = 55.5 -> 56,
    but a window of the last 7 rows gives round(10.5) = 10).
    """
    for q in range(1, MAX_ALIGNMENT + 1):
        qs = q * s
        if abs(qs - round(qs)) < _ALIGN_TOL and round(qs) % 2 == 0:
            return q
    return None


@dataclass(frozen=True)
class Window:
    """One window along one axis: input ``[start, stop)``; its core output ``[out_start, out_stop)`` begins
    ``crop`` pixels into the window's output; its core input is ``[core_start, core_stop)`` (the cores partition the
    axis)."""

    start: int
    stop: int
    out_start: int
    out_stop: int
    crop: int
    core_start: int
    core_stop: int


def axis_windows(n: int, s: float, tile: int | None, overlap: int) -> list[Window]:
    """Windows along an axis of ``n`` input pixels for scale ``s``: window size ``tile`` (input pixels, including the
    overlap on both sides), cores of ``tile - 2*overlap`` rounded down to the scale's alignment ``q`` (at least
    ``q``; window starts are multiples of ``q``, so a window may exceed ``tile`` by up to ``2q - 2`` pixels).

    ``tile=None``, ``tile >= n`` or a scale without alignment give one window over the whole axis.
    """
    n_out = scaled_length(n, s)
    q = scale_alignment(s)
    if tile is None or tile >= n or q is None:
        if tile is not None and tile < n and q is None:
            logger.warning("scale %g has no small rational form; slices are not tiled along that axis", s)
        return [Window(0, n, 0, n_out, 0, 0, n)]
    if overlap < 0:
        raise ConfigurationError(f"tile_overlap must be >= 0, got {overlap}")
    if tile <= 2 * overlap:
        raise ConfigurationError(
            f"tile {tile} leaves no core after an overlap of {overlap} on both sides; use a tile larger than "
            f"{2 * overlap} or a smaller tile_overlap"
        )
    # the core is a multiple of the alignment; at least one step (the window then exceeds ``tile`` a little)
    core = max(q, (tile - 2 * overlap) // q * q)
    windows = []
    for c0 in range(0, n, core):
        c1 = min(c0 + core, n)
        start = max(0, c0 - overlap) // q * q
        stop = min(n, c1 + overlap)
        out0 = int(round(c0 * s))
        out1 = n_out if c1 == n else int(round(c1 * s))
        windows.append(Window(start, stop, out0, out1, out0 - int(round(start * s)), c0, c1))
    return windows


def _windows(h: int, w: int, scale: tuple[float, float], tile, overlap: int) -> list[tuple[Window, Window]]:
    tile_rows, tile_cols = tile_sides(tile)
    rows = axis_windows(h, scale[0], tile_rows, overlap)
    cols = axis_windows(w, scale[1], tile_cols, overlap)
    return [(r, c) for r in rows for c in cols]


def _place(out: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, r: Window, c: Window, scale) -> torch.Tensor:
    """Copy the core of window ``(r, c)``'s output ``y`` into ``out`` (allocated on ``x``'s device at first)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if out is None:
        out = torch.empty(
            (*x.shape[:-3], y.shape[-3], scaled_length(h, scale[0]), scaled_length(w, scale[1])), dtype=y.dtype,
            device=x.device,
        )
    ry, cx = r.out_stop - r.out_start, c.out_stop - c.out_start
    if y.shape[-2] < r.crop + ry or y.shape[-1] < c.crop + cx:
        raise ConfigurationError(
            f"network output {tuple(y.shape[-2:])} for input {(r.stop - r.start, c.stop - c.start)} is "
            f"smaller than scale {scale} implies"
        )
    out[..., r.out_start : r.out_stop, c.out_start : c.out_stop] = y[
        ..., r.crop : r.crop + ry, c.crop : c.crop + cx
    ].to(out.device, out.dtype)
    return out


# a window whose input spans at most this much of the network's [0, 1] in every channel is constant
# (constant_window_output). 1/1024 of the range: ~2.5 HU for a CT normalised over its 0.5-99.5 percentiles
# (-1024..1500 HU), below the ~10-20 HU noise of air, so only padding, clipped air and empty background qualify.
SKIP_RANGE = 1.0 / 1024


def constant_window_output(
    x: torch.Tensor, scale: tuple[float, float], skip_range: float | None
) -> torch.Tensor | None:
    """The bicubic upscaling of window ``x`` ``(N, C, h, w)`` to ``(round(h*sy), round(w*sx))`` when every channel of
    every sample is constant to within ``skip_range`` (``max - min <= skip_range``), else ``None`` (also for
    ``skip_range=None``). Bicubic of a constant is that constant; within ``skip_range`` it stays within it."""
    if skip_range is None or x.numel() == 0:
        return None
    spread = x.amax(dim=(-2, -1)) - x.amin(dim=(-2, -1))
    if bool((spread > skip_range).any()):
        return None
    shape = (scaled_length(int(x.shape[-2]), scale[0]), scaled_length(int(x.shape[-1]), scale[1]))
    return imresize(x.float(), None, output_shape=shape)


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: tuple[float, float],
    tile: int | None,
    overlap: int,
    out: torch.Tensor | None = None,
    skip_range: float | None = None,
) -> torch.Tensor:
    """Apply ``forward`` (``(N, C, h, w) -> (N, C', round(h*sy), round(w*sx))``) to ``x`` window by window.

    Args:
        forward: the network call at ``scale`` (it may move data to another device; results are copied into ``out``).
        x: ``(N, C, H, W)``.
        scale: ``(sy, sx)``.
        tile: window side in input pixels (``None``: the whole slice, one call), or ``(rows, columns)`` with
            ``None`` for an axis taken whole (bands of full width: ``(rows, None)``).
        overlap: input pixels of context kept on each side of a window's core (>= the receptive radius).
        out: preallocated ``(N, C', round(H*sy), round(W*sx))`` result, else allocated on ``x``'s device.
        skip_range: constant windows (:func:`constant_window_output`) get bicubic instead of ``forward``
            (``None``: every window runs ``forward``; only for networks with ``C' == C``).

    Returns:
        The stitched result.
    """
    return _run_windows(forward, x, scale, _windows(int(x.shape[-2]), int(x.shape[-1]), scale, tile, overlap), out,
                        skip_range)


def _run_windows(forward, x, scale, windows, out, skip_range, before=None) -> torch.Tensor:
    """``forward`` (or bicubic for a constant window) on each window, placed into ``out``; ``before(r, c)`` first."""
    for r, c in windows:
        if before is not None:
            before(r, c)
        window = x[..., r.start : r.stop, c.start : c.stop]
        y = constant_window_output(window, scale, skip_range)
        out = _place(out, x, forward(window) if y is None else y, r, c, scale)
    assert out is not None
    return out


def global_statistics_layers(net: nn.Module) -> list[ContrastChannelAttention]:
    """The layers of ``net`` that pool statistics over the whole map (CCA, ICCA), in registration order."""
    return [m for m in net.modules() if isinstance(m, ContrastChannelAttention)]


class _Gathered(Exception):
    """Stops a forward pass once the layer whose statistics are being gathered has seen its input."""


@contextlib.contextmanager
def _statistics_hooks(layers: list[ContrastChannelAttention], hook) -> Iterator[None]:
    """Route each layer's ``statistic(x)`` through ``hook(layer, x)`` (an instance attribute that shadows the method;
    eager mode only, the class and its TorchScript form are untouched)."""
    try:
        for layer in layers:
            layer.statistic = (lambda layer: lambda feats: hook(layer, feats))(layer)
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("statistic", None)


def run_tiled_exact(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: tuple[float, float],
    tile: int | None,
    overlap: int,
    layers: list[ContrastChannelAttention],
    skip_range: float | None = None,
) -> torch.Tensor:
    """:func:`run_tiled` for a network with global statistics (``layers``, :func:`global_statistics_layers`): the
    result equals the whole-slice ``forward(x)`` within float32 rounding when ``overlap`` covers the receptive radius
    (module docstring: one pass per layer gathers its statistic over the window cores, then a last pass runs the
    windows with every statistic fixed). Each layer must be called once per forward, on a map of the window's size
    (the LR features). Constant windows (``skip_range``) are skipped in the last pass only, so the statistics stay
    those of the whole slice.
    """
    windows = _windows(int(x.shape[-2]), int(x.shape[-1]), scale, tile, overlap)
    if len(windows) == 1:
        return run_tiled(forward, x, scale, None, overlap, skip_range=skip_range)
    known: dict[int, torch.Tensor] = {}
    state: dict = {}

    def hook(layer: ContrastChannelAttention, feats: torch.Tensor) -> torch.Tensor:
        fixed = known.get(id(layer))
        if fixed is not None:
            return fixed.to(feats.device, feats.dtype)
        r, c = state["window"]
        if tuple(feats.shape[-2:]) != (r.stop - r.start, c.stop - c.start):
            raise ConfigurationError(
                f"a global-statistics layer sees a map of {tuple(feats.shape[-2:])} for a window of "
                f"{(r.stop - r.start, c.stop - c.start)}; exact tiles need it at the input's size"
            )
        if state.setdefault("layer", layer) is not layer:
            raise ConfigurationError("windows reached different global-statistics layers first")
        rows = slice(r.core_start - r.start, r.core_stop - r.start)
        core = feats[..., rows, c.core_start - c.start : c.core_stop - c.start]
        state["parts"].append(layer.partial_statistics(core).cpu())
        raise _Gathered

    with _statistics_hooks(layers, hook):
        for _ in range(len(layers) + 1):
            state["parts"] = []
            state.pop("layer", None)
            out = None
            for r, c in windows:
                state["window"] = (r, c)
                try:
                    y = forward(x[..., r.start : r.stop, c.start : c.stop])
                except _Gathered:
                    continue
                if "layer" in state:
                    raise ConfigurationError("windows reached different global-statistics layers first")
                out = _place(out, x, y, r, c, scale)
                break  # every statistic is known: the last pass
            if "layer" not in state:
                break
            known[id(state["layer"])] = state["layer"].merge_statistics(state["parts"])
        else:
            raise ConfigurationError("a global-statistics layer is called more than once per forward")
        # the last pass: the first window is done, the others follow with every statistic fixed
        return _run_windows(forward, x, scale, windows[1:], out, skip_range, lambda r, c: state.update(window=(r, c)))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tile_sides(tile: int | tuple[int | None, int | None] | None) -> tuple[int | None, int | None]:
    """``(rows, columns)`` window sides of a tile given as one side, a pair or ``None`` (``None``: axis whole)."""
    if isinstance(tile, tuple):
        return tile[0], tile[1]
    return tile, tile


def halved_tile(tile: int | tuple[int | None, int | None] | None, h: int, w: int, overlap: int) -> int | None:
    """Half of the current window's longer side (the whole slice when untiled) as a square window side, or ``None``
    when that leaves no core."""
    sides = [min(t, n) for t, n in zip(tile_sides(tile), (h, w)) if t is not None]
    current = max(sides) if sides else max(h, w)
    new = _ceil_div(current, 2)
    return new if new - 2 * overlap >= MIN_CORE else None


class _LiveBytes(TorchDispatchMode):
    """Bytes of the storages created by the operators run under it that are still referenced, and their maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, key: int, nbytes: int) -> None:
        count = self.refs[key] - 1
        if count:
            self.refs[key] = count
        else:
            del self.refs[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        inputs = {a.untyped_storage().data_ptr() for a in tensors}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if key not in self.refs:
                    if key in inputs:  # a view of, or in place on, a tensor made outside (input, weights)
                        continue
                    self.refs[key] = 0
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                self.refs[key] += 1
                weakref.finalize(t, self._release, key, nbytes)  # views share the storage: counted per tensor
        return out


def forward_peak_bytes(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[int, torch.Tensor]:
    """``(peak, forward(x))``: the peak bytes of the tensors that ``forward(x)`` creates and holds at once
    (activations and output; not ``x`` or the weights)."""
    with _LiveBytes() as tracker:
        y = forward(x)
    return tracker.peak, y


def plan_tiles(
    h: int, w: int, slices: int, bytes_per_pixel: float, budget: float, max_batch: int, overlap: int
) -> tuple[int | None, int]:
    """``(tile, batch)`` for ``slices`` slices of ``h x w`` input pixels within ``budget`` bytes, a batch costing
    ``bytes_per_pixel`` per input pixel of every window in it.

    Whole slices (``tile=None``) in batches of up to ``max_batch`` when one fits; else one slice at a time in bands
    of full width ``(rows, None)``, the tallest that fit, when they hold at least ``2 * overlap + MIN_PLANNED_CORE``
    rows (two bands of a 512^2 slice repeat 1.13x its pixels in their overlaps, four square windows 1.27x, and equal
    bands reuse one set of convolution kernels); else the largest square window that fits, at least
    ``2 * overlap + MIN_PLANNED_CORE`` (a budget too small for that is exceeded by that window rather than run at a
    fraction of the speed).
    """
    per_slice = bytes_per_pixel * h * w
    if per_slice <= budget:
        return None, int(max(1, min(max_batch, slices, budget // per_slice)))
    rows = int(max(budget, 0.0) // (bytes_per_pixel * w))
    if rows >= 2 * overlap + MIN_PLANNED_CORE:
        return (rows, None), 1
    side = int(math.sqrt(max(budget, 0.0) / bytes_per_pixel))
    return max(side, 2 * overlap + MIN_PLANNED_CORE), 1


# share of the memory available to this process (its resident size + MemAvailable) that the default budget may take
FREE_MEMORY_SHARE = 0.5
# most the default budget goes beyond the peak-RSS target it starts from (``engine.default_memory_limit``)
MAX_EXTRA_BYTES = 2 << 30


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return 0


def memory_limit_from_free(target: int, available: int | None = None, resident: int | None = None) -> int:
    """The default peak-memory budget from the free memory, bounded: ``FREE_MEMORY_SHARE`` of what this process can
    use (its resident size + ``MemAvailable``), but at least ``target`` (the engine's peak-RSS target,
    ``1.5 x (input + output) + 1 GiB``) and at most ``target + MAX_EXTRA_BYTES``; where the free memory is below
    ``target`` it is the free memory (the plan then tiles rather than swap). ``target`` where the system does not
    say (``available`` defaults to :func:`~rmisr_monai.io.limits.available_memory`, ``resident`` to this process's
    resident size).

    Why: a whole 512^2 slice of the 64-feature default holds ~0.6 GiB resident; under a fixed 1 GiB + 1.5x budget a
    small CT was cut into bands, whose exact result costs ~3x the work (:func:`run_tiled_exact`).
    """
    available = available_memory() if available is None else available
    if available is None:
        return int(target)
    usable = available + (_resident_bytes() if resident is None else resident)
    if usable < target:
        return int(usable)
    return int(min(max(target, FREE_MEMORY_SHARE * usable), target + MAX_EXTRA_BYTES))
