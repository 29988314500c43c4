"""Loading the published weights of peer networks (IMDN, RLFN) into our modules: the file read weights-only, the
scale read off the sub-pixel upsampler, a strict load with the reason in one line, and the load-state-dict hook
that renames the official keys to ours."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from rmisr_monai.errors import WeightsError

__all__ = ["renamed_key", "read_official_state", "upsampler_scale", "load_strictly", "renaming_hook"]


def renamed_key(key: str, block: re.Pattern, renames: Sequence[tuple[str, str]]) -> str:
    """Our name for an official key: a ``module.`` prefix dropped; a key of block ``n`` (``block`` matches its
    prefix, numbered from 1) becomes ``blocks.{n - 1}.``; else each ``(pattern, ours)`` of ``renames`` applied in
    turn. Keys that are already ours come back unchanged."""
    key = key[len("module.") :] if key.startswith("module.") else key
    match = block.match(key)
    if match:
        return f"blocks.{int(match.group(1)) - 1}.{key[match.end():]}"
    for pattern, ours in renames:
        key = re.sub(pattern, ours, key)
    return key


def read_official_state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint, read with ``weights_only=True``.

    Raises:
        WeightsError: the file cannot be read as one.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise WeightsError(f"{path}: cannot read the {what} checkpoint ({error})") from error


def upsampler_scale(path: str | os.PathLike, weight: torch.Tensor, channels: int, scale: int | None) -> int:
    """The scale ``s`` of a sub-pixel upsampler whose convolution has ``channels * s * s`` outputs, checked against
    the ``scale`` asked for (``None``: any)."""
    file_scale = round((weight.shape[0] / channels) ** 0.5)
    if scale is not None and scale != file_scale:
        raise WeightsError(f"{path}: the checkpoint is for x{file_scale}, x{scale} was asked for")
    return file_scale


def load_strictly(net: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> nn.Module:
    """``net`` with ``state`` loaded ``strict=True``; a mismatch is one :class:`WeightsError` naming the file."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"{path}: does not fit {what} ({error})") from error
    return net


def renaming_hook(official_key: Callable[[str], str]) -> Callable[..., None]:
    """A load-state-dict pre-hook that renames the keys below ``prefix`` by ``official_key`` (official -> ours), in
    place, so that both the official files and our own checkpoints load."""

    def rename(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            ours = prefix + official_key(key[len(prefix) :])
            if ours != key:
                state_dict[ours] = state_dict.pop(key)

    return rename
