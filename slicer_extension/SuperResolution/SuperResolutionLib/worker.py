"""The worker: super-resolve one volume file with rmisr_monai's volume engine, reporting on the line protocol.

An ordinary command-line program (run by ``PythonSlicer`` from the module, or by any Python with rmisr_monai)::

    python Scripts/super_resolution_worker.py --input ct.mha --output ct_x2.mha --scale 2 --model rmisr_bl_ct_x2 \\
        [--axis z] [--through-plane] [--device auto] [--reference hr.mha] [--quality quality.json]

It reads with :func:`rmisr_monai.io.read.read_volume`, picks the network and its intensity mapping by the CLI's rule
(:func:`rmisr_monai.inference.selection.select_network`, :func:`~rmisr_monai.inference.selection.intensity_for`),
upscales with :func:`rmisr_monai.inference.upscale_array`, writes with :func:`rmisr_monai.io.write.write_volume`
(atomic; the input's voxel type) and scores the result with :mod:`SuperResolutionLib.quality`. Progress,
the error sentence and the end are protocol lines on stdout (:mod:`SuperResolutionLib.protocol`); the exit status
is 0 on success, 2 for an error the user can fix, 130 when interrupted.

Progress: the engine's progress is a tqdm bar, so the volume is handed to it in slabs of slices along its slice axis
(:func:`rmisr_monai.inference.engine.slice_layout`), one progress line per slab. Slices are independent, and an MR
normalisation is fitted once on the whole volume (then applied as a fixed range), so the result is that of one
:func:`~rmisr_monai.inference.upscale_volume` call (tested).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rmisr_monai.errors import RmisrError
from rmisr_monai.inference import output_spatial_shape, resolve_axis, upscale_array
from rmisr_monai.inference.engine import slice_layout
from rmisr_monai.inference.ensemble import SELF_ENSEMBLE_SIZES
from rmisr_monai.inference.selection import intensity_for, select_network, self_ensemble_for
from rmisr_monai.io.atomic import atomic_output
from rmisr_monai.io.geometry import rescaled_geometry
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import write_volume
from rmisr_monai.transforms.intensity import IntensityNormalization

from SuperResolutionLib import protocol
from SuperResolutionLib.quality import check_same_grid, quality_report

__all__ = ["main", "build_parser", "upscale_with_progress", "SLABS"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
SLABS = 50  # progress lines for the super-resolution stage (at most)
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a shipped model name (rmisr_monai registry) or bicubic/bilinear/nearest")
    source.add_argument("--weights", help="an rmisr-monai checkpoint file (.pt)")
    p.add_argument("--axis", default="z", help="index axis x|y|z (0|1|2): slice axis, or thick axis through-plane")
    p.add_argument("--through-plane", action="store_true", help="upscale only --axis (arbitrary-scale models)")
    p.add_argument("--modality", choices=("auto", "CT", "MR"), default="auto",
                   help="intensity normalisation for a checkpoint that records none (auto: guessed from the values)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the network runs")
    p.add_argument("--batch", type=int, default=4, help="slices per network call")
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels for large slices")
    p.add_argument("--self-ensemble", type=int, default=None, choices=SELF_ENSEMBLE_SIZES,
                   help="mean over N flipped/rotated copies (default: the model's recipe, as rmisr upscale)")
    p.add_argument("--reference", default=None, help="a volume on the output's grid to score PSNR/SSIM against")
    p.add_argument("--quality", default=None, help="write the quality report (JSON) here")
    return p


def _fixed(intensity: dict | None, array: np.ndarray) -> IntensityNormalization | None:
    """The normalisation fitted on the whole volume, as a fixed range (so that every slab maps alike)."""
    if intensity is None:
        return None
    fitted = IntensityNormalization.from_dict(intensity).fit(array)
    return IntensityNormalization(kind="range", a_min=fitted.a_min, a_max=fitted.a_max, clip=fitted.clip)


def upscale_with_progress(
    volume: Volume,
    network,
    scale: float,
    *,
    axis: str | int = "z",
    through_plane: bool = False,
    intensity: dict | None = None,
    report: Callable[[int, int], None] | None = None,
    slabs: int = SLABS,
    **options,
) -> Volume:
    """:func:`~rmisr_monai.inference.upscale_volume` in slabs of slices, calling ``report(done, total)`` after each.

    ``options`` go to :func:`~rmisr_monai.inference.upscale_array` (device, tile, batch_size, out_dtype, ...).
    """
    ax = resolve_axis(axis)
    shape = tuple(volume.array.shape)
    slice_axis = slice_layout(ax, through_plane, shape)[0]
    out_shape = output_spatial_shape(shape, scale, ax, through_plane)
    norm = _fixed(intensity, volume.array)
    out_dtype = np.dtype(options.pop("out_dtype", None) or np.float32)
    out = np.empty(out_shape, dtype=out_dtype)
    total = shape[slice_axis]
    step = max(1, -(-total // max(1, slabs)))
    for start in range(0, total, step):
        index = [slice(None)] * 3
        index[slice_axis] = slice(start, min(total, start + step))
        out[tuple(index)] = upscale_array(
            volume.array[tuple(index)],
            network,
            scale,
            axis=ax,
            through_plane=through_plane,
            intensity=norm,
            progress=False,
            out_dtype=out_dtype,
            **options,
        )
        if report is not None:
            report(min(total, start + step), total)
    geometry = rescaled_geometry(volume.geometry, shape, out_shape)
    return dataclasses.replace(volume, array=out, geometry=geometry)


def _progress(stage: str, fraction: float = 0.0, text: str = "") -> None:
    low, high = STAGES[stage]
    protocol.emit("progress", stage=stage, fraction=low + (high - low) * fraction, text=text or stage)


def run(args: argparse.Namespace) -> dict:
    """Do the work; returns the ``done`` fields."""
    started = time.perf_counter()
    _progress("reading")
    volume = read_volume(args.input)
    modality = volume.modality if args.modality == "auto" else args.modality
    network, meta = select_network(args.model, args.weights, args.scale, modality, args.through_plane)
    intensity = intensity_for(meta, modality)
    reference = read_volume(args.reference) if args.reference else None
    if reference is not None:  # before the long part: a reference off the output grid fails at once
        out_shape = output_spatial_shape(volume.array.shape, args.scale, args.axis, args.through_plane)
        check_same_grid(reference, out_shape, rescaled_geometry(volume.geometry, volume.array.shape, out_shape))

    def report(done: int, total: int) -> None:
        _progress("super-resolution", done / total, f"{done} / {total} slices")

    _progress("super-resolution")
    result = upscale_with_progress(
        volume,
        network,
        args.scale,
        axis=args.axis,
        through_plane=args.through_plane,
        intensity=intensity,
        report=report,
        device=args.device,
        tile=args.tile,
        batch_size=args.batch,
        out_dtype=volume.source_dtype,
        modality=modality,
        ensemble=self_ensemble_for(meta, args.self_ensemble),
    )
    _progress("writing")
    write_volume(result, args.output, overwrite=True)
    done = {"output": str(args.output), "shape": list(result.array.shape)}
    if args.quality:
        _progress("quality")
        report_ = quality_report(volume, result, args.axis, args.through_plane, reference)
        report_["seconds"] = time.perf_counter() - started
        with atomic_output(Path(args.quality), overwrite=True) as temp:
            Path(temp).write_text(json.dumps(report_, indent=1), encoding="utf-8")
        done["quality"] = str(args.quality)
    _progress("quality", 1.0, "done")
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
