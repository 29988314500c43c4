"""SuperResolve(d): the engine inside a MONAI Compose on a real CT crop, with the affine updated like the engine's;
Invertd of a segmentation back to the original grid; the caller's network left untouched."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, SaveImaged, SpatialCropd
from monai.utils import TraceKeys

from rmisr_monai.errors import ConfigurationError
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
    sr = SuperResolved("image", net, 2, axis="z", intensity=ct, device="cpu", batch_size=4)
    cropped = pre({"image": str(path)})["image"]
    data = Compose([pre, sr])({"image": str(path)})
    img = data["image"]
    assert isinstance(img, MetaTensor) and img.shape == (1, 64, 60, 4) and img.dtype == torch.float32
    old, new = cropped.affine.numpy(), img.affine.numpy()
    np.testing.assert_allclose(np.linalg.norm(new[:3, :3], axis=0), np.linalg.norm(old[:3, :3], axis=0) * [.5, .5, 1])
    np.testing.assert_allclose(_corners(new, img.shape[1:]), _corners(old, cropped.shape[1:]), atol=1e-4)
    # the same numbers as the engine itself (one implementation)
    ref = upscale_array(cropped.numpy(), net, 2, axis="z", intensity=ct, device="cpu", batch_size=4, progress=False)
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


def _real_crop_file(tmp_path) -> str:
    """A 24 x 20 x 4 crop of the demo CT written as NIfTI (nibabel keeps the cropped affine)."""
    img = nib.load(shared_path("data", "medical", "demo", "ct_demo_abdomen_int16.nii.gz"))
    path = tmp_path / "crop.nii.gz"
    nib.save(img.slicer[150:174, 100:120, 8:12], path)
    return str(path)


def test_invertd_brings_a_unet_segmentation_back_as_labels_on_the_original_grid(tmp_path):
    """LoadImaged -> SuperResolved -> DataLoader (a worker) -> UNet argmax -> decollate -> Invertd(nearest_interp)."""
    path = _real_crop_file(tmp_path)
    original = nib.load(path)
    pre = Compose([
        LoadImaged("image", ensure_channel_first=True),
        SuperResolved("image", network=_tiny_net(), scale=2, intensity=IntensityNormalization.ct().to_dict(),
                      device="cpu"),
    ])
    loader = DataLoader(Dataset([{"image": path}], pre), batch_size=1, num_workers=1)
    torch.manual_seed(3)
    unet = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=0).eval()
    batch = next(iter(loader))
    image = batch["image"]
    assert image.shape == (1, 1, 48, 40, 4)
    # meta["pixdim"] is the new spacing, as the affine says, and not the file's any more
    spacing = np.asarray(original.header.get_zooms()) * [0.5, 0.5, 1.0]
    np.testing.assert_allclose(image.meta["pixdim"][0, 1:4].numpy(), spacing, rtol=1e-6)
    with torch.no_grad():
        logits = sliding_window_inference((image - image.mean()) / image.std(), (32, 32, 4), 1, unet)
    batch["pred"] = torch.argmax(logits, dim=1, keepdim=True)
    assert batch["pred"].shape == image.shape  # on the SR grid
    item = decollate_batch(batch)[0]
    labels_sr = set(np.unique(item["pred"].numpy()).tolist())
    assert len(labels_sr) >= 2  # a real segmentation with several labels, not a constant
    nearest = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)({**item})["pred"]
    assert nearest.shape == (1, *original.shape)
    np.testing.assert_allclose(nearest.affine.numpy(), original.affine, atol=1e-6)
    np.testing.assert_allclose(nearest.meta["pixdim"][1:4], original.header.get_zooms(), rtol=1e-6)
    assert set(np.unique(nearest.numpy()).tolist()) <= labels_sr
    # MONAI's "nearest" at exactly x2 reads SR voxel 2i: an independent reference by slicing
    np.testing.assert_array_equal(nearest.numpy(), item["pred"].numpy()[:, ::2, ::2, :])
    # without nearest_interp the recorded area mode averages, as F.interpolate(mode="area") does
    area = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)({**item})["pred"]
    expected = item["pred"].as_tensor().float().reshape(1, 24, 2, 20, 2, 4).mean(dim=(2, 4))
    np.testing.assert_allclose(area.numpy(), expected.numpy(), atol=1e-6)
    assert not np.allclose(area.numpy(), np.round(area.numpy()))  # so the nearest check above can fail
    # written with SaveImaged and read back by nibabel: the original grid in the file
    SaveImaged("pred", output_dir=str(tmp_path), output_postfix="seg", separate_folder=False,
               output_dtype=np.uint8, print_log=False)({"pred": nearest})
    saved = nib.load(tmp_path / "crop_seg.nii.gz")
    assert saved.shape == original.shape
    np.testing.assert_allclose(saved.affine, original.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), nearest.numpy()[0])


def test_inverse_mode_is_validated_and_used():
    img = MetaTensor(torch.arange(2 * 2 * 1, dtype=torch.float32).reshape(1, 2, 2, 1), affine=torch.eye(4))
    sr = SuperResolve(get_network("nearest"), 2, device="cpu", inverse_mode="nearest-exact")
    up = sr(img)
    assert up.applied_operations[-1][TraceKeys.EXTRA_INFO]["mode"] == "nearest-exact"
    torch.testing.assert_close(sr.inverse(up).as_tensor(), img.as_tensor())
    with pytest.raises(ConfigurationError, match="inverse_mode"):
        SuperResolve(get_network("nearest"), 2, inverse_mode="bilinear")


def test_the_callers_network_is_left_as_it_was():
    net = _tiny_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    img = MetaTensor(torch.rand(1, 8, 8, 2), affine=torch.eye(4))
    out = SuperResolved("image", net, 2, device="cpu")({"image": img})["image"]
    assert out.shape == (1, 16, 16, 2)
    assert net.training
    for key, value in net.state_dict().items():
        assert value.device.type == "cpu" and value.is_contiguous()
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    # the result is the eval-mode network's, computed on the transform's own copy
    torch.testing.assert_close(out.as_tensor(), SuperResolve(net.eval(), 2, device="cpu")(img.as_tensor()))
