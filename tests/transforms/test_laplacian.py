"""transforms.laplacian: array/dict transforms against the numpy reference; kinds, dtypes, metadata, keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.transforms import LaplacianGradient, LaplacianGradientd
from tests.ops.test_laplacian import numpy_second_differences


@pytest.mark.parametrize("shape", [(2, 7, 6), (1, 5, 4, 6)])
@pytest.mark.parametrize("mode", ["xy", "scalar"])
def test_numpy_in_numpy_out_matches_reference(shape, mode):
    x = np.random.default_rng(0).normal(size=shape)
    maps = numpy_second_differences(x, len(shape) - 1)
    expected = np.stack(maps, axis=1).reshape(-1, *shape[1:]) if mode == "xy" else sum(maps)
    out = LaplacianGradient(mode)(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_torch_metatensor_and_integer_inputs():
    x = torch.rand(1, 6, 5)
    out = LaplacianGradient()(x)
    assert type(out) is torch.Tensor and out.shape == (2, 6, 5) and out.dtype == torch.float32
    affine = torch.diag(torch.tensor([0.5, 0.7, 1.0, 1.0], dtype=torch.float64))
    meta = LaplacianGradient()(MetaTensor(x, affine=affine))
    assert isinstance(meta, MetaTensor) and torch.equal(meta.affine, affine)
    u8 = LaplacianGradient("scalar")(np.array([[[0, 10, 0]]], dtype=np.uint8))
    np.testing.assert_array_equal(u8, np.array([[[10.0, -20.0, 10.0]]], dtype=np.float32))
    assert u8.dtype == np.float32  # no uint8 wrap-around


def test_dict_keeps_original_and_suffix_options():
    img = np.random.default_rng(1).normal(size=(1, 5, 5))
    d = LaplacianGradientd(keys="image")({"image": img})
    assert d["image"] is img
    np.testing.assert_allclose(d["image_lap"], LaplacianGradient()(img))
    replaced = LaplacianGradientd(keys="image", mode="scalar", output_key_suffix="")({"image": img})
    assert set(replaced) == {"image"} and replaced["image"].shape == (1, 5, 5)


def test_invalid_mode():
    with pytest.raises(ConfigurationError, match="mode"):
        LaplacianGradient("sobel")
