"""Weights-only checkpoint loading and saving, and the registry of shipped default models.

Checkpoint format (``CONTRIBUTING.md``): a dict saved with :func:`torch.save` and read with
``torch.load(..., weights_only=True)``::

    {"format": "rmisr-monai/1", "network": name, "network_kwargs": {...}, "state_dict": {...},
     "intensity": {...normalisation used in training...}, "info": {...}}

``weights/registry.json`` lists the shipped models, each
``{"name", "file", "network", "scale", "modality", "sha256", "description"}`` (``file`` relative to this folder),
plus ``"arbitrary_scale": true`` for a Meta-SR network that serves every scale, and ``"self_ensemble": n`` (2, 4
or 8) for a model whose measured figures are those of its geometric self-ensemble
(:mod:`rmisr_monai.inference.ensemble`): the run options use it unless the user chooses (``--self-ensemble``).
``"default": true`` marks the one entry per modality and scale (or per modality, for arbitrary-scale entries) that
:func:`default_model` picks; ``"status"`` is ``"current"`` (shipped) or ``"superseded"`` (no file in the package
any more: the entry stays so that the name is answered with its ``"replaced_by"`` successor).
The sha256 of a shipped file is verified before it is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rmisr_monai.errors import ConfigurationError, WeightsError

__all__ = [
    "CHECKPOINT_FORMAT",
    "WEIGHTS_DIR",
    "REGISTRY_PATH",
    "INTERPOLATORS",
    "load_model",
    "save_checkpoint",
    "read_registry",
    "default_model",
    "is_shipped",
    "sha256_of",
]

CHECKPOINT_FORMAT = "rmisr-monai/1"
WEIGHTS_DIR = Path(__file__).resolve().parent
REGISTRY_PATH = WEIGHTS_DIR / "registry.json"
# networks without parameters: usable by name, no weights file
INTERPOLATORS = ("bicubic", "bilinear", "nearest")
_REQUIRED_KEYS = ("network", "network_kwargs", "state_dict")

logger = logging.getLogger(__name__)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_registry(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The entries of the shipped-weights registry (default :data:`REGISTRY_PATH`; empty when the file is absent)."""
    path = Path(REGISTRY_PATH if path is None else path)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: unreadable weights registry ({e})") from e
    models = data.get("models", []) if isinstance(data, dict) else data
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise WeightsError(f"{path}: the registry must hold a list of model entries under 'models'")
    return models


def registry_format(path: str | os.PathLike | None = None) -> str:
    """The registry's ``"format"`` (its version, e.g. ``"rmisr-monai/registry/2"``), recorded with every output of
    a shipped model; ``""`` when the file has none."""
    path = Path(REGISTRY_PATH if path is None else path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("format", "")) if isinstance(data, dict) else ""


def _registry_entry(name: str, registry: str | os.PathLike | None = None) -> dict[str, Any] | None:
    for entry in read_registry(registry):
        if entry.get("name") == name:
            return entry
    return None


