"""Mixed precision of the trainer on CPU (issue 16): bfloat16 autocast of the forward pass where the CPU computes
bf16 natively, fp32 elsewhere; the bf16 step's loss and gradients match the fp32 step's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rmisr_monai.networks import get_network
from rmisr_monai.training import trainer as trainer_module
from rmisr_monai.training.trainer import CpuBf16Inferer, build_trainer


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 1, 32, 32, generator=g)
    return {"image": nn.functional.avg_pool2d(hr, 2), "label": hr}


@pytest.mark.parametrize("amp, fast_bf16, expected", [(True, True, True), (True, False, False), (False, True, False)])
def test_amp_uses_bf16_autocast_only_on_cpus_with_native_bf16(monkeypatch, tmp_path, amp, fast_bf16, expected):
    monkeypatch.setattr(trainer_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    net = get_network("rmisr_bl", in_channels=1, scale=2, features=32, num_blocks=1)
    trainer = build_trainer(
        net, [_batch()], nn.L1Loss(), iterations=1, checkpoint_dir=tmp_path, amp=amp, checkpoint_every=1
    )
    assert isinstance(trainer.inferer, CpuBf16Inferer) is expected
    assert not trainer.amp  # MONAI's amp (float16 with gradient scaling) is for CUDA only
    trainer.run()
    assert trainer.state.iteration == 1
    assert trainer.state.output[0]["pred"].dtype == torch.float32


@pytest.mark.parametrize("name", ["rmisr_bl", "rmisr_vp"])
def test_bf16_forward_gives_the_fp32_loss_and_gradients(name):
    """One training step's loss within 2 % and gradients with cosine similarity > 0.99 to the fp32 step's (bf16 keeps
    8 mantissa bits: about 0.4 % relative rounding per operation)."""
    torch.manual_seed(0)
    net = get_network(name, in_channels=1, scale=2, features=32, num_blocks=3).train()
    batch = _batch(1)

    def loss_and_grads(forward):
        net.zero_grad()
        out = forward(batch["image"], net)
        sr = out[0] if isinstance(out, tuple) else out
        loss = (sr - batch["label"]).abs().mean()
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]), out

    ref_loss, ref_grad, _ = loss_and_grads(lambda x, n: n(x))
    loss, grad, out = loss_and_grads(CpuBf16Inferer())
    assert all(o.dtype == torch.float32 for o in (out if isinstance(out, tuple) else (out,)))
    assert loss == pytest.approx(ref_loss, rel=0.02)
    assert torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0) > 0.99
    assert not torch.equal(grad, ref_grad)  # the forward did run in bf16
