"""The worker: super-resolve one volume file with rmisr_monai's volume engine, reporting on the line protocol.

An ordinary command-line program (run by ``PythonSlicer`` from the module, or by any Python that has the engine:
the packaged module folder's ``rmisr_monai``, or an installed one)::

    python Scripts/super_resolution_worker.py --input ct.mha --output ct_x2.mha --scale 2 [--model NAME] \\
        [--axis z] [--through-plane] [--device auto] [--precision auto] [--reference hr.mha] [--quality q.json]

It reads with :func:`rmisr_monai.io.read.read_volume`, picks the network and its intensity mapping by the CLI's rule
(:func:`rmisr_monai.inference.selection.select_network`, :func:`~rmisr_monai.inference.selection.intensity_for`,
:func:`~rmisr_monai.inference.selection.self_ensemble_for`: without ``--model``/``--weights`` the shipped default
for the scale and the input's modality, as ``rmisr upscale``), upscales (:func:`run_engine`), writes with
:func:`rmisr_monai.io.write.write_volume` (atomic; the input's voxel type) and scores the result with
:mod:`SuperResolutionLib.quality`. Progress, the error sentence and the end are protocol lines on stdout
(:mod:`SuperResolutionLib.protocol`); the ``done`` line names the device that ran (GPU name or ``CPU``), the
precision of the network call and the seconds taken. The exit status is 0 on success, 2 for an error the user can
fix, 130 when interrupted.

Progress: :func:`run_engine` makes one :func:`~rmisr_monai.inference.upscale_volume` call with the run options
and a progress callable; each call of it becomes a protocol line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rmisr_monai.core.options import RunOptions
from rmisr_monai.errors import RmisrError
from rmisr_monai.inference import output_spatial_shape, upscale_volume
from rmisr_monai.inference.engine import PRECISIONS, resolve_device, resolve_precision
from rmisr_monai.inference.ensemble import SELF_ENSEMBLE_SIZES
from rmisr_monai.inference.selection import intensity_for, model_source, select_network, self_ensemble_for
from rmisr_monai.io.atomic import atomic_output
from rmisr_monai.io.geometry import rescaled_geometry
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import write_volume
from SuperResolutionLib import protocol
from SuperResolutionLib.quality import check_same_grid, quality_report

__all__ = ["main", "build_parser", "run_engine", "device_name", "precision_name"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# share of the whole job given to each stage in the progress fraction
STAGES = {"reading": (0.0, 0.05), "super-resolution": (0.05, 0.9), "writing": (0.9, 0.97), "quality": (0.97, 1.0)}

logger = logging.getLogger("rmisr.slicer")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the worker (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="super_resolution_worker",
        description="Super-resolve a volume with rmisr_monai; progress as '@rmisr {json}' lines on stdout.",
    )
    p.add_argument("--input", required=True, help="input volume (.mha, .nrrd, .nii.gz or a DICOM folder)")
    p.add_argument("--output", required=True, help="output volume (format from the extension); replaced if it exists")
    p.add_argument("--scale", type=float, required=True, help="upscaling factor")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        help="a shipped model name (rmisr_monai registry) or bicubic/bilinear/nearest (default: the shipped model "
        "for the scale and the input's modality, as rmisr upscale)",
    )
    source.add_argument("--weights", help="an rmisr-monai checkpoint file (.pt)")
    p.add_argument("--axis", default="z", help="index axis x|y|z (0|1|2): slice axis, or thick axis through-plane")
    p.add_argument("--through-plane", action="store_true", help="upscale only --axis (arbitrary-scale models)")
    p.add_argument("--modality", choices=("auto", "CT", "MR"), default="auto",
                   help="intensity normalisation for a checkpoint that records none (auto: guessed from the values)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the network runs")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="network call precision (as rmisr upscale)")
    p.add_argument("--batch", type=int, default=None, help="slices per network call (default: from the memory budget)")
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels for large slices")
    p.add_argument("--self-ensemble", type=int, default=None, choices=SELF_ENSEMBLE_SIZES,
                   help="mean over N flipped/rotated copies (default: the model's recipe, as rmisr upscale)")
    p.add_argument("--reference", default=None, help="a volume on the output's grid to score PSNR/SSIM against")
    p.add_argument("--quality", default=None, help="write the quality report (JSON) here")
    return p


def _progress(stage: str, fraction: float = 0.0, text: str = "") -> None:
    low, high = STAGES[stage]
    protocol.emit("progress", stage=stage, fraction=low + (high - low) * fraction, text=text or stage)


def device_name(device) -> str:
    """What ran: the GPU's name (``"cuda:0 (NVIDIA H100 80GB HBM3)"``) or ``"CPU"``."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type.upper()


