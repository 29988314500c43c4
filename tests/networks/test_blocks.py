"""RMISR building blocks and upsamplers against independent references (numpy formulas, brute-force loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks import (
    ICCA,
    PFMDB,
    ContrastChannelAttention,
    MetaUpsampler,
    PyConv3,
    ShallowResidualBlock,
    SubpixelUpsampler,
    as_scale_pair,
    make_upsampler,
)
from rmisr_monai.networks.blocks.attention import STD_EPS


def test_pyconv3_weight_count_is_the_papers():
    # RMISR §4.2: 7x7 g8 -> 16, 5x5 g4 -> 16, 3x3 g1 -> 32 from 64 maps: 31,104 weights (vs 36,864 for 3x3 64->64)
    conv = PyConv3(64)
    assert sum(p.numel() for p in conv.parameters()) == 64 // 8 * 16 * 49 + 64 // 4 * 16 * 25 + 64 * 32 * 9 == 31104
    assert [lvl.kernel_size[0] for lvl in conv.levels] == [7, 5, 3]
    assert [lvl.groups for lvl in conv.levels] == [8, 4, 1]
    assert conv(torch.rand(1, 64, 9, 11)).shape == (1, 64, 9, 11)


def test_pyconv3_rejects_indivisible_channels():
    with pytest.raises(ConfigurationError, match="groups"):
        PyConv3(48)  # 48 * 0.25 = 12 maps cannot form 8 groups


def test_srb_is_relu_of_conv_plus_identity():
    torch.manual_seed(0)
    srb = ShallowResidualBlock(4)
    x = torch.randn(2, 4, 6, 7)
    ref = torch.relu(F.conv2d(x, srb.conv.weight, srb.conv.bias, padding=1) + x)
    torch.testing.assert_close(srb(x), ref)


def _icca_statistic_numpy(x: np.ndarray) -> np.ndarray:
    """Eq. 14 with the documented entropy reading: p = softmax over H*W; (1/256) sum p log2 p + std + mean."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1).astype(np.float64)
    e = np.exp(flat - flat.max(axis=2, keepdims=True))
    p = e / e.sum(axis=2, keepdims=True)
    entropy = (p * np.log2(p)).sum(axis=2) / 256.0
    return entropy + flat.std(axis=2) + flat.mean(axis=2)


def test_icca_matches_numpy_reference_of_eq14():
    torch.manual_seed(0)
    att = ICCA(32).double()
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64) * 3 - 1  # negative values included
    stat = att.statistic(x)[..., 0, 0].numpy()
    np.testing.assert_allclose(stat, _icca_statistic_numpy(x.numpy()), rtol=1e-10, atol=1e-12)
    # and the full attention: x * sigmoid(conv(relu(conv(s))))
    s = torch.from_numpy(_icca_statistic_numpy(x.numpy()))[..., None, None]
    c0, c2 = att.conv_du[0], att.conv_du[2]
    w = torch.sigmoid(F.conv2d(torch.relu(F.conv2d(s, c0.weight, c0.bias)), c2.weight, c2.bias))
    torch.testing.assert_close(att(x), x * w)


