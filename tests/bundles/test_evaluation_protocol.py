"""The bundles' ``evaluate.json`` and ``benchmarks/quality.py`` are one protocol: on the same scan (a real crop of
the shared data) they pick the same slices (evenly spaced over the middle 60 %), make the same LR (MATLAB bicubic,
rounded to int16), score on the same range (:func:`rmisr_monai.evaluation.quality.scoring_normalization`) and so
give the same PSNR and SSIM, for bicubic and for the bundle's weights (the same tensors as the registry default
``quality.py`` runs), in-plane (RMISR-BL x2) and through-plane (Meta-SR x2.5 along ``i``)."""

from __future__ import annotations

import importlib.util
import json

import nibabel as nib
import pytest
from monai.bundle import ConfigWorkflow

from rmisr_monai.io.read import read_volume
from tests.bundles.conftest import BUNDLES
from tests.conftest import REPO_ROOT, shared_path

pytestmark = pytest.mark.shared_data

MAX_SLICES = 3


def _quality_module():
    spec = importlib.util.spec_from_file_location("benchmarks_quality", REPO_ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A 64 x 64 x 10 crop of a CT scan, in HU (int16), so that the slice choice over the middle 60 % matters."""
    image = nib.load(shared_path("data", "medical", "ct", "totalseg_chest_cta_crop_1p5mm.nii.gz"))
    path = tmp_path_factory.mktemp("protocol") / "chest.nii.gz"
    nib.save(image.slicer[30:94, 30:94, 76:86], path)
    return path


@pytest.mark.parametrize(
    ("bundle", "scale", "axis", "default"),
    [
        ("ct_mri_super_resolution", 2.0, "z", "rmisr_bl64_ct_x2 (default)"),
        ("ct_mri_through_plane_super_resolution", 2.5, "x", "rmisr_bl64_meta_ct (default)"),
    ],
)
def test_bundle_evaluate_equals_quality_py_on_one_scan(bundle, scale, axis, default, scan, tmp_path):
    quality = _quality_module()
    through_plane = axis != "z"
    volume = read_volume(scan)
    assert volume.modality == "CT"
    n = volume.array.shape[2]  # quality.held_out's cut (it reads the scans of scans.json; this crop is not one)
    keep = sorted({int(k) for k in quality.np.linspace(0.2 * (n - 1), 0.8 * (n - 1), min(n, MAX_SLICES)).round()})
    subset = quality.Volume(
        quality.np.ascontiguousarray(volume.array[:, :, keep]), volume.geometry, volume.modality, volume.source_dtype,
        volume.source_path, volume.source_format,
    )  # fmt: skip
    means, _, _ = quality.run_case([subset], "CT", scale, through_plane, None, defaults_only=True)
    theirs = {m.method: m for m in means}

    root = BUNDLES / bundle
    report = tmp_path / "report"
    workflow = ConfigWorkflow(
        config_file=str(root / "configs" / "evaluate.json"), meta_file=str(root / "configs" / "metadata.json"),
        workflow_type=None, bundle_root=str(root), dataset_dir=[str(scan)], output_dir=str(report),
        max_slices=MAX_SLICES, round_lr=True, device="cpu", scale=scale, axis=axis,
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    result = json.loads((report / "evaluation.json").read_text())
    (volume_report,) = result["volumes"]
    assert volume_report["slices"] == keep
    ours = {s["method"]: s for s in volume_report["scores"]}
    for mine, other in (("bicubic", "bicubic"), ("model.pt", default)):
        assert ours[mine]["psnr"] == pytest.approx(theirs[other].psnr, abs=2e-3), (mine, other)
        assert ours[mine]["ssim"] == pytest.approx(theirs[other].ssim, abs=2e-5), (mine, other)
    assert ours["model.pt"]["psnr"] > ours["bicubic"]["psnr"]
