"""Volume engine: slicing layout, tiling equivalence, intensity round trip, memory map, faults (OOM, Ctrl-C)."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError, RmisrError
from rmisr_monai.inference.engine import output_spatial_shape, upscale_array, upscale_volume
from rmisr_monai.inference.tiling import axis_windows, run_tiled
from rmisr_monai.io.geometry import Geometry
from rmisr_monai.io.volume import Volume
from rmisr_monai.networks import get_network
from rmisr_monai.transforms.intensity import IntensityNormalization

# the network's output as it is: these tests compare it with independent references (the input floor has its own test)
RUN = dict(device="cpu", progress=False, input_floor=False)


def _local_net(upsampler: str = "subpixel", seed: int = 0) -> nn.Module:
    """A tiny learned network with a purely local receptive field (no global pooling): radius 1+2+1 LR pixels plus
    the upsampler's 3x3 (< 6 LR pixels)."""
    torch.manual_seed(seed)
    return get_network("edsr_baseline", features=4, num_blocks=1, scale=2, upsampler=upsampler).eval()


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return rng.random((2, 37, 29, 5), dtype=np.float32)  # odd sizes, two channels


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nearest_in_plane_is_numpy_repeat(axis):
    rng = np.random.default_rng(1)
    vol = rng.integers(-1000, 2000, size=(7, 6, 5)).astype(np.int16)
    out = upscale_array(vol, get_network("nearest"), 2, axis=axis, **RUN)
    expected = vol.astype(np.float32)
    for a in range(3):
        if a != axis:
            expected = np.repeat(expected, 2, axis=a)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_nearest_through_plane_repeats_only_the_axis(axis):
    vol = np.random.default_rng(2).random((6, 5, 4), dtype=np.float32)
    a = "xyz".index(axis)
    out = upscale_array(vol, get_network("nearest"), 3, axis=axis, through_plane=True, **RUN)
    np.testing.assert_array_equal(out, np.repeat(vol, 3, axis=a))


def test_slices_are_the_network_applied_to_each_slice(volume):
    """In-plane along axis 1: output[:, :, j] == net(volume[:, :, j]) for every j (independent per-slice call)."""
    net = _local_net()
    out = upscale_array(volume, net, 2, axis=1, batch_size=3, precision="fp32", **RUN)  # bf16 on AMX machines
    assert out.shape == (2, 74, 29, 10)
    with torch.no_grad():
        for j in (0, 13, 28):
            ref = net(torch.from_numpy(volume[:, :, j]).unsqueeze(1))[:, 0]
            np.testing.assert_allclose(out[:, :, j], ref.numpy(), atol=1e-6)


@pytest.mark.parametrize("tile,overlap", [(16, 6), (19, 6), (23, 7), (64, 6)])
def test_tiled_equals_untiled_subpixel(volume, tile, overlap):
    net = _local_net()
    full = upscale_array(volume, net, 2, axis=2, **RUN)
    tiled = upscale_array(volume, net, 2, axis=2, tile=tile, tile_overlap=overlap, **RUN)
    np.testing.assert_allclose(tiled, full, atol=1e-4, rtol=0)


@pytest.mark.parametrize("tile", [(16, None), (None, 15), (20, 14)])
def test_bands_and_rectangular_windows_equal_the_whole_slice(tile):
    """The planner's full-width bands ``(rows, None)`` (and any ``(rows, columns)`` window) stitch to the untiled
    result, at an integer and a fractional scale."""
    x = torch.from_numpy(np.random.default_rng(6).random((2, 1, 37, 29), dtype=np.float32))
    for net, pair in ((_local_net(), (2.0, 2.0)), (_local_net("meta"), (2.5, 2.5))):
        call = (lambda t: net(t)) if pair == (2.0, 2.0) else (lambda t: net(t, pair))
        with torch.no_grad():
            whole = call(x)
            tiled = run_tiled(call, x, pair, tile, 6)
        torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scale", [1.5, 2.5, 1.3])
