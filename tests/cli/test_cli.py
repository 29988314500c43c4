"""``rmisr`` command: geometry of written results (checked with SimpleITK, not our code), errors as one stderr line
with nothing written, Ctrl-C, weights handling, the PHI canary, and one call of the installed console script."""

from __future__ import annotations

import gzip
import itertools
import logging
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from rmisr_monai.cli import main
from rmisr_monai.inference.batch import BatchUpscaler
from rmisr_monai.networks import get_network
from rmisr_monai.weights import save_checkpoint
from tests.cli.synthetic import write_ct_series

# an oblique rotation (about an axis tilted from all three world axes) and anisotropic spacing
_ANGLE = np.deg2rad(27.0)
_AXIS = np.array([1.0, 2.0, 2.0]) / 3.0
_K = np.array([[0, -_AXIS[2], _AXIS[1]], [_AXIS[2], 0, -_AXIS[0]], [-_AXIS[1], _AXIS[0], 0]])
OBLIQUE = np.eye(3) + np.sin(_ANGLE) * _K + (1 - np.cos(_ANGLE)) * _K @ _K
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (12.5, -30.25, 101.0)
SHAPE = (11, 10, 7)  # (i, j, k); odd sizes so that some n * 1.5 are halves
BRIGHT = (5, 4, 3)


def _write_sitk(path, array_ijk: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=OBLIQUE):
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction).ravel()))
    sitk.WriteImage(image, str(path))
    return path


def _bright_volume(tmp_path, suffix):
    array = np.zeros(SHAPE, np.int16)
    array[BRIGHT] = 1000
    return _write_sitk(tmp_path / f"in{suffix}", array)


def _corners(image: sitk.Image) -> np.ndarray:
    bounds = [(-0.5, n - 0.5) for n in image.GetSize()]
    return np.array([image.TransformContinuousIndexToPhysicalPoint(c) for c in itertools.product(*bounds)])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("scale", [2.0, 1.5])
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_upscale_geometry_with_bicubic(tmp_path, suffix, scale, axis):
    src = _bright_volume(tmp_path, suffix)
    out = tmp_path / f"out{suffix}"
    rc = main(["upscale", str(src), str(out), "--scale", str(scale), "--axis", axis, "--model", "bicubic", "--quiet"])
    assert rc == 0
    a_in, a_out = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    ax = "xyz".index(axis)
    expected_size = [n if a == ax else round(n * scale) for a, n in enumerate(SHAPE)]
    assert list(a_out.GetSize()) == expected_size
    expected_spacing = [s * n / m for s, n, m in zip(a_in.GetSpacing(), SHAPE, expected_size)]
    np.testing.assert_allclose(a_out.GetSpacing(), expected_spacing, rtol=1e-6)
    np.testing.assert_allclose(a_out.GetDirection(), a_in.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(_corners(a_out), _corners(a_in), atol=1e-4)
    # the bright voxel's intensity-weighted world centroid stays within half an output voxel
    values = sitk.GetArrayFromImage(a_out).transpose(2, 1, 0).astype(np.float64)
    grid = np.indices(values.shape).reshape(3, -1)
    centroid_index = grid @ values.ravel() / values.sum()
    centroid = np.array(a_out.TransformContinuousIndexToPhysicalPoint(centroid_index.tolist()))
    truth = np.array(a_in.TransformIndexToPhysicalPoint(BRIGHT))
    assert np.linalg.norm(centroid - truth) <= 0.5 * min(a_out.GetSpacing())
    assert sitk.GetArrayFromImage(a_out).dtype == np.int16  # the input's type by default


def test_through_plane_bicubic_upscales_only_the_thick_axis(tmp_path):
    src = _bright_volume(tmp_path, ".nii.gz")
    out = tmp_path / "thin.nii.gz"
    assert main(["upscale", str(src), str(out), "--scale", "2.5", "--through-plane", "--model", "bicubic",
                 "--dtype", "float32", "--quiet"]) == 0
    image = sitk.ReadImage(str(out))
    assert image.GetSize() == (11, 10, round(7 * 2.5))
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 0.9, 2.5 * 7 / 18), rtol=1e-6)
    assert sitk.GetArrayFromImage(image).dtype == np.float32


