"""Per-scan adaptation: fine-tune a copy of an SR network on pairs made from the scan it is about to upscale.

No high-resolution data exists for a user's scan, but the scan itself holds the statistics the network has to
match (scanner, contrast, noise, reconstruction kernel). The pairs are made from it with the training degradation
(MATLAB-compatible bicubic, :func:`rmisr_monai.ops.resize.imresize`, the LR maker of every shipped model):

* **in-plane** (zero-shot SR, Shocher, Cohen, Irani, "Zero-Shot Super-Resolution using Deep Internal Learning",
  CVPR 2018): the scan's own slices (along ``axis``) are the targets; each random crop is shrunk by ``scale`` in both
  directions and the network learns to restore it. Applied afterwards to the scan, it goes one scale further up.
* **through-plane** (SMORE, Zhao, Dewey, Carass, Woo, Oh, Prince et al., "SMORE: A Self-Supervised Anti-Aliasing and
  Super-Resolution Algorithm for MRI Using Deep Learning", IEEE TMI 40(3) 2021): the planes of the two fine axes
  (the slices along the thick ``axis``) are the targets; each crop, turned by a random dihedral transform, is
  shrunk by ``scale`` along its rows only, as the thick axis was sampled, and the arbitrary-scale network learns the
  ``(scale, 1)`` restoration. Applied afterwards to planes that contain the thick axis, it restores that axis.

Every crop also gets one of the 8 dihedral transforms (flips and quarter turns, as in training). Loss: L1 (the loss
of the shipped models); optimiser Adam at :data:`ADAPT_LEARNING_RATE`; all parameters are tuned, in fp32.

Guarantees:

* **The input network is never changed**: a deep copy is trained and returned (in eval mode). The shipped weights on
  disk are never opened for writing. The input array is only read.
* **Time**: :func:`adapt_network` returns within ``seconds`` of wall time, setup included (the clock starts on entry),
  plus at most one single-crop forward pass (the probes that price the rest): an iteration is only started while
  1.5 x the mean iteration time so far (for the first one, 1.5 x 3 probes) and the held-out check
  still fit; the check itself is run only when it and two iterations take at most half of the time left.
  ``seconds <= 0`` returns the copy untrained.
* **Determinism**: the number of iterations is planned from ``seconds`` by a fixed cost model
  (:func:`planned_iterations`: the network's multiply-adds per iteration against :data:`NOMINAL_MACS_PER_SECOND`),
  not from the clock, and every crop is drawn from a generator seeded with ``seed``; so the same scan, network,
  arguments and seed give the same weights, bit for bit on one machine and thread count. Only when a machine is
  slower than the nominal rate does the clock stop the plan early: :attr:`AdaptationReport.stopped_by_time` says so,
  and ``iterations=`` (the count reported) repeats such a run exactly.
* **Memory**: independent of the scan's size, apart from the intensity fit (percentiles of the scan): each crop is
  normalised on its own; besides the network copy and its Adam state (3 x parameters) only one batch of
  ``batch x (patch * scale)^2`` pixels and its activations exist.
* **Too small**: a scan whose slices cannot give a crop of :data:`MIN_LR_PATCH` LR pixels (times ``scale`` in HR),
  or with fewer than :data:`MIN_SLICES` slices, raises :class:`ScanTooSmallError` with the sizes; the caller
  upscales with the network unadapted and says so.

Held-out check: every :data:`HOLDOUT_EVERY`-th slice (when the scan has at least 2 x that many) is kept out of the
training crops; :attr:`AdaptationReport.holdout_psnr_before` / ``_after`` are the PSNR of the network before and
after on a fixed set of crops of those slices (in the ``[0, 1]`` units of ``intensity``), so a caller can see
whether adaptation helped and, with ``keep_if_worse=False``, fall back to the unadapted network when it did not.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError, RmisrError
from rmisr_monai.ops.resize import imresize
from rmisr_monai.transforms.intensity import IntensityNormalization

__all__ = [
    "adapt_network",
    "planned_iterations",
    "AdaptationReport",
    "ScanTooSmallError",
    "ADAPT_LEARNING_RATE",
    "ADAPT_BATCH",
    "ADAPT_LR_PATCH",
    "MIN_LR_PATCH",
    "MIN_SLICES",
    "HOLDOUT_EVERY",
    "NOMINAL_MACS_PER_SECOND",
]

ADAPT_LEARNING_RATE = 2e-5  # fine-tuning step: 1/5 to 1/10 of the shipped models' last stages (Adam 2.5e-4 .. 1e-4)
ADAPT_BATCH = 8  # crops per iteration
ADAPT_LR_PATCH = 32  # LR crop side, as in training (32 x 32 LR patches)
MIN_LR_PATCH = 12  # smallest LR crop side adaptation accepts (a 3 x 3 network sees 10+ pixels of context)
MIN_SLICES = 1  # slices needed along the slicing axis
HOLDOUT_EVERY = 5  # every fifth slice is held out of training for the before / after check
HOLDOUT_CROPS = 8  # crops of the held-out slices scored before and after
# multiply-adds per second the iteration plan assumes for fp32 training (forward + backward) on 2 CPU cores: a planning
# figure (fp32 convolution training reaches 20-40 GMAC/s on 2 unloaded AVX-512 cores), not a measurement of this
# machine; where the machine is slower the clock stops the plan (AdaptationReport.stopped_by_time)
NOMINAL_MACS_PER_SECOND = 2e10
_BACKWARD_FACTOR = 3  # forward + backward (input and weight gradients) ~ 3 forward passes

Progress = bool | Callable[[int, int], None]


class ScanTooSmallError(RmisrError):
    """The scan cannot give the crops adaptation needs; upscale with the network unadapted."""


@dataclasses.dataclass
class AdaptationReport:
    """What :func:`adapt_network` did (attached to the returned network as ``adaptation_report``)."""

    iterations_planned: int
    iterations: int
    seconds: float
    stopped_by_time: bool
    train_loss_first: float | None
    train_loss_last: float | None
    holdout_psnr_before: float | None
    holdout_psnr_after: float | None
    kept: bool
    seed: int


def _first_output(out: Any) -> torch.Tensor:
    """The SR image of a network's output (tuple: first item, as RMISR-VP; list: last stage, as DenseSR)."""
    if isinstance(out, tuple):
        return out[0]
    if isinstance(out, list):
        return out[-1]
    return out


