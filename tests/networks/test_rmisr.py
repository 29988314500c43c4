"""RMISR-BL / RMISR-VP: parameter count against Table 1, the VP branch wiring, train/eval outputs."""

from __future__ import annotations

import pytest
import torch

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks import count_parameters
from rmisr_monai.networks.nets.rmisr import RMISR, rmisr_bl, rmisr_vp

PAPER_BL_X4_PARAMS = 0.848e6  # RMISR Table 1, RMISR-BL x4 (RGB)

SMALL = dict(features=32, distilled=8)


def test_bl_x4_rgb_parameter_count_within_5_percent_of_table1():
    n = count_parameters(rmisr_bl(in_channels=3, scale=4))
    assert abs(n / PAPER_BL_X4_PARAMS - 1) < 0.05, n


def test_bl_has_four_pfmdb_and_vp_six_plus_three():
    bl, vp = rmisr_bl(**SMALL), rmisr_vp(**SMALL)
    assert len(bl.blocks) == 4 and not hasattr(bl, "grad_blocks")
    assert len(vp.blocks) == 6 and len(vp.grad_blocks) == 3


def test_vp_returns_tuple_in_training_and_tensor_in_eval():
    torch.manual_seed(0)
    net = rmisr_vp(in_channels=1, scale=2, **SMALL, num_blocks=2, grad_blocks=1)
    x = torch.rand(1, 1, 9, 11)
    sr, lap = net.train()(x)
    assert sr.shape == (1, 1, 18, 22) and lap.shape == (1, 2, 18, 22)
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, sr)


def test_vp_gradient_branch_reads_sr_pfmdb_2_4_6():
    """The gradient branch's merge convolutions receive the outputs of SR PFMDBs 2, 4 and 6 (recorded by hooks)."""
    torch.manual_seed(0)
    net = rmisr_vp(in_channels=1, scale=2, **SMALL).train()
    x = torch.rand(1, 1, 8, 8)
    sr_outs, merged = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: sr_outs.append(o)) for b in net.blocks]
    hooks += [m.register_forward_pre_hook(lambda m, i: merged.append(i[0])) for m in net.grad_merge]
    net(x)
    for h in hooks:
        h.remove()
    assert len(merged) == 3
    for j, block_index in enumerate((1, 3, 5)):
        torch.testing.assert_close(merged[j][:, 32:], sr_outs[block_index])


def test_vp_laplacian_input_is_eqs_6_to_8():
    net = rmisr_vp(in_channels=2, **SMALL, num_blocks=1, grad_blocks=1)
    x = torch.rand(1, 2, 6, 7)
    pad = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    ix = pad[:, :, 1:-1, 2:] + pad[:, :, 1:-1, :-2] - 2 * x
    iy = pad[:, :, 2:, 1:-1] + pad[:, :, :-2, 1:-1] - 2 * x
    ref = torch.stack([ix, iy], dim=2).flatten(1, 2)  # channel 2c = I_x of c, 2c + 1 = I_y of c
    seen = []
    hook = net.grad_head.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    net(x)
    hook.remove()
    torch.testing.assert_close(seen[0], ref)  # the gradient branch is fed Lap(LR)


@pytest.mark.parametrize("preset", ["bl", "vp"])
def test_meta_upsampler_variant(preset):
    net = RMISR(1, scale=2.5, upsampler="meta", preset=preset, **SMALL, num_blocks=1, grad_blocks=1).eval()
    x = torch.rand(1, 1, 7, 9)
    assert net.arbitrary_scale
    assert net(x).shape == (1, 1, 18, 22)  # round(17.5) = 18 (half to even), round(22.5) = 22
    assert net(x, (1.5, 3.0)).shape == (1, 1, 10, 27)


def test_invalid_arguments():
    with pytest.raises(ConfigurationError, match="preset"):
        RMISR(preset="xl")
    with pytest.raises(ConfigurationError, match="upsampler"):
        RMISR(upsampler="deconv")
    with pytest.raises(ConfigurationError):
        RMISR(scale=2.5)
    with pytest.raises(ConfigurationError, match="grad_blocks"):
        rmisr_vp(num_blocks=6, grad_blocks=4)
    with pytest.raises(ConfigurationError, match="fixed scale"):
        rmisr_bl(**SMALL, num_blocks=1)(torch.rand(1, 1, 4, 4), 3.0)


@pytest.mark.parametrize("build,blocks", [(rmisr_bl, (4, 0)), (rmisr_vp, (6, 3))], ids=["bl", "vp"])
def test_preset_constructors_show_their_real_arguments(build, blocks):
    import inspect
    import pydoc

    shown = inspect.signature(build).parameters
    own = [name for name in inspect.signature(RMISR.__init__).parameters if name not in ("self", "preset")]
    assert list(shown) == own and "kwargs" not in shown
    assert (shown["num_blocks"].default, shown["grad_blocks"].default) == blocks
    assert "features: 'int' = 64" in pydoc.render_doc(build, renderer=pydoc.plaintext)
    # the defaults shown are the ones used: a network built from them equals the preset's
    explicit = build(**{name: p.default for name, p in shown.items()})
    assert count_parameters(explicit) == count_parameters(build())


def _concatenated_tail_forward(net: RMISR, x: torch.Tensor) -> torch.Tensor:
    """RMISR-BL as §3.2 draws it: every PFMDB output kept, concatenated, then the tail's 1x1."""
    head = net.head(x)
    outs, feat = [], head
    for blk in net.blocks:
        feat = blk(feat)
        outs.append(feat)
    return net.upsampler(net.tail(outs, head))


def test_bl_tail_accumulated_block_by_block_equals_the_concatenation_and_holds_less():
    from rmisr_monai.inference.tiling import forward_peak_bytes

    torch.manual_seed(0)
    net = rmisr_bl(in_channels=1, scale=2, features=32).eval()
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        streamed_peak, streamed = forward_peak_bytes(net, x)
        concatenated_peak, concatenated = forward_peak_bytes(lambda t: _concatenated_tail_forward(net, t), x)
    torch.testing.assert_close(streamed, concatenated, rtol=1e-5, atol=1e-6)
    # the four 32-map block outputs are no longer alive together: about two maps' worth less at the peak
    assert streamed_peak <= concatenated_peak - 1.5 * 32 * 40 * 40 * 4