def test_icca_entropy_term_of_a_constant_map_is_minus_log2_hw_over_256():
    att = ICCA(16)
    x = torch.full((1, 16, 4, 8), 0.5)
    # uniform p: sum p log2 p = -log2(32); std 0; mean 0.5
    torch.testing.assert_close(att.statistic(x), torch.full((1, 16, 1, 1), -5.0 / 256 + 0.5))
    x.requires_grad_(True)
    att(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cca_is_imdn_contrast_plus_mean_with_checkpoint_keys():
    att = ContrastChannelAttention(64)
    assert {"conv_du.0.weight", "conv_du.0.bias", "conv_du.2.weight", "conv_du.2.bias"} == set(att.state_dict())
    assert att.conv_du[0].out_channels == 4
    x = torch.randn(1, 64, 5, 5)
    ref = x.std(dim=(2, 3), unbiased=False) + x.mean(dim=(2, 3))
    torch.testing.assert_close(att.statistic(x)[..., 0, 0], ref)


def test_pfmdb_with_zero_fusion_is_the_identity():
    block = PFMDB(32, distilled=8)
    torch.nn.init.zeros_(block.fusion.weight)
    torch.nn.init.zeros_(block.fusion.bias)
    x = torch.randn(1, 32, 6, 5)
    torch.testing.assert_close(block(x), x)
    torch.nn.init.normal_(block.fusion.weight)
    assert not torch.allclose(block(x), x)


def test_pfmdb_taps_read_the_cascade_inputs():
    """Tap i sees the input of cascade step i: changing SRB 2 changes tap 3 and the Conv-3 but not taps 1-2."""
    torch.manual_seed(0)
    block = PFMDB(32, distilled=8, num_srb=2)
    x = torch.randn(1, 32, 6, 5)
    x1 = block.cascade[0](x)
    x2 = block.cascade[1](x1)
    assert isinstance(block.cascade[2], torch.nn.Identity)
    parts = [block.taps[0](x), block.taps[1](x1), block.taps[2](x2), block.conv3(x2)]
    ref = x + block.attention(block.fusion(torch.cat(parts, dim=1)))
    torch.testing.assert_close(block(x), ref)
    assert len(PFMDB(32, distilled=8, num_srb=3).cascade) == 3
    with pytest.raises(ConfigurationError):
        PFMDB(32, num_srb=1)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("size", [(13, 17), (8, 8)])
def test_subpixel_sizes_and_keys(scale, size):
    up = SubpixelUpsampler(8, 3, scale)
    assert set(up.state_dict()) == {"0.weight", "0.bias"}
    assert up(torch.rand(1, 8, *size)).shape == (1, 3, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("bad", [1, 1.5, 0, True])
def test_subpixel_rejects_non_integer_scales(bad):
    with pytest.raises(ConfigurationError):
        SubpixelUpsampler(8, 1, bad)


def _meta_reference(up: MetaUpsampler, x: torch.Tensor, sy: float, sx: float) -> torch.Tensor:
    """Algorithm 1 pixel by pixel: project, predict from [1/sy, 1/sx, dy, dx], multiply the 3x3 neighbourhood."""
    n, c, h, w = x.shape
    oh, ow = round(h * sy), round(w * sx)
    xp = F.pad(x, (1, 1, 1, 1))
    out = torch.zeros(n, up.out_channels, oh, ow, dtype=x.dtype)
    for i in range(oh):
        py = min(math.floor(i / sy), h - 1)
        for j in range(ow):
            px = min(math.floor(j / sx), w - 1)
            v = torch.tensor([1 / sy, 1 / sx, i / sy - math.floor(i / sy), j / sx - math.floor(j / sx)])
            weight = up.weight_predictor(v.to(x.dtype)).view(c * 9, up.out_channels)
            out[:, :, i, j] = xp[:, :, py : py + 3, px : px + 3].reshape(n, c * 9) @ weight
    return out


@pytest.mark.parametrize("max_conv_classes", [0, 10**6])  # every scale per row class / as one convolution
@pytest.mark.parametrize("scale", [1.5, 2.5, 3.7, (2.0, 1.0), (1.3, 2.0)])
def test_meta_upsampler_sizes_and_algorithm1(scale, max_conv_classes):
    torch.manual_seed(0)
    up = MetaUpsampler(3, 2, hidden_features=8).double()
    up.max_conv_classes = up.max_conv_values = max_conv_classes
    x = torch.rand(1, 3, 7, 5, dtype=torch.float64)
    sy, sx = as_scale_pair(scale)
    y = up(x, scale)
    assert y.shape == (1, 2, round(7 * sy), round(5 * sx))
    torch.testing.assert_close(y, _meta_reference(up, x, sy, sx))


@pytest.mark.parametrize("scale", [1.5, 2.5, 3.7, (2.0, 1.0)])
def test_meta_upsampler_odd_sizes_and_script(scale):
    up = MetaUpsampler(4, 1, hidden_features=8)
    x = torch.rand(2, 4, 13, 17)
    sy, sx = as_scale_pair(scale)
    y = up(x, scale)
    assert y.shape == (2, 1, round(13 * sy), round(17 * sx))
    scripted = torch.jit.script(up)
    torch.testing.assert_close(scripted(x, scale if isinstance(scale, tuple) else float(scale)), y)


def test_as_scale_pair_and_factory_validate():
    assert as_scale_pair(2) == (2.0, 2.0)
    assert as_scale_pair((2.0, 1)) == (2.0, 1.0)
    for bad in (0, -1.0, float("nan"), (1.0,), "2", (2.0, 0.0), True):
        with pytest.raises(ConfigurationError):
            as_scale_pair(bad)
    assert isinstance(make_upsampler("subpixel", 8, 1, 2.0), SubpixelUpsampler)
    assert isinstance(make_upsampler("meta", 8, 1, 2.5), MetaUpsampler)
    with pytest.raises(ConfigurationError, match="subpixel"):
        make_upsampler("deconv", 8, 1, 2)
    with pytest.raises(ConfigurationError):
        make_upsampler("subpixel", 8, 1, 2.5)


@pytest.mark.parametrize("channels, bias", [(64, False), (32, False), (32, True)])
def test_pyb_as_one_convolution_equals_the_levels_in_values_and_gradients(channels, bias):
    # PYB's fast form (one K x K convolution of composed weights) against its level-by-level reference
    from rmisr_monai.networks.blocks import PyramidalBlock

    torch.manual_seed(0)
    block = PyramidalBlock(channels, 16, pyconv_bias=bias)
    x = torch.randn(2, channels, 13, 10, requires_grad=True)
    grads = []
    outs = []
    for fused in (False, True):
        block.fuse_levels = fused
        block.zero_grad()
        x.grad = None
        y = block(x)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        outs.append(y.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in block.parameters()])
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for g_fused, g_ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fused, g_ref, atol=1e-4, rtol=1e-4)
    weight, _ = block.fused_weight()
    assert weight.shape == (16, channels, 7, 7)


