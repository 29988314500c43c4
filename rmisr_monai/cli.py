"""``rmisr``: super-resolve medical volumes from the command line (a thin shell around the volume engine).

Every error a user can cause ends as one line ``rmisr: error: <message>`` on stderr and a non-zero exit status,
with nothing written; Ctrl-C leaves no output and exits 130. Patient tags are never printed or logged.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from rmisr_monai.core.options import RunOptions
from rmisr_monai.errors import ConfigurationError, RmisrError

__all__ = ["main", "build_parser", "SAMPLE_PATH", "EXIT_ERROR", "EXIT_OS_ERROR", "EXIT_INTERRUPTED", "RUN_FIELDS"]

SAMPLE_PATH = Path(__file__).resolve().parent / "sample" / "ct_demo_abdomen_int16.nii.gz"
EXIT_ERROR = 2  # bad input, option or weights (argparse uses 2 for bad usage too)
EXIT_OS_ERROR = 1  # the system refused (permissions, disk full...)
EXIT_INTERRUPTED = 130  # 128 + SIGINT
THIRD_PARTY_LOGGERS = ("pydicom", "nibabel", "nibabel.global")
# the RunOptions fields every command that runs a network takes (scale, axis, model, weights are per command)
RUN_FIELDS = (
    "device", "precision", "batch", "tile", "tile_overlap", "self_ensemble", "memory_limit", "adapt", "seed",
    "input_floor", "allow_extrapolation",
)


_DESCRIPTION = """\
Medical-image super-resolution with 2D networks applied slice by slice.

FOR RESEARCH USE ONLY: super-resolved images can invent or hide findings; they are not for diagnosis. Every
output records the model, its sha256 and the options that made it (NIfTI descrip and OUT.json beside it, NRRD/MHA
header key, DICOM DerivationDescription and ImageComments).

commands:
  upscale   super-resolve a NIfTI / NRRD / MHA file or a DICOM series folder
  info      print the shape, spacing, orientation and intensity range of an image (never patient tags)
  evaluate  quality check on your own scan: degrade it, upscale it back, score every method (table, figure)
  demo      upscale the shipped sample CT x2 (default model and bicubic) and report the timing

examples:
  rmisr upscale ct.nii.gz ct_x2.nii.gz --scale 2
  rmisr upscale ct.nii.gz ct_x2.nii.gz --scale 2 --model bicubic
  rmisr upscale dicom_folder/ out_x2.nrrd --scale 2 --weights my_rmisr.pt --tile 256
  rmisr upscale thick.mha thin.mha --scale 2.5 --axis z --through-plane --model bicubic
  rmisr info dicom_folder/
  rmisr demo ./rmisr_demo
"""

_UPSCALE_DESCRIPTION = """\
Super-resolve INPUT and write OUTPUT. In-plane (default): every slice orthogonal to --axis is upscaled by SCALE
on its two axes. Through-plane (--through-plane, thick slices): only --axis is upscaled, by an arbitrary-scale
network (e.g. --model bicubic, or a checkpoint of a network built with upsampler="meta").
Each upscaled axis of n voxels gets round(n * SCALE) voxels; the physical extent (the box of voxel corners) and the
orientation are kept, the spacing shrinks accordingly.

Many volumes: INPUT may be a folder of volumes (every NIfTI / NRRD / MHA / MHD file and DICOM series folder under
it; the relative paths and names are kept under OUTPUT) or a .csv list (a column 'input', optional 'output' and
'scale' columns). A folder that directly holds a DICOM file (.dcm/.ima or the DICM preamble), or holds neither
volume files nor sub-folders, is one DICOM series. Existing outputs are skipped (rerunning resumes), a bad input is
reported in one line and the rest go on, a summary ends the run, the exit status is 2 when any failed. Under
torchrun --nproc_per_node=N each process takes its share.

