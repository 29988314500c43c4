"""Every bundle's workflows really run, on a few real slices, through MONAI's ``ConfigWorkflow`` (what
``python -m monai.bundle run`` builds) or the command itself: train 1 tiny epoch, evaluate, infer; untrained
checkpoints are refused in one line; the shipped weights per scale; two gloo processes under ``torchrun``."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from rmisr_monai.bundles import bundle_checkpoint
from rmisr_monai.networks import get_network
from rmisr_monai.weights.loader import load_model, save_checkpoint
from tests.bundles.conftest import BUNDLE_NAMES, BUNDLES, bundle_config, modality_of, write_crops
from tests.conftest import REPO_ROOT

TINY = {"max_epochs": 1, "val_interval": 1, "patch_size": 8, "batch_size": 2, "device": "cpu", "data#val_slices": 2}
SMALL_NETWORK = {"network_kwargs#num_blocks": 1}  # 1 PFMDB instead of 4: the same code, a faster tiny epoch
SMALL_VP = {**SMALL_NETWORK, "network_kwargs#grad_blocks": 1}  # RMISR-VP: its gradient branch reads every block
CORNERS = np.array([[-0.5, -0.5, -0.5, 1.0]]).T  # voxel-corner box: its first corner, in index space


def _run(name: str, config: str | list[str], **override) -> ConfigWorkflow:
    root = BUNDLES / name
    files = [str(root / "configs" / f"{c}.json") for c in ([config] if isinstance(config, str) else config)]
    workflow = ConfigWorkflow(
        config_file=files, meta_file=str(root / "configs" / "metadata.json"),
        workflow_type=None, bundle_root=str(root), **override,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def _box(affine: np.ndarray, shape) -> np.ndarray:
    """World coordinates (RAS, nibabel) of the two outer voxel corners of a grid."""
    far = np.array([[n - 0.5 for n in shape] + [1.0]]).T
    return np.hstack([affine @ CORNERS, affine @ far])[:3]


def _check_upscaled(source: Path, output: Path, scales: tuple[float, float, float]) -> None:
    """Shape round(n s), spacing / s, same direction and the same physical box (nibabel, independent of the package)."""
    a, b = nib.load(source), nib.load(output)
    assert b.shape == tuple(round(n * s) for n, s in zip(a.shape, scales))
    np.testing.assert_allclose(b.header.get_zooms(), np.divide(a.header.get_zooms(), scales), rtol=1e-5)
    np.testing.assert_allclose(_box(b.affine, b.shape), _box(a.affine, a.shape), atol=1e-3)
    directions = [m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0) for m in (a.affine, b.affine)]
    np.testing.assert_allclose(directions[1], directions[0], atol=1e-6)
    assert np.isfinite(np.asanyarray(b.dataobj)).all()


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_train_evaluate_infer(name, datasets, tmp_path):
    data = datasets[modality_of(name)]
    run = tmp_path / "run"
    small = SMALL_VP if bundle_config(name, "train")["network_name"] == "rmisr_vp" else SMALL_NETWORK
    _run(name, "train", dataset_dir=str(data), output_dir=str(run), **TINY, **small)
    best = run / "models" / "model.pt"
    _, meta = load_model(best)  # the best checkpoint is a package checkpoint: rmisr upscale --weights takes it
    assert meta["network"] == bundle_config(name, "train")["network_name"] and meta["info"]["trained"] is True
    percentile = bundle_config(name, "train").get("normalization") == "percentile"  # any modality: the MR recipe
    assert meta["info"]["epoch"] == 1
    assert meta["intensity"]["kind"] == ("mr" if percentile else modality_of(name).lower())
    scores = meta["info"]["validation"]
    assert math.isfinite(scores["val_psnr"]) and 0.0 < scores["val_ssim"] <= 1.0
    resumable = torch.load(next((run / "checkpoints").glob("checkpoint_final_iteration=*.pt")), weights_only=True)
    assert {"network", "optimizer", "scheduler", "trainer"} <= set(resumable)
    assert "val_psnr" in (run / "log.txt").read_text() and list(run.glob("events.out.tfevents.*"))
    if name == "ct_rmisr_bl_super_resolution":  # resumable: a second epoch continues from the first one's state
        final = run / "checkpoints" / "checkpoint_final_iteration=2.pt"
        _run(name, "train", dataset_dir=str(data), output_dir=str(run), resume_from=str(final),
             **{**TINY, "max_epochs": 2}, **small)
        assert (run / "checkpoints" / "checkpoint_final_iteration=4.pt").is_file()
        assert load_model(best)[1]["info"]["epoch"] in (1, 2)

    report = tmp_path / "report"
    _run(name, "evaluate", dataset_dir=str(data), output_dir=str(report), checkpoint=str(best), max_slices=2,
         device="cpu")
    rows = list(csv.DictReader((report / "evaluation.csv").open()))
    assert {r["method"] for r in rows} == {"bicubic", "model.pt"} and len(rows) == 4
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("psnr", "ssim", "edge_psnr"))
    mean = json.loads((report / "evaluation.json").read_text())["mean"]
    for method in ("bicubic", "model.pt"):  # the mean over the volumes of the per-volume CSV rows
        own = [float(r["psnr"]) for r in rows if r["method"] == method]
        assert mean[method]["psnr"] == pytest.approx(sum(own) / len(own), rel=1e-9)
    assert len(list(report.glob("*_quality.png"))) == 2

    out = tmp_path / "out"
    _run(name, "inference", dataset_dir=str(data), output_dir=str(out), checkpoint=str(best), device="cpu")
    through_plane = bundle_config(name, "inference")["upscaler"].get("through_plane", False)
    scale = bundle_config(name, "inference")["scale"]  # the configs' default: train, evaluate and infer at it
    assert bundle_config(name, "train")["scale"] == bundle_config(name, "evaluate")["scale"] == scale
    for source in sorted(data.glob("*.nii.gz")):
        _check_upscaled(source, out / source.name, (1, 1, scale) if through_plane else (scale, scale, 1))


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_untrained_checkpoint_is_refused_in_one_line(name, datasets, tmp_path):
    """A checkpoint marked untrained (``"trained": False``: how a bundle ships a network it has no weights for yet,
    so that the export checks run) is refused in one line, and nothing is written."""
    network = bundle_config(name, "inference")["network_name"]
    kwargs = {"in_channels": 1, "scale": 2, "features": 32, "num_blocks": 1, "grad_blocks": 1}
    untrained = save_checkpoint(
        tmp_path / "untrained.pt", get_network(network, **kwargs), network, kwargs, None, {"trained": False}
    )
    with pytest.raises(SystemExit, match=r"^rmisr: error: .*untrained.pt: .*not trained yet[^\n]*$"):
        _run(name, "inference", dataset_dir=str(datasets[modality_of(name)]), output_dir=str(tmp_path / "o"),
             checkpoint=str(untrained))
    assert not (tmp_path / "o").exists()


def test_scale_override_selects_the_shipped_weights(tmp_path, monkeypatch):
    from rmisr_monai.weights import loader

    root = BUNDLES / "ct_rmisr_bl_super_resolution"
    assert bundle_checkpoint(root, 2, "rmisr_bl", "CT") == str(root / "models" / "model.pt")
    assert bundle_checkpoint(root, 4, "rmisr_bl", "CT") == "rmisr_bl64_ct_x4"
    assert bundle_checkpoint(BUNDLES / "mri_rmisr_bl_super_resolution", 4, "rmisr_bl", "MR") == "rmisr_bl64_mr_x4"
    assert bundle_checkpoint(root, 3, "rmisr_bl", "CT") == "rmisr_bl64_ct_x3"
    # no sub-pixel CT model at x5: the arbitrary-scale CT default (weights.default_model)
    assert bundle_checkpoint(root, 5, "rmisr_bl", "CT") == "rmisr_bl64_meta_ct"
    empty = tmp_path / "registry.json"
    empty.write_text('{"models": []}')
    monkeypatch.setattr(loader, "REGISTRY_PATH", empty)
    with pytest.raises(SystemExit, match=r"^rmisr: error: .*model.pt: holds x2 weights and no shipped .* scale 5"):
        bundle_checkpoint(root, 5, "rmisr_bl", "CT")


def test_vp_bundle_serves_its_x4_model_and_no_other_scale():
    """RMISR-VP: models/model.pt (the shipped rmisr_vp_ct_x4) at x4; no shipped RMISR-VP serves x2 or x3 (the
    RMISR-BL defaults are not taken for them): a one-line error naming the scale."""
    root = BUNDLES / "ct_rmisr_vp_super_resolution"
    assert bundle_checkpoint(root, 4, "rmisr_vp", "CT") == str(root / "models" / "model.pt")
    for scale in (2, 3):
        with pytest.raises(SystemExit, match=rf"^rmisr: error: .*model.pt: holds x4 weights and no shipped rmisr_vp CT "
                                             rf"model serves scale {scale} [^\n]*$"):
            bundle_checkpoint(root, scale, "rmisr_vp", "CT")


def _synthetic_ct(path: Path) -> Path:
    """A tiny int16 CT (HU) NIfTI: air around a soft-tissue ellipse with lung, fat and a bone ring; anisotropic
    spacing, a rotated direction and an offset origin, so that the output geometry has something to get wrong."""
    i, j = np.meshgrid(np.arange(20), np.arange(16), indexing="ij")
    body = ((i - 9.5) / 8.5) ** 2 + ((j - 7.5) / 6.5) ** 2 <= 1
    ring = np.abs(np.hypot(i - 11.0, j - 8.0) - 3.0) < 1.0
    hu = np.where(body, 40, -1000)
    hu = np.where(body & (np.hypot(i - 5.0, j - 6.0) < 2.5), -800, hu)
    hu = np.where(body & (i > 15), -100, hu)
    hu = np.where(ring, 900, hu)
    volume = np.stack([hu, np.roll(hu, 1, axis=0)], axis=-1).astype(np.int16)  # (20, 16, 2)
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = [-31.0, 12.5, -140.0]
    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def test_vp_bundle_inference_with_the_shipped_model(tmp_path):
    """inference.json as shipped (no --checkpoint, default scale): x4 with exact geometry and the input's type, the
    result of the package's rmisr_vp_ct_x4, close to bicubic but not bicubic (the trained model, not a random one)."""
    from rmisr_monai.inference.batch import BatchUpscaler

    name = "ct_rmisr_vp_super_resolution"
    (tmp_path / "in").mkdir()
    source = _synthetic_ct(tmp_path / "in" / "ct.nii.gz")
    out = tmp_path / "out"
    _run(name, "inference", dataset_dir=str(tmp_path / "in"), output_dir=str(out), device="cpu")
    _check_upscaled(source, out / source.name, (4, 4, 1))
    result = nib.load(out / source.name)
    assert result.get_data_dtype() == np.int16
    sr = np.asanyarray(result.dataobj).astype(np.float64)
    expected = {}
    for model in ("rmisr_vp_ct_x4", "bicubic"):
        upscaler = BatchUpscaler(model=model, scale=4, device="cpu", progress=False)
        upscaler.upscale_file(source, tmp_path / f"{model}.nii.gz")
        expected[model] = np.asanyarray(nib.load(tmp_path / f"{model}.nii.gz").dataobj).astype(np.float64)
    np.testing.assert_array_equal(sr, expected["rmisr_vp_ct_x4"])
    bicubic = expected["bicubic"]
    assert np.abs(sr - bicubic).max() > 20  # not an interpolation
    # trained: 0.974 and +10 HU here; a random RMISR-VP x4 with the same normalisation: -0.02 and -541 HU
    assert np.corrcoef(sr.ravel(), bicubic.ravel())[0, 1] > 0.9 and abs(sr.mean() - bicubic.mean()) < 30


