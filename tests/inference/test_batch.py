"""Batch runs (rmisr_monai.inference.batch): job discovery in folders and CSV lists, rank sharding, skip-existing
and resume, a bad input skipped, read/write overlapped with compute; results checked against single-volume runs and
read back with SimpleITK."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from rmisr_monai.errors import ConfigurationError, InputFileError
from rmisr_monai.inference import batch
from rmisr_monai.inference.batch import BatchUpscaler, distributed_rank, shard
from rmisr_monai.inference.jobs import csv_jobs, folder_jobs, is_dicom_series_folder
from tests.cli.synthetic import write_ct_series


def _volume(seed: int, shape=(9, 8, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, size=shape).astype(np.int16)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.9, 2.0, 1.0])), path)
    else:
        sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(array.T)), str(path))
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """in/: NIfTI, NRRD, MHA at several depths, a DICOM series folder, a non-volume file and a hidden file."""
    root = tmp_path / "in"
    _write(root / "a.nii.gz", _volume(0))
    _write(root / "site1" / "b.nrrd", _volume(1))
    _write(root / "site1" / "deep" / "c.mha", _volume(2))
    _write(root / "site2" / "d.nii", _volume(3))
    write_ct_series(root / "site2" / "series")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.nii.gz").write_bytes(b"")
    return root


def test_folder_jobs_keep_the_relative_structure(dataset, tmp_path):
    out = tmp_path / "out"
    jobs = folder_jobs(dataset, out)
    got = {j.input.relative_to(dataset).as_posix(): j.output.relative_to(out).as_posix() for j in jobs}
    assert got == {
        "a.nii.gz": "a.nii.gz",
        "site1/b.nrrd": "site1/b.nrrd",
        "site1/deep/c.mha": "site1/deep/c.mha",
        "site2/d.nii": "site2/d.nii",
        "site2/series": "site2/series",
    }
    as_nifti = {j.output.relative_to(out).as_posix() for j in folder_jobs(dataset, out, ".nii.gz")}
    assert as_nifti == {"a.nii.gz", "site1/b.nii.gz", "site1/deep/c.nii.gz", "site2/d.nii.gz", "site2/series.nii.gz"}
    # an output folder inside the input folder is not searched
    inner = folder_jobs(dataset, dataset / "site1")
    assert all(dataset / "site1" not in j.input.parents for j in inner if j.input.suffix == ".nii")


def test_series_folder_and_folder_of_volumes_are_told_apart(dataset, tmp_path):
    assert is_dicom_series_folder(dataset / "site2" / "series")
    assert not is_dicom_series_folder(dataset)
    assert not is_dicom_series_folder(dataset / "site1")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_dicom_series_folder(empty)  # neither volumes nor sub-folders: the DICOM reader says what is wrong


def test_csv_jobs(tmp_path):
    out = tmp_path / "out"
    listing = tmp_path / "list.csv"
    listing.write_text("scale,input,output\n2,a.nii.gz,\n3,/abs/b.nrrd,custom/b_x3.nrrd\n\n# comment\n,c.mha,\n")
    jobs = csv_jobs(listing, out)
    assert [(j.input, j.output, j.scale) for j in jobs] == [
        (tmp_path / "a.nii.gz", out / "a.nii.gz", 2.0),
        (Path("/abs/b.nrrd"), out / "custom" / "b_x3.nrrd", 3.0),
        (tmp_path / "c.mha", out / "c.mha", None),
    ]
    listing.write_text("a.nii.gz\nb.nii.gz,b2.nii.gz,1.5\n")  # no header: input, output, scale
    assert [(j.output.name, j.scale) for j in csv_jobs(listing, out)] == [("a.nii.gz", None), ("b2.nii.gz", 1.5)]
    listing.write_text("input,scale\na.nii.gz,2\nb.nii.gz,-1\n")
    with pytest.raises(InputFileError, match=r"list.csv: line 3: scale must be"):
        csv_jobs(listing, out)
    listing.write_text("input\nx/a.nii.gz\ny/a.nii.gz\n")
    with pytest.raises(InputFileError, match="would both be written"):
        csv_jobs(listing, out)


def test_shards_cover_every_job_once(dataset, tmp_path, monkeypatch):
    jobs = folder_jobs(dataset, tmp_path / "out")
    for world in (1, 2, 3, 7):
        shares = [shard(jobs, r, world) for r in range(world)]
        flat = [j for s in shares for j in s]
        assert sorted(map(str, flat)) == sorted(map(str, jobs)) and len(flat) == len(jobs)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed_rank() == (1, 3)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ConfigurationError, match="RANK"):
        distributed_rank()


def test_ranks_together_do_every_volume_once(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    original = BatchUpscaler.upscale_traced

    def counting(self, volume, scale=None):
        calls.append(volume.source_path)
        return original(self, volume, scale)

    monkeypatch.setattr(BatchUpscaler, "upscale_traced", counting)
    summaries = []
    for rank in range(2):  # what two torchrun processes do, one after the other
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        summaries.append(BatchUpscaler(model="bicubic", scale=2, progress=False).run(dataset, out))
    assert sorted(calls) == sorted(str(j.input) for j in folder_jobs(dataset, out)) and len(set(calls)) == len(calls)
    assert [len(s.done) for s in summaries] == [3, 2] and all(s.ok for s in summaries)


def test_run_matches_single_runs_skips_bad_input_and_resumes(dataset, tmp_path, caplog):
    (dataset / "site1" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "out"
    upscaler = BatchUpscaler(model="bicubic", scale=2, progress=False)
    summary = upscaler.run(dataset, out)
    assert len(summary.done) == 5 and summary.skipped == [] and len(summary.failed) == 1
    assert summary.failed[0][0].endswith("broken.nii.gz") and "broken.nii.gz" in summary.failed[0][1]
    assert "broken.nii.gz" in caplog.text
    # each output equals the single-volume run of its input
    for job in folder_jobs(dataset, out):
        if job.input.name == "broken.nii.gz":
            assert not job.output.exists()
            continue
        single = tmp_path / "single" / job.output.relative_to(out)
        single.parent.mkdir(parents=True, exist_ok=True)
        upscaler.upscale_file(job.input, single)
        if job.input.is_dir():
            assert sorted(p.name for p in job.output.iterdir()) == sorted(p.name for p in single.iterdir())
            job_image, single_image = sitk.ReadImage(sorted(map(str, job.output.iterdir()))), None
            single_image = sitk.ReadImage(sorted(map(str, single.iterdir())))
        else:
            job_image, single_image = sitk.ReadImage(str(job.output)), sitk.ReadImage(str(single))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(job_image), sitk.GetArrayFromImage(single_image))
        assert job_image.GetSize()[:2] == tuple(2 * n for n in sitk.ReadImage(
            sorted(map(str, job.input.iterdir())) if job.input.is_dir() else str(job.input)).GetSize()[:2])
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = upscaler.run(dataset, out)
    assert again.done == [] and len(again.skipped) == 5 and len(again.failed) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert not [p for p in out.rglob(".rmisr-tmp-*")]


def test_interrupted_run_resumes_with_what_is_missing(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original = BatchUpscaler.upscale_traced
    seen = []

    def interrupt_third(self, volume, scale=None):
        seen.append(volume.source_path)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return original(self, volume, scale)

    monkeypatch.setattr(BatchUpscaler, "upscale_traced", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        BatchUpscaler(model="bicubic", scale=2, progress=False).run(dataset, out)
    written = sorted(p for p in out.rglob("*") if p.is_file() and p.parent.name != "series" and p.suffix != ".json")
    assert len(written) == 2 and not list(out.rglob(".rmisr-tmp-*"))
    monkeypatch.setattr(BatchUpscaler, "upscale_traced", original)
    summary = BatchUpscaler(model="bicubic", scale=2, progress=False).run(dataset, out)
    assert len(summary.skipped) == 2 and len(summary.done) == 3 and summary.ok


def test_reading_and_writing_overlap_the_compute(dataset, tmp_path, monkeypatch):
    events = []
    lock = threading.Lock()

    def log(what, name):
        with lock:
            events.append((time.perf_counter(), what, Path(name).name))

    real_read, real_write, real_upscale = batch.read_volume, BatchUpscaler.write, BatchUpscaler.upscale_traced

    def slow_read(path, series_uid=None):
        log("read", path)
        return real_read(path, series_uid)

    def slow_upscale(self, volume, scale=None):
        log("compute-start", volume.source_path)
        time.sleep(0.3)  # the network's time: the reader and writer threads must work during it
        result = real_upscale(self, volume, scale)
        log("compute-end", volume.source_path)
        return result

    def slow_write(self, result, output, provenance=None):
        log("write-start", result.source_path)
        real_write(self, result, output, provenance)

    monkeypatch.setattr(batch, "read_volume", slow_read)
    monkeypatch.setattr(BatchUpscaler, "upscale_traced", slow_upscale)
    monkeypatch.setattr(BatchUpscaler, "write", slow_write)
    jobs = folder_jobs(dataset, tmp_path / "out")
    BatchUpscaler(model="bicubic", scale=2, progress=False).run_jobs(jobs, 0, 1)
    times = {(what, name): t for t, what, name in events}
    names = [j.input.name for j in jobs]
    for first, second in zip(names, names[1:]):
        # the next volume is read while this one computes; this one is written while the next computes
        assert times[("read", second)] < times[("compute-end", first)]
        assert times[("write-start", first)] < times[("compute-end", second)]
