"""Many volumes at once: a folder (or a CSV list) in, one output per volume out; the same code for ``rmisr upscale``
and the MONAI bundle's ``inference.json`` (``_target_``: :class:`BatchUpscaler`, then ``run(dataset_dir,
output_dir)``).

What is a job
-------------
* :func:`folder_jobs`: every volume file (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``: the suffixes of
  :data:`rmisr_monai.io.volume.FILE_FORMATS`) and every DICOM series folder under the input folder, found
  recursively; the output keeps the relative path and the file name (a NIfTI stays NIfTI, a DICOM series becomes a
  derived DICOM series folder), or gets ``output_ext`` instead of the input's suffix. A folder is a DICOM series
  when it directly holds a DICOM file (:func:`is_dicom_file`: a ``.dcm``/``.ima`` name or the ``DICM`` preamble);
  its whole subtree then belongs to that series (as :func:`rmisr_monai.io.dicom.read_dicom` reads it). Hidden
  entries (``.name``, the atomic writer's temporaries among them) and the output folder itself are skipped.
* :func:`csv_jobs`: a CSV file with a column of input paths and optional ``output`` and ``scale`` columns (header
  ``input,output,scale`` in any order, or no header: the columns in that order). Relative inputs are relative to
  the CSV's folder, relative outputs to the output folder; an empty output means ``OUT/<input name>``.

Telling a series folder from a folder of volumes (:func:`is_dicom_series_folder`, used by ``rmisr upscale``): a
folder that directly holds a DICOM file, or that holds neither volume files nor sub-folders, is one DICOM series
(one series in, one derived series out, as for a single volume); any other folder is a folder of volumes.

Running
-------
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
import csv
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rmisr_monai.errors import ConfigurationError, InputFileError, RmisrError
from rmisr_monai.inference.engine import DEFAULT_TILE_OVERLAP, resolve_device, upscale_volume
from rmisr_monai.inference.selection import (
    check_model_available,
    intensity_for,
    model_source,
    select_network,
    self_ensemble_for,
)
from rmisr_monai.io.atomic import check_output_path
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import FILE_FORMATS, Volume, file_format
from rmisr_monai.io.resample import resample_orthogonal
from rmisr_monai.io.write import check_representable, output_format, write_volume

__all__ = [
    "DICOM_SUFFIXES",
    "CSV_COLUMNS",
    "VolumeJob",
    "BatchSummary",
    "BatchUpscaler",
    "is_dicom_file",
    "is_dicom_series_folder",
    "folder_jobs",
    "csv_jobs",
    "distributed_rank",
    "shard",
]

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".ima")
CSV_COLUMNS = ("input", "output", "scale")
_DICOM_MAGIC_OFFSET = 128  # DICOM Part 10: 128-byte preamble, then "DICM"
_DICOM_MAGIC = b"DICM"
# a volume's suffix that the writers cannot produce in one atomic file: written in the single-file variant
_SINGLE_FILE_SUFFIX = {".nhdr": ".nrrd"}
# what a failed job can raise and still let the others go on (KeyboardInterrupt and bugs propagate)
_JOB_ERRORS = (RmisrError, ValueError, OSError, MemoryError, RuntimeError)


@dataclass(frozen=True)
class VolumeJob:
    """One input (file or DICOM series folder) and where its result goes.

    Attributes:
        input: the volume file or DICOM series folder.
        output: the output file, or folder for a DICOM series (the format follows the suffix, as for ``rmisr``).
        scale: this job's factor; ``None``: the upscaler's ``scale``.
    """

    input: Path
    output: Path
    scale: float | None = None


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


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm``/``.ima`` name, or the ``DICM`` magic after the 128-byte preamble (DICOM Part 10)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            return handle.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC
    except OSError:
        return False


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise InputFileError(folder, f"cannot list the folder: {exc.strerror or exc}") from exc


def is_dicom_series_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is one DICOM series rather than a folder of volumes (rule in the module docstring)."""
    entries = _visible(Path(folder))
    files = [p for p in entries if p.is_file()]
    if any(is_dicom_file(p) for p in files):
        return True
    return not any(p.is_dir() for p in entries) and not any(file_format(p) for p in files)


