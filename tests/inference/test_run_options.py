"""One set of run options (issue 35): ``RunOptions`` round-trips, refuses what is wrong, and every front end hands
every field to the engine (the engine's own record of what it was given is the reference)."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest

from rmisr_monai.cli import RUN_FIELDS, build_parser
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.inference import RunOptions, engine, upscale_array
from tests.inference.reference_cases import CASES, DATA, generate

# a value for every field that differs from its default (what a front end that drops a field cannot pass on)
CHANGED = dict(
    scale=3.0, axis="y", through_plane=False, model="bicubic", weights=None, device="cpu", precision="fp32",
    batch=3, tile=48, tile_overlap=12, self_ensemble=2, memory_limit=700 << 20, out_dtype="int16", adapt=0.0,
    seed=5, input_floor=False, allow_extrapolation=True,
)


def _flags(values: dict) -> list[str]:
    """The command-line flags that give ``values`` (fields at their default are left out)."""
    defaults = RunOptions().to_dict()
    argv: list[str] = []
    for name, value in values.items():
        if value == defaults[name]:
            continue
        flag = RunOptions.flag(name)
        argv += [flag] if isinstance(value, bool) else [flag, str(value >> 20 if name == "memory_limit" else value)]
    return argv


def test_round_trip_through_a_dict_and_json():
    options = RunOptions(**CHANGED)
    assert RunOptions(**options.to_dict()) == options
    assert RunOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert set(CHANGED) == set(RunOptions.field_names())  # CHANGED covers every field


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"scale": 0}, "scale must be a finite number > 0"),
        ({"axis": "w"}, "axis must be x, y, z"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"tile": 2.5}, "tile must be an integer >= 1"),
        ({"self_ensemble": 3}, "self_ensemble must be one of 1, 2, 4, 8"),
        ({"out_dtype": "complex64"}, "out_dtype must be one of"),
        ({"adapt": -1}, "adapt must be a number of seconds >= 0"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(bad, message):
    with pytest.raises(ConfigurationError, match=message):
        RunOptions(**bad)


def test_unknown_keys_are_refused_with_the_valid_ones():
    with pytest.raises(ConfigurationError, match=r"unknown run options \['bach'\]; valid: scale, axis"):
        RunOptions.from_dict({"bach": 2})


def test_the_cli_arguments_are_generated_from_the_fields():
    """Every field is an argument of `rmisr upscale`, with the field's help; parsing CHANGED's flags gives CHANGED."""
    upscale = build_parser()._subparsers._group_actions[0].choices["upscale"]
    dests = {a.dest: a for a in upscale._actions}
    for f in dataclasses.fields(RunOptions):
        assert f.name in dests, f.name
        assert dests[f.name].help == f.metadata["help"]
    args = build_parser().parse_args(["upscale", "in.nii.gz", "out.nii.gz", *_flags(CHANGED)])
    assert RunOptions.from_arguments(args) == RunOptions(**CHANGED)


class _Recorder(Exception):
    """Raised by the patched engine with the options it was given."""


@pytest.fixture
def recorded(monkeypatch):
    """The options the engine's upscale_array is called with, from any front end."""
    seen: list[RunOptions] = []
    real = engine.upscale_array

    def spy(array, network, scale=None, *, options=None, **kwargs):
        engine_only = ("intensity", "modality", "progress", "memmap_threshold")
        changes = {k: v for k, v in kwargs.items() if k not in engine_only}
        seen.append(engine.run_options(options, scale, **changes))
        return real(array, network, options=seen[-1], **{k: kwargs[k] for k in kwargs if k not in changes})

    from rmisr_monai.transforms import super_resolve

    monkeypatch.setattr(engine, "upscale_array", spy)
    monkeypatch.setattr(super_resolve, "upscale_array", spy)
    return seen


def _ct(tmp_path, shape=(12, 10, 3)):
    import nibabel as nib

    path = tmp_path / "ct.nii.gz"
    data = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    return path


def test_rmisr_upscale_hands_every_field_to_the_engine(tmp_path, recorded):
    from rmisr_monai.cli import main

    assert main(["upscale", str(_ct(tmp_path)), str(tmp_path / "out.nii.gz"), "--quiet", *_flags(CHANGED)]) == 0
    assert recorded == [RunOptions(**CHANGED)]