def planned_iterations(
    network: nn.Module, seconds: float, *, scale: float, batch: int = ADAPT_BATCH, patch: int = ADAPT_LR_PATCH,
    macs_per_second: float = NOMINAL_MACS_PER_SECOND,
) -> int:
    """Iterations that fit in ``seconds`` by the cost model: ``parameters x LR pixels x batch x 3`` multiply-adds per
    iteration (a convolution network working at LR resolution, forward plus backward), at ``macs_per_second``."""
    params = sum(p.numel() for p in network.parameters())
    # sub-pixel / meta upsamplers work partly at HR resolution: count their output pixels at s^2 the LR ones
    macs = max(1, params) * patch * patch * batch * _BACKWARD_FACTOR * (1.0 + 0.1 * scale * scale)
    return max(0, int(math.floor(seconds * macs_per_second / macs)))


def _slices(shape: tuple[int, ...], axis: int) -> tuple[int, tuple[int, int]]:
    """``(number of slices along axis, (rows, cols) of each slice)``."""
    others = [a for a in range(3) if a != axis]
    return shape[axis], (shape[others[0]], shape[others[1]])


def _take(array: np.ndarray, axis: int, k: int, r0: int, c0: int, hr: tuple[int, int]) -> np.ndarray:
    """Crop ``hr`` of slice ``k`` along ``axis`` at ``(r0, c0)``; a float32 copy of only those pixels."""
    index: list[Any] = [slice(None)] * 3
    others = [a for a in range(3) if a != axis]
    index[axis] = k
    index[others[0]] = slice(r0, r0 + hr[0])
    index[others[1]] = slice(c0, c0 + hr[1])
    return np.asarray(array[tuple(index)], dtype=np.float32)


