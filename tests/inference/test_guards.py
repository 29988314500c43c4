"""rmisr_monai.inference.guards: scales against the trained range recorded in the shipped checkpoints (read back
from their training command), label maps and signed maps refused while the 22 real scans of ../shared/data pass,
outputs clipped per slice (numpy reference), nearest keeps only the input's labels where bicubic invents some."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rmisr_monai.errors import ConfigurationError, InputFileError
from rmisr_monai.inference import guards
from rmisr_monai.inference.guards import (
    check_distribution,
    check_label_map,
    check_run,
    check_scale,
    clip_to_input_range,
    distribution_reason,
    label_map_reason,
    trained_scale_range,
)
from rmisr_monai.io.geometry import Geometry
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from tests.conftest import REPO_ROOT, shared_path

SAMPLE = REPO_ROOT / "rmisr_monai" / "sample" / "ct_demo_abdomen_int16.nii.gz"
BICUBIC = {"network": "bicubic", "path": None, "network_kwargs": {}, "info": {}}
NEAREST = {"network": "nearest", "path": None, "network_kwargs": {}, "info": {}}


def _volume(array, modality="OT", path="vol.nii.gz", header=None) -> Volume:
    template = None if header is None else SimpleNamespace(header=header)
    return Volume(np.asarray(array), Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)), modality,
                  np.asarray(array).dtype, path, "nifti", template)  # fmt: skip


def _real_scans() -> list[Path]:
    medical = shared_path("data", "medical")
    scans = sorted((medical / "mr").glob("*.nii.gz")) + sorted((medical / "ct").glob("*.nii.gz"))
    scans += sorted(p for p in (medical / "dicom_series").iterdir() if p.is_dir())
    return [*scans, SAMPLE]


# -- scale -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1, 1.0, 0.5, 0, -2, float("nan"), float("inf")])
def test_scales_up_to_one_are_refused_for_every_method(scale):
    for meta in (None, BICUBIC):
        with pytest.raises(ConfigurationError, match="scale must be > 1") as caught:
            check_scale(scale, meta=meta)
        assert "--scale must be > 1" in caught.value.cli


def _recorded_range(meta) -> tuple[float, float]:
    """The range in the training command itself (``--scale-range LOW HIGH``): the reference for the guard."""
    found = re.search(r"--scale-range ([\d.]+) ([\d.]+)", meta["info"]["command"])
    assert found, "the shipped arbitrary-scale checkpoint names its scale range in its training command"
    return float(found.group(1)), float(found.group(2))


def test_the_arbitrary_scale_model_is_held_to_its_training_range(caplog):
    from rmisr_monai.weights import load_model

    net, meta = load_model("rmisr_bl64_meta_ct")
    low, high = _recorded_range(meta)
    assert (low, high) == (1.1, 4.0) and trained_scale_range(net, meta) == (low, high)
    for inside in (low, 1.5, 2.5, high):
        check_scale(inside, net, meta)
    for outside in (1.05, 4.5, 10):
        with pytest.raises(ConfigurationError, match=r"outside the scales .* trained on \(1\.1 to 4\)") as caught:
            check_scale(outside, net, meta)
        assert "allow_extrapolation=True" in str(caught.value) and "--allow-extrapolation" in caught.value.cli
        assert "--scale" in caught.value.cli and "allow_extrapolation" not in caught.value.cli
    with caplog.at_level(logging.WARNING, logger="rmisr_monai.inference.guards"):
        check_scale(10, net, meta, allow_extrapolation=True)
    assert "outside the range 1.1 to 4" in caplog.text


def test_a_sub_pixel_model_serves_its_own_scale_only():
    from rmisr_monai.weights import load_model

    net, meta = load_model("rmisr_bl64_ct_x2")
    assert trained_scale_range(net, meta) == (2.0, 2.0) == trained_scale_range(None, meta)
    check_scale(2, net, meta)
    for other in (3, 2.5):
        with pytest.raises(ConfigurationError, match="trained for scale 2 only"):
            check_scale(other, net, meta, allow_extrapolation=True)  # no switch makes a x2 layer draw x3


def test_interpolators_take_any_scale_above_one():
    from rmisr_monai.networks import get_network

    assert trained_scale_range(get_network("bicubic"), BICUBIC) is None
    for scale in (1.01, 3.7, 10, 16):
        check_scale(scale, get_network("bicubic"), BICUBIC)


# -- label maps ------------------------------------------------------------------------------------------------------
def _tissue_labels() -> np.ndarray:
    """A label map of real anatomy: the shipped CT cut into air, lung, fat, soft tissue, contrast and bone (0-5)."""
    hu = read_volume(SAMPLE).array
    return np.digitize(hu, [-900, -500, -30, 120, 300]).astype(np.int16)


def _regions(shape=(60, 50, 12), n=40, seed=0) -> np.ndarray:
    """``n`` Voronoi regions with labels 1..n on a background of 0 (as an organ atlas is)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), -1)
    seeds = rng.uniform(0, 1, (n, 3)) * np.array(shape)
    nearest = np.argmin(((grid[..., None, :] - seeds) ** 2).sum(-1), axis=-1) + 1
    nearest[:10] = 0
    return nearest.astype(np.uint8)