geometry as scanners write it:
  gantry tilt (slices advancing off their normal) and unevenly spaced slices are read exactly. DICOM output keeps
  every slice's own ImageOrientationPatient and ImagePositionPatient (moved by the half-pixel rule). Of the
  single-affine formats, NIfTI holds a tilt as an exact sheared sform (qform left unset: a quaternion cannot hold
  a shear; nibabel/MONAI read it, ITK/SimpleITK/Slicer refuse such a NIfTI), NRRD ('space directions') and MHA
  ('TransformMatrix') hold the non-orthogonal axes exactly (read back so by SimpleITK and pynrrd); no single-
  affine format holds uneven spacing, so it needs --resample or a DICOM folder. Enhanced multi-frame DICOM
  files are read from their functional groups (written back as a single-frame series); 4D inputs (NIfTI or
  NRRD/MHA 4D, DICOM with several temporal positions, echoes or b-values) are upscaled volume by volume, the
  fourth axis and its metadata (NIfTI pixdim[4] / TR, time unit, toffset) kept. .nhdr writes a detached header
  and its <name>.raw.gz data file. 'rmisr info' tells which of these an input has.

examples:
  rmisr upscale ct.nii.gz ct_x2.nii.gz --scale 2                    # shipped default model for x2
  rmisr upscale scans/ scans_x2/ --scale 2                          # every volume under scans/
  rmisr upscale list.csv out/ --model bicubic                       # input,output,scale rows
  rmisr upscale ct.nii.gz ct_x2.nii.gz --scale 2 --model bicubic    # MATLAB bicubic, no weights needed
  rmisr upscale series/ out_dicom/ --scale 2 --weights rmisr.pt     # DICOM series in, DICOM series out
  rmisr upscale t2.nii.gz t2_iso.nii.gz --scale 3 --axis z --through-plane --model bicubic
"""


_STACK_HELP = (
    "DICOM frames that form several stacks (orientations or StackIDs of an enhanced multi-frame file, a "
    "localizer): read stack N (the error lists them)"
)


_EVALUATE_DESCRIPTION = """\
Quality check on a scan of your own: HR is shrunk by SCALE in-plane with the bicubic degradation of training
(MATLAB imresize), upscaled back with bicubic and with each chosen model exactly as 'rmisr upscale' runs them, and
scored against HR slice by slice: PSNR, SSIM, edge PSNR (Laplacian maps) and back-projection consistency (the output
shrunk again against the LR input). Intensities are scored as in training: the HU window -1024..3071 for CT, the
0.5 / 99.5 percentiles for MR. --report DIR adds a CSV, a JSON and a PNG figure of a representative slice (LR,
bicubic, each model, HR, difference maps, zoomed detail).

