"""SuperResolve(d): the engine inside a MONAI Compose on a real CT crop, with the affine updated like the engine's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SpatialCropd

from rmisr_monai.inference.engine import upscale_array
from rmisr_monai.networks import get_network
from rmisr_monai.transforms.intensity import IntensityNormalization
from rmisr_monai.transforms.super_resolve import SuperResolve, SuperResolved
from tests.conftest import shared_path

CROP = dict(roi_start=(150, 100, 8), roi_end=(182, 130, 12))  # 32 x 30 x 4 voxels of abdomen


def _corners(affine: np.ndarray, shape) -> np.ndarray:
    pts = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape] + [(1.0,)])))
    return (pts @ np.asarray(affine, dtype=np.float64).T)[:, :3]


def _tiny_net():
    torch.manual_seed(0)
    return get_network("edsr_baseline", features=4, num_blocks=1, scale=2).eval()


def test_compose_with_unet_on_real_ct_crop():
    path = shared_path("data", "medical", "demo", "ct_demo_abdomen_int16.nii.gz")
    net = _tiny_net()
    ct = IntensityNormalization.ct().to_dict()
    pre = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), SpatialCropd("image", **CROP)])
    sr = SuperResolved("image", net, 2, axis="z", intensity=ct, device="cpu")
    cropped = pre({"image": str(path)})["image"]
    data = Compose([pre, sr])({"image": str(path)})
    img = data["image"]
    assert isinstance(img, MetaTensor) and img.shape == (1, 64, 60, 4) and img.dtype == torch.float32
    old, new = cropped.affine.numpy(), img.affine.numpy()
    np.testing.assert_allclose(np.linalg.norm(new[:3, :3], axis=0), np.linalg.norm(old[:3, :3], axis=0) * [.5, .5, 1])
    np.testing.assert_allclose(_corners(new, img.shape[1:]), _corners(old, cropped.shape[1:]), atol=1e-4)
    # the same numbers as the engine itself (one implementation)
    ref = upscale_array(cropped.numpy(), net, 2, axis="z", intensity=ct, device="cpu", progress=False)
    np.testing.assert_array_equal(img.numpy(), ref)
    # a downstream 3D MONAI network takes the result
    unet = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0)
    with torch.no_grad():
        assert unet(img[None].as_tensor()).shape == (1, 2, 64, 60, 4)
    # recorded for inversion: back to the original grid and affine
    back = sr.inverse(data)["image"]
    assert back.shape == cropped.shape
    np.testing.assert_allclose(back.affine.numpy(), old, atol=1e-9)


def test_fractional_through_plane_affine_and_plain_arrays():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot * [0.8, 0.7, 3.0]
    affine[:3, 3] = [5.0, -7.0, 11.0]
    img = MetaTensor(torch.rand(1, 6, 5, 7), affine=torch.as_tensor(affine))
    out = SuperResolve(get_network("bicubic"), 1.5, axis=2, through_plane=True, device="cpu")(img)
    assert out.shape == (1, 6, 5, 10)  # round(7 * 1.5) = 10
    np.testing.assert_allclose(_corners(out.affine.numpy(), (6, 5, 10)), _corners(affine, (6, 5, 7)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(out.affine.numpy()[:3, :3], axis=0), [0.8, 0.7, 3.0 * 7 / 10])
    arr = np.random.default_rng(0).random((1, 4, 4, 3)).astype(np.float32)
    res = SuperResolve(get_network("nearest"), 2, device="cpu")(arr)
    assert isinstance(res, np.ndarray) and res.shape == (1, 8, 8, 3)
    with pytest.raises(ValueError, match="channel-first"):
        SuperResolve(get_network("nearest"), 2)(arr[0])
