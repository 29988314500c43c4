"""Which network and intensity mapping the user's options select: one rule for the CLI, batches, evaluation, bundles.

Options (as ``rmisr upscale`` takes them):

* ``weights``: a checkpoint file (rmisr-monai format); ``model``, when also given, must name its network;
* else ``model``: a shipped model name (``weights/registry.json``), an interpolator (``bicubic``, ``bilinear``,
  ``nearest``: no weights), or a network name standing for that network's shipped weights at the scale;
* else the shipped default for the scale and the input's modality (CT/MR), through-plane asking for an
  arbitrary-scale model (:func:`rmisr_monai.weights.default_model`).

The intensity mapping is the checkpoint's ``"intensity"`` entry; a learned network without one gets the modality's
default (HU window for CT, robust percentiles for MR, :class:`~rmisr_monai.transforms.intensity.IntensityNormalization`)
and an interpolator none (it works on the original units).
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from rmisr_monai.core.intensity import IntensityNormalization
from rmisr_monai.errors import ConfigurationError

__all__ = ["model_source", "check_model_available", "select_network", "intensity_for", "self_ensemble_for"]

logger = logging.getLogger(__name__)


def _needs_registry(model: str | None, weights: str | None) -> bool:
    """Whether the options leave the choice of weights to the registry (no weights file, no interpolator)."""
    from rmisr_monai.networks import NETWORK_NAMES
    from rmisr_monai.weights.loader import INTERPOLATORS

    return weights is None and (model is None or model in NETWORK_NAMES and model not in INTERPOLATORS)


def model_source(
    model: str | None, weights: str | None, scale: float, modality: str | None, through_plane: bool = False
) -> str:
    """What :func:`rmisr_monai.weights.load_model` gets for these options: the weights path, the shipped model's
    registry name, or the interpolator's name.

    Raises:
        WeightsError: nothing is shipped for the scale (and modality, and network); the message names the way out.
    """
    from rmisr_monai.weights import default_model

    if weights is not None:
        return str(weights)
    if _needs_registry(model, None):
        return default_model(scale, modality, network=model, arbitrary_scale=through_plane)["name"]
    return str(model)


def check_model_available(model: str | None, weights: str | None, scale: float, through_plane: bool = False) -> None:
    """Fail before any input is read when the registry has nothing for ``scale`` (whatever the modality)."""
    if _needs_registry(model, weights):
        model_source(model, weights, scale, None, through_plane)


def select_network(
    model: str | None,
    weights: str | None,
    scale: float,
    modality: str | None,
    through_plane: bool = False,
    device: str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """``(network, metadata)`` for the options (module docstring); ``metadata`` as
    :func:`rmisr_monai.weights.load_model` returns it.

    Raises:
        ConfigurationError: ``model`` does not match the network of ``weights``.
        WeightsError: missing or unusable weights, or nothing shipped for the scale.
    """
    from rmisr_monai.weights import load_model

    net, meta = load_model(model_source(model, weights, scale, modality, through_plane), device=device)
    if weights is not None and model is not None and model != meta["network"]:
        mismatch = f"does not match the network {meta['network']!r} of {weights}"
        raise ConfigurationError(f"model={model!r} {mismatch}", cli=f"--model {model} {mismatch}")
    return net, meta


def intensity_for(meta: dict[str, Any], modality: str) -> dict[str, Any] | None:
    """The checkpoint's normalisation; for a learned network without one, the modality's default; for an
    interpolator ``None``.

    Raises:
        ConfigurationError: a learned network without a recorded normalisation on an input of unknown modality.
    """
    if meta.get("intensity"):
        return meta["intensity"]
    if meta.get("path") is None:  # an interpolator: no normalisation needed
        return None
    if modality in ("CT", "MR"):
        logger.warning("the checkpoint records no intensity normalisation; using the %s default", modality)
        return IntensityNormalization.for_modality(modality).to_dict()
    raise ConfigurationError(
        f"the checkpoint {meta['path']} records no intensity normalisation and the input's modality is unknown"
    )


def self_ensemble_for(meta: dict[str, Any], requested: int | None) -> int:
    """The self-ensemble size to run: the user's ``requested`` one, else the model's recipe (``meta`` as
    :func:`rmisr_monai.weights.load_model` returns it: the registry entry's ``"self_ensemble"``, else 1)."""
    return int(meta.get("self_ensemble", 1)) if requested is None else int(requested)
