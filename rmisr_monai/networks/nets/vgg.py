"""VGG19 convolutional features for the contextual loss, loaded from a local torchvision state dict.

Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition", ICLR 2015,
configuration E (16 convolutions). The layers are numbered exactly like ``torchvision.models.vgg19().features``
(``features.0`` = conv1_1, ``features.1`` = relu1_1, ..., ``features.34`` = conv5_4), so the ImageNet file
``vgg19-dcbb9e9d.pth`` that torchvision caches loads as it is; torchvision itself is not needed, and nothing is ever
downloaded (machines are offline; ``STYLE.md`` "Hidden downloads").

Input: ``(N, in_channels, H, W)`` in ``[0, 1]``; gray images (``in_channels=1``) are repeated to 3 channels, then
normalised with the ImageNet mean and standard deviation that the torchvision weights were trained with.
Output: ``{layer name: feature map}`` for the requested layers (``relu3_2`` has 256 channels at ``H/4 x W/4``).
The official contextual-loss code reads ``conv3_2`` and ``conv4_2`` after the ReLU (its ``build_net`` applies the
ReLU), which are ``relu3_2`` and ``relu4_2`` here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError, WeightsError

__all__ = [
    "VGG19_CONFIG",
    "VGG19_LAYER_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG19_WEIGHTS_ENV",
    "RANDOM_WEIGHTS",
    "VGG19Features",
]

# configuration E of Simonyan & Zisserman (Table 1): output channels of each conv, "M" = 2 x 2 max pooling
VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB statistics the torchvision ImageNet weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_WEIGHTS_ENV = "RMISR_VGG19_WEIGHTS"  # environment variable naming the local weights file
RANDOM_WEIGHTS = "random"  # weights_path value that keeps the random initialisation (tests, shapes)
_TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def _layer_index() -> dict[str, int]:
    """``{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 36}``: torchvision's ``features`` indices."""
    names: dict[str, int] = {}
    block, conv, index = 1, 1, 0
    for item in VGG19_CONFIG:
        if item == "M":
            names[f"pool{block}"] = index
            block, conv, index = block + 1, 1, index + 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            conv, index = conv + 1, index + 2
    return names


VGG19_LAYER_INDEX: dict[str, int] = _layer_index()


class VGG19Features(nn.Module):
    """Frozen VGG19 feature extractor (torchvision key layout), built only up to the deepest requested layer.

    Args:
        layers: names to return, among :data:`VGG19_LAYER_INDEX` (``conv3_2``, ``relu3_2``, ``pool3``...).
        weights_path: local torchvision VGG19 state dict (``vgg19-dcbb9e9d.pth``; a dict holding it under
            ``"state_dict"`` and ``module.`` prefixes are accepted, ``classifier.*`` keys are ignored). ``None``
            reads the path from the environment variable ``RMISR_VGG19_WEIGHTS``; ``"random"`` keeps random
            weights (for tests only: the features are then meaningless).
        in_channels: 1 (gray, repeated to RGB) or 3 (RGB).

    Raises:
        WeightsError: no path given, the file is missing, or its tensors do not fit VGG19.
        ConfigurationError: unknown layer name or ``in_channels``.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("relu3_2", "relu4_2"),
        weights_path: str | os.PathLike | None = None,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYER_INDEX]
        if unknown or not layers:
            raise ConfigurationError(f"unknown VGG19 layers {unknown or layers}; valid: {', '.join(VGG19_LAYER_INDEX)}")
        if in_channels not in (1, 3):
            raise ConfigurationError(f"VGG19Features takes 1 or 3 input channels, got in_channels={in_channels}")
        self.layers = tuple(layers)
        self.in_channels = in_channels
        depth = max(VGG19_LAYER_INDEX[name] for name in self.layers) + 1
        modules: list[nn.Module] = []
        channels = 3
        for item in VGG19_CONFIG:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*modules[:depth])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights_path is None:
            weights_path = os.environ.get(VGG19_WEIGHTS_ENV)
        if str(weights_path) != RANDOM_WEIGHTS:
            self.load_weights(weights_path)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, weights_path: str | os.PathLike | None) -> None:
        """Load the convolutions this extractor has from a local torchvision VGG19 state dict."""
        if weights_path is None or not Path(weights_path).is_file():
            where = "no path was given" if weights_path is None else f"{weights_path} does not exist"
            raise WeightsError(
                f"VGG19 ImageNet weights are needed ({where}): download torchvision's {_TORCHVISION_FILE} yourself "
                f"and pass its path as weights_path (vgg_weights_path for ContextualLoss) or set {VGG19_WEIGHTS_ENV}; "
                "nothing is downloaded automatically"
            )
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as error:
            raise WeightsError(f"{weights_path}: not a readable torch state dict ({error})") from error
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {key.removeprefix("module."): value for key, value in state.items()}
        own = {f"features.{key}": value for key, value in self.features.state_dict().items()}
        missing = [key for key in own if key not in state]
        wrong = [key for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
        if missing or wrong:
            raise WeightsError(
                f"{weights_path}: not a torchvision VGG19 state dict (missing {missing[:3]}, wrong shape {wrong[:3]})"
            )
        self.features.load_state_dict({key.removeprefix("features."): state[key] for key in own})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps ``{name: (N, C_l, H_l, W_l)}`` of ``x`` ``(N, in_channels, H, W)`` in ``[0, 1]``."""
        if x.shape[1] != self.in_channels:
            raise ConfigurationError(f"VGG19Features expects {self.in_channels} channels, got shape {tuple(x.shape)}")
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        wanted = {VGG19_LAYER_INDEX[name]: name for name in self.layers}
        outputs: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                outputs[wanted[index]] = x
        return outputs
