"""Where the network runs: the device, and whether the CPU computes bfloat16 natively."""

from __future__ import annotations

import functools

import torch

from rmisr_monai.errors import ConfigurationError

__all__ = ["cpu_has_fast_bf16", "resolve_device", "device_name"]


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16 in ``/proc/cpuinfo``; ``False`` where it
    cannot be read). Elsewhere oneDNN emulates bf16 convolutions, far slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA -> ``ConfigurationError``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigurationError(f"unknown device {device!r}; use auto, cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            "device 'cuda' requested but CUDA is not available; use device 'cpu'",
            cli="--device cuda requested but CUDA is not available; use --device cpu",
        )
    return dev


def device_name(device: torch.device) -> str:
    """What ran, in words: the GPU's name (``"cuda:0 (NVIDIA H100 ...)"``) or ``"cpu"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
