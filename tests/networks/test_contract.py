"""The network contract of CONTRIBUTING.md, checked for every name that :func:`get_network` knows.

Output size ``round(H*sy) x round(W*sx)`` for sub-pixel scales 2, 3, 4 and meta scales 1.5, 2.5, 3.7, (2.0, 1.0);
1 and 3 channels; an odd 13 x 17 input; finite gradients; ``torch.jit.script`` gives the eager output; eval mode is
deterministic. Tracing and ONNX export are checked in ``test_export.py``.
"""

from __future__ import annotations

import pytest
import torch

from rmisr_monai.networks import NETWORK_NAMES, count_parameters, get_network

# small architecture sizes so that every case runs in well under a second on a shared CPU
SMALL = {
    "rmisr_bl": dict(features=32, distilled=8, num_blocks=1),
    "rmisr_vp": dict(features=32, distilled=8, num_blocks=2, grad_blocks=1, hr_features=4),
    "dense_sr": dict(features=8, num_blocks=1, layers_per_block=1, growth_rate=4),
    "srcnn": dict(features=(8, 4)),
    "fsrcnn": dict(d=8, s=4, m=1),
    "vdsr": dict(depth=3, features=8),
    "edsr_baseline": dict(features=8, num_blocks=1),
    "imdn": dict(features=16, num_modules=1, distilled=4),
    "rlfn": dict(features=8, num_blocks=1, esa_channels=4),
}
SCALES = [("subpixel", 2), ("subpixel", 3), ("subpixel", 4), ("meta", 1.5), ("meta", 2.5), ("meta", 3.7)]
SCALES.append(("meta", (2.0, 1.0)))


def test_every_network_has_small_sizes_or_none():
    assert set(SMALL) <= set(NETWORK_NAMES)
    assert set(NETWORK_NAMES) - set(SMALL) == {"bicubic", "bilinear", "nearest"}


def _outputs(out) -> list[torch.Tensor]:
    """Training-mode outputs as a list whose first item is the SR image.

    RMISR-VP returns the tuple ``(sr, sr_laplacian)``; DenseSR returns the list of stage images, final last.
    """
    if isinstance(out, tuple):
        return list(out)
    if isinstance(out, list):
        return out[::-1]
    return [out]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("upsampler,scale", SCALES, ids=[f"{u}-{s}" for u, s in SCALES])
@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_network_contract(name, upsampler, scale, channels):
    torch.manual_seed(0)
    net = get_network(name, in_channels=channels, scale=scale, upsampler=upsampler, **SMALL.get(name, {}))
    assert net.arbitrary_scale is (upsampler == "meta" or name in ("bicubic", "bilinear", "nearest"))
    sy, sx = (scale, scale) if not isinstance(scale, tuple) else scale
    x = torch.rand(2, channels, 13, 17)
    expected = (2, channels, round(13 * sy), round(17 * sx))
    run_scale = scale if isinstance(scale, tuple) else float(scale)

    def call(module):
        return module(x, run_scale) if upsampler == "meta" else module(x)

    # training mode: shape and finite gradients of every parameter
    net.train()
    out = call(net)
    outs = _outputs(out)
    assert outs[0].shape == expected
    if count_parameters(net):
        loss = sum(o.square().mean() for o in outs)
        loss.backward()
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)

    # eval mode: deterministic, and TorchScript reproduces it
    net.eval()
    with torch.no_grad():
        y = call(net)
        assert isinstance(y, torch.Tensor) and y.shape == expected
        torch.testing.assert_close(call(net), y, rtol=0, atol=0)
        torch.testing.assert_close(call(torch.jit.script(net)), y, rtol=1e-5, atol=1e-5)
