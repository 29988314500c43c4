"""Every bundle's workflows really run, on a few real slices, through MONAI's ``ConfigWorkflow`` (what
``python -m monai.bundle run`` builds) or the command itself: train 1 tiny epoch, evaluate, infer; inference runs the
``network_def`` it builds (an override of it, or of its weights, changes the result) through the package's engine;
the weights per scale; two gloo processes under ``torchrun``, of which only rank 0 writes."""

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
from monai.bundle import ConfigWorkflow, ckpt_export

from rmisr_monai.bundles import scale_entry, weights_file
from rmisr_monai.inference.batch import BatchUpscaler
from rmisr_monai.weights.loader import load_model
from tests.bundles.conftest import BUNDLE_NAMES, BUNDLES, bundle_config, modality_of, write_crops
from tests.conftest import REPO_ROOT

TINY = {"max_epochs": 1, "val_interval": 1, "patch_size": 8, "batch_size": 2, "device": "cpu", "data#val_slices": 2}
SMALL_NETWORK = {"network_kwargs#num_blocks": 1}  # 1 PFMDB instead of 4: the same code, a faster tiny epoch
SMALL_VP = {**SMALL_NETWORK, "network_kwargs#grad_blocks": 1}  # RMISR-VP: its gradient branch reads every block
CORNERS = np.array([[-0.5, -0.5, -0.5, 1.0]]).T  # voxel-corner box: its first corner, in index space
BL = "ct_mri_super_resolution"
VP = "ct_edge_super_resolution"


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


def _voxels(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj).astype(np.float64)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_train_evaluate_infer(name, datasets, tmp_path):
    data = datasets[modality_of(name)]
    run = tmp_path / "run"
    small = SMALL_VP if bundle_config(name, "train")["network_name"] == "rmisr_vp" else SMALL_NETWORK
    _run(name, "train", dataset_dir=str(data), output_dir=str(run), **TINY, **small)
    best = run / "models" / "model.pt"  # the zoo's layout: the best weights as a bare state dict
    state = torch.load(best, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and not any(k.startswith("module.") for k in state)
    _, meta = load_model(run / "rmisr_checkpoint.pt")  # the same weights as a package checkpoint (rmisr --weights)
    assert meta["network"] == bundle_config(name, "train")["network_name"] and meta["info"]["trained"] is True
    assert meta["info"]["epoch"] == 1 and meta["intensity"]["kind"] == "mr"  # per-volume percentiles, any modality
    assert meta["intensity"] == bundle_config(name, "inference")["intensity"]  # what inference normalises with
    scores = meta["info"]["validation"]
    assert math.isfinite(scores["val_psnr"]) and 0.0 < scores["val_ssim"] <= 1.0
    resumable = torch.load(next((run / "checkpoints").glob("checkpoint_final_iteration=*.pt")), weights_only=True)
    assert {"network", "optimizer", "scheduler", "trainer"} <= set(resumable)
    assert "val_psnr" in (run / "log.txt").read_text() and list(run.glob("events.out.tfevents.*"))
    if name == BL:  # resumable: a second epoch continues from the first one's state
        final = run / "checkpoints" / "checkpoint_final_iteration=2.pt"
        _run(name, "train", dataset_dir=str(data), output_dir=str(run), resume_from=str(final),
             **{**TINY, "max_epochs": 2}, **small)
        assert (run / "checkpoints" / "checkpoint_final_iteration=4.pt").is_file()

    report = tmp_path / "report"
    # a through-plane bundle is scored through-plane: the crops' 48-voxel i axis as the thick one (3 z slices are
    # too few to shrink and score)
    thick = {"axis": "x"} if bundle_config(name, "inference")["inferer"].get("through_plane", False) else {}
    _run(name, "evaluate", dataset_dir=str(data), output_dir=str(report), checkpoint=str(best), max_slices=2,
         device="cpu", **small, **thick)
    rows = list(csv.DictReader((report / "evaluation.csv").open()))
    assert {r["method"] for r in rows} == {"bicubic", "model.pt"} and len(rows) == 4
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("psnr", "ssim", "edge_psnr"))
    mean = json.loads((report / "evaluation.json").read_text())["mean"]
    for method in ("bicubic", "model.pt"):  # the mean over the volumes of the per-volume CSV rows
        own = [float(r["psnr"]) for r in rows if r["method"] == method]
        assert mean[method]["psnr"] == pytest.approx(sum(own) / len(own), rel=1e-9)
    assert len(list(report.glob("*_quality.png"))) == 2

    out = tmp_path / "out"
    _run(name, "inference", dataset_dir=str(data), output_dir=str(out), checkpoint=str(best), device="cpu", **small)
    through_plane = bundle_config(name, "inference")["inferer"].get("through_plane", False)
    scale = bundle_config(name, "inference")["scale"]  # the configs' default: train, evaluate and infer at it
    assert bundle_config(name, "train")["scale"] == bundle_config(name, "evaluate")["scale"] == scale
    for source in sorted(data.glob("*.nii.gz")):
        _check_upscaled(source, out / source.name, (1, 1, scale) if through_plane else (scale, scale, 1))


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