@pytest.mark.parametrize("through_plane", [False, True])
def test_tiled_equals_untiled_fractional_meta(volume, scale, through_plane):
    net = _local_net("meta")
    full = upscale_array(volume, net, scale, axis=1, through_plane=through_plane, **RUN)
    tiled = upscale_array(volume, net, scale, axis=1, through_plane=through_plane, tile=21, tile_overlap=6, **RUN)
    assert full.shape[1:] == output_spatial_shape(volume.shape[1:], scale, 1, through_plane)
    np.testing.assert_allclose(tiled, full, atol=1e-4, rtol=0)


def test_tiled_bicubic_fractional_scale_equals_untiled(volume):
    bic = get_network("bicubic")
    full = upscale_array(volume, bic, 1.5, axis=0, **RUN)
    tiled = upscale_array(volume, bic, 1.5, axis=0, tile=12, tile_overlap=4, **RUN)
    assert full.shape == (2, 37, 44, 8)  # round(29*1.5)=44 (43.5 half to even), round(5*1.5)=8 (7.5)
    np.testing.assert_allclose(tiled, full, atol=1e-4, rtol=0)


def test_too_small_overlap_changes_the_result(volume):
    """The equivalence above is not vacuous: without enough context the tile borders show."""
    net = _local_net()
    full = upscale_array(volume, net, 2, axis=2, **RUN)
    tiled = upscale_array(volume, net, 2, axis=2, tile=12, tile_overlap=0, **RUN)
    assert np.abs(tiled - full).max() > 1e-3


def test_windows_cover_the_axis_exactly():
    for n, s, tile, overlap in [(37, 2.0, 16, 6), (100, 1.5, 20, 4), (33, 2.5, 30, 5), (9, 3.0, 50, 4)]:
        wins = axis_windows(n, s, tile, overlap)
        assert wins[0].out_start == 0 and wins[-1].out_stop == round(n * s)
        assert all(a.out_stop == b.out_start for a, b in zip(wins, wins[1:]))
        assert all(w.start * s == int(w.start * s) for w in wins)
    with pytest.raises(ConfigurationError, match="tile 8 leaves no core"):
        axis_windows(40, 2.0, 8, 4)


def test_intensity_is_normalised_and_restored():
    """CT window normalisation around a nearest-neighbour network: HU inside the window come back exactly."""
    hu = np.array([-1024.0, -1000.0, -500.0, 0.0, 40.0, 1500.0, 2000.0, 3071.0], dtype=np.float32).reshape(2, 2, 2)
    norm = IntensityNormalization.ct()
    out = upscale_array(hu, get_network("nearest"), 2, axis=2, intensity=norm.to_dict(), **RUN)
    np.testing.assert_allclose(out, np.repeat(np.repeat(hu, 2, 0), 2, 1), atol=1e-3)


def test_values_outside_the_ct_window_come_back_through_bicubic():
    """What the window clips (padding at -2048 HU, metal at 5000 HU) is restored by bicubic: with bicubic as the
    network, the windowed run equals plain bicubic on the raw HU (linearity), and a nearest network keeps the padding
    value in a flat padding region instead of the window's -1024."""
    rng = np.random.default_rng(4)
    hu = rng.uniform(-1000, 1500, size=(16, 14, 3)).astype(np.float32)
    hu[:4] = -2048.0  # scanner padding outside the field of view
    hu[10, 7, :] = 5000.0  # metal
    norm = IntensityNormalization.ct().to_dict()
    windowed = upscale_array(hu, get_network("bicubic"), 2, axis=2, intensity=norm, **RUN)
    plain = upscale_array(hu, get_network("bicubic"), 2, axis=2, **RUN)
    np.testing.assert_allclose(windowed, plain, atol=2e-3)
    assert windowed.min() < -2000 and windowed.max() > 4000
    nearest = upscale_array(hu, get_network("nearest"), 2, axis=2, intensity=norm, **RUN)
    np.testing.assert_allclose(nearest[:4], -2048.0, atol=1e-3)  # rows 0..3 of the output: 2 LR rows from the edge
    inside = nearest[12:18, 0:10]  # beyond the bicubic taps of the padding and the metal: the network's own output
    np.testing.assert_allclose(inside, np.repeat(np.repeat(hu[6:9, 0:5], 2, 0), 2, 1), atol=1e-3)


