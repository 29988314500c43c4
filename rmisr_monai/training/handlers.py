"""Ignite/MONAI handlers of the bundles' training: the best model, saved in the package's checkpoint format.

MONAI's ``CheckpointSaver(save_key_metric=True)`` writes a bare state dict; the bundles keep their weights in the
format of ``rmisr_monai/weights`` (state dict + network name and arguments + intensity normalisation, see
:mod:`rmisr_monai.weights.bundle`), so that the best model of a run can replace a bundle's ``models/model.pt`` or be
given to ``rmisr upscale --weights`` as it is.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch import nn

from rmisr_monai.training.distributed import is_main_process
from rmisr_monai.weights.loader import save_checkpoint

__all__ = ["BestModelSaver"]

logger = logging.getLogger(__name__)


class BestModelSaver:
    """Save the network whenever the evaluator's ``metric_name`` beats its best value so far (rank 0 only).

    Args:
        path: the checkpoint to write (replaced atomically at each improvement).
        network: the trained network (a ``DistributedDataParallel`` wrapper is unwrapped by the saver).
        network_name: its :func:`~rmisr_monai.networks.get_network` name.
        network_kwargs: the constructor arguments that rebuild it.
        intensity: the intensity normalisation recipe of the training data.
        metric_name: the evaluator metric to maximise (e.g. ``"val_psnr"``).
        info: extra ``info`` entries of the checkpoint (data, command...); the epoch and all validation metrics of
            the saved model are added.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        network: nn.Module,
        network_name: str,
        network_kwargs: dict[str, Any],
        intensity: dict[str, Any] | None,
        metric_name: str = "val_psnr",
        info: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.network = network
        self.network_name = network_name
        self.network_kwargs = dict(network_kwargs)
        self.intensity = intensity
        self.metric_name = metric_name
        self.info = dict(info or {})
        self.best = -math.inf

    def attach(self, engine: Engine) -> None:
        """Run after every evaluation of ``engine`` (the validation evaluator)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float, torch.Tensor))}
        value = metrics[self.metric_name]
        if not value > self.best:
            return
        self.best = value
        if not is_main_process():
            return
        # MONAI's ValidationHandler runs the evaluator with the trainer's epoch: state.epoch is the training epoch
        info = {**self.info, "epoch": int(engine.state.epoch), "validation": metrics, "trained": True}
        save_checkpoint(self.path, self.network, self.network_name, self.network_kwargs, self.intensity, info)
        logger.info("best %s %.4f: wrote %s", self.metric_name, value, self.path)
