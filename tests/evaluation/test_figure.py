"""rmisr_monai.evaluation.figure and the report's provenance: radiological orientation (markers placed by hand in
LPS), the body mask and the worse-than-bicubic shares against numpy, the training-data label of the shipped sample
(its source series is in the shipped models' training list), and the figure of a real CT read back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rmisr_monai.evaluation import evaluate_volume, write_report
from rmisr_monai.evaluation.figure import (
    body_mask,
    display_orientation,
    quality_figure,
    scale_bar_length,
    worse_than_baseline,
)
from rmisr_monai.evaluation.quality import DERIVED_FROM, scan_names, scoring_normalization, training_status
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from tests.conftest import REPO_ROOT, shared_path

SAMPLE = REPO_ROOT / "rmisr_monai" / "sample" / "ct_demo_abdomen_int16.nii.gz"


def _screen_position(orientation, shape, index):
    """Where pixel ``index`` of an image of ``shape`` lands on screen (row, col)."""
    marker = np.zeros(shape)
    marker[index] = 1
    shown = orientation.apply(marker)
    return tuple(int(v) for v in np.argwhere(shown)[0])


def test_axial_lps_is_shown_with_the_patients_right_on_the_left_and_anterior_up():
    lps = np.eye(3)  # i -> patient left, j -> posterior, k -> superior (DICOM axial)
    o = display_orientation(lps, (0, 1))
    assert (o.left, o.right, o.top, o.bottom, o.plane) == ("R", "L", "A", "P", "axial")
    shape = (10, 6)  # (i, j)
    assert _screen_position(o, shape, (0, 0)) == (0, 0)  # right-anterior voxel: top left
    assert _screen_position(o, shape, (9, 5)) == (5, 9)  # left-posterior voxel: bottom right
    ras_like = np.diag([-1.0, -1.0, 1.0])  # i -> patient right, j -> anterior (a NIfTI stored the other way)
    o = display_orientation(ras_like, (0, 1))
    assert _screen_position(o, shape, (0, 0)) == (5, 9)  # i = 0 is the patient's left: screen right, bottom


def test_coronal_and_sagittal_have_superior_up():
    lps = np.eye(3)
    coronal = display_orientation(lps, (0, 2))  # slices along j: rows i (R->L), columns k (I->S)
    assert (coronal.plane, coronal.top, coronal.bottom, coronal.left, coronal.right) == ("coronal", "S", "I", "R", "L")
    assert _screen_position(coronal, (8, 5), (0, 4)) == (0, 0)  # right, most superior: top left
    sagittal = display_orientation(lps, (1, 2))  # slices along i: rows j (A->P), columns k
    assert (sagittal.plane, sagittal.left, sagittal.top) == ("sagittal", "A", "S")
    assert _screen_position(sagittal, (8, 5), (0, 4)) == (0, 0)  # anterior, superior: top left


def test_scale_bar_and_body_mask():
    assert scale_bar_length(384 * 0.9766) == 50 and scale_bar_length(60) == 10 and scale_bar_length(2) == 1
    y, x = np.mgrid[0:80, 0:80]
    ct = np.full((80, 80), -1000.0)
    ct[(y - 38) ** 2 + (x - 40) ** 2 < 30**2] = 40.0  # the body
    lung = (y - 38) ** 2 + (x - 30) ** 2 < 8**2
    ct[lung] = -850.0  # a lung inside it
    ct[75:77, 5:75] = 300.0  # the table, apart from the body
    body = body_mask(ct, "CT")
    assert body[lung].all() and not body[75:77].any() and not body[0:5].any()
    assert body.sum() == ((y - 38) ** 2 + (x - 40) ** 2 < 30**2).sum()
    assert body_mask(np.full((20, 20), -1000.0), "CT").all()  # no body: the whole slice counts


def test_worse_than_baseline_shares_match_numpy():
    rng = np.random.default_rng(2)
    hr, base, method = (rng.normal(0, 30, (40, 50)) for _ in range(3))
    mask = rng.uniform(size=hr.shape) > 0.3
    diff, worse, better, strictly = worse_than_baseline(method, base, hr, 10.0, mask)
    reference = np.abs(method - hr) - np.abs(base - hr)
    np.testing.assert_allclose(diff, reference)
    assert worse == pytest.approx((reference[mask] > 10).mean())
    assert better == pytest.approx((reference[mask] < -10).mean())
    assert strictly == pytest.approx((reference[mask] > 0).mean())


def test_the_demo_sample_is_labelled_as_in_the_shipped_models_training_data():
    from rmisr_monai.weights import load_model

    _, meta = load_model("rmisr_bl64_ct_x2")
    # the sample README names its source series; the checkpoint lists that series among its training scans
    readme = (SAMPLE.parent / "README.md").read_text()
    source = DERIVED_FROM[SAMPLE.name]
    assert "tests/reference_files/example_ct_dicom/" in readme and source in meta["info"]["data"]
    assert scan_names(SAMPLE) == [SAMPLE.name, source]
    assert training_status(meta, SAMPLE) is True
    assert training_status(meta, "/data/ct_ge_lightspeedplus_chest/") is False  # the held-out chest CT
    assert training_status({"path": None, "network": "bicubic"}, SAMPLE) is None
    assert training_status({"path": "x.pt", "info": {}}, SAMPLE) is None  # nothing recorded


def test_scoring_range_is_the_scans_own_percentiles():
    hr = read_volume(SAMPLE).array
    norm = scoring_normalization(hr)
    low, high = np.percentile(hr.astype(np.float64), [0.5, 99.5])
    assert (norm.a_min, norm.a_max) == pytest.approx((low, high))
    assert -1024 <= low < -900 and 300 < high < 1000  # air .. contrast-filled vessels, not -1024..3071


def test_figure_of_a_real_ct_slice(tmp_path):
    volume = read_volume(SAMPLE)
    crop = Volume(np.ascontiguousarray(volume.array[96:288, 40:200, 9:11]), volume.geometry, "CT", np.int16,
                  str(SAMPLE), "nifti")  # fmt: skip
    report = evaluate_volume(crop, 2.0, models=["bilinear"], device="cpu", progress=False)
    assert report.image_units == "original" and report.modality == "CT"
    assert report.images["HR"].min() < -500 < 500 < report.images["HR"].max()  # HU, not [0, 1]
    paths = write_report(report, tmp_path)
    image = np.asarray(Image.open(paths["png"]).convert("RGB")).astype(int)
    assert image.shape[0] > 600 and image.shape[1] > 500
    red = (image[..., 0] > 180) & (image[..., 1] < 90) & (image[..., 2] < 90)
    blue = (image[..., 2] > 150) & (image[..., 0] < 90)
    assert red.sum() > 50 and blue.sum() > 50  # the worse-than-bicubic map (bilinear is worse and better)
    # a report of normalised images (as benchmarks/quality.py builds them) draws the same figure in HU
    norm = scoring_normalization(crop.array)
    report.images = {k: (v - norm.a_min) / (norm.a_max - norm.a_min) for k, v in report.images.items()}
    report.image_units = "normalised"
    quality_figure(report, tmp_path / "normalised.png")
    again = np.asarray(Image.open(tmp_path / "normalised.png").convert("RGB")).astype(int)
    assert again.shape == image.shape and np.abs(again - image).mean() < 1.0


def test_the_lung_window_shows_the_lungs_of_a_held_out_chest_ct():
    from rmisr_monai.evaluation.figure import CT_WINDOWS_HU

    ct = read_volume(shared_path("data", "medical", "dicom_series", "ct_ge_lightspeedplus_chest"))
    hr = ct.array[96:416, 96:416, 7].astype(np.float64)
    lung = body_mask(hr, "CT") & (hr < -700)
    assert lung.mean() > 0.15  # both lungs inside the body outline
    grey = {name: np.clip((hr[lung] - (level - width / 2)) / width, 0, 1) for name, width, level in CT_WINDOWS_HU}
    assert np.median(grey["soft tissue"]) == 0.0  # black: why a single soft-tissue window is not enough
    assert 0.15 < np.median(grey["lung"]) < 0.6  # grey, with vessels brighter
    assert np.percentile(grey["lung"], 99) - np.percentile(grey["lung"], 50) > 0.1