def test_label_maps_are_recognised():
    assert "6 distinct values" in label_map_reason(_volume(_tissue_labels()))
    atlas = _regions()
    assert f"{len(np.unique(atlas))} distinct values" in label_map_reason(_volume(atlas))
    as_float = _regions().astype(np.float32)  # integer-valued floats (a label map saved as float)
    assert label_map_reason(_volume(as_float)) is not None
    assert "seg.nrrd" in label_map_reason(_volume(np.zeros((4, 4, 4)), path="Segmentation.seg.nrrd"))
    seg = {"Modality": "SEG", "SOPClassUID": guards.SEG_SOP_CLASS_UID}
    assert "DICOM segmentation" in label_map_reason(_volume(np.zeros((4, 4, 4)), header=seg))


def test_images_are_not_label_maps():
    assert label_map_reason(_volume(np.zeros((20, 20, 3), np.int16))) is None  # constant: nothing to blend
    assert label_map_reason(_volume(np.random.default_rng(1).integers(0, 6, (30, 30, 4)))) is None  # noise
    smooth = _tissue_labels() + 0.5  # non-integer values
    assert label_map_reason(_volume(smooth)) is None
    phantom = np.where(_tissue_labels() > 2, 40, -1000).astype(np.int16)  # a CT phantom: HU below 0, no labels
    assert label_map_reason(_volume(phantom)) is None


def test_the_real_scans_are_neither_label_maps_nor_out_of_distribution():
    for path in _real_scans():  # 7 CT and 15 MR scans, uint8 brains among them
        volume = read_volume(path)
        assert label_map_reason(volume) is None, path.name
        assert distribution_reason(volume) is None, path.name


def test_label_maps_are_refused_but_for_nearest_and_nearest_keeps_the_labels():
    from rmisr_monai.inference.engine import upscale_array
    from rmisr_monai.networks import get_network

    labels = _volume(_regions(), path="atlas.nii.gz")
    for meta in (BICUBIC, {"network": "rmisr_bl", "path": "/w/model.pt", "network_kwargs": {"scale": 2}}):
        with pytest.raises(InputFileError, match=r"atlas\.nii\.gz: looks like a label map") as caught:
            check_label_map(labels, None, meta)
        assert "model='nearest'" in str(caught.value) and "--model nearest" in caught.value.cli
    with pytest.raises(InputFileError, match="label map"):
        check_label_map(labels, "bilinear")
    check_label_map(labels, None, NEAREST)
    check_label_map(labels, "nearest")
    # why: bicubic makes values that are no label; nearest gives back exactly the input's labels
    kept = set(np.unique(labels.array))
    near = upscale_array(labels.array, get_network("nearest", scale=2), 2, progress=False, out_dtype=np.uint8)
    assert set(np.unique(near)) == kept
    cubic = upscale_array(labels.array, get_network("bicubic", scale=2), 2, progress=False)
    assert len(set(np.unique(np.round(cubic))) - kept) > 0


# -- distribution ----------------------------------------------------------------------------------------------------
def _phase_map(shape=(64, 64, 6)) -> np.ndarray:
    """A Siemens-style phase image (-4096..4095): a smooth off-resonance field, wrapped, noise outside the head."""
    rng = np.random.default_rng(3)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    phase = np.angle(np.exp(1j * (9 * i**2 + 6 * j + 2 * k)))
    inside = i**2 + j**2 < 0.7
    phase = np.where(inside, phase, rng.uniform(-np.pi, np.pi, shape))
    return np.round(phase / np.pi * 4096).clip(-4096, 4095).astype(np.int16)