def test_icca_entropy_term_is_stable_for_large_offsets():
    # the logsumexp form stays equal to the float64 softmax reference for maps far from zero (shift by the max)
    x = torch.randn(2, 3, 17, 19) * 20 + 500
    expected = _icca_statistic_numpy(x.numpy()) - x.numpy().reshape(2, 3, -1).astype(np.float64).std(axis=2)
    expected -= x.numpy().reshape(2, 3, -1).astype(np.float64).mean(axis=2)
    from rmisr_monai.networks.blocks.attention import spatial_entropy_term

    np.testing.assert_allclose(spatial_entropy_term(x)[..., 0, 0].numpy(), expected, atol=1e-5, rtol=0)


def test_pfmdb_and_srb_without_autograd_equal_the_autograd_path_and_leave_their_input():
    """Without autograd the blocks overwrite their own temporaries (memory, benchmarks/RESULTS.md §9); the values
    are those of the autograd path, which trains, and the caller's tensor is never written."""
    torch.manual_seed(0)
    for block in (PFMDB(32), ShallowResidualBlock(32), ICCA(32)):
        x = torch.randn(2, 32, 11, 13, requires_grad=True)
        kept = x.detach().clone()
        with_grad = block(x)
        with_grad.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        with torch.inference_mode():
            without = block(x.detach())
        torch.testing.assert_close(without, with_grad.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x.detach(), kept, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [ContrastChannelAttention, ICCA])
def test_statistics_of_disjoint_parts_merge_to_the_whole_maps(cls):
    """``partial_statistics`` of a partition merged by ``merge_statistics`` equals ``statistic`` of the whole map (the
    exact tiles of the engine rest on it), against the float64 numpy reference, with parts of uneven sizes, a
    single pixel among them, and values far apart (the log-sum-exp rescaling of ICCA's entropy sums)."""
    torch.manual_seed(1)
    att = cls(16, reduction=4)
    x = torch.randn(2, 16, 23, 17) * 4 + 2
    x[:, :, 0, 0] = 40.0  # one dominant pixel: exp(x - max) underflows everywhere else in the other parts
    parts = [x[..., :1, :1], x[..., :1, 1:], x[..., 1:9, :], x[..., 9:, :5], x[..., 9:, 5:]]
    merged = att.merge_statistics([att.partial_statistics(p) for p in parts])
    flat = x.double().reshape(2, 16, -1).numpy()
    ref = _icca_statistic_numpy(x.numpy()) if cls is ICCA else flat.std(axis=2) + flat.mean(axis=2)
    np.testing.assert_allclose(merged[..., 0, 0].numpy(), ref, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(merged, att.statistic(x), rtol=2e-6, atol=2e-6)
    # half the map alone is another statistic: the merge is not a no-op
    assert (att.merge_statistics([att.partial_statistics(parts[2])]) - merged).abs().max() > 1e-2


def test_partial_statistics_of_bfloat16_maps_are_summed_in_float32():
    """Under bf16 autocast the attention input is bfloat16; its parts are summed in float32, so a map of 4096 equal
    values merges to that value, where a bfloat16 running sum would stall at 256 x the value."""
    att = ContrastChannelAttention(4, reduction=2)
    x = torch.full((1, 4, 64, 64), 0.75, dtype=torch.bfloat16)
    part = att.partial_statistics(x)
    assert part.dtype == torch.float64
    torch.testing.assert_close(att.merge_statistics([part]), torch.full((1, 4, 1, 1), 0.75 + STD_EPS**0.5))