def precision_name(network, device, precision: str) -> str:
    """The precision of the network call as the engine resolves it (``fp32``, ``bf16`` or ``fp16``)."""
    import torch

    learned = any(True for _ in network.parameters())
    dtype = resolve_precision(precision, device, learned=learned)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def run_engine(volume: Volume, network, meta: dict, args: argparse.Namespace, modality: str | None, report) -> Volume:
    """The engine call, in one place: ``volume`` upscaled with the :class:`~rmisr_monai.core.options.RunOptions` of
    ``args`` (self-ensemble: the model's recipe unless chosen, as ``rmisr upscale``), ``report(done, total)`` called
    by the engine after each batch of slices."""
    options = RunOptions(
        scale=args.scale,
        axis=str(args.axis),
        through_plane=args.through_plane,
        device=args.device,
        precision=args.precision,
        batch=args.batch,
        tile=args.tile,
        self_ensemble=self_ensemble_for(meta, args.self_ensemble),
        out_dtype=volume.source_dtype,
    )
    if modality != volume.modality:
        volume = dataclasses.replace(volume, modality=modality)
    return upscale_volume(volume, network, options=options, intensity=intensity_for(meta, modality), progress=report)


def run(args: argparse.Namespace) -> dict:
    """Do the work; returns the ``done`` fields."""
    started = time.perf_counter()
    _progress("reading")
    device = resolve_device(args.device)  # a CUDA request without a GPU fails here, in words
    volume = read_volume(args.input)
    modality = volume.modality if args.modality == "auto" else args.modality
    network, meta = select_network(args.model, args.weights, args.scale, modality, args.through_plane)
    reference = read_volume(args.reference) if args.reference else None
    if reference is not None:  # before the long part: a reference off the output grid fails at once
        out_shape = output_spatial_shape(volume.array.shape, args.scale, args.axis, args.through_plane)
        check_same_grid(reference, out_shape, rescaled_geometry(volume.geometry, volume.array.shape, out_shape))
    ran_on = device_name(device)
    precision = precision_name(network, device, args.precision)
    # what ran, by the name the user would give it: the registry name of a shipped model, else the file or network
    model = Path(args.weights).name if args.weights else model_source(args.model, None, args.scale, modality,
                                                                      args.through_plane)  # fmt: skip
    logger.info("model %s, x%g, on %s, %s", model, args.scale, ran_on, precision)

    def report(done: int, total: int) -> None:
        _progress("super-resolution", done / total, f"{done} / {total} slices on {ran_on}")

    _progress("super-resolution", 0.0, f"super-resolution on {ran_on}")
    result = run_engine(volume, network, meta, args, modality, report)
    _progress("writing")
    write_volume(result, args.output, overwrite=True)
    done = {
        "output": str(args.output),
        "shape": list(result.array.shape),
        "model": str(model),
        "device": ran_on,
        "precision": precision,
    }
    if args.quality:
        _progress("quality")
        report_ = quality_report(volume, result, args.axis, args.through_plane, reference)
        report_.update(seconds=time.perf_counter() - started, device=ran_on, precision=precision)
        with atomic_output(Path(args.quality), overwrite=True) as temp:
            Path(temp).write_text(json.dumps(report_, indent=1), encoding="utf-8")
        done["quality"] = str(args.quality)
    _progress("quality", 1.0, "done")
    done["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("done in %.1f s on %s (%s)", done["seconds"], ran_on, precision)
    return done


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker with ``argv``; returns the exit status (errors end as one ``error`` protocol line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="rmisr: %(message)s", stream=sys.stderr)
    try:
        protocol.emit("done", **run(args))
        return 0
    except KeyboardInterrupt:
        protocol.emit("error", text="interrupted; nothing written")
        return EXIT_INTERRUPTED
    except (RmisrError, ValueError, OSError) as error:
        protocol.emit("error", text=_one_line(error))
        return EXIT_ERROR
    except Exception as error:  # torch/CUDA failures: the traceback goes to the log, one sentence to the user
        logger.exception("unexpected failure")
        protocol.emit("error", text=f"unexpected {type(error).__name__}: {_one_line(error)} (details in the log)")
        return EXIT_ERROR
