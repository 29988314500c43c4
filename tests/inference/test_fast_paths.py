"""The engine's fast paths equal the fp32 reference (issue 16): precision policy, reduced precision on real CT and MR
slices, the PyConv single-convolution form with the shipped weights, and tile/batch from the memory budget."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from rmisr_monai.inference import engine, upscale_array, upscale_volume
from rmisr_monai.inference.tiling import MIN_PLANNED_CORE, forward_peak_bytes, plan_tiles
from rmisr_monai.metrics import psnr
from rmisr_monai.networks import get_network
from rmisr_monai.transforms.intensity import IntensityNormalization
from rmisr_monai.weights import load_model
from tests.inference.test_shipped_models import _crop_pair

RUN = dict(device="cpu", progress=False)
# measured on these crops (benchmarks/RESULTS.md §7): bf16 0.0053 (CT) / 0.0086 (MR), fp16 0.0007 / 0.0009 of [0, 1]
MAX_ABS_01 = {"bf16": 0.02, "fp16": 0.003}


@pytest.mark.parametrize(
    "precision, device, fast_bf16, expected",
    [
        ("fp32", "cpu", True, None),
        ("fp32", "cuda", True, None),
        ("auto", "cpu", False, None),  # e.g. an AVX2 EPYC (Zen 3): bf16 is emulated, slower than fp32
        ("auto", "cpu", True, torch.bfloat16),  # CT too: head and reconstruction in fp32, within 0.01 dB on CT
        ("auto", "cuda", False, torch.float16),
        ("bf16", "cpu", False, torch.bfloat16),
        ("fp16", "cpu", False, torch.float16),
    ],
)
def test_precision_policy(monkeypatch, precision, device, fast_bf16, expected):
    monkeypatch.setattr(engine, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert engine.resolve_precision(precision, torch.device(device)) is expected


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_precision_auto_keeps_networks_without_parameters_in_fp32(monkeypatch, device):
    """The interpolators are references: `auto` never rounds them, and the engine passes that on, so bicubic through
    the engine equals bicubic in fp32 exactly even where bf16 is native."""
    monkeypatch.setattr(engine, "cpu_has_fast_bf16", lambda: True)
    assert engine.resolve_precision("auto", torch.device(device), learned=False) is None
    assert engine.resolve_precision("bf16", torch.device(device), learned=False) is torch.bfloat16  # asked for
    vol = np.random.default_rng(3).random((20, 18, 2), dtype=np.float32)
    bicubic = get_network("bicubic")
    auto = upscale_array(vol, bicubic, 2, **RUN)
    np.testing.assert_array_equal(auto, upscale_array(vol, bicubic, 2, precision="fp32", **RUN))
    assert np.abs(upscale_array(vol, bicubic, 2, precision="bf16", **RUN) - auto).max() > 1e-4  # bf16 would round


def test_bad_precision_names_fail():
    with pytest.raises(ValueError, match="precision"):
        engine.resolve_precision("int8", torch.device("cpu"))


def _set_fused(net: torch.nn.Module, fused: bool) -> None:
    for m in net.modules():
        if hasattr(m, "fuse_levels"):
            m.fuse_levels = fused


def _slices(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 2, 0)[:, None]  # (slice, 1, x, y)


@pytest.mark.parametrize(
    "modality, name",
    [("CT", "rmisr_bl64_ct_x2"), ("MR", "rmisr_bl64_mr_x2")],
)
def test_fast_paths_equal_the_fp32_reference_on_real_slices(modality, name):
    """Default engine path, and bf16 / fp16 autocast, against the level-by-level fp32 network, on held-out crops:
    PSNR against the HR crop within 0.05 dB, max abs difference within the stated bound (bf16: the engine's, with
    the first convolution and the reconstruction in fp32)."""
    lr, hr = _crop_pair(modality, 2)
    model, meta = load_model(name)
    data_range = float(hr.max() - hr.min())
    window = IntensityNormalization.from_dict(meta["intensity"]).fit(lr.array)
    span = float(window.a_max - window.a_min)
    _set_fused(model, False)
    reference = upscale_volume(lr, model, 2, intensity=meta["intensity"], precision="fp32", batch_size=2, **RUN)
    _set_fused(model, True)
    ref_psnr = float(psnr(_slices(reference.array), _slices(hr), data_range=data_range, shave=2).mean())
    assert lr.modality == modality
    auto_dtype = engine.resolve_precision("auto", torch.device("cpu"))
    auto_bound = MAX_ABS_01["bf16"] if auto_dtype is not None else 1e-4  # bf16 where the CPU has native bf16
    for precision, bound in (("auto", auto_bound), ("bf16", MAX_ABS_01["bf16"]), ("fp16", MAX_ABS_01["fp16"])):
        out = upscale_volume(lr, model, 2, intensity=meta["intensity"], precision=precision, **RUN).array
        score = float(psnr(_slices(out), _slices(hr), data_range=data_range, shave=2).mean())
        assert abs(score - ref_psnr) < 0.05, (precision, score, ref_psnr)
        assert np.abs(out - reference.array).max() <= bound * span, precision


def test_forward_peak_bytes_counts_what_is_alive_at_once():
    x = torch.zeros(1000)
    peak, y = forward_peak_bytes(lambda t: t * 2 + 1, x)  # t * 2 is alive while + 1 writes the result
    assert peak == 2 * x.nbytes
    torch.testing.assert_close(y, torch.ones(1000))
    peak, _ = forward_peak_bytes(lambda t: (t * 2).sum(), x)
    assert peak == x.nbytes + 4
    peak, _ = forward_peak_bytes(lambda t: t.view(10, 100)[1:] * 3, x)  # a view allocates nothing
    assert peak == 900 * 4


def test_plan_tiles_whole_slices_when_they_fit_else_the_largest_tile():
    assert plan_tiles(100, 100, 7, 10.0, 100 * 100 * 10 * 3.5, 8, 8) == (None, 3)
    assert plan_tiles(100, 100, 2, 10.0, 100 * 100 * 10 * 3.5, 8, 8) == (None, 2)
    assert plan_tiles(100, 100, 7, 10.0, 100 * 100 * 10 * 3.5, 1, 8) == (None, 1)
    assert plan_tiles(1000, 900, 7, 10.0, 500 * 500 * 10, 8, 8) == ((277, None), 1)  # full-width bands of 277 rows
    assert plan_tiles(1000, 900, 7, 10.0, 300 * 300 * 10, 8, 8) == (300, 1)  # bands of 100 rows: too thin
    assert plan_tiles(1000, 900, 7, 10.0, 0, 8, 8) == (2 * 8 + MIN_PLANNED_CORE, 1)  # no tiny, slow tiles


def test_default_memory_limit_is_the_issue_bound():
    assert engine.default_memory_limit(100 << 20, 300 << 20) == int(1.5 * (400 << 20)) + (1 << 30)


def test_small_memory_limit_tiles_and_keeps_the_result(caplog):
    # a purely local network: tiles with an overlap over its receptive radius equal whole slices
    torch.manual_seed(0)
    net = get_network("edsr_baseline", features=4, num_blocks=1, scale=2).eval()
    volume = np.random.default_rng(1).random((300, 170, 2), dtype=np.float32)
    # fp32: the 1e-5 below is the fp32 rounding of tiled sums (bf16, which `auto` picks on CPUs with native bf16,
    # rounds tiles and whole slices differently)
    whole = upscale_array(volume, net, 2, tile=None, batch_size=2, precision="fp32", **RUN)
    data = volume.nbytes * 5  # input + float32 output at x2
    limit = engine.PROCESS_BASE_BYTES + engine.MEMORY_MARGIN_BYTES + data + 100_000  # ~0.1 MB for the network
    with caplog.at_level(logging.DEBUG, logger="rmisr_monai"):
        tiled = upscale_array(volume, net, 2, tile_overlap=8, memory_limit=limit, precision="fp32", **RUN)
    assert f"tile {2 * 8 + MIN_PLANNED_CORE}" in caplog.text
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="rmisr_monai"):
        upscale_array(volume, net, 2, **RUN)  # default budget: 1 GiB + 1.5 x data, whole slices fit
    assert "batches of 2 slice(s), tile None" in caplog.text


def test_cli_precision_reaches_the_engine_options_and_batch_defaults_to_the_budget():
    from rmisr_monai.cli import _upscaler, build_parser

    parser = build_parser()
    args = parser.parse_args(["upscale", "in.nii.gz", "out.nii.gz", "--scale", "2", "--precision", "fp32"])
    options = _upscaler(args).options
    assert options.precision == "fp32" and options.batch is None and options.tile is None
    default = parser.parse_args(["upscale", "in.nii.gz", "out.nii.gz", "--scale", "2"])
    assert _upscaler(default).options.precision == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["upscale", "in.nii.gz", "out.nii.gz", "--scale", "2", "--precision", "int8"])
