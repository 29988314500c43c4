"""What a batch is made of: :class:`VolumeJob` (one input and where its result goes), found in a folder
(:func:`folder_jobs`) or read from a CSV list (:func:`csv_jobs`); run by
:class:`~rmisr_monai.inference.batch.BatchUpscaler`.

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
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmisr_monai.errors import InputFileError
from rmisr_monai.io.volume import FILE_FORMATS, file_format

__all__ = [
    "DICOM_SUFFIXES",
    "CSV_COLUMNS",
    "VolumeJob",
    "is_dicom_file",
    "is_dicom_series_folder",
    "folder_jobs",
    "csv_jobs",
]

DICOM_SUFFIXES = (".dcm", ".ima")
CSV_COLUMNS = ("input", "output", "scale")
_DICOM_MAGIC_OFFSET = 128  # DICOM Part 10: 128-byte preamble, then "DICM"
_DICOM_MAGIC = b"DICM"
# a volume's suffix that the writers cannot produce in one atomic file: written in the single-file variant
_SINGLE_FILE_SUFFIX = {".nhdr": ".nrrd"}


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