examples:
  rmisr evaluate ct.nii.gz --scale 2                               # shipped model vs bicubic
  rmisr evaluate ct.nii.gz --scale 2 --model bicubic --report qc/
  rmisr evaluate t1.nii.gz --scale 4 --weights mine.pt --model rmisr_bl_mr_x4 --max-slices 16
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line ``rmisr: error: ...`` (exit 2) like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_ERROR, f"rmisr: error: {message} (see rmisr --help)\n")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The run options (:class:`~rmisr_monai.core.options.RunOptions`, help from its fields) and the command's
    own ``--overwrite`` and ``--quiet``."""
    RunOptions.add_arguments(p, RUN_FIELDS)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no messages, only errors")


def build_parser() -> argparse.ArgumentParser:
    """The ``rmisr`` argument parser (sub-commands ``upscale``, ``info``, ``demo``)."""
    from rmisr_monai import __version__

    parser = _Parser(
        prog="rmisr",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 success, 2 bad input/option/weights, 1 system error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"rmisr-monai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    up = sub.add_parser(
        "upscale",
        help="super-resolve a volume",
        description=_UPSCALE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "input",
        metavar="INPUT",
        help="a .nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd file or a DICOM series folder; or a folder of volumes / a "
        ".csv list (many volumes, see above)",
    )
    up.add_argument(
        "output",
        metavar="OUTPUT",
        help="the result; its extension picks the format (.nii.gz, .nii, .nrrd, .nhdr, .mha), a folder for DICOM; "
        "the output folder for many volumes",
    )
    RunOptions.add_arguments(up, ("scale", "model", "weights", "axis", "through_plane"), scale={"required": True})
    up.add_argument("--series-uid", metavar="UID", default=None, help="DICOM folder with several series: pick one")
    up.add_argument("--stack", metavar="N", default=None, help=_STACK_HELP)
    up.add_argument(
        "--resample",
        action="store_true",
        help="tilted (gantry tilt) or unevenly spaced slices: resample the result onto a regular orthogonal grid "
        "for NIfTI/NRRD/MHA output, as dcm2niix does (linear, lossy). Default: no resampling; a tilted stack is "
        "written with its exact sheared affine (see 'geometry' above) and an uneven one is refused for those "
        "formats. DICOM output always keeps every slice's own plane",
    )
    up.add_argument(
        "--output-ext",
        metavar="EXT",
        default=None,
        help="folder or CSV mode: suffix of the outputs, e.g. .nii.gz (default: the input's; a DICOM series gives a "
        "DICOM folder)",
    )
    RunOptions.add_arguments(up, ("out_dtype",))
    _add_run_options(up)

    info = sub.add_parser(
        "info",
        help="describe an image (no patient tags)",
        description="Print the shape, spacing, orientation, modality and intensity range of INPUT, and in plain "
        "words its slice spacing (even or not), gantry tilt, DICOM frames and stacks and fourth axis. "
        "Patient tags are never printed.\n\nexample:\n  rmisr info ct.nii.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("input", metavar="INPUT", help="an image file or a DICOM folder")
    info.add_argument("--series-uid", metavar="UID", default=None, help="DICOM folder with several series: pick one")
    info.add_argument("--stack", metavar="N", default=None, help=_STACK_HELP)

    ev = sub.add_parser(
        "evaluate",
        help="quality check on your own scan: degrade, upscale back, score against it",
        description=_EVALUATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("input", metavar="HR", help="a high-resolution scan: an image file or a DICOM series folder")
    RunOptions.add_arguments(ev, ("scale",), scale={"help": "SR factor to test (default: 2)"})
    ev.add_argument(
        "--model",
        metavar="NAME",
        action="append",
        default=None,
        help="a method to score besides bicubic (repeatable): shipped model, network or interpolator name. "
        "Default: the shipped model for the scale and modality, if any",
    )
    ev.add_argument("--weights", metavar="PATH", action="append", default=[], help="a checkpoint to score (repeatable)")
    RunOptions.add_arguments(ev, ("axis",), axis={"help": "slice axis (default: z)"})
    ev.add_argument(
        "--max-slices",
        type=_positive_int,
        default=None,
        metavar="N",
        help="score N evenly spaced slices (default: all)",
    )
    ev.add_argument("--series-uid", metavar="UID", default=None, help="DICOM folder with several series: pick one")
    ev.add_argument(
        "--report", metavar="DIR", default=None, help="also write <name>_x<S>_quality.png/.csv/.json into DIR"
    )
    _add_run_options(ev)

    demo = sub.add_parser(
        "demo",
        help="upscale the shipped sample CT x2",
        description="Upscale the shipped sample CT (rmisr_monai/sample, see its README for provenance and licence) "
        "x2 with the default model and with bicubic interpolation, write both into OUTPUT_DIR and print the "
        "timing; then shrink the sample x2, upscale it back with both, print their scores against the original and "
        "write a figure (PNG, with CSV/JSON scores) of what each does.\n\nexample:\n  rmisr demo ./rmisr_demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder for the results (created if missing)")
    demo.add_argument(
        "--model", metavar="NAME", default=None, help="model to compare with bicubic (default: the shipped x2 model)"
    )
    _add_run_options(demo)
    return parser


def _upscaler(args: argparse.Namespace, **changes):
    """The :class:`~rmisr_monai.inference.batch.BatchUpscaler` of the arguments: their
    :class:`~rmisr_monai.core.options.RunOptions` (every field the command has) with ``changes``."""
    from rmisr_monai.inference.batch import BatchUpscaler

    return BatchUpscaler(
        RunOptions.from_arguments(args, **changes),
        output_ext=getattr(args, "output_ext", None),
        overwrite=args.overwrite,
        progress=not args.quiet,
        resample=getattr(args, "resample", False),
    )


def _evaluation_options(args: argparse.Namespace) -> dict:
    """What ``rmisr evaluate`` and ``rmisr demo`` hand to :func:`rmisr_monai.evaluation.evaluate_volume`: every run
    option of the command except those it sets itself, and the progress bar."""
    given = RunOptions.from_dict({name: getattr(args, name) for name in RUN_FIELDS}).to_dict()
    return {**{name: given[name] for name in RUN_FIELDS}, "progress": not args.quiet}


# what an interrupted command leaves, when it is more than nothing (set by the command as it goes)
_KEPT: dict[str, str] = {}


def _is_many(path: str) -> bool:
    """A CSV list or a folder of volumes (not a DICOM series folder): see :mod:`rmisr_monai.inference.batch`."""
    from rmisr_monai.inference.jobs import is_dicom_series_folder

    source = Path(path)
    if source.is_file():
        return source.suffix.lower() == ".csv"
    return source.is_dir() and not is_dicom_series_folder(source)


def _upscale(args: argparse.Namespace) -> int:
    from rmisr_monai.errors import OutputFileError

    upscaler = _upscaler(args)
    if not _is_many(args.input):
        if args.output_ext is not None:
            raise ConfigurationError("--output-ext is for a folder of volumes or a CSV list; OUTPUT names the file")
        # everything that can be checked without reading the input comes first: no work is wasted, nothing written
        upscaler.upscale_file(args.input, args.output, series_uid=args.series_uid, stack=args.stack)
        return 0
    if args.series_uid is not None:
        raise ConfigurationError("--series-uid picks a series in one DICOM folder, not in a folder of volumes")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise OutputFileError(args.output, "exists and is not a folder (many inputs need an output folder)")
    try:
        summary = upscaler.run(args.input, args.output)
    except KeyboardInterrupt:
        done = upscaler.summary.done if upscaler.summary is not None else []
        _KEPT["upscale"] = (
            f"{len(done)} finished output(s) kept in {args.output}, nothing partial; rerun the same command to do "
            "the rest" if done else "nothing written"
        )
        raise
    print(f"rmisr: {summary}")
    return 0 if summary.ok else EXIT_ERROR


def _info(args: argparse.Namespace) -> int:
    from rmisr_monai.io.read import describe, read_volume

    volume = read_volume(args.input, series_uid=args.series_uid, stack=args.stack)
    print("coordinates: LPS (DICOM / ITK patient coordinates: +x left, +y posterior, +z superior), millimetres")
    for key, value in describe(volume).items():
        print(f"{key}: {_fmt(value)}")
    return 0


def _fmt(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def _demo(args: argparse.Namespace) -> int:
    from rmisr_monai.evaluation import evaluate_volume, format_table, report_paths, write_report
    from rmisr_monai.inference.engine import resolve_device
    from rmisr_monai.io.atomic import check_output_path
    from rmisr_monai.io.read import read_volume
    from rmisr_monai.weights import default_model

    if not SAMPLE_PATH.is_file():
        raise RmisrError(f"{SAMPLE_PATH}: the shipped sample is missing; reinstall rmisr-monai")
    resolve_device(args.device)
    out_dir = Path(args.output_dir)
    models: list[str] = []
    try:
        models.append(args.model or default_model(2.0, "CT")["name"])
    except RmisrError as e:
        print(f"rmisr: note: {e}; showing bicubic only", file=sys.stderr)
    if "bicubic" not in models:
        models.append("bicubic")
    targets = {m: out_dir / f"ct_demo_x2_{m}.nii.gz" for m in models}
    if out_dir.exists():  # a new folder cannot hold old results
        for path in [*targets.values(), *report_paths(out_dir, SAMPLE_PATH, 2.0).values()]:
            check_output_path(path, overwrite=args.overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)

    volume = read_volume(SAMPLE_PATH)
    rows = []
    for model, path in targets.items():
        upscaler = _upscaler(args, model=model, scale=2.0)
        upscaler.network(2.0, volume.modality)  # loaded before the clock starts
        started = time.perf_counter()
        result = upscaler.upscale(volume)
        seconds = time.perf_counter() - started
        upscaler.write(result, path)
        rows.append((model, seconds, volume.array.shape[2] / seconds, path))
    shape = "x".join(str(n) for n in volume.array.shape)
    print(f"sample {SAMPLE_PATH.name} ({shape} voxels) x2 on {resolve_device(args.device)}:")
    for model, seconds, rate, path in rows:
        print(f"  {model:<16} {seconds:7.2f} s  {rate:7.1f} slices/s  -> {path}")
    # what the model does, in a picture with numbers: the sample shrunk x2, upscaled back, scored against itself
    report = evaluate_volume(volume, 2.0, models=models, **_evaluation_options(args))
    paths = write_report(report, out_dir, overwrite=args.overwrite)
    print(format_table(report))
    print(f"figure: {paths['png']} (scores also in {paths['csv'].name}, {paths['json'].name})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from rmisr_monai.evaluation import evaluate_volume, format_table, report_paths, write_report
    from rmisr_monai.inference.engine import resolve_device
    from rmisr_monai.io.atomic import check_output_path
    from rmisr_monai.io.read import read_volume

    resolve_device(args.device)
    if args.report is not None and Path(args.report).exists():  # refused before any work
        for path in report_paths(args.report, args.input, args.scale).values():
            check_output_path(path, overwrite=args.overwrite)
    volume = read_volume(args.input, series_uid=args.series_uid)
    report = evaluate_volume(
        volume,
        args.scale,
        models=args.model,
        weights=args.weights,
        axis=args.axis,
        max_slices=args.max_slices,
        **_evaluation_options(args),
    )
    print(format_table(report))
    if args.report is not None:
        for path in write_report(report, args.report, overwrite=args.overwrite).values():
            print(f"wrote {path}")
    return 0


class _CliWords(logging.Formatter):
    """``rmisr: <message>``, in the CLI's words where the library logged them too (``extra={"cli": ...}``)."""

    def format(self, record: logging.LogRecord) -> str:
        cli = getattr(record, "cli", None)
        return f"rmisr: {cli}" if cli else super().format(record)