def _output_name(relative: Path, is_series: bool, output_ext: str | None) -> Path:
    """Output path (relative) of an input: same name, or ``output_ext`` instead of the input's suffix."""
    if output_ext is None:
        if is_series:
            return relative
        for old, new in _SINGLE_FILE_SUFFIX.items():
            if relative.name.lower().endswith(old):
                return relative.with_name(relative.name[: -len(old)] + new)
        return relative
    ext = output_ext if output_ext.startswith(".") or not output_ext else "." + output_ext
    name = relative.name
    if not is_series:
        suffix = next((s for s in sorted(FILE_FORMATS, key=len, reverse=True) if name.lower().endswith(s)), "")
        name = name[: len(name) - len(suffix)]
    return relative.with_name(name + ext)


def _check_unique(jobs: Sequence[VolumeJob], source: Path) -> None:
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.output.absolute()
        if key in seen:
            raise InputFileError(source, f"{job.input} and {seen[key]} would both be written to {job.output}")
        seen[key] = job.input


def folder_jobs(
    input_dir: str | os.PathLike, output_dir: str | os.PathLike, output_ext: str | None = None
) -> list[VolumeJob]:
    """Every volume and DICOM series under ``input_dir`` (module docstring), sorted by path, with its output under
    ``output_dir`` at the same relative path.

    Raises:
        InputFileError: ``input_dir`` is not a folder, or two inputs would write the same output.
    """
    root, out_root = Path(input_dir), Path(output_dir)
    if not root.is_dir():
        raise InputFileError(root, "not a folder")
    skip = out_root.resolve() if out_root.exists() else None
    jobs: list[VolumeJob] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        entries = _visible(folder)
        files = [p for p in entries if p.is_file()]
        if folder != root and any(is_dicom_file(p) for p in files):
            rel = folder.relative_to(root)
            jobs.append(VolumeJob(folder, out_root / _output_name(rel, True, output_ext)))
            continue
        for path in files:
            if file_format(path):
                rel = path.relative_to(root)
                jobs.append(VolumeJob(path, out_root / _output_name(rel, False, output_ext)))
        pending.extend(p for p in reversed(entries) if p.is_dir() and p.resolve() != skip)
    jobs.sort(key=lambda j: str(j.input))
    _check_unique(jobs, root)
    return jobs


def _parse_scale(text: str, csv_path: Path, line: int) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise InputFileError(csv_path, f"line {line}: scale must be a finite number > 0, got {text.strip()!r}")
    return value


def csv_jobs(
    csv_path: str | os.PathLike, output_dir: str | os.PathLike, output_ext: str | None = None
) -> list[VolumeJob]:
    """The jobs of a CSV list (module docstring), in file order.

    Raises:
        InputFileError: unreadable CSV, no input column, a bad scale, or two rows writing the same output (naming
            the CSV and the line).
    """
    csv_path, out_root = Path(csv_path), Path(output_dir)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle), 1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(csv_path, f"cannot read the CSV list: {exc}") from exc
    rows = [(n, row) for n, row in rows if not row[0].lstrip().startswith("#")]
    columns = {name: i for i, name in enumerate(CSV_COLUMNS)}
    if rows and "input" in [c.strip().lower() for c in rows[0][1]]:
        header = [c.strip().lower() for c in rows[0][1]]
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if unknown:
            raise InputFileError(csv_path, f"unknown CSV columns {unknown}; use {', '.join(CSV_COLUMNS)}")
        columns = {name: header.index(name) for name in CSV_COLUMNS if name in header}
        rows = rows[1:]
    if not rows:
        raise InputFileError(csv_path, "the CSV list holds no input paths")
    jobs = []
    for line, row in rows:
        cell = {name: row[i].strip() if i < len(row) else "" for name, i in columns.items()}
        if not cell["input"]:
            raise InputFileError(csv_path, f"line {line}: no input path")
        source = Path(cell["input"]).expanduser()
        source = source if source.is_absolute() else csv_path.parent / source
        target = cell.get("output") or ""
        if target:
            output = Path(target).expanduser()
            output = output if output.is_absolute() else out_root / output
        else:
            output = out_root / _output_name(Path(source.name), source.is_dir(), output_ext)
        jobs.append(VolumeJob(source, output, _parse_scale(cell.get("scale", ""), csv_path, line)))
    _check_unique(jobs, csv_path)
    return jobs


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