@pytest.mark.parametrize("command", ["evaluate", "demo"])
def test_rmisr_evaluate_and_demo_hand_precision_and_self_ensemble_to_the_engine(tmp_path, recorded, command):
    """The bug of issue 35: evaluate and demo accepted --precision and --self-ensemble and dropped them."""
    from rmisr_monai.cli import main

    run_flags = ["--precision", "fp32", "--self-ensemble", "2", "--tile-overlap", "9", "--memory-limit", "900"]
    if command == "evaluate":
        argv = ["evaluate", str(_ct(tmp_path, (40, 36, 2))), "--model", "bicubic", "--quiet", *run_flags]
    else:
        argv = ["demo", str(tmp_path / "demo"), "--model", "bicubic", "--quiet", *run_flags]
    assert main(argv) == 0
    assert recorded
    for options in recorded:
        assert (options.precision, options.self_ensemble, options.tile_overlap) == ("fp32", 2, 9)
        assert options.memory_limit == 900 << 20
    assert set(RUN_FIELDS) <= set(vars(build_parser().parse_args(argv)))


def test_super_resolve_and_batch_upscaler_hand_every_field_to_the_engine(tmp_path, recorded):
    from rmisr_monai.inference.batch import BatchUpscaler
    from rmisr_monai.io.read import read_volume
    from rmisr_monai.transforms import SuperResolve, SuperResolved

    volume = read_volume(_ct(tmp_path))
    BatchUpscaler(RunOptions(**CHANGED), progress=False).upscale(volume)
    image = volume.array[None].astype(np.float32)
    SuperResolve(options=RunOptions(**CHANGED))(image)
    SuperResolved("image", options=CHANGED)({"image": image})
    assert recorded == [RunOptions(**CHANGED)] * 3


def test_the_engine_takes_the_keyword_names_of_earlier_releases():
    from rmisr_monai.networks import get_network

    volume = np.random.default_rng(1).uniform(0, 1, (10, 8, 2)).astype(np.float32)
    net = get_network("bicubic")
    old = upscale_array(volume, net, 2, device="cpu", batch_size=1, ensemble=2, progress=False)
    options = RunOptions(scale=2, device="cpu", batch=1, self_ensemble=2)
    new = upscale_array(volume, net, options=options, progress=False)
    np.testing.assert_array_equal(old, new)


def test_progress_callback_counts_every_slice_once():
    from rmisr_monai.networks import get_network

    calls: list[tuple[int, int]] = []
    volume = np.zeros((6, 5, 7), np.float32)
    upscale_array(volume, get_network("bicubic"), 2, device="cpu", batch=3, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_outputs_equal_those_saved_before_the_refactor():
    """The fixed cases of tests/inference/reference_cases.py, saved with the code before RunOptions (fp32, whole
    slices): the same voxels within float rounding of another CPU (the saving machine gave them bit for bit)."""
    saved = np.load(DATA)
    now = generate()
    assert set(saved.files) == {name for name, *_ in CASES}
    for name in saved.files:
        reference = saved[name]
        span = float(reference.max() - reference.min()) or 1.0
        assert now[name].shape == reference.shape and now[name].dtype == reference.dtype, name
        if np.issubdtype(reference.dtype, np.integer):
            assert np.abs(now[name].astype(np.int64) - reference).max() <= 1, name
        else:
            assert np.abs(now[name] - reference).max() <= 1e-5 * span, name


def test_argparse_namespace_without_a_field_keeps_its_default():
    assert RunOptions.from_arguments(argparse.Namespace(tile=64)) == RunOptions(tile=64)


def test_input_floor_keeps_ct_padding_mr_zero_and_constant_slices():
    """A step from padding to tissue makes bicubic (and networks) undershoot below the padding; the floor keeps
    every output voxel at or above its input slice's minimum, and a constant slice constant. Off, the undershoot
    is there (so the test can fail)."""
    from rmisr_monai.networks import get_network

    volume = np.full((16, 16, 2), -1000.0, np.float32)
    volume[8:, :, 0] = 1000.0  # slice 0: a step; slice 1: constant
    net = get_network("bicubic")
    raw = upscale_array(volume, net, 2, device="cpu", input_floor=False, progress=False)
    floored = upscale_array(volume, net, 2, device="cpu", progress=False)
    assert raw[..., 0].min() < -1000.0 - 50  # the undershoot the floor removes
    assert floored[..., 0].min() >= -1000.0 and floored[..., 1].min() == floored[..., 1].max() == -1000.0
    keep = raw >= -1000.0
    np.testing.assert_array_equal(floored[keep], raw[keep])
