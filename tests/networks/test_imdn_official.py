"""IMDN against the official checkpoints (Hui et al., ACM MM 2019): strict loading, parameter counts and the
published Set5 PSNR (Y channel, MATLAB protocol). The evaluation is written here, independent of
``rmisr_monai.metrics``; the LR images come from the project's MATLAB-compatible ``imresize``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rmisr_monai.errors import WeightsError
from rmisr_monai.networks.nets.imdn import IMDN, official_key
from rmisr_monai.ops.resize import imresize
from tests.conftest import shared_path

# Official parameter counts (shared/REFERENCES.md f2; IMDN poster: 694K / 703K / 715K).
PARAMS = {2: 694_404, 3: 703_059, 4: 715_176}
# Published Set5 PSNR, Y channel (shared/peers/imdn/MANIFEST.md: paper, poster, SwinIR Table 3).
SET5_PUBLISHED = {2: 38.00, 3: 34.36, 4: 32.21}
TOLERANCE_DB = 0.15  # Python vs MATLAB evaluation (a Python re-check got 37.91 / 34.32 / 32.19)
SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _checkpoint(scale: int):
    return shared_path("peers", "imdn", f"IMDN_x{scale}.pth")


def _y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of 0..255 RGB (MATLAB ``rgb2ycbcr``), rounded to 8 bits as MATLAB returns it for uint8."""
    y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return np.round(y)


def _psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    a = _y_channel(sr)[shave:-shave, shave:-shave]
    b = _y_channel(hr)[shave:-shave, shave:-shave]
    mse = np.mean((a - b) ** 2)
    return float(10.0 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_checkpoint_loads_strictly(scale):
    raw = torch.load(_checkpoint(scale), map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    net = IMDN(in_channels=3, scale=scale)
    net.load_state_dict(raw, strict=True)  # raw file contents, no preprocessing
    assert sum(p.numel() for p in net.parameters()) == PARAMS[scale]
    assert sum(v.numel() for v in raw.values()) == PARAMS[scale]
    # every official tensor landed in the parameter its key names
    ours = net.state_dict()
    for key, value in raw.items():
        assert torch.equal(ours[official_key(key)], value), key
    assert torch.equal(net.blocks[5].cca.conv_du[2].weight, raw["module.IMDB6.cca.conv_du.2.weight"])
    assert torch.equal(net.fusion[0].weight, raw["module.c.0.weight"])
    # our own state dict round-trips too, and from_official infers the scale from the file
    IMDN(in_channels=3, scale=scale).load_state_dict(ours, strict=True)
    assert IMDN.from_official(_checkpoint(scale)).scale == (float(scale), float(scale))


def test_official_checkpoint_errors():
    with pytest.raises(WeightsError, match="x2"):
        IMDN.from_official(_checkpoint(2), scale=4)
    with pytest.raises(RuntimeError):  # strict load of an x2 file into an x3 network: shape mismatch
        IMDN(in_channels=3, scale=3).load_state_dict(
            torch.load(_checkpoint(2), map_location="cpu", weights_only=True), strict=True
        )
    with pytest.raises(WeightsError):
        IMDN.from_official(shared_path("peers", "imdn") / "missing.pth")


def test_official_key_mapping():
    assert official_key("module.IMDB1.c1.weight") == "blocks.0.c1.weight"
    assert official_key("module.IMDB6.cca.conv_du.0.bias") == "blocks.5.cca.conv_du.0.bias"
    assert official_key("module.c.0.weight") == "fusion.0.weight"
    assert official_key("module.LR_conv.bias") == "lr_conv.bias"
    assert official_key("module.fea_conv.weight") == "head.weight"
    assert official_key("module.upsampler.0.weight") == "upsampler.0.weight"
    assert official_key("blocks.3.c2.weight") == "blocks.3.c2.weight"


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_published_psnr(scale):
    net = IMDN.from_official(_checkpoint(scale)).eval()
    psnrs = []
    for name in SET5:
        hr = np.asarray(Image.open(shared_path("data", "natural", "Set5", f"{name}.png")).convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale].astype(np.float64)
        hr_t = torch.from_numpy(hr).permute(2, 0, 1)[None]
        # MATLAB: imresize(uint8 HR, 1/s, 'bicubic') -> uint8 (round and clip)
        lr = imresize(hr_t, 1.0 / scale).round().clamp(0, 255)
        assert lr.shape[-2:] == (hr.shape[0] // scale, hr.shape[1] // scale)
        with torch.no_grad():
            sr = net((lr / 255.0).float())
        sr = (sr.clamp(0, 1) * 255.0).round()[0].permute(1, 2, 0).double().numpy()
        assert sr.shape == hr.shape
        psnrs.append(_psnr_y(sr, hr, shave=scale))
    mean_psnr = float(np.mean(psnrs))
    print(f"IMDN x{scale} Set5 Y-PSNR {mean_psnr:.2f} dB (published {SET5_PUBLISHED[scale]:.2f})")
    assert abs(mean_psnr - SET5_PUBLISHED[scale]) < TOLERANCE_DB