def default_model(
    scale: float,
    modality: str | None = None,
    registry: str | os.PathLike | None = None,
    network: str | None = None,
    arbitrary_scale: bool = False,
) -> dict:
    """The registry entry of the shipped default model for ``scale`` and ``modality`` (and ``network``, if given).

    Only entries with ``"status": "current"`` (the default when absent) are shipped. Without ``network`` only the
    entries marked ``"default": true`` (the default when absent) are candidates; with ``network`` every current entry
    of that network is, the defaults first. A sub-pixel entry of exactly ``scale`` wins over an arbitrary-scale one
    (``"arbitrary_scale": true``, a Meta-SR network that fits every scale); ``arbitrary_scale=True`` (through-plane
    upscaling) accepts only arbitrary-scale entries. Remaining ties go by registry order.

    ``modality`` ``"CT"``/``"MR"`` must match the entry; ``None`` or ``"OT"`` (unknown, e.g. NIfTI) accepts any entry
    of that scale, preferring MR: an MR model normalises each volume by its own percentiles and so adapts to any
    intensity range, where a CT model's fixed HU window suits only Hounsfield units (CT files are recognised by
    their air, :func:`rmisr_monai.io.read.guess_modality`). For the same reason a CT input that no CT entry serves
    gets the MR entry, with a warning; an MR input never gets a CT entry.

    Raises:
        WeightsError: no shipped model fits; the message names the available ones and the way out (the ``"bicubic"``
            model or a checkpoint; ``--model bicubic`` or ``--weights PATH`` in the CLI's words).
    """
    entries = [e for e in read_registry(registry) if is_shipped(e)]
    fits = [
        e
        for e in entries
        if (e.get("arbitrary_scale") or not arbitrary_scale and _same_scale(e.get("scale"), scale))
        and (e.get("default", True) if network is None else e.get("network") == network)
    ]
    fits.sort(key=lambda e: (bool(e.get("arbitrary_scale")), not e.get("default", True)))
    if modality in ("CT", "MR"):
        same = [e for e in fits if _entry_modality(e) == modality]
        adapting = [e for e in fits if _entry_modality(e) == "MR"]
        if not same and modality == "CT" and adapting:
            logger.warning(
                "no shipped CT model for scale %g%s; using the MR model %s, whose per-volume percentile "
                "normalisation adapts to Hounsfield units", scale, " (arbitrary scale)" if arbitrary_scale else "",
                adapting[0].get("name"),
            )
        fits = same or (adapting if modality == "CT" else [])
    else:
        fits.sort(key=lambda e: _entry_modality(e) != "MR")
    if not fits:
        have = ", ".join(f"{e.get('name')} (x{e.get('scale')} {e.get('modality')})" for e in entries) or "none"
        what = (
            f"no shipped {'arbitrary-scale ' if arbitrary_scale else ''}{network + ' ' if network else ''}"
            f"weights for scale {scale:g}{'' if modality in (None, 'OT') else ' and modality ' + modality}"
            f" (shipped: {have})"
        )
        raise WeightsError(
            f"{what}; use load_model('bicubic') (no weights needed) or load_model(PATH) of a checkpoint",
            cli=f"{what}; use --model bicubic (no weights needed) or --weights PATH to a checkpoint",
        )
    return fits[0]


def is_shipped(entry: dict) -> bool:
    """Whether a registry entry's weights are in the package (``"status": "current"``, the default when absent);
    ``"superseded"`` entries stay listed so that their names get a clear answer (:func:`load_model`)."""
    return entry.get("status", "current") == "current"


def _entry_modality(entry: dict) -> str:
    """A registry entry's modality, upper case (``""`` when it names none)."""
    return str(entry.get("modality", "")).upper()


def _same_scale(a: Any, b: float) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return False


def _where_it_belongs() -> str:
    return f"shipped weights belong in {WEIGHTS_DIR} and are listed in {REGISTRY_PATH.name}"


