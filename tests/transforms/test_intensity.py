"""Invertible CT/MR intensity normalisation: exact round trips, clipping, numpy/torch, percentiles vs numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.transforms.intensity import (
    CT_WINDOW_HU,
    IntensityNormalization,
    NormalizeCT,
    NormalizeCTd,
    NormalizeMR,
    NormalizeMRd,
)

RNG = np.random.default_rng(0)


def test_ct_maps_window_linearly_and_round_trips():
    hu = np.array([-1024.0, -1000.0, 0.0, 40.0, 1000.0, 3071.0])
    out = NormalizeCT()(hu)
    np.testing.assert_allclose(out, (hu + 1024.0) / 4095.0, rtol=0, atol=1e-12)
    assert out[0] == 0.0 and out[-1] == 1.0
    back = IntensityNormalization.ct().inverse(out)
    np.testing.assert_allclose(back, hu, rtol=0, atol=1e-9)


def test_ct_clip_is_lossy_outside_the_window_only():
    hu = torch.tensor([-2000.0, -500.0, 5000.0])
    norm = IntensityNormalization.ct(clip=True)
    out = norm.forward(hu)
    assert out.tolist() == [0.0, pytest.approx(524 / 4095), 1.0]
    assert norm.inverse(out).tolist() == [-1024.0, pytest.approx(-500.0, abs=1e-3), 3071.0]
    unclipped = IntensityNormalization.ct(clip=False)
    torch.testing.assert_close(unclipped.inverse(unclipped.forward(hu)), hu, rtol=0, atol=1e-3)


@pytest.mark.parametrize("as_torch", [False, True])
def test_same_kind_out_and_integer_input(as_torch):
    hu = RNG.integers(-1024, 3072, size=(1, 5, 7)).astype(np.int16)
    img = torch.as_tensor(hu) if as_torch else hu
    out = NormalizeCT()(img)
    assert isinstance(out, torch.Tensor) == as_torch and out.shape == (1, 5, 7)
    assert (out.dtype == torch.float32) if as_torch else (out.dtype == np.float32)
    np.testing.assert_allclose(np.asarray(out), (hu + 1024.0) / 4095.0, rtol=1e-6, atol=1e-6)


def test_mr_percentiles_match_numpy_and_inverse_restores_everything():
    img = RNG.gamma(2.0, 100.0, size=(1, 16, 20)).astype(np.float32)
    img[0, 0, 0] = 1e5  # one outlier: robust range ignores it, the inverse (no clip) still restores it
    norm = NormalizeMR().normalization_for(img)
    low, high = np.percentile(img.astype(np.float64), [0.5, 99.5])
    assert norm.a_min == pytest.approx(low) and norm.a_max == pytest.approx(high)
    out = NormalizeMR()(img)
    np.testing.assert_allclose(out, (img - low) / (high - low), rtol=1e-5)
    np.testing.assert_allclose(norm.inverse(out), img, rtol=1e-5)


def test_metatensor_records_and_inverts():
    img = MetaTensor(torch.as_tensor(RNG.normal(300.0, 80.0, size=(1, 9, 11)), dtype=torch.float32))
    transform = NormalizeMR(1.0, 99.0)
    out = transform(img)
    record = out.applied_operations[-1]["extra_info"]["intensity"]
    assert record["kind"] == "mr" and record["a_min"] == pytest.approx(np.percentile(img.numpy(), 1.0))
    assert len(img.applied_operations) == 0  # the input is untouched
    back = transform.inverse(out)
    torch.testing.assert_close(back.as_tensor(), img.as_tensor(), rtol=1e-5, atol=1e-3)
    assert len(back.applied_operations) == 0


def test_dictionary_versions_invert_through_invertd():
    hu = MetaTensor(torch.linspace(-1000.0, 2000.0, 60).reshape(1, 6, 10))
    mr = MetaTensor(torch.linspace(5.0, 900.0, 60).reshape(1, 6, 10))
    pipeline = Compose([NormalizeCTd(keys="ct"), NormalizeMRd(keys="mr", clip=True)])
    out = pipeline({"ct": hu, "mr": mr})
    assert 0.0 <= float(out["mr"].min()) and float(out["mr"].max()) <= 1.0
    inverted = Invertd(keys=["ct"], transform=pipeline, orig_keys=["ct"])(out)
    torch.testing.assert_close(inverted["ct"].as_tensor(), hu.as_tensor(), rtol=0, atol=1e-3)
    inner = pipeline.inverse(out)
    low, high = np.percentile(mr.numpy(), [0.5, 99.5])
    torch.testing.assert_close(inner["mr"].as_tensor(), mr.as_tensor().clamp(float(low), float(high)), rtol=1e-5,
                               atol=1e-3)


def test_dict_round_trip_json_and_fit():
    spec = json.loads(json.dumps(IntensityNormalization.mr(2.0, 98.0).to_dict()))
    norm = IntensityNormalization.from_dict(spec)
    assert not norm.fitted
    with pytest.raises(ConfigurationError, match="fit"):
        norm.forward(np.zeros(3))
    fitted = norm.fit(np.arange(101.0))
    assert (fitted.a_min, fitted.a_max) == (pytest.approx(2.0), pytest.approx(98.0))
    assert IntensityNormalization.from_dict(fitted.to_dict()) == fitted
    ct = IntensityNormalization.ct(CT_WINDOW_HU)
    assert ct.fit(np.zeros(4)) is ct


def test_invalid_arguments_raise():
    with pytest.raises(ConfigurationError, match="a_max"):
        IntensityNormalization(kind="range", a_min=5.0, a_max=5.0)
    with pytest.raises(ConfigurationError, match="kind"):
        IntensityNormalization(kind="pet")
    with pytest.raises(ConfigurationError, match="unknown"):
        IntensityNormalization.from_dict({"kind": "ct", "window": 3})
    with pytest.raises(ConfigurationError, match="MetaTensor"):
        NormalizeCT().inverse(np.zeros(3))


def test_constant_image_does_not_divide_by_zero():
    norm = IntensityNormalization.mr().fit(np.full((4, 4), 7.0))
    out = norm.forward(np.full((4, 4), 7.0))
    assert np.all(out == 0.0) and np.all(norm.inverse(out) == 7.0)


def test_modality_presets_and_recipe():
    img = np.linspace(0.0, 200.0, 201)
    mr = IntensityNormalization.for_modality("MR", img)
    assert mr.kind == "mr" and mr.a_min == pytest.approx(1.0) and mr.a_max == pytest.approx(199.0)
    recipe = mr.recipe()
    assert recipe["a_min"] is None and IntensityNormalization.from_dict(recipe).fit(img) == mr
    ct = IntensityNormalization.for_modality("ct", img)
    assert ct == IntensityNormalization.ct() and ct.recipe() == ct.to_dict()
    with pytest.raises(ConfigurationError, match="modality"):
        IntensityNormalization.for_modality("PET")
