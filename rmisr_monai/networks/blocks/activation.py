"""Activation factory shared by the RMISR blocks, with the slopes of the papers as named constants."""

from __future__ import annotations

from torch import nn

from rmisr_monai.errors import ConfigurationError

__all__ = ["make_activation", "ACTIVATIONS", "LRELU_SLOPE"]

# IMDN (Hui et al. 2019) and RFDN (Liu et al. 2020) code: nn.LeakyReLU(negative_slope=0.05) in their blocks.
LRELU_SLOPE = 0.05
ACTIVATIONS = ("relu", "lrelu")


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """``"relu"`` -> ``nn.ReLU()``; ``"lrelu"`` -> ``nn.LeakyReLU(LRELU_SLOPE)``; ``inplace`` overwrites the input
    (safe after an operation whose backward does not read its output, such as a convolution or a sum).

    Raises:
        ConfigurationError: unknown name.
    """
    if name == "relu":
        return nn.ReLU(inplace)
    if name == "lrelu":
        return nn.LeakyReLU(LRELU_SLOPE, inplace)
    raise ConfigurationError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