def _package_result(tmp_path: Path, source: Path, model: str, scale: int, **options) -> np.ndarray:
    """``rmisr upscale``'s result (the package's BatchUpscaler with a registry model), as the reference."""
    output = tmp_path / f"{model}_x{scale}.nii.gz"
    BatchUpscaler(model=model, scale=scale, device="cpu", progress=False, **options).upscale_file(source, output)
    return _voxels(output)


@pytest.mark.parametrize(
    ("name", "scale", "model"), [(BL, 2, "rmisr_bl64_ct_x2"), (VP, 4, "rmisr_vp_ct_x4")]
)
def test_inference_as_shipped_is_the_package_engine_with_the_bundle_weights(name, scale, model, tmp_path):
    """inference.json as shipped (no override but the data): the input's type, exact geometry, and voxel for voxel
    what ``rmisr upscale --model <the registry entry of the same weights>`` writes; not an interpolation."""
    (tmp_path / "in").mkdir()
    source = _synthetic_ct(tmp_path / "in" / "ct.nii.gz")
    out = tmp_path / "out"
    _run(name, "inference", dataset_dir=str(tmp_path / "in"), output_dir=str(out), device="cpu")
    _check_upscaled(source, out / source.name, (scale, scale, 1))
    assert nib.load(out / source.name).get_data_dtype() == np.int16
    sr = _voxels(out / source.name)
    np.testing.assert_array_equal(sr, _package_result(tmp_path, source, model, scale))
    bicubic = _package_result(tmp_path, source, "bicubic", scale)
    assert np.abs(sr - bicubic).max() > 20  # not an interpolation
    # trained: close to bicubic in the mean (a random network with the same normalisation is hundreds of HU off)
    assert np.corrcoef(sr.ravel(), bicubic.ravel())[0, 1] > 0.9 and abs(sr.mean() - bicubic.mean()) < 30


def test_network_def_and_its_weights_are_what_inference_runs(tmp_path):
    """The zoo's route of swapping ``network_def`` for its TorchScript export gives the same voxels; other weights
    (the loader's file) or another ``network_def`` give other voxels; a network the weights do not fit is refused."""
    root = BUNDLES / BL
    (tmp_path / "in").mkdir()
    _synthetic_ct(tmp_path / "in" / "ct.nii.gz")
    common = {"dataset_dir": str(tmp_path / "in"), "device": "cpu", "precision": "fp32"}
    _run(BL, "inference", output_dir=str(tmp_path / "eager"), **common)
    eager = _voxels(tmp_path / "eager" / "ct.nii.gz")

    exported = tmp_path / "model.ts"
    configs = {"meta_file": str(root / "configs" / "metadata.json"),
               "config_file": str(root / "configs" / "inference.json")}
    ckpt_export(net_id="network_def", filepath=str(exported), bundle_root=str(root), **configs)
    _run(BL, "inference", output_dir=str(tmp_path / "ts"), network_def=f"$torch.jit.load('{exported}')", **common)
    np.testing.assert_allclose(_voxels(tmp_path / "ts" / "ct.nii.gz"), eager, atol=1.0)  # int16 rounding

    state = torch.load(root / "models" / "model.pt", weights_only=True)
    damped = tmp_path / "damped.pt"
    torch.save({k: v * 0.5 if v.is_floating_point() and v.ndim == 4 else v for k, v in state.items()}, damped)
    _run(BL, "inference", output_dir=str(tmp_path / "other"), checkpoint=str(damped), **common)
    assert np.abs(_voxels(tmp_path / "other" / "ct.nii.gz") - eager).max() > 50

    # no weights loaded (the zoo's unit tests disable the loader this way): the random network_def runs
    _run(BL, "inference", output_dir=str(tmp_path / "random"), **{"handlers#0#_disabled_": True}, **common)
    assert np.abs(_voxels(tmp_path / "random" / "ct.nii.gz") - eager).max() > 50

    with pytest.raises(RuntimeError) as failure:  # 32 features: the 64-feature weights do not fit
        _run(BL, "inference", output_dir=str(tmp_path / "narrow"), **{"network_kwargs#features": 32}, **common)
    assert "size mismatch for head.weight" in str(failure.value.__cause__)
    assert not (tmp_path / "narrow" / "ct.nii.gz").exists()


