"""Many volumes at once: a folder (or a CSV list) in, one output per volume out; the same code for ``rmisr upscale``
and the MONAI bundle's ``inference.json`` (``_target_``: :class:`BatchUpscaler`, then ``run(dataset_dir,
output_dir)``). What a job is, and how a folder or a CSV list becomes jobs: :mod:`rmisr_monai.inference.jobs`.

:meth:`BatchUpscaler.run_jobs` takes its rank's share (:func:`shard`: job ``n`` goes to rank ``n mod world_size``,
ranks from ``torch.distributed`` when it is initialised, else the ``RANK`` / ``WORLD_SIZE`` variables that
``torchrun`` sets; so no volume is done twice and none is missed), skips jobs whose output exists (unless
``overwrite``), and runs the rest through the volume engine with reading of the next volume and writing of the
previous one in background threads, overlapped with the network. Outputs are written atomically
(:mod:`rmisr_monai.io.atomic`), so an interrupted run leaves only whole outputs and running it again does only what
is missing. A job that fails (bad input, out of memory...) is reported in one line naming its file and the others
go on; the :class:`BatchSummary` counts done / skipped / failed.

The network and its intensity mapping come from :mod:`rmisr_monai.inference.selection` (the CLI's rule): the
shipped default depends on each input's modality and scale, so models are loaded once per choice and cached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rmisr_monai.core.axes import resolve_axis
from rmisr_monai.core.options import RunOptions
from rmisr_monai.core.runtime import resolve_device
from rmisr_monai.errors import ConfigurationError, RmisrError
from rmisr_monai.inference.adapt import ScanTooSmallError, adapt_network
from rmisr_monai.inference.engine import run_options, upscale_volume
from rmisr_monai.inference.guards import check_run, is_learned
from rmisr_monai.inference.jobs import VolumeJob, csv_jobs, folder_jobs
from rmisr_monai.inference.selection import (
    check_model_available,
    intensity_for,
    model_source,
    select_network,
    self_ensemble_for,
)
from rmisr_monai.io.atomic import check_output_path
from rmisr_monai.io.provenance import Provenance
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.resample import resample_orthogonal
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import check_representable, output_format, write_volume
from rmisr_monai.weights import sha256_of

__all__ = ["BatchSummary", "BatchUpscaler", "distributed_rank", "shard", "provenance_of"]

logger = logging.getLogger(__name__)

# what a failed job can raise and still let the others go on (KeyboardInterrupt and bugs propagate)
_JOB_ERRORS = (RmisrError, ValueError, OSError, MemoryError, RuntimeError)


@dataclass
class BatchSummary:
    """What a run did on this rank: inputs done, skipped (output already there) and failed (with the reason)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No job failed."""
        return not self.failed

    def __str__(self) -> str:
        share = f" (rank {self.rank} of {self.world_size})" if self.world_size > 1 else ""
        return (
            f"{len(self.done)} done, {len(self.skipped)} skipped (output exists), {len(self.failed)} failed"
            f"{share} in {self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (e.g. for a bundle's log)."""
        return {
            "done": list(self.done),
            "skipped": list(self.skipped),
            "failed": [{"input": i, "reason": r} for i, r in self.failed],
            "rank": self.rank,
            "world_size": self.world_size,
            "seconds": self.seconds,
        }


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)``: from ``torch.distributed`` when initialised, else ``RANK`` / ``WORLD_SIZE``
    (``torchrun`` sets both), else ``(0, 1)``.

    Raises:
        ConfigurationError: the variables are not integers with ``0 <= RANK < WORLD_SIZE``.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        rank, world = -1, 0
    if not 0 <= rank < world:
        raise ConfigurationError(
            f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must be integers "
            "with 0 <= RANK < WORLD_SIZE"
        )
    return rank, world


def shard(jobs: Sequence[VolumeJob], rank: int, world_size: int) -> list[VolumeJob]:
    """Rank ``rank``'s share: jobs ``rank, rank + world_size, ...`` of the (deterministically ordered) list."""
    return list(jobs[rank::world_size])