def _rank_device(device: str | torch.device) -> str | torch.device:
    """Under ``torchrun`` with CUDA, ``auto``/``cuda`` means this process's GPU (``LOCAL_RANK``)."""
    local = os.environ.get("LOCAL_RANK")
    if str(device) in ("auto", "cuda") and local is not None and local.isdigit() and torch.cuda.is_available():
        return f"cuda:{int(local) % torch.cuda.device_count()}"
    return device


def _named(path: Path, exc: BaseException, stage: str) -> str:
    """One line about a failed job that names its file."""
    if isinstance(exc, MemoryError):
        return f"{path}: out of memory while {stage}; try a smaller --tile or --batch, or free memory"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if str(path) in text else f"{path}: {text}"


class _StageError(Exception):
    """Carries the stage (reading, upscaling, writing) in which a job failed."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(stage)
        self.stage, self.error = stage, error


class BatchUpscaler:
    """Upscale volumes with one set of options: one file (:meth:`upscale_file`), or a folder / CSV list
    (:meth:`run`), sharded over ranks. Built from plain keyword arguments, so a bundle config can create it::

        "upscaler": {"_target_": "rmisr_monai.inference.batch.BatchUpscaler", "model": "rmisr_bl_ct_x2",
                     "scale": 2, "device": "@device", "output_ext": ".nii.gz"},
        "run": "$@upscaler.run(@dataset_dir, @output_dir)"

    Args:
        model: shipped model, interpolator or network name (``None``: the shipped default for scale and modality),
            see :mod:`rmisr_monai.inference.selection`.
        weights: a checkpoint file to use instead of the shipped models.
        scale: the factor (a CSV row may give its own).
        axis, through_plane, tile, tile_overlap, batch_size, amp, precision: as
            :func:`rmisr_monai.inference.upscale_array`.
        ensemble: geometric self-ensemble size (``upscale_array``'s ``ensemble``); ``None``: the model's recipe
            (the registry entry's ``"self_ensemble"``, else 1).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (under ``torchrun``, ``auto``/``cuda`` is the rank's GPU).
        dtype: stored type of the outputs (default: each input's type).
        output_ext: suffix of the outputs in folder / CSV mode (e.g. ``".nii.gz"``); ``None`` keeps the input's.
        overwrite: replace existing outputs (default: skip them in batches, refuse for one file).
        progress: tqdm bars over volumes and slices.
        resample: results with tilted or unevenly spaced slices are resampled onto a regular orthogonal grid
            (:func:`rmisr_monai.io.resample.resample_orthogonal`, lossy) before NIfTI/NRRD/MHA output; default:
            tilted ones keep their exact sheared affine and uneven ones are refused (DICOM output keeps the slices).
    """

    def __init__(
        self,
        model: str | None = None,
        weights: str | os.PathLike | None = None,
        scale: float = 2.0,
        axis: str | int = "z",
        through_plane: bool = False,
        device: str = "auto",
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch_size: int | None = None,
        amp: bool = True,
        precision: str = "auto",
        ensemble: int | None = None,
        dtype: str | None = None,
        output_ext: str | None = None,
        overwrite: bool = False,
        progress: bool = True,
        resample: bool = False,
    ) -> None:
        self.model = model
        self.weights = None if weights is None else str(weights)
        self.scale = float(scale)
        self.axis = axis
        self.through_plane = bool(through_plane)
        self.device = _rank_device(device)
        self.options = dict(
            tile=tile,
            tile_overlap=int(tile_overlap),
            batch_size=None if batch_size is None else int(batch_size),
            amp=amp,
            precision=precision,
        )
        self.ensemble = None if ensemble is None else int(ensemble)
        self.dtype = dtype
        self.output_ext = output_ext
        self.overwrite = bool(overwrite)
        self.progress = bool(progress)
        self.resample = bool(resample)
        self._networks: dict[str, tuple[nn.Module, dict[str, Any]]] = {}

    # -- checks that need no input ----------------------------------------------------------------------------
    def check(self, scales: Sequence[float] = ()) -> None:
        """Fail before any input is read: unknown device, or no shipped model for a scale (``scales``: the
        upscaler's own and any per-job ones)."""
        resolve_device(self.device)
        for scale in {self.scale, *scales}:
            check_model_available(self.model, self.weights, scale, self.through_plane)

    def check_output(self, output: str | os.PathLike) -> None:
        """Refuse an output before any work: unknown format, exists without ``overwrite``, folder not writable."""
        output_format(output)
        check_output_path(output, overwrite=self.overwrite)

    # -- one volume ---------------------------------------------------------------------------------------------
    def network(self, scale: float, modality: str | None) -> tuple[nn.Module, dict[str, Any]]:
        """``(network, metadata)`` for a scale and modality, loaded once per choice."""
        key = model_source(self.model, self.weights, scale, modality, self.through_plane)
        if key not in self._networks:
            self._networks[key] = select_network(self.model, self.weights, scale, modality, self.through_plane)
        return self._networks[key]

    def upscale(self, volume: Volume, scale: float | None = None) -> Volume:
        """Super-resolve one volume with the options (intensities normalised as the model was trained)."""
        scale = self.scale if scale is None else float(scale)
        net, meta = self.network(scale, volume.modality)
        logger.debug(
            "input %s voxels, model %s, scale %g, axis %s%s, device %s",
            "x".join(str(n) for n in volume.array.shape),
            meta["network"] if meta.get("path") is None else Path(meta["path"]).name,
            scale,
            self.axis,
            " (through-plane)" if self.through_plane else "",
            resolve_device(self.device),
        )
        return upscale_volume(
            volume,
            net,
            scale,
            axis=self.axis,
            through_plane=self.through_plane,
            intensity=intensity_for(meta, volume.modality),
            device=self.device,
            progress=self.progress,
            out_dtype=self.dtype or volume.source_dtype,
            ensemble=self_ensemble_for(meta, self.ensemble),
            **self.options,
        )

    def write(self, result: Volume, output: str | os.PathLike) -> None:
        """Write a result atomically (its parent folders created; removed again if the write fails)."""
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
            write_volume(result, output, overwrite=self.overwrite, dtype=self.dtype)
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
        result = self.upscale(volume)
        self.write(result, output)
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

    def _write(self, job: VolumeJob, result: Volume) -> None:
        try:
            self.write(result, job.output)
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
        logger.error("error: %s", line)
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
        summary = BatchSummary(rank=rank, world_size=world_size)
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
            for n, job in enumerate(todo):
                current = upcoming
                upcoming = reader.submit(self._read, todo[n + 1]) if n + 1 < len(todo) else None
                stage = "reading"
                try:
                    volume = current.result()
                    stage = "upscaling"
                    result = self.upscale(volume, job.scale)
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
                pending = (job, writer.submit(self._write, job, result))
                del result
                bar.update(1)
            self._settle(pending, summary)
        summary.seconds = time.perf_counter() - started
        return summary
