"""Every ``nn.Module`` of the project and the one factory, :func:`get_network`, used by the CLI, bundles and Slicer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.nets import (
    FSRCNN,
    IMDN,
    RLFN,
    SRCNN,
    VDSR,
    DenseSR,
    EDSRBaseline,
    Interpolation,
    rmisr_bl,
    rmisr_vp,
)

__all__ = ["get_network", "NETWORK_NAMES", "count_parameters"]

_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "rmisr_bl": rmisr_bl,
    "rmisr_vp": rmisr_vp,
    "dense_sr": DenseSR,
    "srcnn": SRCNN,
    "fsrcnn": FSRCNN,
    "vdsr": VDSR,
    "edsr_baseline": EDSRBaseline,
    "imdn": IMDN,
    "rlfn": RLFN,
    "bicubic": Interpolation,
    "bilinear": Interpolation,
    "nearest": Interpolation,
}
# the interpolators are one class; the name selects its mode
_INTERPOLATORS = ("bicubic", "bilinear", "nearest")

NETWORK_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the network called ``name`` with the keyword arguments of its class (network contract).

    Args:
        name: one of :data:`NETWORK_NAMES`; ``"bicubic"``, ``"bilinear"`` and ``"nearest"`` give
            :class:`~rmisr_monai.networks.nets.interpolate.Interpolation` with that ``mode``.
        kwargs: constructor arguments, e.g. ``in_channels=1, scale=2, upsampler="subpixel"``.

    Raises:
        ConfigurationError: unknown name (the message lists the valid ones), or ``mode`` given to an interpolator.
    """
    if name not in _FACTORIES:
        raise ConfigurationError(f"unknown network {name!r}; valid names: {', '.join(NETWORK_NAMES)}")
    if name in _INTERPOLATORS:
        if "mode" in kwargs:
            raise ConfigurationError(f"network {name!r} fixes mode={name!r}; do not pass mode={kwargs['mode']!r}")
        kwargs = {**kwargs, "mode": name}
    return _FACTORIES[name](**kwargs)


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values of ``net`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