# run options that change the voxels, recorded with every output (device, batch, memory budget and seed do not, the
# seed only through adapt)
_RECORDED_OPTIONS = ("axis", "through_plane", "precision", "tile", "tile_overlap", "self_ensemble", "adapt",
                     "input_floor", "allow_extrapolation")


def provenance_of(meta: dict[str, Any], options: RunOptions) -> Provenance:
    """The :class:`~rmisr_monai.io.provenance.Provenance` of a result: the model as the options chose it (its
    registry name, interpolator name or weights file name), its sha256, the registry format it came from, the
    scale and the run options that change voxels."""
    source = str(meta.get("source") or meta.get("network"))
    name = Path(source).name if meta.get("path") and Path(source).suffix else source
    recorded = {k: v for k, v in options.to_dict().items() if k in _RECORDED_OPTIONS}
    if options.adapt:
        recorded["seed"] = options.seed
    return Provenance(
        model=name,
        model_version=str(meta.get("registry_format", "")),
        sha256=str(meta.get("sha256", "")),
        scale=options.scale,
        options=recorded,
    )


def _rank_device(device: str | torch.device) -> str | torch.device:
    """Under ``torchrun`` with CUDA, ``auto``/``cuda`` means this process's GPU (``LOCAL_RANK``)."""
    local = os.environ.get("LOCAL_RANK")
    if str(device) in ("auto", "cuda") and local is not None and local.isdigit() and torch.cuda.is_available():
        return f"cuda:{int(local) % torch.cuda.device_count()}"
    return device


# what a job that ran out of memory should make smaller, in the CLI's words
_CLI_SMALLER = "--tile or --batch"


def _named(path: Path, exc: BaseException, stage: str, cli: bool = False) -> str:
    """One line about a failed job that names its file; with ``cli``, in the ``rmisr`` command's words (the error's
    :attr:`~rmisr_monai.errors.RmisrError.cli`, where it has one)."""
    if isinstance(exc, MemoryError):
        smaller = _CLI_SMALLER if cli else "tile or batch (RunOptions.tile, RunOptions.batch)"
        return f"{path}: out of memory while {stage}; try a smaller {smaller}, or free memory"
    text = " ".join(((getattr(exc, "cli", None) if cli else None) or str(exc)).split()) or type(exc).__name__
    return text if str(path) in text else f"{path}: {text}"


