"""Training and validation datasets of a folder of scans, for the bundles' ``train.json``.

The bundle trains on everything under ``dataset_dir``: volumes (NIfTI, NRRD, MHA/MHD, DICOM series folders) and 2D
images (PNG/TIFF/JPEG/BMP, single-frame DICOM files), found by :func:`training_files`. The files are split at the
level of files, never of slices (neighbouring slices of one scan are nearly the same image, so a slice-level split
would validate on training data): the last ``val_fraction`` of the sorted list is held out, or a separate
``val_dir`` is.

* training: the slices of :func:`rmisr_monai.training.data.slice_patch_loader` (normalised per volume, foreground
  CT slices, at least one HR patch wide), one random paired patch of each per epoch
  (:class:`~rmisr_monai.data.pairs.PairedPatchDataset`: crop, dihedral augmentation, bicubic LR);
  or, for an arbitrary-scale network (``scale_range`` given), a random scale per batch
  (:class:`~rmisr_monai.data.random_scale.RandomScalePatchDataset`, keys from
  :class:`~rmisr_monai.data.random_scale.ScaleBatchSampler`);
* validation: whole held-out slices, ``val_slices`` evenly spaced ones per file, cropped to a multiple of the scale
  and paired with their MATLAB-bicubic LR (RMISR §4.4), so that PSNR/SSIM are computed on whole slices.

Intensities: by default the modality's own normalisation (the HU window for CT, with only the slices that are at
least 10 % foreground; per-volume 0.5 / 99.5 percentiles for MR); ``normalization="percentile"`` normalises any
modality by each volume's own percentiles, as the package's default models were trained on CT and MR alike (what
``python -m rmisr_monai.training --modality MR`` does on CT volumes). 2D images are normalised as the volumes (the
HU window needs HU: DICOM slices).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import Dataset

from rmisr_monai.data import PairedPatchDataset, bicubic_degradation
from rmisr_monai.data.random_scale import RandomScalePatchDataset
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.io.volume import file_format
from rmisr_monai.training.data import normalised_images, normalised_slices, training_normalization

__all__ = ["IMAGE_SUFFIXES", "SliceDatasets", "picture_files", "split_files", "training_files"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom")  # data.images readers
SSIM_MIN_SIDE = 11  # metrics.sr_metrics: the SSIM window needs 11 pixels per axis after shaving
# SliceDatasets(normalization=...): each choice is the default normalisation of this modality (training_normalization)
_NORMALIZATIONS = {"percentile": "MR", "window": "CT"}


def training_files(folder: str | os.PathLike) -> list[str]:
    """Sorted volume files, DICOM series folders (folders holding ``.dcm`` files) and 2D image files under
    ``folder``, recursively; a ``.dcm`` file in a series folder belongs to the series.

    Raises:
        ConfigurationError: ``folder`` is not a folder or holds nothing to train on.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigurationError(f"{root}: dataset_dir is not a folder")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dicom = [f for f in filenames if f.lower().endswith((".dcm", ".dicom"))]
        if len(dicom) > 1:  # a series: the folder is one volume
            found.append(dirpath)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if file_format(path) is not None or name.lower().endswith(IMAGE_SUFFIXES) and len(dicom) <= 1:
                found.append(str(path))
    if not found:
        raise ConfigurationError(f"{root}: no volume, DICOM series or 2D image to train on")
    return sorted(found)


def picture_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The 2D image files among ``paths``, a folder standing for the images :func:`training_files` finds in it.

    Raises:
        ConfigurationError: a path is neither an image file nor a folder holding one.
    """
    found: list[str] = []
    for path in map(str, paths):
        if Path(path).is_dir():
            images = [f for f in training_files(path) if _is_image(f)]  # image-suffixed files: not volumes
        else:
            images = [path] if _is_image(path) and path.lower().endswith(IMAGE_SUFFIXES) else []
        if not images:
            raise ConfigurationError(f"{path}: not a 2D image file or a folder of them")
        found += images
    return found


def split_files(files: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """``(training, validation)``: the last ``max(1, round(n * val_fraction))`` files are held out.

    Raises:
        ConfigurationError: fewer than two files, or ``val_fraction`` outside ``(0, 1)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigurationError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(files) < 2:
        raise ConfigurationError(
            f"need at least two files to hold one out for validation, got {len(files)}: give val_dir as well"
        )
    held_out = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
    return list(files[:-held_out]), list(files[-held_out:])


def _is_image(path: str) -> bool:
    return Path(path).is_file() and file_format(path) is None


def _slices(
    files: Sequence[str], modality: str, axes: Sequence[int], min_size: int, ct_window: Sequence[float] | None
) -> tuple[list[dict], dict]:
    """Normalised ``{"label": (1, H, W)}`` slices of the volumes and images in ``files``, and the intensity recipe."""
    volumes = [f for f in files if not _is_image(f)]
    items: list[dict] = []
    normalization = training_normalization(modality, ct_window)
    if volumes:
        items, normalization, _ = normalised_slices(volumes, modality, axes, min_size, 0.0, ct_window)
    items += normalised_images([f for f in files if _is_image(f)], normalization, min_size)
    if not items:
        raise ConfigurationError(f"no slice of {[str(f) for f in files]} is at least {min_size} pixels wide")
    return items, normalization.recipe()


