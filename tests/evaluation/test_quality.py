"""rmisr_monai.evaluation: the degradation, the scores (against closed-form values of known errors), the report
files (read back with csv/json/Pillow) and ``rmisr evaluate``."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from rmisr_monai.cli import main
from rmisr_monai.errors import OutputFileError
from rmisr_monai.evaluation import degrade_volume, evaluate_volume, format_table, write_report
from rmisr_monai.evaluation import quality as quality_module
from rmisr_monai.evaluation.figure import worst_square
from rmisr_monai.inference.batch import BatchUpscaler
from rmisr_monai.io.geometry import Geometry
from rmisr_monai.io.volume import Volume
from rmisr_monai.transforms import bicubic_resize


def _phantom(shape=(50, 41, 4), modality="CT") -> Volume:
    """Smooth blobs and a bright disc in HU, well inside the CT window (no clipping)."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    values = 300 * np.sin(i / 4.0) * np.cos(j / 5.0 + k) + 900 * ((i - 25) ** 2 + (j - 20) ** 2 < 60) - 200
    geometry = Geometry((0.7, 0.8, 3.0), (10.0, -5.0, 2.0), np.eye(3))
    return Volume(values.astype(np.int16), geometry, modality, np.int16, "phantom.nii.gz", "nifti")


def test_degradation_is_per_slice_bicubic_on_the_cropped_grid():
    volume = _phantom()
    hr, lr = degrade_volume(volume, 2.0, axis="z")
    assert hr.array.shape == (50, 40, 4) and lr.array.shape == (25, 20, 4)  # 41 -> crop to 40
    np.testing.assert_array_equal(hr.array, volume.array[:, :40].astype(np.float32))
    for k in range(4):
        reference = bicubic_resize(hr.array[None, :, :, k], None, output_shape=(25, 20))[0]
        np.testing.assert_allclose(lr.array[:, :, k], reference, atol=1e-4)
    # the LR grid covers the same physical box
    np.testing.assert_allclose(lr.geometry.corners_box(lr.array.shape), hr.geometry.corners_box(hr.array.shape))
    np.testing.assert_allclose(lr.geometry.spacing, (1.4, 1.6, 3.0))


def test_through_plane_degradation_shrinks_the_one_axis():
    volume = _phantom()
    hr, lr = degrade_volume(volume, 2.5, axis="x", through_plane=True)
    assert hr.array.shape == (50, 41, 4) and lr.array.shape == (20, 41, 4)
    reference = bicubic_resize(np.moveaxis(hr.array, 0, -1), None, output_shape=(4, 20))  # (41, 4, 50) -> (41, 4, 20)
    np.testing.assert_allclose(lr.array, np.moveaxis(reference, -1, 0), atol=1e-4)
    np.testing.assert_allclose(lr.geometry.corners_box(lr.array.shape), hr.geometry.corners_box(hr.array.shape))
    np.testing.assert_allclose(lr.geometry.spacing, (1.75, 0.8, 3.0))