class _StageError(Exception):
    """Carries the stage (reading, upscaling, writing) in which a job failed."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(stage)
        self.stage, self.error = stage, error


class BatchUpscaler:
    """Upscale volumes with one set of :class:`~rmisr_monai.core.options.RunOptions`: one file
    (:meth:`upscale_file`), or a folder / CSV list (:meth:`run`), sharded over ranks. A bundle config creates it
    with the options as a dict or as keywords::

        "upscaler": {"_target_": "rmisr_monai.inference.BatchUpscaler",
                     "options": {"scale": 2, "device": "@device"}, "output_ext": ".nii.gz"},
        "run": "$@upscaler.run(@dataset_dir, @output_dir)"

    Args:
        options: the run options (or their dict); ``model`` ``None`` is the shipped default for scale and modality
            (:mod:`rmisr_monai.inference.selection`), ``self_ensemble`` ``None`` the model's recipe, ``out_dtype``
            ``None`` each input's type; a CSV row may give its own scale. Under ``torchrun``, device ``auto`` /
            ``cuda`` is the rank's GPU.
        output_ext: suffix of the outputs in folder / CSV mode (e.g. ``".nii.gz"``); ``None`` keeps the input's.
        overwrite: replace existing outputs (default: skip them in batches, refuse for one file).
        progress: tqdm bars over volumes and slices.
        resample: results with tilted or unevenly spaced slices are resampled onto a regular orthogonal grid
            (:func:`rmisr_monai.io.resample.resample_orthogonal`, lossy) before NIfTI/NRRD/MHA output; default:
            tilted ones keep their exact sheared affine and uneven ones are refused (DICOM output keeps the slices).
        changes: run options by field name over ``options`` (:func:`~rmisr_monai.inference.engine.run_options`;
            ``dtype`` is accepted for ``out_dtype``).
    """

    def __init__(
        self,
        options: RunOptions | Mapping[str, Any] | None = None,
        *,
        output_ext: str | None = None,
        overwrite: bool = False,
        progress: bool = True,
        resample: bool = False,
        **changes: Any,
    ) -> None:
        if "dtype" in changes:
            changes["out_dtype"] = changes.pop("dtype")
        self.options = run_options(options, **changes)
        self.device = _rank_device(self.options.device)
        self.output_ext = output_ext
        self.overwrite = bool(overwrite)
        self.progress = bool(progress)
        self.resample = bool(resample)
        self._networks: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
        # the summary of the run in progress or last run (read by a caller that interrupts a run)
        self.summary: BatchSummary | None = None

    # -- checks that need no input ----------------------------------------------------------------------------
    def check(self, scales: Sequence[float] = ()) -> None:
        """Fail before any input is read: unknown device, or no shipped model for a scale (``scales``: the
        upscaler's own and any per-job ones)."""
        resolve_device(self.device)
        o = self.options
        for scale in {o.scale, *scales}:
            check_model_available(o.model, o.weights, scale, o.through_plane)

    def check_output(self, output: str | os.PathLike) -> None:
        """Refuse an output before any work: unknown format, exists without ``overwrite``, folder not writable."""
        output_format(output)
        check_output_path(output, overwrite=self.overwrite)

    # -- one volume ---------------------------------------------------------------------------------------------
    def network(self, scale: float, modality: str | None) -> tuple[nn.Module, dict[str, Any]]:
        """``(network, metadata)`` for a scale and modality, loaded once per choice."""
        o = self.options
        key = model_source(o.model, o.weights, scale, modality, o.through_plane)
        if key not in self._networks:
            net, meta = select_network(o.model, o.weights, scale, modality, o.through_plane)
            meta["source"] = key  # the registry name, interpolator name or weights path the options chose
            meta["sha256"] = sha256_of(meta["path"]) if meta.get("path") else ""
            self._networks[key] = (net, meta)
        return self._networks[key]

    def run_options_for(self, volume: Volume, scale: float | None = None) -> tuple[nn.Module, dict, RunOptions]:
        """``(network, metadata, options)`` of one volume: the network for its scale and modality, and the options
        the engine gets (the model's self-ensemble recipe unless chosen, the input's dtype unless chosen, the
        device of this rank)."""
        scale = self.options.scale if scale is None else float(scale)
        net, meta = self.network(scale, volume.modality)
        options = self.options.replace(
            scale=scale,
            device=str(self.device),
            self_ensemble=self_ensemble_for(meta, self.options.self_ensemble),
            out_dtype=self.options.out_dtype or str(volume.source_dtype),
        )
        return net, meta, options

    def upscale(self, volume: Volume, scale: float | None = None) -> Volume:
        """Super-resolve one volume with the options (intensities normalised as the model was trained)."""
        return self.upscale_traced(volume, scale)[0]

    def upscale_traced(self, volume: Volume, scale: float | None = None) -> tuple[Volume, Provenance]:
        """:meth:`upscale` and what made the result (:class:`~rmisr_monai.io.provenance.Provenance`, for the
        writer). Before the engine runs, the input is checked against the model (scale in its trained range, not a
        label map, not far outside its training distribution: :func:`rmisr_monai.inference.guards.check_run`), and
        with ``adapt`` a copy of the model is fine-tuned on the scan (:mod:`rmisr_monai.inference.adapt`)."""
        net, meta, options = self.run_options_for(volume, scale)
        check_run(
            volume, options.scale, net, meta, method=meta.get("source"), allow_extrapolation=options.allow_extrapolation
        )
        intensity = intensity_for(meta, volume.modality)
        if options.adapt > 0 and is_learned(meta, net):
            net = self._adapted(net, volume, options, intensity)
        provenance = provenance_of(meta, options)
        logger.info("%s", provenance.text().split(". RESEARCH")[0])
        logger.debug("input %s voxels, options %s", "x".join(str(n) for n in volume.array.shape), options.to_dict())
        result = upscale_volume(volume, net, options=options, intensity=intensity, progress=self.progress)
        return result, provenance

    def _adapted(self, net: nn.Module, volume: Volume, options: RunOptions, intensity: dict | None) -> nn.Module:
        """A copy of ``net`` fine-tuned on ``volume`` for ``options.adapt`` seconds; ``net`` itself where the scan
        is too small to adapt on (said in one line)."""
        array = volume.array if volume.fourth_axis is None else volume.frames()[0].array
        try:
            tuned = adapt_network(
                net, array, scale=options.scale, axis=resolve_axis(options.axis),
                through_plane=options.through_plane, intensity=intensity, seconds=options.adapt, seed=options.seed,
                progress=self.progress,
            )
        except ScanTooSmallError as exc:
            logger.warning("%s: %s; upscaling with the model as shipped", volume.source_path, exc)
            return net
        report = tuned.adaptation_report
        before, after = report.holdout_psnr_before, report.holdout_psnr_after
        logger.info(
            "adapted for %.1f s, %d of %d planned iterations%s; held-out PSNR %s -> %s dB%s", report.seconds,
            report.iterations, report.iterations_planned,
            " (stopped by the time limit: a rerun may differ)" if report.stopped_by_time else "",
            "-" if before is None else f"{before:.2f}", "-" if after is None else f"{after:.2f}",
            "" if report.kept else "; not better, the model as shipped is used",
        )
        return tuned

    def write(self, result: Volume, output: str | os.PathLike, provenance: Provenance | None = None) -> None:
        """Write a result atomically (its parent folders created; removed again if the write fails), with what
        made it (``provenance``, from :meth:`upscale_traced`)."""
        output = Path(output)
        if self.resample and output_format(output) != "dicom":
            result = resample_orthogonal(result)
        created = []
        parent = output.absolute().parent
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        for folder in reversed(created):
            folder.mkdir(exist_ok=True)
        try:
            write_volume(result, output, overwrite=self.overwrite, dtype=self.options.out_dtype, provenance=provenance)
        except BaseException:
            for folder in created:  # another rank may be writing into it: then it stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def upscale_file(
        self,
        input: str | os.PathLike,
        output: str | os.PathLike,
        series_uid: str | None = None,
        stack: str | None = None,
    ) -> Volume:
        """Read, upscale and write one volume; errors propagate (the single-volume ``rmisr upscale``)."""
        self.check_output(output)
        self.check()
        started = time.perf_counter()
        volume = read_volume(input, series_uid=series_uid, stack=stack)
        if not self.resample:  # e.g. uneven slices to NIfTI: refused before the work
            check_representable(volume, output)
        result, provenance = self.upscale_traced(volume)
        self.write(result, output, provenance)
        logger.info(
            "wrote %s: %s voxels in %.1f s",
            output,
            "x".join(str(n) for n in result.array.shape),
            time.perf_counter() - started,
        )
        return result

    # -- many volumes -------------------------------------------------------------------------------------------
    def jobs(self, source: str | os.PathLike, output_dir: str | os.PathLike) -> list[VolumeJob]:
        """All jobs of a folder or a ``.csv`` list (every rank's; :meth:`run_jobs` takes its share)."""
        source = Path(source)
        if source.is_file() and source.suffix.lower() == ".csv":
            return csv_jobs(source, output_dir, self.output_ext)
        return folder_jobs(source, output_dir, self.output_ext)

    def run(self, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike) -> BatchSummary:
        """Upscale every volume of a folder or CSV list (:meth:`jobs`) into ``output_dir`` (created if missing);
        returns the summary of this rank's share (see :meth:`run_jobs`)."""
        jobs = self.jobs(dataset_dir, output_dir)
        self.check([j.scale for j in jobs if j.scale is not None])
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        return self.run_jobs(jobs)

    def _read(self, job: VolumeJob) -> Volume:
        try:
            return read_volume(job.input)
        except _JOB_ERRORS as exc:
            raise _StageError("reading", exc) from exc

    def _write(self, job: VolumeJob, result: Volume, provenance: Provenance) -> None:
        try:
            self.write(result, job.output, provenance)
        except _JOB_ERRORS as exc:
            raise _StageError("writing", exc) from exc

    def _settle(self, pending: tuple[VolumeJob, Future] | None, summary: BatchSummary) -> None:
        """Wait for a background write and record its outcome."""
        if pending is None:
            return
        job, future = pending
        try:
            future.result()
            summary.done.append(str(job.input))
        except _StageError as exc:
            self._fail(summary, job, exc.error, exc.stage)

    @staticmethod
    def _fail(summary: BatchSummary, job: VolumeJob, exc: BaseException, stage: str) -> None:
        line = _named(job.input, exc, stage)
        # the CLI's log handler prints ``cli`` instead of the message (rmisr_monai.cli)
        logger.error("error: %s", line, extra={"cli": f"error: {_named(job.input, exc, stage, cli=True)}"})
        summary.failed.append((str(job.input), line))

    def run_jobs(
        self, jobs: Sequence[VolumeJob], rank: int | None = None, world_size: int | None = None
    ) -> BatchSummary:
        """Run this rank's share of ``jobs`` (rank and world size default to :func:`distributed_rank`).

        Jobs whose output exists are skipped unless ``overwrite``; the others are read one ahead and written one
        behind in background threads while the network runs. A failing job is logged in one line naming its file
        and recorded; the rest go on. ``KeyboardInterrupt`` stops the run (finished outputs stay, nothing partial).
        """
        if rank is None or world_size is None:
            rank, world_size = distributed_rank()
        mine = shard(jobs, rank, world_size)
        summary = self.summary = BatchSummary(rank=rank, world_size=world_size)
        started = time.perf_counter()
        todo = []
        for job in mine:
            if job.output.exists() and not self.overwrite:
                summary.skipped.append(str(job.input))
            else:
                todo.append(job)
        with (
            logging_redirect_tqdm(loggers=[logging.getLogger("rmisr"), logging.getLogger("rmisr_monai")]),
            tqdm(total=len(mine), desc="volumes", unit="vol", disable=not self.progress) as bar,
            ThreadPoolExecutor(1, thread_name_prefix="rmisr-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="rmisr-write") as writer,
        ):
            bar.update(len(summary.skipped))
            pending: tuple[VolumeJob, Future] | None = None
            upcoming = reader.submit(self._read, todo[0]) if todo else None
            try:
                for n, job in enumerate(todo):
                    current = upcoming
                    upcoming = reader.submit(self._read, todo[n + 1]) if n + 1 < len(todo) else None
                    stage = "reading"
                    try:
                        volume = current.result()
                        stage = "upscaling"
                        result, provenance = self.upscale_traced(volume, job.scale)
                        del volume
                    except _StageError as exc:
                        self._fail(summary, job, exc.error, exc.stage)
                        bar.update(1)
                        continue
                    except _JOB_ERRORS as exc:
                        self._fail(summary, job, exc, stage)
                        bar.update(1)
                        continue
                    self._settle(pending, summary)  # one output in flight at a time bounds the memory
                    pending = (job, writer.submit(self._write, job, result, provenance))
                    del result
                    bar.update(1)
            except KeyboardInterrupt:
                self._settle(pending, summary)  # an output being written is finished and counted, then stop
                raise
            self._settle(pending, summary)
        summary.seconds = time.perf_counter() - started
        return summary