def _valid_names() -> str:
    """The names :func:`load_model` takes besides a checkpoint path."""
    shipped = ", ".join(str(e.get("name")) for e in read_registry() if is_shipped(e)) or "none"
    return f"shipped models: {shipped}; interpolators (no weights): {', '.join(INTERPOLATORS)}"


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Build a network in eval mode from a checkpoint file, a registry name or an interpolator name.

    Args:
        path_or_name: a checkpoint path (format above); the ``name`` of a registry entry (its file's sha256 is checked
            first); or ``"bicubic"``/``"bilinear"``/``"nearest"`` (no weights).
        device: where the network is placed.

    Returns:
        ``(network, metadata)``: metadata is the checkpoint without ``state_dict`` plus ``"path"`` (or ``None``) and
        ``"self_ensemble"`` (the registry entry's, else 1).

    Raises:
        WeightsError: file missing, corrupt, of another format, checksum mismatch, or keys/shapes that do not fit; a
            name that is neither a file nor a model (the message lists the valid names).
    """
    from rmisr_monai.networks import NETWORK_NAMES, get_network

    name = str(path_or_name)
    if name in INTERPOLATORS and not Path(name).exists():
        net = get_network(name)
        meta = {"format": CHECKPOINT_FORMAT, "network": name, "network_kwargs": {}, "intensity": None, "info": {}}
        return net.to(device).eval(), {**meta, "path": None, "self_ensemble": 1}
    entry = _registry_entry(name) if not Path(name).exists() else None
    if entry is not None and not is_shipped(entry):
        raise WeightsError(
            f"model {name!r} is {entry.get('status')} and no longer shipped; its successor is "
            f"{entry.get('replaced_by')!r} ({_valid_names()})"
        )
    if entry is not None:
        path = WEIGHTS_DIR / entry["file"]
        if not path.is_file():
            raise WeightsError(f"{path}: weights file of model {name!r} is missing; {_where_it_belongs()}")
        expected = str(entry.get("sha256", "")).lower()
        if expected and sha256_of(path) != expected:
            raise WeightsError(f"{path}: sha256 does not match the registry entry {name!r}; the file is corrupt")
    else:
        path = Path(name)
        if not path.exists():
            if name in NETWORK_NAMES:
                raise WeightsError(
                    f"network {name!r} needs trained weights: load_model(PATH) of a checkpoint, or "
                    f"load_model('bicubic') (no weights); {_where_it_belongs()}",
                    cli=f"network {name!r} needs trained weights: pass a checkpoint with --weights PATH "
                    f"(or use --model bicubic); {_where_it_belongs()}",
                )
            if path.suffix or len(path.parts) > 1:  # a file was meant
                raise WeightsError(f"{path}: weights file not found; {_where_it_belongs()}")
            raise WeightsError(f"{name!r}: neither a checkpoint file nor a model name; {_valid_names()}")
        if not path.is_file():
            raise WeightsError(f"{path}: not a file (expected a .pt checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (pickle, zip, runtime) for a damaged file
        raise WeightsError(f"{path}: not a readable weights-only checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _REQUIRED_KEYS):
        raise WeightsError(f"{path}: not an rmisr-monai checkpoint (needs keys {', '.join(_REQUIRED_KEYS)})")
    if ckpt.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: checkpoint format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    try:
        net = get_network(ckpt["network"], **dict(ckpt["network_kwargs"]))
    except (ConfigurationError, TypeError) as e:
        raise WeightsError(f"{path}: cannot build network {ckpt['network']!r} from the checkpoint ({e})") from e
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:3]
        raise WeightsError(f"{path}: weights do not fit network {ckpt['network']!r}: {' '.join(first)}") from e
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta.setdefault("format", CHECKPOINT_FORMAT)
    meta.setdefault("intensity", None)
    meta.setdefault("info", {})
    meta["path"] = str(path)
    meta["self_ensemble"] = int(entry.get("self_ensemble", 1)) if entry is not None else 1
    if entry is not None:
        meta["registry_format"] = registry_format().removeprefix("rmisr-monai/")  # "registry/2"
    return net.to(device).eval(), meta


def save_checkpoint(
    path: str | os.PathLike,
    net: nn.Module,
    name: str,
    kwargs: dict,
    intensity: dict | None = None,
    info: dict | None = None,
) -> Path:
    """Write ``net`` as a checkpoint of the format above, atomically (:func:`rmisr_monai.io.atomic.atomic_output`).

    Args:
        path: the ``.pt`` file to write (replaced if it exists).
        net: the network; a ``module.`` prefix (DataParallel) is stripped from its keys.
        name: its :func:`~rmisr_monai.networks.get_network` name.
        kwargs: the constructor keyword arguments (JSON-serialisable) that rebuild it.
        intensity: the ``to_dict()`` of the intensity normalisation used in training.
        info: training data, command, metrics...

    Returns:
        The path written.
    """
    path = Path(path)
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise ConfigurationError(f"network_kwargs must be JSON-serialisable: {e}") from e
    state = {k.removeprefix("module."): v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "network": name,
        "network_kwargs": dict(kwargs),
        "state_dict": state,
        "intensity": intensity,
        "info": dict(info or {}),
    }
    from rmisr_monai.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as temp:
        torch.save(ckpt, temp)
    return path
