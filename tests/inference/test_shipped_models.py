"""The shipped models do their job: on a real scan of their modality that they never saw, each beats bicubic, through
the same engine call that ``rmisr upscale`` makes (intensity normalisation from the checkpoint, geometry updated)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rmisr_monai.inference import upscale_volume
from rmisr_monai.io.geometry import rescaled_geometry
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.metrics import psnr
from rmisr_monai.transforms import bicubic_resize
from rmisr_monai.weights import load_model
from rmisr_monai.weights.loader import default_model, read_registry
from tests.conftest import shared_path

SHIPPED = [e for e in read_registry() if e.get("status", "current") == "current"]
# held-out scans (not in any shipped model's training data, benchmarks/RESULTS.md) per modality
HELD_OUT = {
    "CT": ("data", "medical", "dicom_series", "ct_ge_lightspeedplus_chest"),
    "MR": ("data", "medical", "mr", "stroke_t2_uint8.nii.gz"),
}


def _crop_pair(modality: str, scale: int) -> tuple[Volume, np.ndarray]:
    """A 2-slice, 96 x 96 HR crop of the held-out scan and its bicubic LR version as a Volume."""
    hr_volume = read_volume(shared_path(*HELD_OUT[modality]))
    nx, ny, nz = hr_volume.array.shape
    size = 96
    x0, y0, z0 = (nx - size) // 2, (ny - size) // 2, nz // 2
    hr = hr_volume.array[x0 : x0 + size, y0 : y0 + size, z0 : z0 + 2].astype(np.float64)
    lr = bicubic_resize(hr[None], (1.0 / scale, 1.0 / scale, 1.0))[0]
    geometry = rescaled_geometry(hr_volume.geometry, hr.shape, lr.shape)
    return dataclasses.replace(hr_volume, array=lr, geometry=geometry, source_dtype=np.dtype(np.float64)), hr


FIXED_SCALE = [e for e in SHIPPED if not e.get("arbitrary_scale")]
ARBITRARY_SCALE = [e for e in SHIPPED if e.get("arbitrary_scale")]
# through-plane: thick slices along i simulated from the held-out scan, upscaled with --through-plane --axis x
THROUGH_PLANE_SCALE = 2.5
THROUGH_PLANE_MARGIN_DB = 0.5


@pytest.mark.skipif(not FIXED_SCALE, reason="no shipped model in rmisr_monai/weights/registry.json")
@pytest.mark.parametrize("entry", FIXED_SCALE, ids=[e["name"] for e in FIXED_SCALE])
def test_shipped_model_beats_bicubic_on_a_held_out_scan(entry):
    scale = int(entry["scale"])
    lr, hr = _crop_pair(entry["modality"], scale)
    model, meta = load_model(entry["name"])
    bicubic, _ = load_model("bicubic")
    data_range = float(hr.max() - hr.min())
    scores = {}
    for name, net, intensity in (("model", model, meta["intensity"]), ("bicubic", bicubic, None)):
        out = upscale_volume(lr, net, scale, intensity=intensity, device="cpu", progress=False)
        assert out.array.shape == hr.shape
        np.testing.assert_allclose(out.geometry.spacing, np.asarray(lr.geometry.spacing) / [scale, scale, 1])
        sr_slices, hr_slices = (np.moveaxis(a, 2, 0)[:, None] for a in (out.array, hr))  # (slice, 1, x, y)
        scores[name] = float(psnr(sr_slices, hr_slices, data_range=data_range, shave=scale).mean())
    assert scores["model"] > scores["bicubic"] + 1.0, scores


def _through_plane_cases() -> list[tuple[str, str]]:
    """(model, modality): every arbitrary-scale entry on its modality, and the through-plane default of each modality
    that has no arbitrary-scale model of its own (a CT input gets the MR model, :func:`default_model`)."""
    cases = [(e["name"], e["modality"]) for e in ARBITRARY_SCALE]
    for modality in HELD_OUT if ARBITRARY_SCALE else ():
        case = (default_model(THROUGH_PLANE_SCALE, modality, arbitrary_scale=True)["name"], modality)
        if case not in cases:
            cases.append(case)
    return cases


THROUGH_PLANE_CASES = _through_plane_cases()


@pytest.mark.skipif(not ARBITRARY_SCALE, reason="no arbitrary-scale model in rmisr_monai/weights/registry.json")
@pytest.mark.parametrize("name,modality", THROUGH_PLANE_CASES, ids=[f"{n}-{m}" for n, m in THROUGH_PLANE_CASES])
def test_arbitrary_scale_model_beats_bicubic_through_plane_on_a_held_out_scan(name, modality):
    """Thick slices along i (the held-out crop shrunk by 2.5 along i alone with the training degradation): the
    model gives round(n * 2.5) slices on the HR grid and beats bicubic along that axis."""
    from rmisr_monai.evaluation import degrade_volume

    hr_volume = read_volume(shared_path(*HELD_OUT[modality]))
    nx, ny, nz = hr_volume.array.shape
    x0, y0, z0 = (nx - 100) // 2, (ny - 96) // 2, nz // 2
    crop = dataclasses.replace(hr_volume, array=hr_volume.array[x0 : x0 + 100, y0 : y0 + 96, z0 : z0 + 2])
    hr, lr = degrade_volume(crop, THROUGH_PLANE_SCALE, axis="x", through_plane=True)
    assert lr.array.shape == (40, 96, 2)
    model, meta = load_model(name)
    bicubic, _ = load_model("bicubic")
    data_range = float(hr.array.max() - hr.array.min())
    scores = {}
    for name, net, intensity in (("model", model, meta["intensity"]), ("bicubic", bicubic, None)):
        out = upscale_volume(lr, net, THROUGH_PLANE_SCALE, axis="x", through_plane=True, intensity=intensity,
                             device="cpu", progress=False)
        assert out.array.shape == hr.array.shape == (round(40 * THROUGH_PLANE_SCALE), 96, 2)
        np.testing.assert_allclose(out.geometry.spacing, hr.geometry.spacing, rtol=1e-9)
        sr_slices, hr_slices = (np.moveaxis(a, 2, 0)[:, None] for a in (out.array, hr.array))
        scores[name] = float(psnr(sr_slices, hr_slices, data_range=data_range, shave=3).mean())
    assert scores["model"] > scores["bicubic"] + THROUGH_PLANE_MARGIN_DB, scores
