"""RLFN (Kong et al., CVPR Workshops 2022) and its ESA block: parameter counts, the block's equations against a
direct re-computation, strict loading of the official checkpoints, and the published Set5 / Set14 Y-channel PSNR
(x2 38.07 / 33.72, x4 32.24 / 28.62; ``../shared/peers/rlfn/MANIFEST.md``). The evaluation is written here,
independent of ``rmisr_monai.metrics``; the LR images come from the project's MATLAB-compatible ``imresize``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rmisr_monai.errors import ConfigurationError, WeightsError
from rmisr_monai.networks import get_network
from rmisr_monai.networks.blocks.esa import ESA
from rmisr_monai.networks.nets.rlfn import RLFN, official_key
from rmisr_monai.ops.resize import imresize
from tests.conftest import shared_path

# parameter counts of the official files (MANIFEST: rlfn_x2 526,856, rlfn_x4 543,740, RLFN-S 454,620 / 470,208)
PARAMS = {("rlfn", 2): 526_856, ("rlfn", 4): 543_740, ("rlfn_s", 2): 454_620, ("rlfn_s", 4): 470_208}
# published Set5 / Set14 Y-PSNR (Kong et al. 2022, Table 1; reproduced in the MANIFEST)
PUBLISHED = {2: (38.07, 33.72), 4: (32.24, 28.62)}
TOLERANCE_DB = 0.02
SET5 = ("baby", "bird", "butterfly", "head", "woman")
SET14 = ("baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers", "foreman", "lenna", "man",
         "monarch", "pepper", "ppt3", "zebra")


def _checkpoint(name: str, scale: int):
    return shared_path("peers", "rlfn", f"{name}_x{scale}.pth")


def _conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


@pytest.mark.parametrize("name,scale", list(PARAMS))
def test_parameter_count_matches_official_layout(name, scale):
    c = 52 if name == "rlfn" else 48
    esa = _conv_params(c, 16, 1) + _conv_params(16, 16, 1) + 2 * _conv_params(16, 16, 3) + _conv_params(16, c, 1)
    block = 3 * _conv_params(c, c, 3) + _conv_params(c, c, 1) + esa
    expected = _conv_params(3, c, 3) + 6 * block + _conv_params(c, c, 3) + _conv_params(c, 3 * scale * scale, 3)
    assert expected == PARAMS[(name, scale)]
    net = get_network("rlfn", in_channels=3, scale=scale, features=c)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_esa_equations_and_small_inputs():
    torch.manual_seed(0)
    esa = ESA(8, 4).eval()
    x = torch.randn(2, 8, 23, 31)
    with torch.no_grad():
        c1 = F.conv2d(x, esa.conv1.weight, esa.conv1.bias)
        c = F.conv2d(c1, esa.conv2.weight, esa.conv2.bias, stride=2)
        c = F.max_pool2d(c, 7, 3)
        c = F.conv2d(c, esa.conv3.weight, esa.conv3.bias, padding=1)
        c = F.interpolate(c, size=(23, 31), mode="bilinear", align_corners=False)
        gate = torch.sigmoid(F.conv2d(c + F.conv2d(c1, esa.conv_f.weight, esa.conv_f.bias),
                                      esa.conv4.weight, esa.conv4.bias))
        torch.testing.assert_close(esa(x), x * gate, rtol=0, atol=1e-6)
        # below 15 x 15 the official branch cannot pool; ours stretches it and keeps the input's size
        for size in ((5, 40), (14, 14), (1, 1)):
            small = torch.randn(1, 8, *size)
            out = esa(small)
            assert out.shape == small.shape and torch.isfinite(out).all()
            assert torch.all(out.abs() <= small.abs() + 1e-7)  # a sigmoid gate never amplifies


def test_invalid_arguments():
    with pytest.raises(ConfigurationError, match="img_range"):
        RLFN(img_range=0)
    with pytest.raises(ConfigurationError, match="num_blocks=0"):
        RLFN(num_blocks=0)
    with pytest.raises(ConfigurationError):
        RLFN(scale=2.5)  # sub-pixel needs an integer scale


def test_img_range_is_applied_inside():
    """RLFN(img_range=r) on ``x`` equals RLFN(img_range=1) with the same weights on ``r x``, divided by ``r``."""
    torch.manual_seed(1)
    a = RLFN(in_channels=1, scale=2, features=8, num_blocks=1, esa_channels=4).eval()
    b = RLFN(in_channels=1, scale=2, features=8, num_blocks=1, esa_channels=4, img_range=1.0).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.rand(1, 1, 16, 18)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(255.0 * x) / 255.0, rtol=1e-5, atol=1e-6)


def test_official_key_mapping():
    assert official_key("conv_1.weight") == "head.weight"
    assert official_key("block_1.c1_r.bias") == "blocks.0.c1_r.bias"
    assert official_key("block_6.esa.conv_f.weight") == "blocks.5.esa.conv_f.weight"
    assert official_key("conv_2.bias") == "lr_conv.bias"
    assert official_key("upsampler.0.weight") == "upsampler.0.weight"
    assert official_key("module.block_2.c5.weight") == "blocks.1.c5.weight"
    assert official_key("blocks.3.c2_r.weight") == "blocks.3.c2_r.weight"


@pytest.mark.parametrize("name,scale", list(PARAMS))
def test_official_checkpoint_loads_strictly(name, scale):
    raw = torch.load(_checkpoint(name, scale), map_location="cpu", weights_only=True)
    assert len(raw) == 114 and not any(k.startswith("module.") for k in raw)
    net = get_network("rlfn", in_channels=3, scale=scale, features=raw["conv_1.weight"].shape[0])
    net.load_state_dict(raw, strict=True)  # the raw file, no preprocessing
    ours = net.state_dict()
    for key, value in raw.items():
        assert torch.equal(ours[official_key(key)], value), key
    assert torch.equal(net.blocks[5].esa.conv4.weight, raw["block_6.esa.conv4.weight"])
    assert RLFN.from_official(_checkpoint(name, scale)).scale == (float(scale), float(scale))


def test_official_checkpoint_errors(tmp_path):
    with pytest.raises(WeightsError, match="x2"):
        RLFN.from_official(_checkpoint("rlfn", 2), scale=4)
    with pytest.raises(RuntimeError):  # strict: an x2 file does not fit an x4 network
        get_network("rlfn", in_channels=3, scale=4).load_state_dict(
            torch.load(_checkpoint("rlfn", 2), map_location="cpu", weights_only=True), strict=True
        )
    with pytest.raises(WeightsError):
        RLFN.from_official(tmp_path / "missing.pth")


def _y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of 0..255 RGB (``rgb2ycbcr``), kept in float as BasicSR's ``bgr2ycbcr(y_only=True)`` does.

    With the MATLAB-style rounding of Y to 8 bits (``tests/networks/test_imdn_official.py``) the same outputs score
    0.09 dB lower (Set5 x2 37.99); the MANIFEST's reproduction of the published figures is this float-Y protocol.
    """
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _mean_psnr_y(net: torch.nn.Module, folder: str, names: tuple[str, ...], scale: int) -> float:
    psnrs = []
    for name in names:
        # single-channel images (Set14 bridge) expanded to RGB, as the benchmark copies are used
        hr = np.asarray(Image.open(shared_path("data", "natural", folder, f"{name}.png")).convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale].astype(np.float64)
        # MATLAB: imresize(uint8 HR, 1/s, 'bicubic') -> uint8 (round and clip)
        lr = imresize(torch.from_numpy(hr).permute(2, 0, 1)[None], 1.0 / scale).round().clamp(0, 255)
        with torch.inference_mode():
            sr = net((lr / 255.0).float())
        sr = (sr.clamp(0, 1) * 255.0).round()[0].permute(1, 2, 0).double().numpy()
        assert sr.shape == hr.shape
        diff = (_y_channel(sr) - _y_channel(hr))[scale:-scale, scale:-scale]  # shave = scale
        psnrs.append(10.0 * np.log10(255.0**2 / np.mean(diff**2)))
    return float(np.mean(psnrs))


@pytest.mark.parametrize("scale", [2, 4])
def test_published_set5_set14_psnr(scale):
    net = get_network("rlfn", in_channels=3, scale=scale)
    net.load_state_dict(torch.load(_checkpoint("rlfn", scale), map_location="cpu", weights_only=True), strict=True)
    net.eval()
    set5, set14 = _mean_psnr_y(net, "Set5", SET5, scale), _mean_psnr_y(net, "Set14", SET14, scale)
    print(f"RLFN x{scale}: Set5 {set5:.3f} dB, Set14 {set14:.3f} dB (published {PUBLISHED[scale]})")
    assert abs(set5 - PUBLISHED[scale][0]) <= TOLERANCE_DB
    assert abs(set14 - PUBLISHED[scale][1]) <= TOLERANCE_DB