class _Pairs:
    """Deterministic (LR, HR) batches from one scan (module docstring)."""

    def __init__(
        self, array: np.ndarray, norm: IntensityNormalization | None, axis: int, scale: float, through_plane: bool,
        patch: int, seed: int,
    ) -> None:
        n_slices, (rows, cols) = _slices(array.shape, axis)
        sy, sx = (scale, 1.0) if through_plane else (scale, scale)
        # LR crop side that the slices allow, capped at the training patch; HR crop = LR * scale (rounded, as
        # the network contract's output size)
        fit = int(min(rows / max(sy, sx), cols / max(sy, sx)))  # either orientation after a quarter turn
        lr_side = min(patch, fit)
        if lr_side < MIN_LR_PATCH or n_slices < MIN_SLICES:
            need = math.ceil(MIN_LR_PATCH * max(sy, sx))
            raise ScanTooSmallError(
                f"scan too small to adapt on: slices of {rows} x {cols} pixels ({n_slices} along axis {axis}); "
                f"x{scale:g} {'through-plane' if through_plane else 'in-plane'} adaptation needs slices of at least "
                f"{need} x {need} pixels"
            )
        self.array, self.norm, self.axis, self.through_plane = array, norm, axis, through_plane
        self.lr_side = lr_side
        self.hr_side = (round(lr_side * sy), round(lr_side * sx))
        self.scale_pair = (sy, sx)
        self.rows, self.cols = rows, cols
        slices = np.arange(n_slices)
        held = slices % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
        if n_slices < 2 * HOLDOUT_EVERY:
            held[:] = False
        self.train_slices, self.holdout_slices = slices[~held], slices[held]
        self.generator = torch.Generator().manual_seed(int(seed))

    def _crop(self, k: int, generator: torch.Generator) -> torch.Tensor:
        # a square HR crop (through-plane: rows x cols = (lr*s, lr)), so that any dihedral transform keeps its shape
        # only up to the swap of sides; the turn is drawn first and the crop cut to the turned size
        turn = int(torch.randint(0, 8, (1,), generator=generator))
        hr = self.hr_side if turn % 2 == 0 else self.hr_side[::-1]
        r0 = int(torch.randint(0, self.rows - hr[0] + 1, (1,), generator=generator))
        c0 = int(torch.randint(0, self.cols - hr[1] + 1, (1,), generator=generator))
        crop = _take(self.array, self.axis, k, r0, c0, hr)
        if self.norm is not None:
            crop = np.asarray(self.norm.forward(crop), dtype=np.float32)
        t = torch.from_numpy(np.ascontiguousarray(crop))
        if turn % 2 == 1:
            t = t.transpose(0, 1)  # now hr_side
        if turn // 2 % 2 == 1:
            t = t.flip(0)
        if turn // 4 == 1:
            t = t.flip(1)
        return t

    def batch(
        self, size: int, slices: np.ndarray, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, hr)`` of ``size`` crops of the given slices, ``(size, 1, h, w)`` each."""
        generator = self.generator if generator is None else generator
        picks = torch.randint(0, len(slices), (size,), generator=generator)
        hr = torch.stack([self._crop(int(slices[int(i)]), generator) for i in picks])[:, None]
        sy, sx = self.scale_pair
        # through-plane the columns keep their length (scale 1: untouched), so the LR crop is square either way
        lr = imresize(hr, (1.0 / sy, 1.0 / sx), output_shape=(self.lr_side, self.lr_side))
        return lr.float(), hr.float()


class _Adam:
    """Adam (Kingma & Ba, ICLR 2015, Algorithm 1; PyTorch's defaults betas 0.9 / 0.999, eps 1e-8), written out:
    ``torch.optim.Optimizer`` imports ``torch._dynamo`` on first use, 2-5 s of a budget of seconds."""

    def __init__(self, params: list[nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        step = self.lr / (1 - b1**self.t)
        root = math.sqrt(1 - b2**self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(root).add_(self.eps), value=-step)


def _run(network: nn.Module, lr: torch.Tensor, pair: tuple[float, float] | None) -> torch.Tensor:
    return _first_output(network(lr) if pair is None else network(lr, pair))


def _psnr(network: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], scale_arg) -> float:
    """PSNR (dB, peak 1) over the held-out crops, outputs clipped to ``[0, 1]``."""
    was_training = network.training
    network.eval()
    se, n = 0.0, 0
    with torch.no_grad():
        for lr, hr in pairs:
            sr = _run(network, lr, scale_arg).clamp(0, 1)
            se += float((sr - hr.clamp(0, 1)).double().square().sum())
            n += hr.numel()
    network.train(was_training)
    return float(10.0 * math.log10(1.0 / max(se / max(n, 1), 1e-12)))


def _progress_callback(progress: Progress | None, total: int) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="adapting", unit="it")

        def update(done: int, _total: int) -> None:
            bar.n = done
            bar.refresh()

        return update, bar.close
    return (lambda done, total: None), lambda: None


def adapt_network(
    network: nn.Module,
    volume_array: np.ndarray,
    *,
    scale: float,
    axis: int = 2,
    through_plane: bool = False,
    intensity: IntensityNormalization | Mapping[str, Any] | None = None,
    seconds: float = 30.0,
    seed: int = 0,
    progress: Progress | None = None,
    iterations: int | None = None,
    learning_rate: float = ADAPT_LEARNING_RATE,
    batch: int = ADAPT_BATCH,
    patch: int = ADAPT_LR_PATCH,
    keep_if_worse: bool = False,
) -> nn.Module:
    """Fine-tune a copy of ``network`` on pairs made from ``volume_array`` (module docstring); return the copy.

    Args:
        network: the SR network that will upscale the scan (network contract; left untouched). Through-plane needs
            an arbitrary-scale network (``upsampler="meta"``), as the engine does.
        volume_array: the scan to be upscaled, ``(I, J, K)`` in its own units (any dtype; only read).
        scale: the factor the scan will be upscaled by.
        axis: as the engine's: in-plane, the slicing axis (the other two are upscaled); through-plane, the thick
            axis that will be upscaled (the pairs come from its slices, the planes of the two fine axes).
        through_plane: through-plane mode (SMORE pairs) instead of in-plane (zero-shot pairs).
        intensity: the model's normalisation to ``[0, 1]`` (an ``IntensityNormalization`` or its dict, as the engine
            takes it), fitted on the whole scan; ``None`` trains on the values as they are.
        seconds: wall-time budget, setup included.
        seed: seed of the crops (and of nothing else: the copy starts from ``network``'s weights).
        progress: ``True`` for a tqdm bar, a callable ``progress(done, total)`` after each iteration, or none.
        iterations: exact number of iterations instead of the plan (still stopped by ``seconds``).
        learning_rate: Adam step (default :data:`ADAPT_LEARNING_RATE`).
        batch: crops per iteration.
        patch: LR crop side (smaller when the slices are smaller; at least :data:`MIN_LR_PATCH`).
        keep_if_worse: return the tuned copy even when the held-out PSNR went down; by default the untuned copy is
            returned then (``report.kept`` is ``False``).

    Returns:
        A new module (eval mode) with the attribute ``adaptation_report`` (:class:`AdaptationReport`).

    Raises:
        ScanTooSmallError: the scan cannot give crops of :data:`MIN_LR_PATCH` LR pixels.
        ConfigurationError: a bad axis, scale, shape or budget, or through-plane with a fixed-scale network.
    """
    start = time.perf_counter()
    array = np.asarray(volume_array)
    if array.ndim != 3:
        raise ConfigurationError(f"adaptation needs a volume (I, J, K), got shape {tuple(array.shape)}")
    if axis not in (0, 1, 2):
        raise ConfigurationError(f"axis must be 0, 1 or 2, got {axis!r}")
    if not (math.isfinite(scale) and scale > 1):
        raise ConfigurationError(f"scale must be > 1, got {scale!r}")
    if not math.isfinite(seconds) or batch < 1 or patch < MIN_LR_PATCH:
        raise ConfigurationError(f"bad budget: seconds={seconds!r}, batch={batch}, patch={patch}")
    arbitrary = bool(getattr(network, "arbitrary_scale", False))
    if through_plane and not arbitrary:
        raise ConfigurationError("through-plane adaptation needs an arbitrary-scale network (upsampler='meta')")
    norm = None
    if intensity is not None:
        norm = intensity if isinstance(intensity, IntensityNormalization) else None
        norm = copy.deepcopy(norm) if norm is not None else IntensityNormalization.from_dict(intensity)
        norm = norm.fit(array)
    pairs = _Pairs(array, norm, axis, float(scale), through_plane, patch, seed)

    tuned = copy.deepcopy(network)
    for p in tuned.parameters():
        p.requires_grad_(True)
    scale_arg = pairs.scale_pair if arbitrary else None
    planned = planned_iterations(tuned, max(0.0, seconds), scale=scale, batch=batch, patch=pairs.lr_side)
    total = planned if iterations is None else int(iterations)

    # one crop forward (no gradient; its own generator, so the training crops do not depend on it) prices the rest:
    # an iteration ~ batch x 3 of it (forward + backward), the held-out check HOLDOUT_CROPS of it, run twice
    # (the second of two such passes: the first one also builds the convolution kernels)
    crop_seconds = 0.0
    for _ in range(2):
        if total > 0 and time.perf_counter() - start < seconds:
            probe = pairs.batch(1, pairs.train_slices, torch.Generator().manual_seed(int(seed) + 2))[0]
            probe_start = time.perf_counter()
            with torch.no_grad():
                _run(tuned, probe, scale_arg)
            crop_seconds = time.perf_counter() - probe_start
    # the first iteration starts unless even one crop's forward + backward cannot fit (small networks are dominated
    # by per-call overhead, so batch x 3 probes would overprice them); later ones use the measured mean
    estimate = crop_seconds * _BACKWARD_FACTOR

    holdout = None
    check_seconds = 0.0
    left = seconds - (time.perf_counter() - start)
    # the check only when both runs of it and two iterations take at most half of what is left
    if total > 0 and len(pairs.holdout_slices) and 2 * HOLDOUT_CROPS * crop_seconds + 2 * batch * estimate < 0.5 * left:
        gen = torch.Generator().manual_seed(int(seed) + 1)
        holdout = [pairs.batch(1, pairs.holdout_slices, gen) for _ in range(HOLDOUT_CROPS)]
    check_start = time.perf_counter()
    before = _psnr(tuned, holdout, scale_arg) if holdout else None
    check_seconds = time.perf_counter() - check_start

    optimizer = _Adam(list(tuned.parameters()), learning_rate)
    loss_fn = nn.L1Loss()
    update, close = _progress_callback(progress, total)
    tuned.train()
    first = last = None
    done = 0
    stopped = False
    loop_start = time.perf_counter()
    try:
        while done < total:
            now = time.perf_counter()
            mean = (now - loop_start) / done if done else estimate
            # room for this iteration (and a half, for jitter) and for the held-out check after it
            if now - start + 1.5 * mean + check_seconds > seconds:
                stopped = True
                break
            lr_b, hr_b = pairs.batch(batch, pairs.train_slices)
            loss = loss_fn(_run(tuned, lr_b, scale_arg), hr_b)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            last = float(loss.detach())
            first = last if first is None else first
            done += 1
            update(done, total)
    finally:
        close()
    tuned.eval()
    after = _psnr(tuned, holdout, scale_arg) if before is not None and done else before
    kept = keep_if_worse or before is None or after is None or after >= before
    result = tuned if kept else copy.deepcopy(network).eval()
    result.adaptation_report = AdaptationReport(
        iterations_planned=planned, iterations=done, seconds=time.perf_counter() - start, stopped_by_time=stopped,
        train_loss_first=first, train_loss_last=last, holdout_psnr_before=before, holdout_psnr_after=after,
        kept=kept, seed=int(seed),
    )
    return result