def test_every_scale_option_is_served_by_the_bundle_itself():
    """The scale (and modality) options pick a file of the bundle's own models/ folder, with the self-ensemble it
    was measured with; a scale the bundle has no weights for is refused in one line."""
    table = bundle_config(BL, "inference")["weights"]
    recipe = bundle_config(BL, "inference")["self_ensemble_recipe"]
    for modality, scale, file, ensemble in (
        ("CT", 2, "model.pt", 1), ("MR", 2, "model_mr_x2.pt", 1), ("CT", 3, "model_x3.pt", 4),
        ("MR", 3, "model_mr_x3.pt", 4),
        ("CT", 4, "model_x4.pt", 4), ("MR", 4.0, "model_x4.pt", 4),
    ):
        assert weights_file(BUNDLES / BL, table, scale, modality) == str(BUNDLES / BL / "models" / file)
        assert scale_entry(recipe, scale) == ensemble
    refused = r"^rmisr: error: no CT weights for scale 5; this bundle serves scales 2, 3, 4$"
    with pytest.raises(SystemExit, match=refused):
        weights_file(BUNDLES / BL, table, 5, "CT")
    vp = bundle_config(VP, "inference")["weights"]
    assert weights_file(BUNDLES / VP, vp, 4) == str(BUNDLES / VP / "models" / "model.pt")
    with pytest.raises(SystemExit, match=r"^rmisr: error: no weights for scale 2; this bundle serves scales 4$"):
        weights_file(BUNDLES / VP, vp, 2)
    meta = bundle_config("ct_mri_through_plane_super_resolution", "inference")["weights"]
    assert weights_file(BUNDLES / "ct_mri_through_plane_super_resolution", meta, 2.5).endswith("models/model.pt")


@pytest.mark.parametrize(("scale", "default"), [(2, "rmisr_bl64_mr_x2"), (3, "rmisr_bl64_mr_x3")])
def test_mr_runs_its_own_weights_with_their_recipe(scale, default, tmp_path):
    """``--modality MR --scale 2`` / ``3``: the bundle's MR file (x2 plain, x3 as the 4-fold self-ensemble), voxel for
    voxel what ``rmisr upscale`` runs for the registry's MR default (same weights, the registry's recipe)."""
    (tmp_path / "in").mkdir()
    source = write_crops(tmp_path / "crops", "MR")[0]
    small = tmp_path / "in" / "mr.nii.gz"
    nib.save(nib.load(source).slicer[:24, :24, :1], small)
    _run(BL, "inference", dataset_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"), device="cpu",
         modality="MR", scale=scale)
    expected = _package_result(tmp_path, small, default, scale)
    np.testing.assert_array_equal(_voxels(tmp_path / "out" / "mr.nii.gz"), expected)


def _command(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _command(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", *args, cwd=cwd,
    )


def test_multi_gpu_train_with_two_gloo_processes_only_rank_0_writes(datasets, tmp_path):
    """Each rank gets its own output folder: rank 0's holds the checkpoints, the best weights and the logs; rank 1
    writes nothing at all (no checkpoint race on the same file names)."""
    root = BUNDLES / BL
    run = tmp_path / "run"
    result = _torchrun(
        "--config_file", "['configs/train.json','configs/multi_gpu_train.json']", "--bundle_root", ".",
        "--dataset_dir", str(datasets["CT"]), "--output_dir", f"$'{run}/rank' + str(torch.distributed.get_rank())",
        "--max_epochs", "1", "--val_interval", "1", "--patch_size", "8", "--batch_size", "1",
        "--network_kwargs#num_blocks", "1", cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = run / "rank0"
    # 3 training slices, DistributedSampler (padded to 4), batch 1: 2 iterations per rank
    assert sorted(p.name for p in (rank0 / "checkpoints").iterdir()) == [
        "checkpoint_final_iteration=2.pt", "checkpoint_iteration=2.pt"
    ]
    assert len(list(rank0.glob("events.out.tfevents.*"))) == 2  # rank 0's trainer and evaluator
    state = torch.load(rank0 / "models" / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert load_model(rank0 / "rmisr_checkpoint.pt")[1]["info"]["epoch"] == 1
    assert not (run / "rank1").exists()


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
    root = BUNDLES / BL
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
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.nii.gz"))
    assert written == sorted(p.relative_to(tmp_path / "in") for p in sources)  # nothing partial, none twice
    for source in sources:
        _check_upscaled(source, tmp_path / "out" / source.relative_to(tmp_path / "in"), (2, 2, 1))