def _command(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _command(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", *args, cwd=cwd,
    )


def test_multi_gpu_train_with_two_gloo_processes(datasets, tmp_path):
    root = BUNDLES / "ct_rmisr_bl_super_resolution"
    run = tmp_path / "run"
    result = _torchrun(
        "--config_file", "['configs/train.json','configs/multi_gpu_train.json']", "--bundle_root", ".",
        "--dataset_dir", str(datasets["CT"]), "--output_dir", str(run), "--max_epochs", "1", "--val_interval", "1",
        "--patch_size", "8", "--batch_size", "1", "--network_kwargs#num_blocks", "1", cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 3 training slices, DistributedSampler (padded to 4), batch 1: 2 iterations per rank; both ranks finish
    assert (run / "checkpoints" / "checkpoint_final_iteration=2.pt").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint_final_iteration=2.pt", "checkpoint_iteration=2.pt"
    ]
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # rank 0's trainer and evaluator only
    _, meta = load_model(run / "models" / "model.pt")
    assert meta["info"]["epoch"] == 1 and "module." not in "".join(torch.load(run / "models" / "model.pt",
                                                                              weights_only=True)["state_dict"])


def test_sharded_inference_command_with_a_corrupt_file_among_good_ones(tmp_path):
    """``python -m monai.bundle run`` of inference.json under torchrun with the shipped weights: each rank does its
    share, every good volume is written once with exact geometry, the bad one is named in one line, nothing partial."""
    sources = []
    for n, path in enumerate(write_crops(tmp_path / "crops", "CT") * 2):  # 4 volumes in 2 sub-folders
        target = tmp_path / "in" / f"part{n % 2}" / f"{n}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        sources.append(target)
    broken = tmp_path / "in" / "part1" / "9_broken.nii.gz"
    broken.write_bytes(sources[0].read_bytes()[:2000])  # a truncated real file: the 5th job, rank 0's third
    root = BUNDLES / "ct_rmisr_bl_super_resolution"
    result = _torchrun(
        "--config_file", "configs/inference.json", "--bundle_root", ".", "--dataset_dir", str(tmp_path / "in"),
        "--output_dir", str(tmp_path / "out"), "--device", "cpu", cwd=root,
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    # torchrun reports the failed child with its own traceback; the child's is one line, no stack of ours
    assert not re.search(r'File ".*(rmisr_monai|monai/bundle)/', text), text[-3000:]
    assert text.count("2 done, 0 skipped (output exists), 1 failed (rank 0 of 2)") == 1
    assert text.count("2 done, 0 skipped (output exists), 0 failed (rank 1 of 2)") == 1
    assert [line for line in text.splitlines() if "rmisr: error:" in line] == [
        "rmisr: error: 1 of the inputs failed (named above); the rest are done"
    ]
    assert any("9_broken.nii.gz" in line and "error" in line for line in text.splitlines())
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tmp_path / "in") for p in sources)  # nothing partial, none twice
    for source in sources:
        _check_upscaled(source, tmp_path / "out" / source.relative_to(tmp_path / "in"), (2, 2, 1))
