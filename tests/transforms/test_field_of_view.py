"""FieldOfViewPad: the reconstruction circle's padding, checked voxel by voxel against an explicit distance test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.transforms import FieldOfViewPad, FieldOfViewPadd


def outside_reference(n0: int, n1: int, radius_fraction: float = 1.0) -> np.ndarray:
    """Voxel-centre distance from the grid's middle, one voxel at a time."""
    radius = radius_fraction * min(n0, n1) / 2
    return np.array(
        [[math.hypot(i - (n0 - 1) / 2, j - (n1 - 1) / 2) > radius for j in range(n1)] for i in range(n0)]
    )


@pytest.mark.parametrize("shape, fraction", [((9, 9), 1.0), ((8, 12), 1.0), ((16, 16), 0.8)])
def test_outside_the_disc_is_padding_and_inside_is_untouched(shape, fraction):
    image = np.random.default_rng(0).integers(-1024, 2000, size=(2, *shape)).astype(np.int16)
    out = FieldOfViewPad(-3024, fraction)(image)
    outside = outside_reference(*shape, fraction)
    assert isinstance(out, np.ndarray) and out.dtype == np.int16
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(out[:, outside], -3024)
    np.testing.assert_array_equal(out[:, ~outside], image[:, ~outside])
    np.testing.assert_array_equal(image.shape, out.shape)


def test_inscribed_disc_covers_pi_over_four_and_touches_the_edges():
    outside = FieldOfViewPad(-2048).outside(512, 512).numpy()
    assert abs((~outside).mean() - math.pi / 4) < 2e-3
    assert outside[0, 0] and outside[-1, -1] and not outside[255, 0] and not outside[0, 256]


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
    with pytest.raises(ConfigurationError, match="channel-first"):
        FieldOfViewPad(-3024)(np.zeros((6, 6)))
