"""Distributed data-parallel training of the bundles (``multi_gpu_train.json`` under ``torchrun``).

``torchrun`` starts one process per GPU (or per CPU worker) and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``.
:func:`init_distributed` joins the process group: NCCL when CUDA is available, gloo otherwise, so that two CPU
processes on one machine run the same configuration (that is how CI tests it). :func:`distributed_network` wraps
the network in ``DistributedDataParallel`` after making its weights channels-last (the trainer's memory format,
:mod:`rmisr_monai.training.trainer`; DDP must see the final parameter layout when it builds its gradient buckets).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["distributed_network", "init_distributed", "is_main_process"]


def init_distributed() -> torch.device:
    """Join the ``torchrun`` process group (NCCL with CUDA, else gloo) once; returns this process's device."""
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if not cuda:
        return torch.device("cpu")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    torch.cuda.set_device(device)
    return device


def distributed_network(network: nn.Module, device: str | torch.device) -> DistributedDataParallel:
    """``network`` on ``device``, channels-last, wrapped in ``DistributedDataParallel``."""
    device = torch.device(device)
    network = network.to(device, memory_format=torch.channels_last)
    return DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)


def is_main_process() -> bool:
    """Whether this process writes shared outputs (checkpoints, reports): rank 0, or no process group at all."""
    return not dist.is_initialized() or dist.get_rank() == 0
