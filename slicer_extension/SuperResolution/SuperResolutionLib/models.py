"""The model menu: what rmisr_monai ships (read from its registry at run time), bicubic, and a user's checkpoint
(standard library only).

Sub-pixel models are trained for one integer scale each, so the shipped entries of one network and modality become
one menu item offering their scales (x2, x4, ...). An entry with ``"arbitrary_scale": true`` (a Meta-SR network)
and bicubic take any scale in a range, and can also upscale through-plane. A checkpoint file is checked by the
worker when it loads it (the engine refuses a scale the network cannot do, in words).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ModelChoice",
    "model_choices",
    "worker_model_arguments",
    "BICUBIC",
    "CHECKPOINT",
    "SCALE_RANGE",
    "SAMPLE_FILE",
    "SAMPLE_SHA256",
    "sample_ct_path",
    "engine_dir",
    "registry_entries",
]

BICUBIC = "bicubic"
CHECKPOINT = "checkpoint"
# scales offered for bicubic, arbitrary-scale models and checkpoints (an entry may narrow it with "scale_range")
SCALE_RANGE = (1.1, 8.0)
NETWORK_LABELS = {"rmisr_bl": "RMISR-BL", "rmisr_vp": "RMISR-VP", "dense_sr": "Dense SR", "imdn": "IMDN"}
SAMPLE_FILE = "ct_demo_abdomen_int16.nii.gz"
# rmisr_monai/sample/README.md; checked by SampleData when it "downloads" the local file
SAMPLE_SHA256 = "53264ac77666b375a243b0e9f5b21724d31a41610bf39c66b72af0386a15438d"


@dataclass(frozen=True)
class ModelChoice:
    """One item of the model menu.

    Attributes:
        key: identifier kept in the parameter node.
        label: menu text.
        names: sub-pixel models: registry model name for each offered scale (``{2.0: "rmisr_bl_ct_x2", ...}``).
        scale_range: ``(low, high)`` for models that take any scale, else ``None``.
        through_plane: whether the model can upscale along one axis only.
        description: tooltip.
    """

    key: str
    label: str
    names: Mapping[float, str] = field(default_factory=dict)
    scale_range: tuple[float, float] | None = None
    through_plane: bool = False
    description: str = ""

    @property
    def scales(self) -> tuple[float, ...]:
        """The discrete scales of a sub-pixel model (empty for a scale range)."""
        return tuple(sorted(self.names))

    def accepts(self, scale: float) -> bool:
        if self.scale_range is not None:
            return self.scale_range[0] <= scale <= self.scale_range[1]
        return any(abs(scale - s) < 1e-9 for s in self.names)


def _label(entry: Mapping[str, Any]) -> str:
    network = str(entry.get("network", "?"))
    return f"{NETWORK_LABELS.get(network, network)} {entry.get('modality', '')}".strip()


def model_choices(entries: Iterable[Mapping[str, Any]]) -> list[ModelChoice]:
    """The menu for the registry ``entries`` (``rmisr_monai.weights.read_registry()``): shipped sub-pixel models
    grouped by network and modality (the first entry of a scale, the default), the other entries of a scale and the
    arbitrary-scale models each on their own, then bicubic and "checkpoint file"."""
    grouped: dict[tuple[str, str], dict[float, str]] = {}
    descriptions: dict[tuple[str, str], str] = {}
    choices: list[ModelChoice] = []
    for entry in entries:
        name = str(entry["name"])
        if entry.get("arbitrary_scale"):
            low, high = entry.get("scale_range", SCALE_RANGE)
            choices.append(
                ModelChoice(
                    key=name,
                    label=f"{_label(entry)} (any scale)",
                    names={},
                    scale_range=(float(low), float(high)),
                    through_plane=True,
                    description=str(entry.get("description", "")),
                )
            )
            continue
        group = (str(entry.get("network", "")), str(entry.get("modality", "")))
        scale = float(entry["scale"])
        if scale in grouped.get(group, {}):
            # a later entry for a scale the group has: the first is the default (as for `rmisr upscale`); this one
            # stays reachable as an item of its own
            choices.append(
                ModelChoice(
                    key=name,
                    label=f"{_label(entry)} (x{scale:g}, {name})",
                    names={scale: name},
                    description=str(entry.get("description", "")),
                )
            )
            continue
        grouped.setdefault(group, {})[scale] = name
        descriptions.setdefault(group, str(entry.get("description", "")))
    subpixel = [
        ModelChoice(
            key=f"{network}:{modality}",
            label=f"{_label({'network': network, 'modality': modality})} "
            f"({', '.join(f'x{s:g}' for s in sorted(names))})",
            names=dict(sorted(names.items())),
            description=descriptions[(network, modality)],
        )
        for (network, modality), names in grouped.items()
    ]
    extras = [
        ModelChoice(
            key=BICUBIC,
            label="Bicubic interpolation (any scale, no weights)",
            scale_range=SCALE_RANGE,
            through_plane=True,
            description="MATLAB-compatible bicubic interpolation: the baseline every SR model is compared with",
        ),
        ModelChoice(
            key=CHECKPOINT,
            label="Checkpoint file...",
            scale_range=SCALE_RANGE,
            through_plane=True,
            description="an rmisr-monai checkpoint (.pt) trained with python -m rmisr_monai.training",
        ),
    ]
    return subpixel + choices + extras


def worker_model_arguments(choice: ModelChoice, scale: float, checkpoint: str = "") -> list[str]:
    """The worker's ``--model NAME`` or ``--weights PATH`` for a choice and scale.

    Raises:
        ValueError: the scale is not offered by the choice, or no checkpoint file was given.
    """
    if not choice.accepts(scale):
        offered = (
            f"{choice.scale_range[0]:g}..{choice.scale_range[1]:g}"
            if choice.scale_range
            else ", ".join(f"x{s:g}" for s in choice.scales)
        )
        raise ValueError(f"{choice.label} cannot upscale x{scale:g}; it offers {offered}")
    if choice.key == CHECKPOINT:
        if not checkpoint:
            raise ValueError("choose the checkpoint file (.pt) to use")
        return ["--weights", str(checkpoint)]
    if choice.scale_range is not None:
        return ["--model", choice.key]
    return ["--model", next(name for s, name in choice.names.items() if abs(s - scale) < 1e-9)]


# the engine inside the module folder (slicer_extension/package.py, the CMake install rule)
PACKAGED_ENGINE = Path(__file__).resolve().parents[1] / "rmisr_monai"


def engine_dir() -> Path | None:
    """The ``rmisr_monai`` folder the module uses: the one packaged in the module folder, else an importable one
    (a source checkout's, for development); ``None`` when there is none. Nothing is imported (no torch)."""
    if (PACKAGED_ENGINE / "__init__.py").is_file():
        return PACKAGED_ENGINE
    spec = importlib.util.find_spec("rmisr_monai")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return None


def registry_entries() -> list[dict[str, Any]]:
    """The shipped entries (``"status": "current"``, file present) of the engine's ``weights/registry.json``, read as
    JSON (the weights loader imports torch; the model menu must not); empty without an engine or registry."""
    engine = engine_dir()
    path = None if engine is None else engine / "weights" / "registry.json"
    if path is None or not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    models = data.get("models", []) if isinstance(data, dict) else data
    return [
        entry
        for entry in models
        if entry.get("status", "current") == "current" and "file" in entry and (path.parent / entry["file"]).is_file()
    ]


def sample_ct_path() -> Path | None:
    """The shipped demo CT (``rmisr_monai/sample``) of :func:`engine_dir`; ``None`` when absent."""
    engine = engine_dir()
    path = None if engine is None else engine / "sample" / SAMPLE_FILE
    return path if path is not None and path.is_file() else None
