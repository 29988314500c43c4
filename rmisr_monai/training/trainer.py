"""The one training entry point: a MONAI :class:`~monai.engines.SupervisedTrainer` for SR networks.

Bundles (``train.json``) and the ``python -m rmisr_monai.training`` command both build their trainer here, so the
loss, the optimiser schedule of the RMISR paper and the resumable checkpoints are defined once.

RMISR §5.1: Adam (beta1 0.9, beta2 0.999), initial learning rate 2e-4, halved at fixed iteration intervals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import default_prepare_batch
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler, StatsHandler, from_engine
from monai.inferers import SimpleInferer
from torch import nn

from rmisr_monai.core.runtime import cpu_has_fast_bf16
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.training.distributed import is_main_process

__all__ = ["ADAM_BETAS", "INITIAL_LR", "ITERATIONS_PER_EPOCH", "build_trainer", "every_iterations", "sr_loss"]

ADAM_BETAS = (0.9, 0.999)  # RMISR §5.1
INITIAL_LR = 2e-4  # RMISR §5.1
# iterations are grouped in "epochs" of this length so that a resumed run can be extended (more epochs)
ITERATIONS_PER_EPOCH = 100

logger = logging.getLogger(__name__)


def sr_loss(network_name: str, **loss_kwargs: Any) -> nn.Module:
    """The training loss of a network: RMISR-VP's two-branch loss, the dense network's dual-task loss, else L1.

    RMISR §4.4 trains the SR branch with L1 (eq. 19); RMISR-VP adds ``alpha L1 + beta CX`` on the Laplacian branch;
    Wang et al. 2022 supervise every upsampling stage of the dense network (dual-task loss).

    Args:
        network_name: a :func:`~rmisr_monai.networks.get_network` name.
        loss_kwargs: JSON-serialisable arguments of the loss: :class:`~rmisr_monai.losses.RMISRVPLoss`'s, with
            ``"contextual"`` a dict of :class:`~rmisr_monai.losses.contextual.ContextualLoss` arguments (e.g.
            ``{"contextual": {"max_positions": 1024}}``), or :class:`~rmisr_monai.losses.DualTaskLoss`'s.

    Raises:
        ConfigurationError: arguments for the plain L1 loss, which takes none.
    """
    if network_name == "rmisr_vp":
        from rmisr_monai.losses import RMISRVPLoss
        from rmisr_monai.losses.contextual import ContextualLoss

        kwargs = dict(loss_kwargs)
        contextual = kwargs.pop("contextual", None)
        return RMISRVPLoss(**kwargs, contextual=None if contextual is None else ContextualLoss(**contextual))
    if network_name == "dense_sr":
        from rmisr_monai.losses import DualTaskLoss

        return DualTaskLoss(**loss_kwargs)
    if loss_kwargs:
        raise ConfigurationError(f"{network_name} trains with a plain L1 loss, which takes no {sorted(loss_kwargs)}")
    return nn.L1Loss()


def build_trainer(
    network: nn.Module,
    train_loader: Iterable,
    loss_function: nn.Module,
    *,
    iterations: int,
    checkpoint_dir: str | Path,
    device: str | torch.device = "cpu",
    learning_rate: float = INITIAL_LR,
    halve_every: int | None = None,
    checkpoint_every: int = 500,
    resume_from: str | Path | None = None,
    amp: bool = False,
    epoch_length: int = ITERATIONS_PER_EPOCH,
    prepare_batch: Callable = default_prepare_batch,
    train_handlers: Sequence = (),
    log_every: int = 50,
) -> SupervisedTrainer:
    """A SupervisedTrainer that runs exactly ``iterations`` steps, saving resumable checkpoints.

    A run resumed from a checkpoint with a larger ``iterations`` continues where the checkpoint stopped and ends at
    ``iterations`` in all (``trainer.state.iteration``).

    Args:
        network: the SR network (already on ``device``; its 4D weights are made channels-last); the batches are
            dicts with ``image`` (LR) and ``label`` (HR).
        train_loader: an iterable of batches, long enough for ``iterations`` steps (an infinite sampler is fine).
        loss_function: ``loss(pred, hr)``; ``pred`` is whatever the network returns in training mode.
        iterations: number of optimiser steps (in all, when resuming); the run stops after exactly this many.
        checkpoint_dir: where ``checkpoint_*.pt`` files (network, optimiser, scheduler and trainer state) go
            (written by rank 0 alone under ``torch.distributed``).
        device: training device.
        learning_rate: initial Adam learning rate.
        halve_every: halve the learning rate every this many iterations (``None``: ``ceil(iterations / 4)``, so
            that it is halved three times during the run, and a fourth time as it ends).
        checkpoint_every: save a resumable checkpoint every this many iterations (and at the end).
        resume_from: a checkpoint written by a previous run to continue from.
        amp: mixed precision: on CUDA MONAI's float16 autocast with gradient scaling; on a CPU with native bf16
            (AMX or AVX512-BF16, :func:`~rmisr_monai.core.runtime.cpu_has_fast_bf16`) the forward pass under
            bfloat16 autocast (:class:`CpuBf16Inferer`; 2.1-2.4x faster steps, benchmarks/RESULTS.md §13); fp32
            elsewhere (bf16 is emulated there, slower than fp32).
        epoch_length: iterations per epoch (the last one is cut short when ``iterations`` is not a multiple).
            Keep it the same when resuming: the checkpoint counts epochs.
        prepare_batch: MONAI ``prepare_batch``; :class:`~rmisr_monai.training.data.PrepareScaledBatch` passes each
            batch's scale to an arbitrary-scale network.
        train_handlers: more MONAI/Ignite handlers of the trainer (the bundles' validation, TensorBoard and log file).
        log_every: log the loss every this many iterations.
    """
    if min(iterations, log_every, checkpoint_every, epoch_length) < 1:
        raise ConfigurationError(
            f"iterations, log_every, checkpoint_every and epoch_length must be >= 1, got {iterations}, {log_every}, "
            f"{checkpoint_every}, {epoch_length}"
        )
    # NHWC weights make every convolution run channels-last: 2-3x faster training steps on CPU (benchmarks/RESULTS.md)
    network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate, betas=ADAM_BETAS)
    step = halve_every or math.ceil(iterations / 4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=0.5)
    state = {"network": network, "optimizer": optimizer, "scheduler": scheduler}
    handlers = [
        LrScheduleHandler(scheduler, print_lr=False, epoch_level=False),
        # name=None: the trainer's own logger, which propagates like MONAI's "Epoch[n] Complete" lines; a named
        # logger gets MONAI's stdout handler only if nothing created that name before (a --transfer log line did)
        StatsHandler(
            name=None, tag_name="loss", iteration_log=every_iterations(log_every),
            output_transform=from_engine(["loss"], first=True),
        ),
        *train_handlers,
    ]
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=math.ceil(iterations / epoch_length),
        epoch_length=epoch_length,
        train_data_loader=train_loader,
        network=network,
        optimizer=optimizer,
        loss_function=loss_function,
        amp=amp and torch.device(device).type == "cuda",
        inferer=CpuBf16Inferer() if amp and torch.device(device).type == "cpu" and cpu_has_fast_bf16() else None,
        train_handlers=handlers,
        prepare_batch=prepare_batch,
    )
    if iterations % epoch_length:
        # the epochs cover ``iterations`` rounded up: end the last one early, at exactly ``iterations`` (it still
        # completes, so the epoch handlers, e.g. the bundles' validation, and the final checkpoint run)
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=iterations), Engine.terminate_epoch)
    logger.info(
        "training for %d iterations in all (epochs of %d, the last one cut short if needed); learning rate %g, "
        "halved every %d iterations; loss logged every %d", iterations, epoch_length, learning_rate, step, log_every,
    )
    state["trainer"] = trainer
    if is_main_process():  # under DDP the ranks hold the same state: one writer, no race on the same file names
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        CheckpointSaver(
            save_dir=str(checkpoint_dir), save_dict=state, save_final=True, epoch_level=False,
            save_interval=checkpoint_every, n_saved=2,
        ).attach(trainer)
    if resume_from is not None:
        CheckpointLoader(load_path=str(resume_from), load_dict=state, map_location={"cuda:0": str(device)}).attach(
            trainer
        )
    return trainer


class CpuBf16Inferer(SimpleInferer):
    """The training forward pass under CPU bfloat16 autocast, its outputs returned as float32.

    oneDNN runs the convolutions as bf16 GEMMs (AMX / AVX512-BF16: about 6x the SGEMM rate); the parameters, the
    optimiser state, the loss and the weight updates stay float32 (autocast's gradients are float32 for float32
    parameters), so no loss scaling is needed: bf16 has float32's exponent range. The outputs are cast up so that a
    loss with its own network (the contextual loss's feature extractor) runs on float32 as without autocast.
    """

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = network(inputs, *args, **kwargs)
        if isinstance(outputs, torch.Tensor):
            return outputs.float()
        return type(outputs)(o.float() for o in outputs)


def every_iterations(interval: int) -> Callable[[Engine, int], bool]:
    """Ignite event filter true on every ``interval``-th iteration (MONAI ``StatsHandler(iteration_log=...)``)."""

    def is_due(_engine: Engine, iteration: int) -> bool:
        return iteration % interval == 0

    return is_due
