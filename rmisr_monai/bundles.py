"""What the MONAI bundles (``bundles/<name>/configs/*.json``) call beside the package's own pipelines.

The bundles train with :func:`rmisr_monai.training.trainer.build_trainer`, upscale with
:class:`rmisr_monai.inference.batch.BatchUpscaler` and evaluate with :mod:`rmisr_monai.evaluation`; this module only
adds the bundle-specific glue:

* **weights** (:func:`bundle_checkpoint`). A bundle's ``models/model.pt`` is a byte-for-byte copy of one shipped
  checkpoint of ``rmisr_monai/weights`` (a test asserts the sha256 equality), in the package's checkpoint format
  (``weights/loader.py``): the state dict sits under ``"state_dict"`` beside the intensity normalisation the weights
  were trained with, which inference cannot do without. MONAI's own tools read it with ``key_in_ckpt``
  (``python -m monai.bundle ckpt_export ... --key_in_ckpt state_dict``). Scale rule (one bundle per network and
  modality, ``scale`` overridable): ``models/model.pt`` serves its own scale (every scale for an arbitrary-scale
  network); another scale is served by the package's shipped model of that scale, network and modality
  (``weights/registry.json``), so no second copy of it lives in the bundle. A checkpoint whose ``info`` says
  ``"trained": false`` (the random initialisation a bundle ships until its model is trained, so that the export
  checks run) is refused.
* **inference summary** (:func:`run_inference`): the batch run's summary logged at the end, and a non-zero exit
  status when a volume failed (as ``rmisr upscale`` does).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rmisr_monai.errors import InputFileError, RmisrError, WeightsError
from rmisr_monai.weights.loader import default_model, load_model

__all__ = ["BUNDLE_MODEL", "bundle_checkpoint", "evaluate_folder", "one_line_errors", "run_inference", "serves_scale"]

BUNDLE_MODEL = Path("models") / "model.pt"  # MONAI Bundle Specification: fixed name of the weights
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


def serves_scale(meta: dict, scale: float) -> bool:
    """Whether a checkpoint's network (its metadata from :func:`~rmisr_monai.weights.loader.load_model`) runs at
    ``scale``: any scale for an arbitrary-scale (Meta-SR) network, else its sub-pixel scale."""
    kwargs = meta.get("network_kwargs", {})
    if kwargs.get("upsampler") == "meta":
        return True
    return abs(float(kwargs.get("scale", 2)) - float(scale)) < 1e-9


@one_line_errors
def bundle_checkpoint(
    bundle_root: str | os.PathLike,
    scale: float,
    network: str,
    modality: str,
    checkpoint: str | os.PathLike | None = None,
) -> str:
    """The checkpoint (file path or shipped model name) that serves ``scale`` (module docstring).

    Args:
        bundle_root: the bundle folder.
        scale: SR factor asked for.
        network: the bundle's :func:`~rmisr_monai.networks.get_network` name.
        modality: ``"CT"`` or ``"MR"``: picks the shipped model for a scale ``models/model.pt`` does not serve.
        checkpoint: a checkpoint file to use instead (e.g. the ``models/model.pt`` written by ``train.json``).

    Raises:
        SystemExit: one line ``rmisr: error: ...``: a missing, unreadable or untrained checkpoint, one of another
            network or scale, or no weights for the scale.
    """
    path = Path(bundle_root) / BUNDLE_MODEL if checkpoint is None else Path(checkpoint)
    _, meta = load_model(path)
    if meta["info"].get("trained") is False:
        raise WeightsError(
            f"{path}: the {network} model of this bundle is not trained yet (the file holds the random "
            "initialisation used for the export checks); train it with configs/train.json and pass the "
            "models/model.pt it writes with --checkpoint"
        )
    if meta["network"] != network:
        raise WeightsError(f"{path}: holds a {meta['network']} network, this bundle runs {network}")
    if serves_scale(meta, scale):
        return str(path)
    if checkpoint is not None:
        raise WeightsError(f"{path}: holds x{meta['network_kwargs'].get('scale')} weights, not x{float(scale):g}")
    try:
        return str(default_model(float(scale), modality, network=network)["name"])
    except WeightsError as e:
        raise WeightsError(
            f"{path}: holds x{meta['network_kwargs'].get('scale')} weights and no shipped {network} {modality} "
            f"model serves scale {float(scale):g} ({e})"
        ) from None


@one_line_errors
def run_inference(upscaler: Any, dataset_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Any:
    """``upscaler.run(dataset_dir, output_dir)`` (a :class:`~rmisr_monai.inference.batch.BatchUpscaler`), its
    summary logged; a failed volume (already logged in one line naming it) makes the exit status 1 at the end.

    Raises:
        SystemExit: one line ``rmisr: error: ...`` for a bad folder or option, or the failed volumes' count.
    """
    summary = upscaler.run(dataset_dir, output_dir)
    logger.info("inference: %s", summary)
    if not summary.ok:
        raise SystemExit(f"rmisr: error: {len(summary.failed)} of the inputs failed (named above); the rest are done")
    return summary


@one_line_errors
def evaluate_folder(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    scale: float,
    checkpoint: str,
    max_slices: int | None = None,
    overwrite: bool = False,
    **run_options: Any,
) -> dict[str, Any]:
    """Score the model and bicubic on every HR volume under ``dataset_dir`` (module docstring).

    Args:
        dataset_dir: folder of HR volumes (files and DICOM series, found as ``rmisr upscale`` finds them).
        output_dir: where the reports go (created if missing).
        scale: SR factor.
        checkpoint: what :func:`bundle_checkpoint` chose: a checkpoint file or a shipped model name.
        max_slices: score at most this many evenly spaced slices per volume (``None``: all).
        overwrite: replace existing reports.
        run_options: ``device``, ``tile``, ``batch_size``, ``amp``... of the volume engine.

    Returns:
        The content of ``evaluation.json``: ``{"volumes": [report dicts], "mean": {method: {metric: mean}}}``.
    """
    from rmisr_monai.evaluation import METRICS, evaluate, write_report
    from rmisr_monai.inference.batch import folder_jobs
    from rmisr_monai.io.atomic import atomic_output, check_output_path

    jobs = folder_jobs(dataset_dir, output_dir)
    if not jobs:
        raise InputFileError(dataset_dir, "no volume to evaluate")
    out = Path(output_dir)
    summary_paths = {kind: out / f"evaluation.{kind}" for kind in ("csv", "json")}
    if out.is_dir():  # refuse before any work when the summary exists
        for path in summary_paths.values():
            check_output_path(path, overwrite=overwrite)
    method = {"weights": [checkpoint]} if Path(checkpoint).is_file() else {"models": [checkpoint]}
    reports = []
    for job in jobs:
        report = evaluate(job.input, scale, max_slices=max_slices, **method, **run_options)
        write_report(report, out, overwrite=overwrite)
        reports.append(report.to_dict())
        logger.info("evaluated %s: %s", job.input, ", ".join(f"{s.method} {s.psnr:.2f} dB" for s in report.scores))
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