def _one_error_line(capsys, *must_contain):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rmisr: error: ")
    for text in must_contain:
        assert text in lines[0]
    assert "Traceback" not in err


def test_bad_inputs_fail_with_one_line_and_write_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    out = tmp_path / "out.nii.gz"
    assert main(["upscale", str(empty), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]) != 0
    _one_error_line(capsys, "empty.nii.gz")
    folder = tmp_path / "notdicom"
    folder.mkdir()
    (folder / "a.dcm").write_text("this is not DICOM")
    assert main(["upscale", str(folder), str(out), "--scale", "2", "--model", "bicubic", "--quiet"]) != 0
    _one_error_line(capsys, "notdicom")
    assert main(["info", str(tmp_path / "missing.nrrd")]) != 0
    _one_error_line(capsys, "missing.nrrd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.nii.gz", "notdicom"]


def test_existing_output_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    src = _bright_volume(tmp_path, ".nii.gz")
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"precious")
    monkeypatch.setattr(BatchUpscaler, "network", lambda *a: pytest.fail("work started before the output check"))
    assert main(["upscale", str(src), str(out), "--scale", "2", "--model", "bicubic"]) == 2
    _one_error_line(capsys, "out.nii.gz", "exists", "--overwrite replaces it")  # the CLI's words, not Python's
    assert out.read_bytes() == b"precious"


def test_missing_default_weights_suggest_bicubic(tmp_path, capsys, monkeypatch):
    from rmisr_monai.weights import loader

    empty = tmp_path / "registry.json"
    empty.write_text('{"models": []}')
    monkeypatch.setattr(loader, "REGISTRY_PATH", empty)  # nothing shipped, whatever the package holds
    src = _bright_volume(tmp_path, ".nii.gz")
    assert main(["upscale", str(src), str(tmp_path / "o.nii.gz"), "--scale", "7"]) == 2
    _one_error_line(capsys, "no shipped weights for scale 7", "--model bicubic")
    assert main(["upscale", str(src), str(tmp_path / "o.nii.gz"), "--scale", "2", "--model", "rmisr_bl"]) == 2
    _one_error_line(capsys, "--weights")
    import rmisr_monai.io.read

    monkeypatch.setattr(rmisr_monai.io.read, "read_volume", lambda *a, **k: pytest.fail("input read before the check"))
    assert main(["upscale", str(src), str(tmp_path / "o.nii.gz"), "--scale", "2", "--through-plane"]) == 2
    _one_error_line(capsys, "no shipped arbitrary-scale weights", "--model bicubic")
    assert not (tmp_path / "o.nii.gz").exists()


def test_usage_errors_are_one_line(capsys):
    assert main(["upscale", "a.nii", "b.nii"]) == 2
    _one_error_line(capsys, "--scale")
    assert main(["upscale", "a.nii", "b.nii", "--scale", "-1"]) == 2
    _one_error_line(capsys, "-1")


class _InterruptingNet(torch.nn.Module):
    """Bicubic that raises KeyboardInterrupt on its k-th call (Ctrl-C mid-volume)."""

    arbitrary_scale = True

    def __init__(self, k):
        super().__init__()
        self.net, self.k, self.calls = get_network("bicubic"), k, 0

    def forward(self, x, scale):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.net(x, scale)


def test_keyboard_interrupt_leaves_no_output_and_no_temp_file(tmp_path, capsys, monkeypatch):
    src = _bright_volume(tmp_path, ".nii.gz")
    out = tmp_path / "out.nii.gz"
    net = _InterruptingNet(k=2)
    meta = {"network": "bicubic", "intensity": None, "path": None}
    monkeypatch.setattr(BatchUpscaler, "network", lambda *a: (net, meta))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["upscale", str(src), str(out), "--scale", "2", "--model", "bicubic", "--batch", "1", "--quiet"]) == 130
    assert net.calls == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # an existing output is left untouched even with --overwrite
    out.write_bytes(b"old result")
    net.calls = 0
    assert main(["upscale", str(src), str(out), "--scale", "2", "--model", "bicubic", "--batch", "1", "--overwrite",
                 "--quiet"]) == 130
    assert out.read_bytes() == b"old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["out.nii.gz"])
    assert "interrupted" in capsys.readouterr().err


