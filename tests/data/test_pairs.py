"""Paired patches: sizes, LR = bicubic(HR crop), crops are true dihedral views of the image, normalisation, noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmisr_monai.data.pairs import PairedPatchDataset, paired_patch_transform
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.ops.resize import imresize
from rmisr_monai.transforms.intensity import IntensityNormalization

WINDOW = IntensityNormalization(kind="range", a_min=0.0, a_max=4000.0)


def unique_image(h: int = 30, w: int = 37) -> np.ndarray:
    return np.arange(h * w, dtype=np.float32).reshape(1, h, w)  # every pixel value tells its position


def dihedral_views(patch: np.ndarray) -> list[np.ndarray]:
    views = []
    for flipped in (patch, patch[::-1]):
        views += [np.rot90(flipped, k) for k in range(4)]
    return views


@pytest.mark.parametrize("scale, patch", [(2, 6), (3, 4), (4, 3)])
def test_sizes_alignment_and_dihedral_crops(scale, patch):
    image = unique_image()
    dataset = PairedPatchDataset([{"label": image, "source": "ramp"}], scale=scale, patch_size=patch,
                                 normalization=WINDOW, seed=3)
    seen_orientations = set()
    for _ in range(24):
        sample = dataset[0]
        lr, hr = sample["image"], sample["label"]
        assert lr.shape == (1, patch, patch) and hr.shape == (1, patch * scale, patch * scale)
        assert sample["source"] == "ramp"
        torch.testing.assert_close(lr, imresize(hr.as_tensor(), 1.0 / scale), rtol=0, atol=1e-6)
        # undo the normalisation: the HR patch holds exact pixel values of one window of the image, in one of the
        # 8 orientations of the square
        values = np.rint(hr[0].numpy() * 4000.0).astype(int)
        corner = values.min()
        top, left = divmod(corner, image.shape[2])
        window = image[0, top : top + patch * scale, left : left + patch * scale].astype(int)
        matches = [k for k, view in enumerate(dihedral_views(window)) if view.shape == values.shape
                   and np.array_equal(view, values)]
        assert len(matches) == 1
        seen_orientations.add(matches[0])
    assert len(seen_orientations) >= 4  # augmentation really varies


def test_no_augmentation_keeps_orientation_and_records_normalisation():
    image = unique_image()
    sample = PairedPatchDataset([{"label": image}], scale=2, patch_size=5, normalization=WINDOW.to_dict(),
                                augment=False)[0]
    hr = sample["label"]
    values = np.rint(hr[0].numpy() * 4000.0)
    assert np.all(np.diff(values, axis=1) == 1) and np.all(np.diff(values, axis=0) == image.shape[2])
    record = hr.applied_operations[0]
    assert record["class"] == "IntensityNormalize"
    assert record["extra_info"]["intensity"] == WINDOW.to_dict()


def test_small_images_are_padded_and_rgb_is_kept():
    rgb = np.random.default_rng(0).uniform(0, 255, size=(3, 7, 9)).astype(np.float32)
    sample = PairedPatchDataset([{"label": rgb}], scale=2, patch_size=6,
                                normalization=IntensityNormalization(kind="range", a_min=0.0, a_max=255.0))[0]
    assert sample["image"].shape == (3, 6, 6) and sample["label"].shape == (3, 12, 12)


def test_noise_sigma_in_stored_units_is_converted():
    flat = np.full((1, 40, 40), 1000.0, dtype=np.float32)
    dataset = PairedPatchDataset([{"label": flat}], scale=2, patch_size=16, normalization=WINDOW,
                                 noise_sigma=400.0, augment=False)
    stds = [float((dataset[0]["image"] - 0.25).std()) for _ in range(30)]
    # sigma ~ U(0, 400 HU) -> normalised U(0, 0.1)
    assert max(stds) < 0.1 * 1.2 and np.mean(stds) == pytest.approx(0.05, abs=0.02)
    clean = PairedPatchDataset([{"label": flat}], scale=2, patch_size=16, normalization=WINDOW)[0]
    torch.testing.assert_close(clean["image"], torch.full((1, 16, 16), 0.25))


def test_custom_degradation_is_used():
    def nearest(hr):
        return hr[..., ::2, ::2]

    sample = PairedPatchDataset([{"label": unique_image()}], scale=2, patch_size=4, degradation=nearest)[0]
    torch.testing.assert_close(sample["image"], sample["label"].as_tensor()[..., ::2, ::2])


def test_invalid_sizes():
    with pytest.raises(ConfigurationError, match="integer"):
        paired_patch_transform(scale=1.5, patch_size=5)
    with pytest.raises(ConfigurationError, match="noise"):
        paired_patch_transform(scale=2, patch_size=5, noise_sigma=-1.0)


def test_contrast_gamma_changes_half_the_hr_patches_and_the_lr_follows():
    """contrast_gamma: a MONAI RandAdjustContrastd on the HR patch before the LR is made; LR = bicubic(HR) holds for
    the changed patches, about CONTRAST_PROB of them are changed, the patch's min and max are kept, and the same seed
    gives the same patches."""
    from rmisr_monai.data.pairs import CONTRAST_PROB

    image = (unique_image(40, 40) + 1.0) / 1601.0  # (0, 1]: a ramp whose every pixel is distinct
    kwargs = dict(scale=2, patch_size=6, augment=False, seed=5)
    plain = PairedPatchDataset([{"label": image}], **kwargs)
    varied = PairedPatchDataset([{"label": image}], contrast_gamma=(0.5, 2.0), **kwargs)
    changed = 0
    draws = 64
    for _ in range(draws):
        a, b = plain[0], varied[0]
        hr_a, hr_b = a["label"].as_tensor(), b["label"].as_tensor()
        torch.testing.assert_close(b["image"], imresize(hr_b, 0.5), rtol=0, atol=1e-6)
        # same crop (the crop is drawn first, from the same seed); gamma keeps the patch's own min and max
        torch.testing.assert_close(hr_b.min(), hr_a.min(), rtol=0, atol=1e-5)
        torch.testing.assert_close(hr_b.max(), hr_a.max(), rtol=0, atol=1e-5)
        changed += int(not torch.allclose(hr_a, hr_b, rtol=0, atol=1e-5))
    assert abs(changed / draws - CONTRAST_PROB) < 0.2
    again = PairedPatchDataset([{"label": image}], contrast_gamma=(0.5, 2.0), **kwargs)
    first = PairedPatchDataset([{"label": image}], contrast_gamma=(0.5, 2.0), **kwargs)
    for _ in range(8):
        torch.testing.assert_close(again[0]["label"].as_tensor(), first[0]["label"].as_tensor())


def test_contrast_gamma_is_checked():
    for bad in [(0.0, 1.0), (2.0, 1.0), (1.0,)]:
        with pytest.raises(ConfigurationError, match="contrast_gamma"):
            paired_patch_transform(scale=2, patch_size=5, contrast_gamma=bad)
