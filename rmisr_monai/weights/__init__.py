"""Shipped weights (``registry.json`` + ``*.pt``) and the weights-only loader."""

from rmisr_monai.weights.loader import (
    CHECKPOINT_FORMAT,
    REGISTRY_PATH,
    WEIGHTS_DIR,
    default_model,
    is_shipped,
    load_model,
    read_registry,
    save_checkpoint,
    sha256_of,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "REGISTRY_PATH",
    "WEIGHTS_DIR",
    "default_model",
    "is_shipped",
    "load_model",
    "read_registry",
    "save_checkpoint",
    "sha256_of",
]
