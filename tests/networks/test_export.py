"""Every network of the factory exports: ONNX with dynamic H and W checked in ONNX Runtime, and tracing.

``torch.onnx.export(get_network(name, in_channels=1, scale=2).eval(), x, path, dynamo=False, dynamic_axes=...)``
is loaded by ONNX Runtime and run at two input sizes (neither the traced one), each compared with the eager output
within 1e-5; ``test_contract.py`` checks ``torch.jit.script`` of every network. Arbitrary-scale networks
(``upsampler="meta"``) are traced at a fixed scale and the trace is run at two other input sizes. Architecture sizes
are the small ones of the contract test, so that each case is quick."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmisr_monai.networks import NETWORK_NAMES, get_network
from tests.networks.test_contract import SMALL

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extras: pip install -e '.[test]'")
pytest.importorskip("onnx", reason="onnx is in the test extras: pip install -e '.[test]'")

TRACED_SIZE = (12, 15)
CHECK_SIZES = [(17, 10), (9, 23)]  # odd, H != W, both sides different from the traced input
DYNAMIC_AXES = {"image": {0: "batch", 2: "height", 3: "width"}, "pred": {0: "batch", 2: "out_height", 3: "out_width"}}


class _FixedScale(torch.nn.Module):
    """``net(x, scale)`` at one fixed scale, so that a meta network can be traced."""

    def __init__(self, net: torch.nn.Module, scale) -> None:
        super().__init__()
        self.net = net
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.scale)


def _network(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_network(name, in_channels=1, **SMALL.get(name, {}), **kwargs).eval()


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_onnx_export_dynamic_size_matches_eager(name, tmp_path):
    net = _network(name, scale=2)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        net, torch.rand(1, 1, *TRACED_SIZE), str(path), dynamo=False,
        input_names=["image"], output_names=["pred"], dynamic_axes=DYNAMIC_AXES,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, (h, w) in zip((1, 2), CHECK_SIZES):
        x = torch.rand(batch, 1, h, w)
        with torch.no_grad():
            expected = net(x).numpy()
        (out,) = session.run(None, {"image": x.numpy()})
        assert out.shape == (batch, 1, 2 * h, 2 * w)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,scale", [(n, 2.5) for n in NETWORK_NAMES] + [("rmisr_bl", (2.0, 1.0))])
def test_arbitrary_scale_traces_at_fixed_scale(name, scale):
    fixed = _FixedScale(_network(name, scale=2, upsampler="meta"), scale).eval()
    traced = torch.jit.trace(fixed, torch.rand(1, 1, *TRACED_SIZE), check_trace=False)
    sy, sx = (scale, scale) if isinstance(scale, float) else scale
    for h, w in CHECK_SIZES:
        x = torch.rand(1, 1, h, w)
        with torch.no_grad():
            out, expected = traced(x), fixed(x)
        assert out.shape == (1, 1, round(h * sy), round(w * sx))
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
