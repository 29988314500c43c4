"""What the MONAI bundles (``bundles/<name>/configs/*.json``) call beside the package's own pipelines.

The bundles follow the model zoo's layout and properties (``monai.bundle.properties``): ``inference.json`` builds
``network_def``, loads ``models/*.pt`` (bare state dicts) into it with MONAI's ``CheckpointLoader`` (a handler of the
``evaluator``, as in every zoo bundle), and its ``evaluator`` hands that network to the package's volume engine
(:func:`rmisr_monai.inference.engine.upscale_volume`, through :class:`VolumeInferer`); reading, sharding over
ranks, skipping finished outputs and writing are those of :class:`rmisr_monai.inference.batch.BatchUpscaler`.
Nothing of the engine is copied here: this module only adapts it to the zoo's objects.

* **weights** (:func:`weights_file`): the bundle's ``models/`` folder holds one bare state dict per scale (and
  modality, where CT and MR have their own), named in the config (``"weights": {"CT": {"2": "model.pt", ...}}``);
  the intensity recipe the weights were trained with and their self-ensemble size are config values too
  (``"intensity"``, ``"self_ensemble_recipe"``). A scale the table lacks is refused in one line.
* **dataset** (:class:`VolumeDataset`): the volumes (files and DICOM series) of a folder or CSV list, as
  ``rmisr upscale`` finds them, each with its output path.
* **inferer** (:class:`VolumeInferer`): the run options (scale, axis, intensity, self-ensemble, tiles...); calling it
  on a volume and a network runs the package's engine.
* **evaluator** (:class:`VolumeInference`, :class:`VolumeEvaluation`): Ignite engines whose one iteration runs every
  volume of the dataset; their ``val_handlers`` (the ``CheckpointLoader``) run at ``Events.STARTED``, before it.
* **trainer** (:func:`bundle_trainer`): :func:`rmisr_monai.training.trainer.build_trainer` counted in epochs
  (``train#trainer#max_epochs``) with the config's ``train#inferer``; under ``torchrun`` (:func:`distributed_device`)
  rank 0 alone writes checkpoints.
* **evaluation of a datalist** (:func:`evaluate_folder`): :func:`rmisr_monai.evaluation.evaluate` on every volume of
  a folder (one CSV, JSON and PNG per volume, :func:`rmisr_monai.evaluation.write_report`), plus
  ``evaluation.csv`` / ``evaluation.json`` with every volume's scores and the mean of each method over the volumes.
* **errors** (:func:`one_line_errors`): a project error ends in one line ``rmisr: error: <reason>``; ``monai.bundle
  run`` would otherwise print the config parser's nested traceback.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from ignite.engine import Engine
from torch import nn

from rmisr_monai.errors import ConfigurationError, InputFileError, RmisrError, WeightsError

__all__ = [
    "VolumeDataset",
    "VolumeEvaluation",
    "VolumeInference",
    "VolumeInferer",
    "bundle_trainer",
    "distributed_device",
    "evaluate_folder",
    "one_line_errors",
    "scale_entry",
    "weights_file",
]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("rmisr.bundle")


def one_line_errors(function: F) -> F:
    """Turn a project error raised by ``function`` into ``SystemExit("rmisr: error: <message>")``: one line on
    stderr and exit status 1 under ``python -m monai.bundle run`` (``SystemExit`` passes through the config parser,
    which wraps every ``Exception``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RmisrError as e:
            raise SystemExit(f"rmisr: error: {' '.join(str(e).split())}") from None

    return wrapper  # type: ignore[return-value]


def scale_entry(table: Mapping[str, Any], scale: float, what: str = "entry") -> Any:
    """``table[key]`` for the key (a scale as a string, or ``"*"``: every scale) that equals ``scale``.

    Raises:
        WeightsError: no key serves ``scale``.
    """
    key = "*" if "*" in table else next((k for k in table if abs(float(k) - float(scale)) < 1e-9), None)
    if key is None:
        raise WeightsError(f"no {what} for scale {float(scale):g}; this bundle serves scales {', '.join(table)}")
    return table[key]


@one_line_errors
def weights_file(
    bundle_root: str | os.PathLike,
    files: Mapping[str, Mapping[str, str]] | Mapping[str, str],
    scale: float,
    modality: str | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> str:
    """The state-dict file that serves ``scale`` (and ``modality``): ``checkpoint`` when given, else
    ``<bundle_root>/models/<file>`` from the config's table.

    Args:
        bundle_root: the bundle folder.
        files: ``{scale: file}`` or ``{modality: {scale: file}}`` (scales as strings, ``"*"`` for every scale: an
            arbitrary-scale network); file names relative to ``models/``.
        scale: SR factor asked for.
        modality: ``"CT"`` / ``"MR"`` where the table is per modality.
        checkpoint: a state-dict file to use instead (e.g. the ``models/model.pt`` that ``train.json`` writes).

    Raises:
        SystemExit: one line ``rmisr: error: ...``: no weights for the scale or modality, or a missing file.
    """
    if checkpoint is not None:
        path = Path(checkpoint)
    else:
        table: Mapping[str, Any] = files
        if all(isinstance(v, Mapping) for v in files.values()):
            if modality not in files:
                raise WeightsError(
                    f"{bundle_root}: no weights for modality {modality!r}; choose one of {sorted(files)}"
                )
            table = files[modality]
        what = "weights" if modality is None else f"{modality} weights"
        path = Path(bundle_root) / "models" / scale_entry(table, scale, what)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    return str(path)


class VolumeDataset(torch.utils.data.Dataset):
    """The volumes of a folder or a ``.csv`` list (:func:`rmisr_monai.inference.batch.folder_jobs` /
    :func:`~rmisr_monai.inference.batch.csv_jobs`), or a list of volumes (files and DICOM series folders, e.g.
    ``--dataset_dir "['a.nii.gz','series/']"``), each a :class:`~rmisr_monai.inference.batch.VolumeJob` with
    its output under ``output_dir``. ``data``: the same as ``{"input", "output"}`` dicts."""

    def __init__(
        self,
        dataset_dir: str | os.PathLike | Sequence[str | os.PathLike],
        output_dir: str | os.PathLike,
        output_ext: str | None = None,
    ) -> None:
        from rmisr_monai.inference.jobs import csv_jobs, folder_jobs

        if not isinstance(dataset_dir, (str, os.PathLike)):
            self.jobs = _list_jobs(dataset_dir, output_dir, output_ext)
        elif Path(dataset_dir).is_file() and Path(dataset_dir).suffix.lower() == ".csv":
            self.jobs = csv_jobs(Path(dataset_dir), output_dir, output_ext)
        else:
            self.jobs = folder_jobs(Path(dataset_dir), output_dir, output_ext)
        self.data = [{"input": str(j.input), "output": str(j.output)} for j in self.jobs]

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> Any:
        return self.jobs[index]


def _list_jobs(
    paths: Sequence[str | os.PathLike], output_dir: str | os.PathLike, output_ext: str | None = None
) -> list[Any]:
    """The jobs of a list of volumes: each as one row of a CSV list without an output column would be
    (:func:`~rmisr_monai.inference.jobs.csv_jobs`: the output named after the input, under ``output_dir``)."""
    from rmisr_monai.inference.jobs import csv_jobs

    if not paths:
        raise InputFileError(".", "the dataset list holds no volume")
    with tempfile.TemporaryDirectory(prefix="rmisr-list-") as folder:
        listing = Path(folder) / "dataset.csv"
        with open(listing, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input"])
            writer.writerows([str(Path(p).expanduser().absolute())] for p in paths)
        return csv_jobs(listing, output_dir, output_ext)


class VolumeInferer:
    """The inferer of a bundle: the run options of the package's volume engine and what the weights need (their
    intensity recipe and self-ensemble); ``inferer(volume, network)`` returns the super-resolved ``Volume``, made by
    :class:`rmisr_monai.inference.batch.BatchUpscaler` (its input checks, then
    :func:`rmisr_monai.inference.engine.upscale_volume`) with ``network`` instead of a registry model.

    Args:
        scale: SR factor (in-plane, or of ``axis`` alone when ``through_plane``).
        intensity: the normalisation the weights were trained with
            (:class:`~rmisr_monai.transforms.intensity.IntensityNormalization` ``to_dict()``).
        network_name: the :func:`~rmisr_monai.networks.get_network` name of the network (for the input checks).
        weights: the weights file (recorded in each output's provenance).
        axis, through_plane, device, tile, tile_overlap, batch_size, precision: as
            :class:`rmisr_monai.core.options.RunOptions` (``precision`` ``"auto"``: bf16 / fp16 where the hardware
            runs it natively, ``"fp32"``: the reference).
        self_ensemble: geometric self-ensemble size (1, 2, 4 or 8): the weights' recipe, or the user's choice.
        progress: tqdm bar over the slices.
    """

    def __init__(
        self,
        scale: float,
        intensity: Mapping[str, Any] | None,
        network_name: str = "",
        weights: str | os.PathLike | None = None,
        axis: str | int = "z",
        through_plane: bool = False,
        self_ensemble: int = 1,
        device: str = "auto",
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
        progress: bool = True,
    ) -> None:
        self.scale = float(scale)
        self.intensity = None if intensity is None else dict(intensity)
        self.network_name = network_name
        self.weights = None if weights is None else str(weights)
        self.self_ensemble = int(self_ensemble)
        self.device = device
        self.progress = bool(progress)
        self.options: dict[str, Any] = {
            "scale": self.scale, "axis": str(axis), "through_plane": bool(through_plane), "device": device,
            "tile": tile, "batch": batch_size, "precision": precision, "self_ensemble": self.self_ensemble,
        }  # fmt: skip
        if tile_overlap is not None:
            self.options["tile_overlap"] = int(tile_overlap)

    def metadata(self, network: nn.Module) -> dict[str, Any]:
        """What :func:`rmisr_monai.weights.load_model` would return beside ``network`` for the bundle's weights."""
        from rmisr_monai.weights.loader import sha256_of

        path = self.weights if self.weights and Path(self.weights).is_file() else None
        return {
            "network": self.network_name or type(network).__name__, "network_kwargs": {}, "intensity": self.intensity,
            "info": {}, "path": path, "source": path or self.network_name, "sha256": sha256_of(path) if path else "",
            "self_ensemble": self.self_ensemble,
        }  # fmt: skip

    def upscaler(self, network: nn.Module, **options: Any) -> Any:
        """A :class:`~rmisr_monai.inference.batch.BatchUpscaler` (reading, sharding, skipping, checks, writing with
        provenance) that runs ``network`` with these options; ``options``: its ``overwrite``, ``resample``..."""
        return _network_upscaler(network, self, **options)

    def __call__(self, volume: Any, network: nn.Module) -> Any:
        return self.upscaler(network, progress=self.progress).upscale(volume)


def _network_upscaler(network: nn.Module, inferer: VolumeInferer, **options: Any) -> Any:
    """The package's :class:`~rmisr_monai.inference.batch.BatchUpscaler`, whose network is the bundle's (weights
    loaded by the bundle's ``CheckpointLoader``), not a registry model; everything else is the package's."""
    from rmisr_monai.inference.batch import BatchUpscaler
    from rmisr_monai.inference.engine import resolve_device

    meta = inferer.metadata(network)

    class NetworkUpscaler(BatchUpscaler):
        def check(self, scales: Sequence[float] = ()) -> None:
            resolve_device(self.device)
            other = [s for s in scales if abs(float(s) - inferer.scale) > 1e-9]
            if other:
                raise ConfigurationError(f"this bundle runs at scale {inferer.scale:g}; a job asks for {other[0]:g}")

        def network(self, scale: float, modality: str | None) -> tuple[nn.Module, dict[str, Any]]:
            return network, dict(meta)

    options.setdefault("progress", inferer.progress)
    return NetworkUpscaler(inferer.options, **options)


class _VolumeEngine(Engine):
    """An Ignite engine of one iteration over the whole dataset (the package's batch pipeline does the volumes);
    ``val_handlers`` are attached first, so MONAI's ``CheckpointLoader`` loads the weights at ``STARTED``."""

    def __init__(self, network: nn.Module, inferer: VolumeInferer, dataset: VolumeDataset, val_handlers=()) -> None:
        super().__init__(self._iteration)
        self.network, self.inferer, self.dataset = network, inferer, dataset
        for handler in val_handlers or ():
            handler.attach(self)

    def run(self, data: Any = None, max_epochs: int | None = 1, **kwargs: Any) -> Any:  # type: ignore[override]
        """Run the one iteration (``data``, ``max_epochs``: Ignite's, kept for handlers that read them).

        Raises:
            SystemExit: one line ``rmisr: error: ...`` for a project error (a bad folder, option or weights file).
        """
        try:
            state = super().run([self.dataset] if data is None else data, max_epochs=max_epochs, **kwargs)
        except RmisrError as e:
            raise SystemExit(f"rmisr: error: {' '.join(str(e).split())}") from None
        self._finish(state)
        return state

    def _iteration(self, engine: Engine, batch: Any) -> Any:
        raise NotImplementedError

    def _finish(self, state: Any) -> None:
        """After the run (outside Ignite's handlers, so that an exit is not logged twice)."""


class VolumeInference(_VolumeEngine):
    """The ``evaluator`` of ``inference.json``: upscale every volume of ``dataset`` with ``inferer(volume, network)``
    and write it (atomically, as ``rmisr upscale`` does). ``state.output``: the
    :class:`~rmisr_monai.inference.batch.BatchSummary`; a failed volume (logged in one line naming it) ends the run
    with ``SystemExit`` after the others are done.

    Args:
        network: the bundle's ``network_def`` (its weights loaded by a ``CheckpointLoader`` in ``val_handlers``).
        inferer: the :class:`VolumeInferer`.
        dataset: the :class:`VolumeDataset` (inputs and outputs).
        val_handlers: Ignite/MONAI handlers attached to this engine.
        overwrite: replace existing outputs (default: skip them).
        dtype: stored type of the outputs (default: each input's type).
        resample: resample tilted or unevenly spaced results onto an orthogonal grid
            (:class:`~rmisr_monai.inference.batch.BatchUpscaler`).
    """

    def __init__(
        self,
        network: nn.Module,
        inferer: VolumeInferer,
        dataset: VolumeDataset,
        val_handlers: Sequence = (),
        overwrite: bool = False,
        dtype: str | None = None,
        resample: bool = False,
    ) -> None:
        super().__init__(network, inferer, dataset, val_handlers)
        self.options = {"overwrite": overwrite, "dtype": dtype, "resample": resample}

    def _iteration(self, engine: Engine, batch: Any) -> Any:
        upscaler = self.inferer.upscaler(self.network, **self.options)
        jobs = self.dataset.jobs
        upscaler.check([j.scale for j in jobs if j.scale is not None])
        for folder in {j.output.parent for j in jobs}:
            folder.mkdir(parents=True, exist_ok=True)
        return upscaler.run_jobs(jobs)

    def _finish(self, state: Any) -> None:
        summary = state.output
        logger.info("inference: %s", summary)
        if not summary.ok:
            raise SystemExit(
                f"rmisr: error: {len(summary.failed)} of the inputs failed (named above); the rest are done"
            )


class VolumeEvaluation(_VolumeEngine):
    """The ``evaluator`` of ``evaluate.json``: :func:`evaluate_folder` of the HR volumes of ``dataset`` (degraded,
    upscaled back by bicubic and by ``inferer(volume, network)``, scored); ``state.output``: its result.

    Args:
        network, inferer, dataset, val_handlers: as :class:`VolumeInference` (the dataset's inputs are the HR scans).
        network_name, network_kwargs: what rebuilds ``network`` (:func:`~rmisr_monai.networks.get_network`): the
            scorer takes the network as a package checkpoint, written to a temporary folder.
        output_dir: where the reports go.
        max_slices: score at most this many evenly spaced slices per volume (``None``: all).
        slice_range: pick them from this fraction of each scan to that one (``[0.2, 0.8]``: the middle 60 %).
        round_lr: round the LR to whole numbers (int16), as a low-resolution file would be and as
            ``benchmarks/quality.py`` does (:func:`~rmisr_monai.evaluation.evaluate_volume`; not for scans in
            ``[0, 1]``).
        overwrite: replace existing reports.

    The inferer's ``axis`` and ``through_plane`` are the evaluation's: a through-plane bundle is scored
    through-plane (``axis`` alone degraded and upscaled).
    """

    def __init__(
        self,
        network: nn.Module,
        inferer: VolumeInferer,
        dataset: VolumeDataset,
        network_name: str,
        network_kwargs: Mapping[str, Any],
        output_dir: str | os.PathLike,
        val_handlers: Sequence = (),
        max_slices: int | None = None,
        overwrite: bool = False,
        slice_range: Sequence[float] = (0.0, 1.0),
        round_lr: bool = False,
    ) -> None:
        super().__init__(network, inferer, dataset, val_handlers)
        self.network_name, self.network_kwargs = network_name, dict(network_kwargs)
        self.output_dir, self.max_slices, self.overwrite = output_dir, max_slices, overwrite
        self.slice_range, self.round_lr = tuple(float(f) for f in slice_range), bool(round_lr)

    def _iteration(self, engine: Engine, batch: Any) -> Any:
        from rmisr_monai.weights.loader import save_checkpoint

        inferer = self.inferer
        with tempfile.TemporaryDirectory(prefix="rmisr-bundle-") as folder:
            name = Path(inferer.weights).name if inferer.weights else "model.pt"  # the report names the weights
            path = save_checkpoint(
                Path(folder) / name, self.network, self.network_name, self.network_kwargs, inferer.intensity
            )
            return evaluate_folder.__wrapped__(  # type: ignore[attr-defined]  # errors: one line from run()
                [j.input for j in self.dataset.jobs], self.output_dir, inferer.scale, str(path),
                max_slices=self.max_slices, overwrite=self.overwrite, slice_range=self.slice_range,
                round_lr=self.round_lr, **{k: v for k, v in inferer.options.items() if k != "scale"},
            )  # fmt: skip


def distributed_device() -> torch.device:
    """``multi_gpu_train.json``'s ``device``: :func:`rmisr_monai.training.distributed.init_distributed` (join the
    ``torchrun`` process group), then Ignite's distributed context set up on every rank at once. Ignite sets it up
    lazily with collectives (``new_group``, ``all_reduce``) at its first use; a handler that rank 0 alone builds
    (the ``CheckpointSaver`` of the best weights) would otherwise wait there for the other ranks forever."""
    import ignite.distributed as idist

    from rmisr_monai.training.distributed import init_distributed

    device = init_distributed()
    idist.sync()
    return device


def bundle_trainer(
    max_epochs: int,
    epoch_length: int,
    inferer: Any = None,
    **options: Any,
) -> Any:
    """:func:`rmisr_monai.training.trainer.build_trainer` for ``max_epochs`` epochs of ``epoch_length`` iterations
    (the zoo's ``train#trainer#max_epochs``), its forward pass run by ``inferer`` (``train#inferer``) unless the
    trainer chose CPU bfloat16 autocast (``amp`` on a CPU with native bf16, which keeps its own inferer).

    Args:
        max_epochs: epochs to train (in all, when resuming).
        epoch_length: iterations per epoch.
        inferer: a MONAI inferer of the training forward pass (``None``: the trainer's).
        options: the other keyword arguments of ``build_trainer``.
    """
    from rmisr_monai.training.trainer import CpuBf16Inferer, build_trainer

    trainer = build_trainer(iterations=int(max_epochs) * int(epoch_length), epoch_length=epoch_length, **options)
    if inferer is not None and not isinstance(trainer.inferer, CpuBf16Inferer):
        trainer.inferer = inferer
    return trainer


@one_line_errors
def evaluate_folder(
    dataset_dir: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    scale: float,
    checkpoint: str,
    max_slices: int | None = None,
    overwrite: bool = False,
    **run_options: Any,
) -> dict[str, Any]:
    """Score the model and bicubic on every HR volume under ``dataset_dir`` (module docstring).

    Args:
        dataset_dir: folder of HR volumes (files and DICOM series, found as ``rmisr upscale`` finds them), or the
            list of them.
        output_dir: where the reports go (created if missing).
        scale: SR factor.
        checkpoint: a package checkpoint file or a shipped model name.
        max_slices: score at most this many evenly spaced slices per volume (``None``: all).
        overwrite: replace existing reports.
        run_options: ``axis``, ``through_plane``, ``slice_range``, ``round_lr`` of
            :func:`rmisr_monai.evaluation.evaluate_volume`; ``device``, ``tile``, ``batch``, ``precision``,
            ``self_ensemble``... of the volume engine.

    Returns:
        The content of ``evaluation.json``: ``{"volumes": [report dicts], "mean": {method: {metric: mean}}}``.
    """
    from rmisr_monai.evaluation import METRICS, evaluate, write_report
    from rmisr_monai.inference.jobs import folder_jobs
    from rmisr_monai.io.atomic import atomic_output, check_output_path

    if isinstance(dataset_dir, (str, os.PathLike)):
        inputs = [job.input for job in folder_jobs(dataset_dir, output_dir)]
    else:
        inputs = [Path(p) for p in dataset_dir]
    if not inputs:
        where = dataset_dir if isinstance(dataset_dir, (str, os.PathLike)) else "."
        raise InputFileError(where, "no volume to evaluate")
    out = Path(output_dir)
    summary_paths = {kind: out / f"evaluation.{kind}" for kind in ("csv", "json")}
    if out.is_dir():  # refuse before any work when the summary exists
        for path in summary_paths.values():
            check_output_path(path, overwrite=overwrite)
    method = {"weights": [checkpoint]} if Path(checkpoint).is_file() else {"models": [checkpoint]}
    reports = []
    for source in inputs:
        report = evaluate(source, scale, max_slices=max_slices, **method, **run_options)
        write_report(report, out, overwrite=overwrite)
        reports.append(report.to_dict())
        logger.info("evaluated %s: %s", source, ", ".join(f"{s.method} {s.psnr:.2f} dB" for s in report.scores))
    fields = ["input", "method", *METRICS, "seconds"]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for report in reports:
        for scores in report["scores"]:
            writer.writerow({"input": report["input"], **scores})
    methods = dict.fromkeys(s["method"] for r in reports for s in r["scores"])
    mean = {
        m: {k: sum(s[k] for r in reports for s in r["scores"] if s["method"] == m) / len(reports) for k in METRICS}
        for m in methods
    }
    result = {"scale": float(scale), "volumes": reports, "mean": mean}
    for kind, text in (("csv", table.getvalue()), ("json", json.dumps(result, indent=2) + "\n")):
        with atomic_output(summary_paths[kind], overwrite=overwrite) as temp:
            temp.write_text(text, encoding="utf-8")
    logger.info("evaluation over %d volumes: %s", len(reports), json.dumps(mean))
    return result