def test_weights_checkpoint_is_used_with_its_intensity(tmp_path):
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "scale": 2, "features": 4, "num_blocks": 1}
    net = get_network("edsr_baseline", **kwargs).eval()
    intensity = {"kind": "ct", "a_min": -1024.0, "a_max": 3071.0, "clip": True}
    ckpt = save_checkpoint(tmp_path / "tiny.pt", net, "edsr_baseline", kwargs, intensity)
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 2000, size=(9, 8, 3)).astype(np.int16)
    src = _write_sitk(tmp_path / "ct.nii.gz", array, direction=np.eye(3))
    out = tmp_path / "sr.nii.gz"
    assert main(["upscale", str(src), str(out), "--scale", "2", "--weights", str(ckpt), "--dtype", "float32",
                 "--precision", "fp32", "--quiet"]) == 0  # fp32: the reference below is fp32 (auto may be bf16)
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).transpose(2, 1, 0)
    # independent reference: the network on each normalised slice, mapped back to HU
    with torch.no_grad():
        x = torch.from_numpy((np.clip(array, -1024, 3071).astype(np.float32) + 1024) / 4095).permute(2, 0, 1)
        ref = (net(x[:, None])[:, 0] * 4095 - 1024).permute(1, 2, 0).numpy()
    ref = np.maximum(ref, array.min(axis=(0, 1)))  # the input floor: nothing below the input slice's minimum
    np.testing.assert_allclose(result, ref, atol=1e-2)


def test_no_patient_tags_in_output_or_logs(tmp_path, capsys, caplog):
    series = write_ct_series(tmp_path / "series")
    out = tmp_path / "sr.nii.gz"
    with caplog.at_level(logging.DEBUG):
        assert main(["info", str(series)]) == 0
        info = capsys.readouterr()
        assert main(["upscale", str(series), str(out), "--scale", "2", "--model", "bicubic"]) == 0
        run = capsys.readouterr()
    assert "shape" in info.out and "spacing" in info.out
    for text in (info.out, info.err, run.out, run.err, caplog.text):
        assert "CANARY" not in text and "19000101" not in text
    assert b"CANARY" not in gzip.decompress(out.read_bytes())
    assert sitk.ReadImage(str(out)).GetSize() == (16, 16, 4)


def test_demo_writes_results_and_prints_timing(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo"), "--model", "bicubic", "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    result = tmp_path / "demo" / "ct_demo_x2_bicubic.nii.gz"
    assert result.exists() and "slices/s" in out
    # the picture of what the model does, with its numbers
    assert (tmp_path / "demo" / "ct_demo_abdomen_int16_x2_quality.png").stat().st_size > 10_000
    assert "PSNR" in out and "bicubic" in out
    assert sitk.ReadImage(str(result)).GetSize() == (768, 480, 20)


def test_help_teaches(capsys):
    assert main(["upscale", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--scale", "--model", "--weights", "--axis", "--through-plane", "--device", "--tile", "--batch",
                   "--overwrite", "--series-uid", "--dtype", "--quiet", "--self-ensemble", "examples", "bicubic"):
        assert option in text


def test_console_script_runs(tmp_path):
    exe = shutil.which("rmisr")
    if exe is None:
        pytest.skip("the rmisr console script is not installed (pip install -e . --no-deps)")
    src = _bright_volume(tmp_path, ".nii.gz")
    out = tmp_path / "out.nii.gz"
    proc = subprocess.run([exe, "upscale", str(src), str(out), "--scale", "2", "--model", "bicubic", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sitk.ReadImage(str(out)).GetSize() == (22, 20, 7)
    proc = subprocess.run([exe, "upscale", str(src), str(out), "--scale", "2", "--model", "bicubic"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "exists" in proc.stderr
