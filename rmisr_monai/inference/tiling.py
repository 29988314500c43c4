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

Networks with *global* operators (IMDN's CCA and RMISR's ICCA pool mean/std/entropy over the whole slice) see a
different pool per tile, so their tiled result differs slightly from the untiled one whatever the overlap.

Memory: :func:`forward_peak_bytes` measures what one network call holds at its peak (every tensor it creates, tracked
through ``TorchDispatchMode``, on a small probe; convolutional networks scale with the pixels), and :func:`plan_tiles`
picks the largest batch of whole slices, else the largest tile, whose estimate fits a byte budget.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "DEFAULT_TILE_OVERLAP",
    "Window", "axis_windows", "scale_alignment", "scaled_length", "run_tiled", "halved_tile", "MAX_ALIGNMENT",
    "forward_peak_bytes", "plan_tiles", "tile_sides", "MIN_CORE", "MIN_PLANNED_CORE"]

# largest denominator q of a fractional scale p/q for which windows are aligned (1.5 -> 2, 1.25 -> 4, 2.4 -> 5)
MAX_ALIGNMENT = 64
_ALIGN_TOL = 1e-6
# input pixels of context on each side of a tile's core; >= the receptive radius of SRCNN (6), FSRCNN (~4+), VDSR-20
# (~11 LR pixels at x2) and EDSR-baseline (34 3x3 convs: 34 is not covered; use tile_overlap=40 for it).
DEFAULT_TILE_OVERLAP = 32
# smallest window core an out-of-memory retry halves the tile down to
MIN_CORE = 8
# smallest window core a memory plan chooses: smaller cores spend most of the time on the overlap
MIN_PLANNED_CORE = 128

logger = logging.getLogger(__name__)


def scaled_length(n: int, s: float) -> int:
    """Output length of an axis of ``n`` pixels upscaled by ``s``: ``round(n * s)`` (network contract)."""
    return int(round(n * s))


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
    ``crop`` pixels into the window's output."""

    start: int
    stop: int
    out_start: int
    out_stop: int
    crop: int


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
        return [Window(0, n, 0, n_out, 0)]
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
        windows.append(Window(start, stop, out0, out1, out0 - int(round(start * s))))
    return windows


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: tuple[float, float],
    tile: int | None,
    overlap: int,
    out: torch.Tensor | None = None,
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

    Returns:
        The stitched result.
    """
    sy, sx = scale
    h, w = int(x.shape[-2]), int(x.shape[-1])
    tile_rows, tile_cols = tile_sides(tile)
    rows, cols = axis_windows(h, sy, tile_rows, overlap), axis_windows(w, sx, tile_cols, overlap)
    for r in rows:
        for c in cols:
            y = forward(x[..., r.start : r.stop, c.start : c.stop])
            if out is None:
                out = torch.empty(
                    (*x.shape[:-3], y.shape[-3], scaled_length(h, sy), scaled_length(w, sx)), dtype=y.dtype,
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
    assert out is not None
    return out


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