def _intensity_modality(modality: str, normalization: str | None, ct_window: Sequence[float] | None) -> str:
    """The modality whose normalisation :func:`~rmisr_monai.training.data.training_normalization` gives the slices
    (:class:`SliceDatasets` ``normalization``): ``"MR"`` for per-volume percentiles, ``"CT"`` for the HU window.

    Raises:
        ConfigurationError: an unknown ``normalization``, the HU window asked for MR, or ``ct_window`` given without
            the HU window.
    """
    if normalization is None:
        return modality
    if normalization not in _NORMALIZATIONS:
        raise ConfigurationError(
            f"normalization must be None (the modality's own), 'percentile' or 'window', got {normalization!r}"
        )
    if normalization == "window" and modality != "CT":
        raise ConfigurationError(f"normalization 'window' is the CT HU window, not for modality {modality!r}")
    if _NORMALIZATIONS[normalization] != "CT" and ct_window is not None:
        raise ConfigurationError(f"ct_window {list(ct_window)} applies to the HU window, not to {normalization!r}")
    return _NORMALIZATIONS[normalization]


def _whole_slice_pairs(items: list[dict], scale: int, per_file: int) -> list[dict]:
    """``per_file`` evenly spaced slices of each source, cropped to a multiple of ``scale``, with their bicubic LR."""
    degrade = bicubic_degradation(scale)
    pairs = []
    for source in dict.fromkeys(item["source"] for item in items):
        own = [item for item in items if item["source"] == source]
        for index in np.unique(np.linspace(0, len(own) - 1, min(per_file, len(own))).round().astype(int)):
            hr = torch.as_tensor(own[index]["label"], dtype=torch.float32)
            h, w = hr.shape[-2] - hr.shape[-2] % scale, hr.shape[-1] - hr.shape[-1] % scale
            hr = hr[..., :h, :w].contiguous()
            pairs.append({
                "image": degrade(hr), "label": hr, "scale": torch.tensor([float(scale)] * 2, dtype=torch.float64),
                "source": str(source), "slice": int(own[index].get("slice", 0)),
            })
    return pairs


class SliceDatasets:
    """The training and validation datasets of a bundle (module docstring).

    Args:
        dataset_dir: folder of scans (:func:`training_files`).
        modality: ``"CT"`` or ``"MR"``: the scans' modality, whose normalisation is the default.
        scale: integer SR factor (of the validation pairs only, when ``scale_range`` is given).
        patch_size: LR training patch side (HR: ``patch_size * scale``).
        scale_range: ``(low, high)``: train an arbitrary-scale network on random scales (Meta-SR: 1.1 to 4.0).
        val_dir: held-out folder; ``None``: hold out the last ``val_fraction`` of ``dataset_dir``'s files.
        val_fraction: share of files held out when ``val_dir`` is ``None``.
        val_slices: whole slices per held-out file.
        axes: slice axes of the ``(i, j, k)`` volumes (2: the acquisition stack).
        seed: random state of the patch crops and augmentation.
        ct_window: CT only: the HU window mapped to ``[0, 1]`` (default ``CT_WINDOW_HU``; ``CT_PADDED_WINDOW_HU``
            also spans the padding values scanners write outside the field of view).
        normalization: ``None``: the modality's own (HU window for CT, per-volume percentiles for MR);
            ``"percentile"``: each volume's 0.5 / 99.5 percentiles (``IntensityNormalization.mr()``) for any modality,
            without the CT foreground selection, as the package's default models were trained; ``"window"``: the CT
            HU window (``ct_window``), CT only.

    Raises:
        ConfigurationError: an unknown ``normalization``, ``"window"`` for MR, ``ct_window`` with
            ``"percentile"``, or no file or slice to train or validate on.

    Attributes:
        train: :class:`~rmisr_monai.data.pairs.PairedPatchDataset` of ``{"image", "label"}`` patches, or with
            ``scale_range`` a :class:`~rmisr_monai.data.random_scale.RandomScalePatchDataset`.
        validation: MONAI ``Dataset`` of whole-slice pairs ``{"image", "label", "scale", "source", "slice"}``.
        intensity: the normalisation recipe, for the checkpoint (``weights/loader.py`` format).
        train_files, val_files: the split.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        modality: str,
        scale: int,
        patch_size: int,
        scale_range: Sequence[float] | None = None,
        val_dir: str | os.PathLike | None = None,
        val_fraction: float = 0.2,
        val_slices: int = 8,
        axes: Sequence[int] = (2,),
        seed: int = 0,
        ct_window: Sequence[float] | None = None,
        normalization: str | None = None,
    ) -> None:
        modality = _intensity_modality(modality, normalization, ct_window)  # the slices' normalisation from here on
        files = training_files(dataset_dir)
        if val_dir is None:
            self.train_files, self.val_files = split_files(files, val_fraction)
        else:
            self.train_files, self.val_files = files, training_files(val_dir)
        if scale_range is None:
            items, self.intensity = _slices(self.train_files, modality, axes, patch_size * scale, ct_window)
            self.train = PairedPatchDataset(items, scale, patch_size, seed=seed)
        else:
            items, self.intensity = _slices(
                self.train_files, modality, axes, round(patch_size * max(scale_range)), ct_window
            )
            self.train = RandomScalePatchDataset(items, patch_size, seed=seed)
        val_items, _ = _slices(self.val_files, modality, axes, SSIM_MIN_SIDE + 2 * scale + scale, ct_window)
        self.validation = Dataset(_whole_slice_pairs(val_items, scale, val_slices))