class _Seen(nn.Module):
    """Records the value range the wrapped network receives."""

    def __init__(self, net):
        super().__init__()
        self.net, self.arbitrary_scale, self.lo, self.hi = net, net.arbitrary_scale, np.inf, -np.inf

    def forward(self, x, *args):
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        return self.net(x, *args)


def test_mr_percentiles_are_fitted_on_the_whole_volume():
    vol = np.random.default_rng(3).gamma(2.0, 100.0, size=(8, 8, 6)).astype(np.float32)
    seen = _Seen(get_network("nearest"))
    out = upscale_array(vol, seen, 2, axis=2, intensity=IntensityNormalization.mr().to_dict(), batch_size=1, **RUN)
    lo, hi = np.percentile(vol.astype(np.float64), [0.5, 99.5])
    assert seen.lo == pytest.approx((vol.min() - lo) / (hi - lo), abs=1e-5)
    assert seen.hi == pytest.approx((vol.max() - lo) / (hi - lo), abs=1e-5)
    np.testing.assert_allclose(out[::2, ::2], vol, rtol=1e-5, atol=1e-3)


def test_memmap_output_same_result_and_no_file_left(volume):
    net = _local_net()
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("rmisr-engine-")}
    full = upscale_array(volume, net, 2, axis=2, **RUN)
    mapped = upscale_array(volume, net, 2, axis=2, memmap_threshold=0, **RUN)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), full)
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("rmisr-engine-")}
    assert after <= before


class _FailingNet(nn.Module):
    """Wraps a network; raises ``error`` on the calls whose numbers are in ``fail_on`` (1-based)."""

    def __init__(self, net, error, fail_on):
        super().__init__()
        self.net, self.error, self.fail_on, self.calls = net, error, set(fail_on), 0
        self.arbitrary_scale = net.arbitrary_scale
        self.scale = getattr(net, "scale", None)
        self.shapes = []

    def forward(self, x, *args):
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.error
        self.shapes.append(tuple(x.shape[-2:]))
        return self.net(x, *args)


def test_simulated_cuda_oom_halves_the_tile_and_gives_the_same_result(caplog):
    volume = np.random.default_rng(4).random((1, 96, 80, 3), dtype=np.float32)
    net = _local_net()
    # fp32: halved tiles equal whole ones to 1e-4 only without bf16 rounding (auto is bf16 on native-bf16 CPUs)
    full = upscale_array(volume, net, 2, axis=2, precision="fp32", **RUN)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
    failing = _FailingNet(net, oom, fail_on={1, 2})
    with caplog.at_level(logging.INFO, logger="rmisr_monai"):
        out = upscale_array(volume, failing, 2, axis=2, tile_overlap=6, batch_size=4, precision="fp32", **RUN)
    np.testing.assert_allclose(out, full, atol=1e-4, rtol=0)
    assert max(max(s) for s in failing.shapes) <= 24 + 2 * 6  # two halvings: 96 -> 48 -> 24 (+ overlap)
    assert "out of memory" in caplog.text


def test_oom_that_never_ends_on_cpu_is_a_clear_error(volume):
    failing = _FailingNet(_local_net(), torch.cuda.OutOfMemoryError("simulated"), fail_on=range(1, 1000))
    with pytest.raises(RmisrError, match="out of memory even with tile"):
        upscale_array(volume, failing, 2, axis=2, tile_overlap=6, batch_size=4, **RUN)


def test_keyboard_interrupt_propagates_mid_volume(volume):
    failing = _FailingNet(_local_net(), KeyboardInterrupt(), fail_on={2})
    with pytest.raises(KeyboardInterrupt):
        upscale_array(volume, failing, 2, axis=2, batch_size=1, memmap_threshold=0, **RUN)
    assert failing.calls == 2