def _robust(array: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """The protocol's scoring map written out with numpy: HR's 0.5 / 99.5 percentiles to [0, 1], clipped."""
    low, high = np.percentile(hr.astype(np.float64), [0.5, 99.5])
    return np.clip((array.astype(np.float64) - low) / (high - low), 0, 1)


def _psnr(sr: np.ndarray, hr: np.ndarray, shave: int = 2) -> float:
    x, y = _robust(sr, hr)[shave:-shave, shave:-shave], _robust(hr, hr)[shave:-shave, shave:-shave]
    return float(np.mean(10 * np.log10(1 / ((x - y) ** 2).mean(axis=(0, 1)))))


def test_scores_of_a_known_error_match_numpy_on_the_robust_range(monkeypatch):
    volume = _phantom()
    hr, _ = degrade_volume(volume, 2.0)
    offset = 40.0  # HU; a constant error: PSNR about 20 log10(range / offset), no Laplacian error, same LR offset
    real = BatchUpscaler.upscale

    def oracle(self, lr_volume, scale=None):
        model = getattr(self.options, "model", None) or getattr(self, "model", None)  # RunOptions or the old field
        if model == "nearest":  # stands for a method whose output is HR + offset
            return Volume(hr.array + offset, hr.geometry, hr.modality, np.float32, "x", "nifti")
        return real(self, lr_volume, scale)

    monkeypatch.setattr(BatchUpscaler, "upscale", oracle)
    report = evaluate_volume(volume, 2.0, models=["nearest"], device="cpu", progress=False)
    assert [s.method for s in report.scores] == ["bicubic", "nearest"]
    known = report.scores[1]
    low, high = np.percentile(hr.array, [0.5, 99.5])
    assert report.intensity["a_min"] == pytest.approx(low) and report.intensity["a_max"] == pytest.approx(high)
    assert known.psnr == pytest.approx(_psnr(hr.array + offset, hr.array), abs=1e-6)
    assert known.psnr == pytest.approx(20 * math.log10((high - low) / offset), abs=0.5)  # clipping at the ends
    assert known.edge_psnr > 40
    assert 0.98 < known.ssim < 1.0  # a mean shift: only the luminance term of SSIM
    # bicubic's PSNR, computed here with numpy from its own output
    sr = real(BatchUpscaler(model="bicubic", scale=2, dtype="float32", device="cpu", progress=False),
              degrade_volume(volume, 2.0)[1]).array
    assert report.scores[0].psnr == pytest.approx(_psnr(sr, hr.array), abs=1e-6)
    assert report.intensity["kind"] == "mr" and report.slice_index in report.slices
    # the figure's images are in HU, the scan's own units
    k = report.slices.index(report.slice_index)
    np.testing.assert_allclose(report.images["HR"], hr.array[:, :, k])
    np.testing.assert_allclose(report.images["nearest"], hr.array[:, :, k] + offset)
    assert report.image_units == "original" and report.spacing == pytest.approx((0.7, 0.8))
    assert report.plane_axes == (0, 1) and report.training == {"bicubic": None, "nearest": None}


def test_ct_and_mr_are_scored_on_the_same_robust_range():
    """The same HU values read as CT and as MR score the same (the protocol no longer depends on the modality)."""
    ct = evaluate_volume(_phantom(modality="CT"), 2.0, models=["bilinear"], device="cpu", progress=False)
    mr = evaluate_volume(_phantom(modality="MR"), 2.0, models=["bilinear"], device="cpu", progress=False)
    assert [s.psnr for s in ct.scores] == pytest.approx([s.psnr for s in mr.scores], abs=1e-9)
    assert ct.intensity == mr.intensity


def test_bicubic_beats_nearest_and_mr_uses_percentiles():
    report = evaluate_volume(_phantom(modality="MR"), 2.0, models=["nearest"], device="cpu", progress=False)
    bicubic, nearest = report.scores
    assert bicubic.psnr > nearest.psnr and bicubic.ssim > nearest.ssim
    assert bicubic.backprojection_psnr > 35  # bicubic degraded again gives its LR input back closely
    assert report.intensity["kind"] == "mr" and report.intensity["a_min"] is not None
    assert set(report.images) == {"LR", "bicubic", "nearest", "HR"}
    assert "bicubic" in format_table(report) and "PSNR" in format_table(report)


def test_report_files_read_back(tmp_path):
    report = evaluate_volume(_phantom(), 2.0, models=["bilinear"], device="cpu", progress=False)
    paths = write_report(report, tmp_path / "qc")
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == ["bicubic", "bilinear"]
    assert float(rows[0]["psnr"]) == pytest.approx(report.scores[0].psnr)
    data = json.loads(paths["json"].read_text())
    assert data["scale"] == 2.0 and data["scores"][1]["ssim"] == pytest.approx(report.scores[1].ssim)
    image = np.asarray(Image.open(paths["png"]).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 10
    before = {p: p.read_bytes() for p in paths.values()}
    with pytest.raises(OutputFileError, match="exists"):
        write_report(report, tmp_path / "qc")
    assert {p: p.read_bytes() for p in paths.values()} == before


def test_worst_square_finds_the_error():
    error = np.zeros((60, 40))
    error[41:49, 10:18] = 1.0
    r, c, side = worst_square(error, fraction=0.2)
    assert side == 8 and (r, c) == (41, 10)


def test_rmisr_evaluate_prints_the_table_and_writes_the_report(tmp_path, capsys):
    volume = _phantom()
    src = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(volume.array, np.diag([-0.7, -0.8, 3.0, 1.0])), src)
    report_dir = tmp_path / "qc"
    assert main(["evaluate", str(src), "--scale", "2", "--model", "bicubic", "--report", str(report_dir),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "PSNR" in out and "SSIM" in out
    assert sorted(p.name for p in report_dir.iterdir()) == [f"hr_x2_quality.{e}" for e in ("csv", "json", "png")]
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    assert main(["evaluate", str(bad), "--model", "bicubic", "--report", str(tmp_path / "qc2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.nii.gz" in err and "Traceback" not in err
    assert not (tmp_path / "qc2").exists()


def test_max_slices_scores_evenly_spaced_slices():
    report = evaluate_volume(_phantom(shape=(30, 30, 9)), 2.0, max_slices=3, device="cpu", progress=False,
                             models=["bicubic"])
    assert report.slices == [0, 4, 8] and report.hr_shape[2] == 3
    assert quality_module.BASELINE == "bicubic"