def test_signed_maps_are_refused_for_learned_models(tmp_path):
    learned = {"network": "rmisr_bl", "path": "/w/m.pt", "network_kwargs": {"scale": 2}}
    phase = _volume(_phase_map(), modality="MR", path="phase.nii.gz")
    assert "signed and symmetric" in distribution_reason(phase)
    with pytest.raises(InputFileError, match=r"phase\.nii\.gz: outside what the learned models were trained on") as e:
        check_distribution(phase, learned)
    assert "--model bicubic" in e.value.cli and "--allow-extrapolation" in e.value.cli
    check_distribution(phase, BICUBIC)  # interpolation is no extrapolation
    check_distribution(phase, learned, allow_extrapolation=True)
    # the same phase map as a NIfTI file: read_volume guesses CT (its low values), and it is no Hounsfield units
    import nibabel as nib

    path = tmp_path / "phase.nii.gz"
    nib.save(nib.Nifti1Image(_phase_map(), np.eye(4)), path)
    as_read = read_volume(path)
    assert as_read.modality == "CT" and "below air" in distribution_reason(as_read)
    field = _volume(np.sin(np.linspace(0, 30, 32 * 32 * 4)).reshape(32, 32, 4) * 250.0, modality="OT")  # Hz
    assert distribution_reason(field) is not None


def test_dicom_image_type_and_complex_component_mark_phase_images():
    magnitude = np.abs(_phase_map()).astype(np.int16)  # non-negative values: only the header tells
    for header, word in (
        ({"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}, "ImageType"),
        ({"ImageType": "ORIGINAL\\PRIMARY\\FIELD_MAP"}, "ImageType"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "M"], "ComplexImageComponent": "PHASE"}, "ComplexImageComponent"),
    ):
        assert word in distribution_reason(_volume(magnitude, "MR", header=header))
    assert distribution_reason(_volume(magnitude, "MR", header={"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]})) \
        is None  # fmt: skip


def test_signed_but_not_symmetric_images_pass():
    t2 = read_volume(shared_path("data", "medical", "mr", "brain_t2w_int16.nii.gz")).array.astype(np.float32)
    zscored = (t2 - t2.mean()) / t2.std()  # signed, but an image: background -0.6, brain up to +4
    assert distribution_reason(_volume(zscored, "MR")) is None
    crop = read_volume(SAMPLE).array[150:250, 60:160]  # CT without air, read as unknown modality: fat vs bone
    assert distribution_reason(_volume(crop, "OT")) is None


def test_check_run_applies_every_guard():
    labels = _volume(_regions())
    with pytest.raises(ConfigurationError, match="scale must be > 1"):
        check_run(labels, 1.0, meta=NEAREST)
    with pytest.raises(InputFileError, match="label map"):
        check_run(labels, 2.0, meta=BICUBIC)
    check_run(labels, 2.0, meta=NEAREST)


# -- output range ----------------------------------------------------------------------------------------------------
def test_clip_matches_a_per_slice_numpy_clip():
    rng = np.random.default_rng(5)
    source = rng.normal(0, 100, (3, 2, 8, 9)).astype(np.float32)
    source[1, 0] = 7.0  # a constant slice of channel 0
    source[2, 1, 0, 0] = np.nan
    output = rng.normal(0, 300, (3, 2, 16, 18)).astype(np.float32)
    clipped = clip_to_input_range(torch.from_numpy(output), torch.from_numpy(source))
    assert isinstance(clipped, torch.Tensor) and clipped.dtype == torch.float32
    for n in range(3):
        for c in range(2):
            low, high = np.nanmin(source[n, c]), np.nanmax(source[n, c])
            np.testing.assert_array_equal(clipped[n, c].numpy(), np.clip(output[n, c], low, high))
    assert np.all(clipped[1, 0].numpy() == 7.0)  # constant in, constant out
    grey = clip_to_input_range(output[:, :1], source)  # RGB in, grey out: the range of all channels
    assert isinstance(grey, np.ndarray)
    np.testing.assert_array_equal(grey[0, 0], np.clip(output[0, 0], np.nanmin(source[0]), np.nanmax(source[0])))
    with pytest.raises(ConfigurationError, match=r"\(N, C, H, W\)"):
        clip_to_input_range(output[:2], source)


def test_clip_keeps_bicubic_above_the_ct_padding_and_mr_magnitude_non_negative():
    from rmisr_monai.ops.resize import imresize

    ct = read_volume(shared_path("data", "medical", "dicom_series", "ct_ge_lightspeedplus_chest"))
    padding = float(ct.array.min())
    assert padding == -2048  # GE's PixelPaddingValue outside the reconstruction circle
    slices = torch.from_numpy(np.moveaxis(ct.array[:, :, 6:8], 2, 0)[:, None].astype(np.float32))
    up = imresize(slices, 2.0)
    assert float(up.min()) < padding - 50  # bicubic undershoots at the edge of the circle
    assert float(clip_to_input_range(up, slices).min()) == padding
    mr = read_volume(shared_path("data", "medical", "mr", "brain_t2w_int16.nii.gz"))
    slices = torch.from_numpy(np.moveaxis(mr.array[:, :, 28:30], 2, 0)[:, None].astype(np.float32))
    up = imresize(slices, 3.0)
    assert float(up.min()) < 0 and float(clip_to_input_range(up, slices).min()) >= 0