def _configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CliWords("rmisr: %(message)s"))
    for name in ("rmisr", "rmisr_monai"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(logging.WARNING if quiet else logging.INFO)
    # the readers' own complaints about damaged headers quote tag values (patient data) and add lines to the one
    # error line; what matters reaches the user as that line
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _one_line(error: BaseException) -> str:
    """The error as one line, in the CLI's words (its options) where the raiser gave them (``RmisrError.cli``)."""
    return " ".join((getattr(error, "cli", None) or str(error)).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rmisr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status. Ctrl-C at any point ends
    with one line saying what was kept."""
    inductor = _inductor_cache_folder()
    existed = inductor.exists()
    try:
        return _run(argv)
    except KeyboardInterrupt:  # before or after a command ran (parsing, imports, logging set-up)
        print("rmisr: interrupted; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if not existed:  # torch's compiler makes this empty cache folder in TMPDIR as a side effect of a network run
            with contextlib.suppress(OSError):
                inductor.rmdir()


def _inductor_cache_folder() -> Path:
    """Where torch puts its compiler cache unless told otherwise (``TMPDIR/torchinductor_<user>``)."""
    import getpass
    import tempfile

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or Path(tempfile.gettempdir()) / f"torchinductor_{user}")


def _run(argv: Sequence[str] | None) -> int:
    _KEPT.clear()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (already printed)
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_ERROR
    _configure_logging(getattr(args, "quiet", False))
    commands = {"upscale": _upscale, "info": _info, "evaluate": _evaluate, "demo": _demo}
    try:
        with warnings.catch_warnings():  # library warnings (pydicom: invalid tag values, quoted) stay off stderr
            warnings.simplefilter("ignore")
            return commands[args.command](args)
    except KeyboardInterrupt:
        print(f"rmisr: interrupted; {_KEPT.get(args.command, 'nothing written')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        about = getattr(args, "input", None) or getattr(args, "output_dir", "")
        print(
            f"rmisr: error: {about}: out of memory (RAM) in '{args.command}'; try a smaller --tile or --batch, or "
            "free memory; nothing written",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except (RmisrError, ValueError) as e:
        print(f"rmisr: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        print(f"rmisr: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_OS_ERROR


if __name__ == "__main__":
    sys.exit(main())
