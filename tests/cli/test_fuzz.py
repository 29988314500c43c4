"""Fuzzing ``rmisr info`` and ``rmisr upscale`` with damaged files: a few hundred mutants (random header bytes,
truncations) of small real NIfTI, NRRD, MHA and DICOM files cut from the shipped sample CT. Every run must end with
exit status 0 or 2, never a traceback, a single ``rmisr: error: <file>: ...`` line on failure, nothing left in the
output folder after a failure, and within a time and memory bound. Runs in-process (``rmisr_monai.cli.main``) with
bicubic; seeded, so a failure replays."""

from __future__ import annotations

import gzip
import resource
import shutil
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from rmisr_monai.cli import SAMPLE_PATH, main
from rmisr_monai.io.geometry import Geometry
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import write_volume

SEED = 17
MUTANTS_PER_FORMAT = 50  # x 4 formats x (info + upscale) = 400 runs
RUN_SECONDS = 10  # per run: a mutant must not make a reader spin
PEAK_RSS_GROWTH_BYTES = 1 << 30  # all runs together may not raise the process's peak memory by more than this
CROP = (slice(150, 166), slice(100, 114), slice(8, 11))  # 16 x 14 x 3 voxels of real CT


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def _originals(folder: Path) -> dict[str, Path]:
    """The four small real files: a crop of the sample CT as NIfTI (gz), NRRD, MHA and a 3-slice DICOM series."""
    image = nib.load(SAMPLE_PATH)
    array = np.asanyarray(image.dataobj)[CROP].astype(np.int16)
    geometry = Geometry((0.8, 0.8, 2.5), (-20.0, 35.5, 110.0), np.eye(3))
    volume = Volume(array, geometry, "CT", np.int16, "crop", "nifti")
    paths = {"nifti": folder / "ct.nii.gz", "nrrd": folder / "ct.nrrd", "mha": folder / "ct.mha",
             "dicom": folder / "series"}  # fmt: skip
    for path in paths.values():
        write_volume(volume, path)
    # NRRD and MHA uncompressed, so that mutated header bytes are read as such
    for kind in ("nrrd", "mha"):
        sitk.WriteImage(sitk.ReadImage(str(paths[kind])), str(paths[kind]), useCompression=False)
    return paths


def _mutate(data: bytes, rng: np.random.Generator, header_bytes: int) -> bytes:
    """Random bytes changed in the first ``header_bytes``, or a truncation, or both."""
    out = bytearray(data)
    kind = rng.integers(3)
    if kind in (0, 2):
        for _ in range(int(rng.integers(1, 9))):
            out[int(rng.integers(min(header_bytes, len(out))))] = int(rng.integers(256))
    if kind in (1, 2):
        del out[int(rng.integers(len(out))) :]
    return bytes(out)


def _mutant(original: Path, kind: str, rng: np.random.Generator, target: Path) -> Path:
    if kind == "dicom":
        shutil.copytree(original, target)
        victim = sorted(target.iterdir())[int(rng.integers(3))]
        victim.write_bytes(_mutate(victim.read_bytes(), rng, 1200))  # preamble, meta and image module
        return target
    if kind == "nifti":  # damage the header inside the gzip stream (348 bytes), sometimes the stream itself
        raw = _mutate(gzip.decompress(original.read_bytes()), rng, 348)
        data = gzip.compress(raw, mtime=0)
        target.write_bytes(_mutate(data, rng, 32) if rng.random() < 0.2 else data)
        return target
    data = original.read_bytes()
    target.write_bytes(_mutate(data, rng, data.index(b"\n\n") + 2 if kind == "nrrd" else data.index(b"LOCAL") + 6))
    return target


def _check_run(capsys, argv, input_path: Path, out_dir: Path) -> int:
    signal.alarm(RUN_SECONDS)
    started = time.perf_counter()
    try:
        rc = main(argv)
    except _Timeout:
        pytest.fail(f"{argv} ran past {RUN_SECONDS} s")
    finally:
        signal.alarm(0)
    assert time.perf_counter() - started < RUN_SECONDS
    captured = capsys.readouterr()
    assert rc in (0, 2), (argv, rc, captured.err)
    assert "Traceback" not in captured.err and "Traceback" not in captured.out, captured.err
    if rc == 0:
        assert captured.err == "", captured.err  # no library warnings (they may quote tag values)
    if rc == 2:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rmisr: error: "), captured.err
        assert input_path.name in lines[0], lines[0]
        assert list(out_dir.iterdir()) == [], (argv, list(out_dir.iterdir()))
    return rc


@pytest.mark.parametrize("kind", ["nifti", "nrrd", "mha", "dicom"])
def test_mutants_end_in_status_0_or_2_with_one_line_and_nothing_left(tmp_path, capsys, kind):
    rng = np.random.default_rng([SEED, ["nifti", "nrrd", "mha", "dicom"].index(kind)])
    (tmp_path / "originals").mkdir()
    originals = _originals(tmp_path / "originals")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # warm-up on the intact file: the first run imports torch and the readers, which is not the mutants' time
    assert main(["info", str(originals[kind])]) == 0
    assert main(["upscale", str(originals[kind]), str(out_dir / "sr.nii.gz"), "--scale", "2", "--model", "bicubic",
                 "--quiet"]) == 0
    (out_dir / "sr.nii.gz").unlink()
    (out_dir / "sr.json").unlink()  # the provenance sidecar beside it
    capsys.readouterr()
    previous = signal.signal(signal.SIGALRM, _alarm)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outcomes = {0: 0, 2: 0}
    try:
        for n in range(MUTANTS_PER_FORMAT):
            suffix = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "dicom": ""}[kind]
            path = _mutant(originals[kind], kind, rng, tmp_path / f"mutant{n}{suffix}")
            _check_run(capsys, ["info", str(path)], path, out_dir)
            out = out_dir / "sr.nii.gz"
            rc = _check_run(capsys, ["upscale", str(path), str(out), "--scale", "2", "--model", "bicubic",
                                     "--device", "cpu", "--batch", "4", "--quiet"], path, out_dir)
            outcomes[rc] += 1
            if rc == 0:
                assert sitk.ReadImage(str(out)).GetSize()[:2] == (32, 28)
                out.unlink()
                (out_dir / "sr.json").unlink()
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    finally:
        signal.signal(signal.SIGALRM, previous)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak_after - peak_before < PEAK_RSS_GROWTH_BYTES
    assert outcomes[2] > 0  # the mutants do damage: some are refused
