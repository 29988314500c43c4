"""Grey pictures mixed into the volume slices of ``slice_patch_loader`` (``--pictures``): normalised per picture by
its own percentiles, drawn at the requested share, refused with a fixed HU window."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monai.data import list_data_collate
from PIL import Image

from rmisr_monai.core.intensity import IntensityNormalization
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.training.__main__ import parse_args
from rmisr_monai.training.data import normalised_images, slice_patch_loader


def test_each_picture_is_normalised_by_its_own_percentiles(data):
    _, pictures = data
    items = normalised_images(pictures, IntensityNormalization.mr(), min_size=32)
    assert [item["source"] for item in items] == [str(p) for p in pictures[:2]]  # 20 px wide: left out
    for item, path in zip(items, pictures):
        pixels = np.asarray(Image.open(path), dtype=np.float64)
        low, high = np.percentile(pixels, [0.5, 99.5])
        np.testing.assert_allclose(item["label"][0].numpy(), (pixels - low) / (high - low), atol=1e-5)


def test_pictures_are_drawn_at_their_share(data):
    volume, pictures = data
    loader, recipe = slice_patch_loader(
        [volume], "MR", scale=2, patch=16, batch=8, samples=2000, pictures=pictures, pictures_share=0.3
    )
    assert recipe["kind"] == "mr"
    slices = len(loader.dataset) - 2  # six axial slices and two pictures wide enough
    assert slices == 6
    drawn = np.asarray(list(iter(loader.sampler)))
    share = np.mean(drawn >= slices)
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / drawn.size)  # binomial, four standard deviations
    batch = list_data_collate([loader.dataset[0], loader.dataset[slices]])  # a slice and a picture batch together
    assert batch["image"].shape == (2, 1, 16, 16) and batch["label"].shape == (2, 1, 32, 32)
    assert batch["slice"].tolist()[1] == 0


def test_pictures_are_refused_in_a_hounsfield_window(data):
    volume, pictures = data
    with pytest.raises(ConfigurationError, match="Hounsfield"):
        slice_patch_loader([volume], "CT", scale=2, patch=16, batch=8, samples=8, pictures=pictures)
    with pytest.raises(ConfigurationError, match="pictures_share"):
        slice_patch_loader([volume], "MR", scale=2, patch=16, batch=8, samples=8, pictures=pictures,
                           pictures_share=1.0)
    with pytest.raises(SystemExit):  # the CLI: pictures only with per-volume percentiles
        parse_args(["--volumes", str(volume), "--modality", "CT", "--pictures", str(pictures[0]),
                    "--checkpoint-dir", "c", "--output", "o.pt"])


def test_fov_padding_only_under_per_volume_percentiles(data, ct):
    volume, _ = data
    loader, _ = slice_patch_loader([ct, volume], "MR", scale=2, patch=16, batch=8, samples=8, fov_padding=(-3024,))
    sources = [item["source"] for item in loader.dataset.data]
    assert sources.count(f"{ct} (padded with -3024 outside the field of view)") == 2 and len(sources) == 10
    with pytest.raises(ConfigurationError, match="padded field of view"):
        slice_patch_loader([ct], "CT", scale=2, patch=16, batch=8, samples=8, fov_padding=(-3024,))
    args = parse_args(["--volumes", str(ct), "--modality", "MR", "--fov-padding", "-3024", "-2048",
                       "--checkpoint-dir", "c", "--output", "o.pt"])
    assert args.fov_padding == [-3024.0, -2048.0]
    with pytest.raises(SystemExit):
        parse_args(["--volumes", str(ct), "--modality", "CT", "--fov-padding", "-3024",
                    "--checkpoint-dir", "c", "--output", "o.pt"])


def test_padded_copies_are_drawn_at_their_share(data, tmp_path):
    volume, pictures = data
    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.full((256, 256, 4), -1000, np.int16), np.eye(4)), ct)
    loader, _ = slice_patch_loader([ct, volume], "MR", scale=2, patch=16, batch=8, samples=4000, pictures=pictures,
                                   pictures_share=0.3, fov_padding=(-3024, -2048), fov_padding_share=0.4)
    sources = [item["source"] for item in loader.dataset.data]
    padded = {k for k, s in enumerate(sources) if s.endswith(" outside the field of view)")}
    assert len(padded) == 8 and sources[-2:] == [str(p) for p in pictures[:2]]
    drawn = np.asarray(list(iter(loader.sampler)))
    for share, picked in ((0.4, np.isin(drawn, list(padded))), (0.3, drawn >= len(sources) - 2)):
        assert abs(picked.mean() - share) < 4 * np.sqrt(share * (1 - share) / drawn.size)
    with pytest.raises(ConfigurationError, match="leave no volume slices"):
        slice_patch_loader([ct, volume], "MR", scale=2, patch=16, batch=8, samples=8, pictures=pictures,
                           pictures_share=0.6, fov_padding=(-3024,), fov_padding_share=0.4)
    with pytest.raises(ConfigurationError, match="no CT volume"):
        slice_patch_loader([volume], "MR", scale=2, patch=16, batch=8, samples=8, fov_padding=(-3024,),
                           fov_padding_share=0.4)
    with pytest.raises(SystemExit):
        parse_args(["--volumes", str(ct), "--modality", "MR", "--fov-padding-share", "0.3",
                    "--checkpoint-dir", "c", "--output", "o.pt"])


def test_rim_tiles_make_every_padded_patch_cross_the_rim(data, ct):
    volume, _ = data
    loader, _ = slice_patch_loader([ct, volume], "MR", scale=4, patch=16, batch=8, samples=160, seed=5,
                                   fov_padding=(-3024,), fov_padding_share=0.5, fov_rim_tiles=True)
    sources = [item["source"] for item in loader.dataset.data]
    assert sources.count(f"{ct} (padded with -3024 outside the field of view)") == 2 * 8  # 8 tiles a slice
    crossing = []
    for batch in loader:
        for label, source in zip(batch["label"], batch["source"]):
            if source.endswith(" outside the field of view)"):  # padding at 0, air well above it
                crossing.append(bool(label.min() < 1e-6 and label.max() > 0.3))
    assert len(crossing) > 50 and all(crossing)  # about 80 of 160 drawn from the tiles
    with pytest.raises(ConfigurationError, match="fov_rim_tiles"):
        slice_patch_loader([ct], "MR", scale=2, patch=16, batch=8, samples=8, fov_rim_tiles=True)
    with pytest.raises(SystemExit):
        parse_args(["--volumes", str(ct), "--modality", "MR", "--fov-rim-tiles",
                    "--checkpoint-dir", "c", "--output", "o.pt"])
    args = parse_args(["--volumes", str(ct), "--modality", "MR", "--fov-padding", "-3024", "--fov-rim-tiles",
                       "--checkpoint-dir", "c", "--output", "o.pt"])
    assert args.fov_rim_tiles
