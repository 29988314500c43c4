"""FieldOfViewPad: the reconstruction circle's padding, checked voxel by voxel against explicit tests of its two
rules, and against the mask a GE scanner wrote (../shared)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.io.read import read_volume
from rmisr_monai.transforms import FieldOfViewPad, FieldOfViewPadd
from tests.conftest import shared_path


def outside_reference(n0: int, n1: int, radius_fraction: float = 1.0, rule: str = "chord") -> np.ndarray:
    """One voxel at a time: "centre", the voxel centre's distance from the grid's middle; "chord", whether the
    chord of the circle at the voxel's row (axis 0) stops short of the voxel's edge nearer the middle."""
    radius = radius_fraction * min(n0, n1) / 2
    outside = np.zeros((n0, n1), bool)
    for i in range(n0):
        y = i - (n0 - 1) / 2
        for j in range(n1):
            x = j - (n1 - 1) / 2
            if rule == "centre":
                outside[i, j] = math.hypot(x, y) > radius
            else:
                outside[i, j] = abs(y) >= radius or abs(x) - 0.5 >= math.sqrt(radius**2 - y**2)
    return outside


@pytest.mark.parametrize("rule", ["chord", "centre"])
@pytest.mark.parametrize("shape, fraction", [((9, 9), 1.0), ((8, 12), 1.0), ((16, 16), 0.8), ((11, 6), 1.0)])
def test_outside_the_disc_is_padding_and_inside_is_untouched(shape, fraction, rule):
    image = np.random.default_rng(0).integers(-1024, 2000, size=(2, *shape)).astype(np.int16)
    out = FieldOfViewPad(-3024, fraction, rule)(image)
    outside = outside_reference(*shape, fraction, rule)
    assert isinstance(out, np.ndarray) and out.dtype == np.int16
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(out[:, outside], -3024)
    np.testing.assert_array_equal(out[:, ~outside], image[:, ~outside])
    np.testing.assert_array_equal(image.shape, out.shape)


@pytest.mark.parametrize("rule", ["chord", "centre"])
def test_inscribed_disc_covers_pi_over_four_and_touches_the_edges(rule):
    outside = FieldOfViewPad(-2048, rule=rule).outside(512, 512).numpy()
    assert abs((~outside).mean() - math.pi / 4) < 2e-3
    assert outside[0, 0] and outside[-1, -1] and not outside[255, 0] and not outside[0, 256]


def test_chord_rule_is_the_mask_ge_scanners_write():
    """GE LightSpeed16 (training) and CQ500's GE head scan write the same 55,772 voxels of -3024 HU; the chord rule
    reproduces them voxel for voxel, the centre rule misses 480 of them (one rim voxel every few rows)."""
    folder = shared_path("data", "medical", "dicom_series", "ct_ge_lightspeed16_abdomen_subset")
    array = read_volume(folder).array
    written = array[:, :, 0] == array.min()
    assert written.sum() == 55772 and (array == array.min()).sum() == 55772 * array.shape[2]
    np.testing.assert_array_equal(FieldOfViewPad(-3024).outside(512, 512).numpy(), written)
    assert (FieldOfViewPad(-3024, rule="centre").outside(512, 512).numpy() != written).sum() == 480
    assert not np.array_equal(written, written.T)  # the chord runs along axis 1: the staircase has a row axis


def test_volume_gets_the_same_disc_on_every_slice_and_keeps_its_affine():
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0], dtype=torch.float64))
    volume = MetaTensor(torch.full((1, 10, 10, 3), -1000.0), affine=affine)
    out = FieldOfViewPad(-2048)(volume)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, affine)
    expected = np.where(outside_reference(10, 10), -2048.0, -1000.0)
    for k in range(3):
        np.testing.assert_array_equal(out[0, :, :, k].numpy(), expected)
    assert float(volume.min()) == -1000.0  # the input is not modified


def test_dictionary_version_and_arguments():
    data = {"image": np.zeros((1, 6, 6), np.float32), "label": np.ones((1, 6, 6), np.float32)}
    out = FieldOfViewPadd("image", -3024)(data)
    assert out["image"][0, 0, 0] == -3024 and out["image"][0, 3, 3] == 0 and out["label"] is data["label"]
    with pytest.raises(ConfigurationError, match="radius_fraction"):
        FieldOfViewPad(-3024, 1.5)
    with pytest.raises(ConfigurationError, match="rule"):
        FieldOfViewPadd("image", -3024, rule="square")
    with pytest.raises(ConfigurationError, match="channel-first"):
        FieldOfViewPad(-3024)(np.zeros((6, 6)))
