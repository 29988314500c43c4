"""The worker program (SuperResolutionLib.worker) and the quality report, against the engine and numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from SuperResolutionLib import protocol
from SuperResolutionLib.quality import check_same_grid, quality_report, table_rows
from SuperResolutionLib.worker import main

from rmisr_monai.inference import resolve_axis, upscale_volume
from rmisr_monai.inference.engine import slice_layout
from rmisr_monai.io.geometry import Geometry, rescaled_geometry
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.io.write import write_volume
from rmisr_monai.networks import get_network
from rmisr_monai.weights import load_model


def _volume(shape=(9, 8, 7), seed=0, modality="MR") -> Volume:
    rng = np.random.default_rng(seed)
    direction = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    geometry = Geometry((0.8, 1.1, 3.0), (-12.3, 40.1, 7.7), direction)
    array = (rng.random(shape) * 900 + 50).astype(np.int16)
    return Volume(array, geometry, modality, np.int16, "synthetic", "mha")


@pytest.mark.parametrize(
    "scale, axis, through_plane", [(2.0, "z", False), (3.0, "x", False), (1.5, "z", True), (2.5, "y", True)]
)
def test_main_is_one_engine_call_with_its_progress_and_what_ran(tmp_path, capsys, scale, axis, through_plane):
    volume = _volume()
    write_volume(volume, tmp_path / "in.mha")
    code = main(["--input", str(tmp_path / "in.mha"), "--output", str(tmp_path / "out.mha"), "--scale", str(scale),
                 "--model", "bicubic", "--axis", axis, "--device", "cpu", *(["--through-plane"] * through_plane)])
    messages = _lines(capsys)
    net, _ = load_model("bicubic")
    ref = upscale_volume(read_volume(tmp_path / "in.mha"), net, scale, axis=axis, through_plane=through_plane,
                         device="cpu", progress=False, out_dtype=np.int16)
    result = read_volume(tmp_path / "out.mha")
    np.testing.assert_array_equal(result.array, ref.array)
    np.testing.assert_allclose(result.geometry.affine(), ref.geometry.affine(), atol=1e-12)
    slices = [m.text for m in messages if m.kind == "progress" and m.fields.get("stage") == "super-resolution"]
    walked = volume.array.shape[slice_layout(resolve_axis(axis), through_plane, volume.array.shape)[0]]
    assert code == 0 and slices[-1] == f"{walked} / {walked} slices on CPU"  # the engine's own count
    done = messages[-1]
    assert done.kind == "done" and done.fields["device"] == "CPU" and done.fields["precision"] == "fp32"
    assert done.fields["model"] == "bicubic" and done.fields["seconds"] > 0


def _smooth(shape, modality="CT") -> Volume:
    """A smooth blob (band-limited, so bicubic up then down is near the identity)."""
    grids = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    array = (1000 * np.exp(-sum(x**2 for x in grids) / 0.5) - 500).astype(np.float32)
    return Volume(array, _volume().geometry, modality, np.float32, "synthetic", "mha")


def _lines(capsys):
    return [protocol.decode(line) for line in capsys.readouterr().out.splitlines()]


def test_main_writes_the_result_reports_progress_and_quality(tmp_path, capsys):
    volume = _volume()
    write_volume(volume, tmp_path / "in.mha")
    code = main(["--input", str(tmp_path / "in.mha"), "--output", str(tmp_path / "out.mha"), "--scale", "2",
                 "--model", "bicubic", "--axis", "2", "--device", "cpu", "--quality", str(tmp_path / "q.json")])
    messages = _lines(capsys)
    assert code == 0 and all(m is not None for m in messages)
    fractions = [m.fraction for m in messages if m.kind == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 5
    assert messages[-1].kind == "done" and messages[-1].fields["shape"] == [18, 16, 7]
    result = read_volume(tmp_path / "out.mha")
    assert result.array.dtype == np.int16 and result.array.shape == (18, 16, 7)
    expected = rescaled_geometry(volume.geometry, (9, 8, 7), (18, 16, 7))
    np.testing.assert_allclose(result.geometry.spacing, (0.4, 0.55, 3.0), rtol=1e-15)
    np.testing.assert_allclose(result.geometry.origin, expected.origin, atol=1e-12)
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["shape_out"] == [18, 16, 7] and report["back_projection_psnr"] > 15  # white noise: the hardest case


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "rmisr_bl64_ct_x2", "--through-plane"], "arbitrary-scale"),
        (["--model", "bicubic", "--input-missing"], "no such file"),
        (["--weights", "missing.pt"], "weights file not found"),
    ],
)
def test_main_errors_are_one_sentence_and_nothing_is_written(tmp_path, capsys, extra, message):
    write_volume(_volume(), tmp_path / "in.mha")
    source = str(tmp_path / ("absent.mha" if "--input-missing" in extra else "in.mha"))
    extra = [e for e in extra if e != "--input-missing"]
    code = main(["--input", source, "--output", str(tmp_path / "out.mha"), "--scale", "2", "--device", "cpu", *extra])
    errors = [m for m in _lines(capsys) if m is not None and m.kind == "error"]
    assert code == 2 and len(errors) == 1 and message in errors[0].text
    assert not (tmp_path / "out.mha").exists()


def test_quality_report_properties_against_numpy():
    lr = _smooth((16, 14, 4))
    net, _ = load_model("bicubic")
    sr = upscale_volume(lr, net, 2, device="cpu", progress=False)
    report = quality_report(lr, sr, "z", False, reference=sr)
    assert report["back_projection_psnr"] > 30  # bicubic up then down is close to the identity
    assert report["psnr"] is None and report["ssim"] == pytest.approx(1.0)  # identical to the reference
    rng = np.random.default_rng(1)
    noisy = Volume(sr.array + rng.normal(0, 20, sr.array.shape), sr.geometry, "CT", np.float32, "x", "mha")
    scored = quality_report(lr, sr, "z", False, reference=noisy)
    peak = float(noisy.array.max() - noisy.array.min())
    mse = float(np.mean((sr.array.astype(np.float64) - noisy.array) ** 2))
    assert scored["psnr"] == pytest.approx(10 * np.log10(peak**2 / mse), abs=1e-9)
    assert 0 < scored["ssim"] < 1
    garbage = Volume(rng.normal(500, 300, sr.array.shape), sr.geometry, "CT", np.float32, "x", "mha")
    assert quality_report(lr, garbage, "z", False)["back_projection_psnr"] < report["back_projection_psnr"] - 10
    rows = table_rows({**scored, "seconds": 1.25})
    assert rows[0] == ("Voxels", "16x14x4 -> 32x28x4", "input (or ROI) grid -> result grid")
    assert {r[0] for r in rows} >= {"Back-projection PSNR", "PSNR vs reference", "SSIM vs reference", "Time"}


def test_quality_through_plane_back_projects_along_the_thick_axis_only():
    lr = _smooth((6, 5, 8))
    net, _ = load_model("bicubic")
    sr = upscale_volume(lr, net, 2, axis="z", through_plane=True, device="cpu", progress=False)
    report = quality_report(lr, sr, "z", True)
    assert report["shape_out"] == [6, 5, 16] and report["back_projection_psnr"] > 30


def test_reference_off_the_grid_is_refused():
    sr = _volume(shape=(8, 8, 4))
    moved = Geometry(sr.geometry.spacing, (0, 0, 0), sr.geometry.direction)
    shifted = Volume(sr.array, moved, "MR", np.int16, "x", "mha")
    with pytest.raises(ValueError, match="not on the result's grid"):
        check_same_grid(shifted, sr.array.shape, sr.geometry)
    with pytest.raises(ValueError, match="voxels but the result has"):
        check_same_grid(sr, (8, 8, 5), sr.geometry)


def test_main_self_ensemble_is_the_engines(tmp_path, capsys):
    from rmisr_monai.weights import save_checkpoint

    torch.manual_seed(0)
    net = get_network("fsrcnn", in_channels=1, scale=2).eval()
    intensity = {"kind": "mr", "a_min": None, "a_max": None}
    weights = save_checkpoint(tmp_path / "tiny.pt", net, "fsrcnn", {"in_channels": 1, "scale": 2}, intensity)
    volume = _volume(shape=(10, 9, 3))
    write_volume(volume, tmp_path / "in.mha")
    outputs = {}
    for n in ("1", "8"):
        out = tmp_path / f"out{n}.mha"
        code = main(["--input", str(tmp_path / "in.mha"), "--output", str(out), "--scale", "2", "--weights",
                     str(weights), "--device", "cpu", "--self-ensemble", n])
        assert code == 0
        outputs[n] = read_volume(out).array
    ref = upscale_volume(read_volume(tmp_path / "in.mha"), net, 2, intensity=intensity, device="cpu", progress=False,
                         out_dtype=np.int16, ensemble=8).array
    assert np.abs(outputs["8"].astype(int) - ref).max() <= 1  # int16 rounding of slab-wise float sums
    assert np.abs(outputs["8"].astype(int) - outputs["1"]).max() > 1
