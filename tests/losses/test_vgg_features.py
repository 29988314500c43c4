"""VGG19 feature extractor: torchvision state-dict layout, layer shapes, local loading, missing-weights error."""

from __future__ import annotations

import pytest
import torch

from rmisr_monai.errors import WeightsError
from rmisr_monai.networks.nets.vgg import VGG19_WEIGHTS_ENV, VGG19Features

# torchvision.models.vgg19().features: index of every conv and its weight shape (out, in, 3, 3)
TORCHVISION_CONVS = [
    (0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128),
    (10, 256, 128), (12, 256, 256), (14, 256, 256), (16, 256, 256),
    (19, 512, 256), (21, 512, 512), (23, 512, 512), (25, 512, 512),
    (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512),
]  # fmt: skip


@pytest.fixture(scope="module")
def full_vgg():
    return VGG19Features(layers=("relu5_4",), weights_path="random", in_channels=3)


def test_state_dict_matches_torchvision_layout(full_vgg):
    expected = {}
    for index, out_ch, in_ch in TORCHVISION_CONVS:
        expected[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
        expected[f"features.{index}.bias"] = (out_ch,)
    got = {key: tuple(value.shape) for key, value in full_vgg.state_dict().items()}
    assert got == expected


def test_layer_shapes_and_gray_replication():
    net = VGG19Features(layers=("relu1_1", "relu2_2", "relu3_2"), weights_path="random")
    x = torch.rand(2, 1, 32, 24)
    out = net(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "relu1_1": (2, 64, 32, 24), "relu2_2": (2, 128, 16, 12), "relu3_2": (2, 256, 8, 6)
    }
    assert all(float(v.min()) >= 0 for v in out.values())
    # gray = the same image on R, G, B; ImageNet normalisation applied inside
    rgb = VGG19Features(layers=("conv1_1",), weights_path="random", in_channels=3)
    rgb.features.load_state_dict(net.features[:1].state_dict())
    conv = net.features[0]
    normalised = (x.expand(-1, 3, -1, -1) - net.mean) / net.std
    torch.testing.assert_close(rgb(x.expand(-1, 3, -1, -1))["conv1_1"], conv(normalised))
    assert not any(p.requires_grad for p in net.parameters())


def test_loads_a_local_torchvision_file_and_ignores_classifier(tmp_path, full_vgg):
    state = {f"module.{k}": torch.randn_like(v) for k, v in full_vgg.state_dict().items()}
    state["module.classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = VGG19Features(layers=("relu2_1",), weights_path=path)
    torch.testing.assert_close(net.features[5].weight, state["module.features.5.weight"])


def test_missing_weights_raise_with_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv(VGG19_WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsError, match=VGG19_WEIGHTS_ENV) as info:
        VGG19Features()
    assert "vgg19-dcbb9e9d.pth" in str(info.value) and "no path" in str(info.value)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError, match="does not exist"):
        VGG19Features(weights_path=missing)
    monkeypatch.setenv(VGG19_WEIGHTS_ENV, str(missing))
    with pytest.raises(WeightsError, match="nowhere.pth"):
        VGG19Features()
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="not a torchvision VGG19"):
        VGG19Features(weights_path=bad)
