"""rmisr-monai: medical-image super-resolution for MONAI.

What users import, from the top level::

    from rmisr_monai import get_network, load_model, read_volume, upscale_volume, write_volume, RunOptions

    volume = read_volume("ct.nii.gz")
    net, meta = load_model("rmisr_bl64_ct_x2")
    result = upscale_volume(volume, net, options=RunOptions(scale=2), intensity=meta["intensity"])
    write_volume(result, "ct_x2.nii.gz")

The names below are loaded on first use (:func:`__getattr__`, PEP 562), so that ``import rmisr_monai`` (and the
``rmisr`` command's ``--help``) does not import torch or MONAI.

Subpackages, one concept each (see README "Architecture"):
``ops`` pure tensor operators shared by networks and transforms, ``networks`` every ``nn.Module``,
``transforms`` MONAI transforms, ``losses``, ``metrics``, ``data`` paired-patch datasets, ``io`` medical files and
geometry, ``inference`` the volume engine and its safety guards, ``evaluation`` the quality check, ``training``,
``weights`` shipped weights, ``cli`` the ``rmisr`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
EXPORTS = {
    "get_network": "rmisr_monai.networks",
    "NETWORK_NAMES": "rmisr_monai.networks",
    "load_model": "rmisr_monai.weights",
    "default_model": "rmisr_monai.weights",
    "read_registry": "rmisr_monai.weights",
    "save_checkpoint": "rmisr_monai.weights",
    "read_volume": "rmisr_monai.io.read",
    "write_volume": "rmisr_monai.io.write",
    "Volume": "rmisr_monai.io.volume",
    "Geometry": "rmisr_monai.io.geometry",
    "RunOptions": "rmisr_monai.core.options",
    "upscale_volume": "rmisr_monai.inference.engine",
    "upscale_array": "rmisr_monai.inference.engine",
    "BatchUpscaler": "rmisr_monai.inference.batch",
    "check_run": "rmisr_monai.inference.guards",
    "clip_to_input_range": "rmisr_monai.inference.guards",
    "evaluate": "rmisr_monai.evaluation.quality",
    "evaluate_volume": "rmisr_monai.evaluation.quality",
    "write_report": "rmisr_monai.evaluation.report",
    "SuperResolve": "rmisr_monai.transforms",
    "SuperResolved": "rmisr_monai.transforms",
    "IntensityNormalization": "rmisr_monai.transforms.intensity",
    "RmisrError": "rmisr_monai.errors",
    "InputFileError": "rmisr_monai.errors",
    "OutputFileError": "rmisr_monai.errors",
    "WeightsError": "rmisr_monai.errors",
    "ConfigurationError": "rmisr_monai.errors",
}

__all__ = ["__version__", *EXPORTS]


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        value = getattr(importlib.import_module(EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
