"""Baseline networks and interpolators: parameter counts against the papers, exact output sizes, stage outputs,
and the interpolators against independent references (scipy, PIL, closed-form ramps)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image
from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.nets.dense_sr import DenseSR
from rmisr_monai.networks.nets.edsr import EDSRBaseline, cascade_scales
from rmisr_monai.networks.nets.fsrcnn import FSRCNN, deconv_upsampler
from rmisr_monai.networks.nets.imdn import IMDN
from rmisr_monai.networks.nets.interpolate import Interpolation
from rmisr_monai.networks.nets.srcnn import SRCNN
from rmisr_monai.networks.nets.vdsr import VDSR
from rmisr_monai.ops.resize import imresize


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def conv(c_in: int, c_out: int, k: int) -> int:
    """Parameters of a k x k convolution with bias."""
    return c_in * c_out * k * k + c_out


# ---------------------------------------------------------------- parameter counts


def test_srcnn_915_parameters():
    # Dong et al. 2016, 9-1-5 with n1 = 64, n2 = 32 on one channel: 8,129 parameters
    assert conv(1, 64, 9) + conv(64, 32, 1) + conv(32, 1, 5) == 8_129
    assert n_params(SRCNN()) == 8_129
    assert n_params(SRCNN(in_channels=3)) == conv(3, 64, 9) + conv(64, 32, 1) + conv(32, 3, 5)


def test_fsrcnn_parameters_match_paper():
    net = FSRCNN(scale=3)
    # Dong et al. 2016 §3.2: FSRCNN(56, 12, 4) has 12,464 weights (convolution weights only, one channel)
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert weights == 25 * 56 + 56 * 12 + 4 * 9 * 12 * 12 + 12 * 56 + 81 * 56 == 12_464
    biases = 56 + 12 + 4 * 12 + 56 + 1
    prelu_slopes = 56 + 12 + 4 * 12 + 56
    assert n_params(net) == 12_464 + biases + prelu_slopes == 12_809


def test_vdsr_parameters():
    expected = conv(1, 64, 3) + 18 * conv(64, 64, 3) + conv(64, 1, 3)
    assert n_params(VDSR()) == expected == 665_921
    assert abs(expected - 0.665e6) / 0.665e6 < 0.01  # 0.665 M in RMISR Table 1 (VDSR paper: 20 layers, 64 filters)


@pytest.mark.parametrize("scale, expected", [(2, 1_369_859), (3, 1_554_499), (4, 1_517_571)])
def test_edsr_baseline_parameters(scale, expected):
    # EDSR baseline RGB (Lim et al. 2017: "1.5M"); the x2 figure 1,369,859 is the one reported by reference code
    head_body = conv(3, 64, 3) + 16 * 2 * conv(64, 64, 3) + conv(64, 64, 3)
    stages = {2: conv(64, 256, 3), 3: conv(64, 576, 3), 4: 2 * conv(64, 256, 3)}[scale]
    assert head_body + stages + conv(64, 3, 3) == expected
    assert n_params(EDSRBaseline(in_channels=3, scale=scale)) == expected


@pytest.mark.parametrize("scale, expected", [(2, 694_404), (3, 703_059), (4, 715_176)])
def test_imdn_parameters(scale, expected):
    # Hui et al. 2019, RGB: 694K / 703K / 715K (exact figures from the official checkpoints, REFERENCES.md f2)
    assert n_params(IMDN(in_channels=3, scale=scale)) == expected


def test_dense_sr_is_lightweight():
    for scale in (2, 3, 4):
        assert 50_000 < n_params(DenseSR(scale=scale)) < 300_000


# ---------------------------------------------------------------- upsampler structure and exact sizes


def test_cascade_scales():
    assert cascade_scales(2) == [2]
    assert cascade_scales(4) == [2, 2]
    assert cascade_scales(8.0) == [2, 2, 2]
    assert cascade_scales(3) == [3]
    for bad in (2.5, 1, 0, True, "2"):
        with pytest.raises(ConfigurationError):
            cascade_scales(bad)


def test_edsr_x4_is_two_x2_shuffles():
    net = EDSRBaseline(scale=4, num_blocks=1)
    shuffles = [m.upscale_factor for m in net.modules() if isinstance(m, nn.PixelShuffle)]
    assert shuffles == [2, 2]


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 8, 12])
@pytest.mark.parametrize("kernel", [4, 9])
def test_deconv_upsampler_exact_size(scale, kernel):
    layer = deconv_upsampler(2, 1, scale, kernel)
    assert 0 <= layer.output_padding[0] < scale
    assert layer(torch.zeros(1, 2, 5, 7)).shape == (1, 1, 5 * scale, 7 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_output_size(scale):
    net = FSRCNN(scale=scale, d=8, s=4, m=1)
    assert net.upsampler.kernel_size == (9, 9) and net.upsampler.stride == (scale, scale)
    assert net(torch.rand(2, 1, 7, 5)).shape == (2, 1, 7 * scale, 5 * scale)
    meta = FSRCNN(scale=scale, upsampler="meta", d=8, s=4, m=1)
    assert meta.arbitrary_scale and not net.arbitrary_scale
    assert meta(torch.rand(1, 1, 7, 5), 2.5).shape == (1, 1, 18, 12)  # round(17.5) = 18, round(12.5) = 12


def test_dense_sr_stage_outputs():
    net = DenseSR(scale=4, features=8, num_blocks=2, layers_per_block=2, growth_rate=4)
    x = torch.rand(2, 1, 6, 5)
    stages = net.train()(x)
    assert isinstance(stages, list) and [tuple(s.shape) for s in stages] == [(2, 1, 12, 10), (2, 1, 24, 20)]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == 2
    final = net.eval()(x)
    assert torch.allclose(final, stages[-1])  # no batch norm / dropout: eval returns the last training stage
    stages[0].mean().backward()  # the intermediate head is connected to the shared trunk
    assert net.shallow.weight.grad is not None and net.heads[1].weight.grad is None
    one_stage = DenseSR(scale=3, features=8, num_blocks=1, layers_per_block=1, growth_rate=4).train()
    assert [tuple(s.shape) for s in one_stage(x)] == [(2, 1, 18, 15)]
    meta = DenseSR(scale=2, upsampler="meta", features=8, num_blocks=1, layers_per_block=1, growth_rate=4).eval()
    assert meta(x, (1.5, 3.0)).shape == (2, 1, 9, 15)


@pytest.mark.parametrize("cls", [VDSR, SRCNN])
def test_pre_upsampling_arbitrary_scale(cls):
    x = torch.rand(1, 1, 7, 6)
    kwargs = {"depth": 3, "features": 4} if cls is VDSR else {"features": (4, 4)}
    meta = cls(upsampler="meta", scale=2, **kwargs)
    assert meta.arbitrary_scale
    assert meta(x).shape == (1, 1, 14, 12)
    assert meta(x, 2.5).shape == (1, 1, 18, 15)  # round(17.5) = 18 (half to even), 15
    assert meta(x, (1.3, 3.0)).shape == (1, 1, 9, 18)
    fixed = cls(scale=1.5, **kwargs)
    assert not fixed.arbitrary_scale and fixed(x).shape == (1, 1, 10, 9)  # round(10.5) = 10
    with pytest.raises(ConfigurationError):
        fixed(x, 2.0)


def test_vdsr_is_residual_on_matlab_bicubic():
    net = VDSR(depth=3, features=4, upsampler="meta")
    last = net.body[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    x = torch.rand(1, 1, 6, 8, dtype=torch.float64)
    net.double()
    assert torch.allclose(net(x, 3.0), imresize(x, 3.0), atol=1e-12)


# ---------------------------------------------------------------- interpolators vs independent references


@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_bilinear_matches_scipy(scale):
    a = np.random.default_rng(0).random((7, 9))
    out = Interpolation(mode="bilinear")(torch.from_numpy(a)[None, None], scale)[0, 0].numpy()
    ref = ndi.zoom(a, scale, order=1, grid_mode=True, mode="nearest")  # half-pixel centres, edge replication
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 2.5])
def test_nearest_matches_scipy_and_formula(scale):
    a = np.random.default_rng(1).random((7, 9))
    out = Interpolation(mode="nearest")(torch.from_numpy(a)[None, None], scale)[0, 0].numpy()
    ref = ndi.zoom(a, scale, order=0, grid_mode=True, mode="nearest")
    np.testing.assert_array_equal(out, ref)
    rows = np.floor((np.arange(out.shape[0]) + 0.5) * 7 / out.shape[0]).astype(int)
    cols = np.floor((np.arange(out.shape[1]) + 0.5) * 9 / out.shape[1]).astype(int)
    np.testing.assert_array_equal(out, a[np.ix_(rows, cols)])


@pytest.mark.parametrize("scale", [2, 3, 1.7])
def test_bicubic_reproduces_a_ramp_in_the_interior(scale):
    h, w = 10, 12
    ramp = 0.05 * np.arange(w)[None, :] + 0.02 * np.arange(h)[:, None]
    out = Interpolation()(torch.from_numpy(ramp)[None, None], scale)[0, 0].numpy()
    oh, ow = out.shape
    assert (oh, ow) == (int(round(h * scale)), int(round(w * scale)))
    # output centre i samples the input at (i + 0.5) / s - 0.5 (MATLAB imresize); a cubic kernel with a = -0.5
    # reproduces linear functions exactly away from the mirrored borders
    ys = (np.arange(oh) + 0.5) / scale - 0.5
    xs = (np.arange(ow) + 0.5) / scale - 0.5
    expected = 0.05 * xs[None, :] + 0.02 * ys[:, None]
    b = int(np.ceil(3 * scale))
    np.testing.assert_allclose(out[b:-b, b:-b], expected[b:-b, b:-b], atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3])
def test_bicubic_matches_pil_in_the_interior(scale):
    a = np.random.default_rng(2).random((12, 10)).astype(np.float32)
    ref = np.asarray(Image.fromarray(a, mode="F").resize((10 * scale, 12 * scale), Image.BICUBIC))  # Keys a = -0.5
    out = Interpolation()(torch.from_numpy(a)[None, None].double(), scale)[0, 0].numpy()
    b = 2 * scale  # PIL renormalises truncated kernels at the border, MATLAB mirrors: compare the interior
    np.testing.assert_allclose(out[b:-b, b:-b], ref[b:-b, b:-b], atol=1e-6)


def test_interpolation_interface():
    net = Interpolation(in_channels=2, mode="bilinear")
    assert net.arbitrary_scale and n_params(net) == 0
    x = torch.rand(1, 2, 5, 4)
    assert net(x).shape == (1, 2, 10, 8)
    assert net(x, (1.0, 3)).shape == (1, 2, 5, 12)
    scripted = torch.jit.script(net)
    assert torch.equal(scripted(x, 2.5), net(x, 2.5))
    bicubic = Interpolation(scale=3)
    traced = torch.jit.trace(bicubic, (torch.rand(1, 1, 5, 4),), check_trace=False)
    y = torch.rand(1, 1, 5, 4)
    assert torch.allclose(traced(y), bicubic(y))


# ---------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "build, bad",
    [
        (lambda: Interpolation(mode="cubic"), "cubic"),
        (lambda: Interpolation(in_channels=1, out_channels=3), "3"),
        (lambda: Interpolation(upsampler="pixelshuffle"), "pixelshuffle"),
        (lambda: VDSR(in_channels=1, out_channels=2), "2"),
        (lambda: VDSR(scale=-2), "-2"),
        (lambda: SRCNN(kernel_sizes=(9, 2, 5)), "2"),
        (lambda: FSRCNN(scale=2.5), "2.5"),
        (lambda: EDSRBaseline(upsampler="deconv"), "deconv"),
        (lambda: EDSRBaseline(scale=1.5), "1.5"),
        (lambda: DenseSR(growth_rate=0), "growth_rate=0"),
        (lambda: IMDN(distilled=64), "64"),
        (lambda: IMDN(scale=2.5), "2.5"),
    ],
)
def test_invalid_arguments(build, bad):
    with pytest.raises(ConfigurationError, match=bad):
        build()


@pytest.mark.parametrize(
    "net",
    [
        EDSRBaseline(num_blocks=1, features=8),
        FSRCNN(d=8, s=4, m=1),
        IMDN(num_modules=1),
        DenseSR(features=8, num_blocks=1, layers_per_block=1, growth_rate=4),
    ],
)
def test_fixed_scale_rejects_a_runtime_scale(net):
    with pytest.raises(ConfigurationError, match="fixed scale"):
        net.eval()(torch.rand(1, 1, 4, 4), 3.0)


# ---------------------------------------------------------------- TorchScript


TINY = {
    EDSRBaseline: {"features": 8, "num_blocks": 1},
    FSRCNN: {"d": 8, "s": 4, "m": 1},
    IMDN: {"features": 32, "num_modules": 2, "distilled": 8, "cca_reduction": 4},
    DenseSR: {"features": 8, "num_blocks": 1, "layers_per_block": 2, "growth_rate": 4},
}


@pytest.mark.parametrize("cls", list(TINY))
@pytest.mark.parametrize(
    "upsampler, scale, runtime", [("subpixel", 4, None), ("meta", 2, 2.5), ("meta", 2, (1.5, 3.0))]
)
def test_learned_networks_script(cls, upsampler, scale, runtime, tmp_path):
    torch.manual_seed(0)
    net = cls(in_channels=2, scale=scale, upsampler=upsampler, out_channels=3, **TINY[cls]).eval()
    x = torch.rand(1, 2, 5, 6)
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, tmp_path / "net.pt")
    loaded = torch.jit.load(tmp_path / "net.pt")
    expected = net(x) if runtime is None else net(x, runtime)
    got = loaded(x) if runtime is None else loaded(x, runtime)
    sy, sx = (scale, scale) if runtime is None else ((runtime, runtime) if isinstance(runtime, float) else runtime)
    assert expected.shape == (1, 3, int(round(5 * sy)), int(round(6 * sx)))
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("cls, kwargs", [(VDSR, {"depth": 3, "features": 4}), (SRCNN, {"features": (4, 4)})])
def test_pre_upsampling_networks_trace_at_a_fixed_scale(cls, kwargs):
    net = cls(scale=3, **kwargs).eval()
    x = torch.rand(1, 1, 5, 6)
    traced = torch.jit.trace(net, (x,), check_trace=False)
    y = torch.rand(1, 1, 5, 6)
    assert torch.allclose(traced(y), net(y), atol=1e-6)