def test_configuration_errors():
    vol = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(ConfigurationError, match="arbitrary-scale.*meta.*bicubic"):
        upscale_array(vol, _local_net(), 2, through_plane=True, **RUN)
    with pytest.raises(ConfigurationError, match="fixed scale 2"):
        upscale_array(vol, _local_net(), 3, **RUN)
    with pytest.raises(ConfigurationError, match="axis"):
        upscale_array(vol, _local_net(), 2, axis="w", **RUN)


def test_upscale_volume_uses_rescaled_geometry():
    rot = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    geom = Geometry((0.7, 0.9, 2.5), (10.0, -20.0, 30.0), tuple(map(tuple, rot)))
    vol = Volume(np.zeros((11, 10, 7), np.int16), geom, "CT", np.int16, "mem", "nifti")
    out = upscale_volume(vol, get_network("bicubic"), 1.5, axis=0, **RUN)
    assert out.array.shape == (11, 15, 10)
    np.testing.assert_allclose(out.geometry.spacing, (0.7, 0.9 * 10 / 15, 2.5 * 7 / 10))
    np.testing.assert_allclose(out.geometry.corners_box(out.array.shape), geom.corners_box((11, 10, 7)), atol=1e-9)
    assert out.geometry.direction == geom.direction and out.modality == "CT" and out.source_dtype == np.int16


def test_out_dtype_casts_each_batch_like_the_writer():
    """int16 output = float32 output clipped to the int16 range and rounded half to even (numpy reference)."""
    vol = (np.random.default_rng(5).random((9, 8, 3)) * 80000 - 40000).astype(np.float32)
    net = get_network("bicubic")
    full = upscale_array(vol, net, 2, batch_size=2, **RUN)
    as_int = upscale_array(vol, net, 2, batch_size=2, out_dtype=np.int16, **RUN)
    assert as_int.dtype == np.int16
    np.testing.assert_array_equal(as_int, np.rint(np.clip(full.astype(np.float64), -32768, 32767)).astype(np.int16))


class _Shapes(nn.Module):
    """Records the (H, W) of every input the wrapped arbitrary-scale network receives."""

    def __init__(self, net):
        super().__init__()
        self.net, self.arbitrary_scale, self.seen = net, True, set()

    def forward(self, x, *args):
        self.seen.add(tuple(x.shape[-2:]))
        return self.net(x, *args)


@pytest.mark.parametrize("shape, planes", [((30, 4, 20), (30, 20)), ((30, 20, 4), (30, 20)), ((30, 5, 5), (30, 5))])
def test_through_plane_slices_along_the_shorter_other_axis(shape, planes):
    """A thin slab of a scan is cut into full-size planes (thick axis x the longer other axis), and the result is the
    same as bicubic along the thick axis alone, whichever way it was sliced."""
    vol = np.random.default_rng(5).random(shape, dtype=np.float32)
    recorder = _Shapes(get_network("bicubic"))
    out = upscale_array(vol, recorder, 2.5, axis=0, through_plane=True, tile=None, batch_size=1, **RUN)
    assert recorder.seen == {planes}
    from rmisr_monai.ops.resize import imresize

    np.testing.assert_allclose(out, imresize(torch.from_numpy(vol), 2.5, dims=(0,)).numpy(), atol=1e-5)


def test_memory_probe_runs_once_per_network_structure():
    """The default plan probes the network on a 64 x 64 slice; a second volume (or a second network of the same
    structure) reuses that measurement instead of probing again."""
    vol = np.random.default_rng(7).random((100, 90, 2), dtype=np.float32)
    first, second = _Shapes(_local_net("meta", seed=1)), _Shapes(_local_net("meta", seed=2))
    upscale_array(vol, first, 1.5, **RUN)
    assert (64, 64) in first.seen and (100, 90) in first.seen
    upscale_array(vol, second, 1.5, **RUN)
    assert second.seen == {(100, 90)}
