"""One set of run options for every front end: :class:`RunOptions`.

The volume engine (:func:`rmisr_monai.inference.upscale_volume`) takes a :class:`RunOptions`; the CLI builds it from
its arguments (which are generated from the fields below, with their help: :meth:`RunOptions.add_arguments`), and
so do :class:`~rmisr_monai.inference.batch.BatchUpscaler`, the :class:`~rmisr_monai.transforms.SuperResolve`
transforms, the Slicer worker and the bundle configs (``"options": {"_target_": "rmisr_monai.inference.RunOptions",
...}``). A field that one front end does not pass cannot silently fall back to another default: there is only one
default, here. The options are JSON-serialisable: ``RunOptions(**options.to_dict()) == options``.

This module imports neither torch nor MONAI, so that ``rmisr --help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from rmisr_monai.errors import ConfigurationError

__all__ = [
    "RunOptions",
    "DEFAULT_TILE_OVERLAP",
    "PRECISIONS",
    "SELF_ENSEMBLE_SIZES",
    "DEVICES",
    "OUTPUT_DTYPES",
    "AXES",
]

# input pixels of context on each side of a tile's core; >= the receptive radius of SRCNN (6), FSRCNN (~4+), VDSR-20
# (~11 LR pixels at x2) and EDSR-baseline (34 3x3 convs: 34 is not covered; use tile_overlap=40 for it).
DEFAULT_TILE_OVERLAP = 32
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)
DEVICES = ("auto", "cpu", "cuda")
OUTPUT_DTYPES = ("int16", "uint16", "int32", "uint32", "int8", "uint8", "float32", "float64")
AXES = ("x", "y", "z", "0", "1", "2")
_MIB = 1 << 20


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _number_argument(text: str, zero_allowed: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and (value >= 0 if zero_allowed else value > 0)):
        raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if zero_allowed else '>'} 0, got {text}")
    return value


def _scale(text: str) -> float:
    return _number_argument(text, zero_allowed=False)


def _seconds(text: str) -> float:
    return _number_argument(text, zero_allowed=True)


def _mebibytes(text: str) -> int:
    """``--memory-limit MIB`` -> bytes."""
    return _positive_int(text) * _MIB


def _field(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line form: ``help``, and ``flag``, ``type``, ``choices``, ``metavar``,
    ``action`` for :meth:`RunOptions.add_arguments`."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to super-resolve: every option a user can choose, with its one default.

    Attributes:
        scale: factor of each upscaled axis (integer for sub-pixel networks, any > 1 for arbitrary-scale ones).
        axis: the slice axis in-plane, the thick axis through-plane: ``"x"|"y"|"z"`` (index axes i, j, k) or
            ``"0"|"1"|"2"``.
        through_plane: upscale only ``axis`` (thick slices) with an arbitrary-scale network.
        model: a shipped model name, an interpolator (``bicubic``, ``bilinear``, ``nearest``) or a network name
            (its shipped weights for the scale); ``None``: the shipped default for the scale and the modality.
        weights: a checkpoint file to use instead of the shipped models.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"auto"`` (float16 on CUDA, bfloat16 on CPUs with native bf16 where measured accurate, else
            fp32), ``"fp32"`` (the reference), ``"bf16"``, ``"fp16"``.
        batch: slices per network call; ``None``: from the memory budget.
        tile: window side in input pixels for large slices; ``None``: whole slices when they fit the budget.
        tile_overlap: context pixels around each window.
        self_ensemble: 1 (off), 2, 4 or 8 flipped/rotated copies averaged; ``None``: the model's recipe.
        memory_limit: peak resident bytes the automatic batch and tile aim at; ``None``: the engine's default.
        out_dtype: stored type of the result; ``None``: the input's.
        adapt: seconds of per-scan adaptation (fine-tuning a copy of the model on the scan itself) before
            upscaling; 0: off.
        seed: random seed of the adaptation.
        input_floor: no output voxel below the lowest value of its input slice and channel (CT padding, MR
            magnitude >= 0, constant in constant out); ``False`` writes the network's output as it is.
        allow_extrapolation: run a model outside the scales it was trained for (refused otherwise).
    """

    scale: float = _field(2.0, "upscaling factor, e.g. 2, 3, 4 (2.5 with --through-plane)", type=_scale,
                          metavar="S")
    axis: str = _field("z", "index axis (x=i=0, y=j=1, z=k=2 of the image array): the slice axis in-plane, the "
                       "thick axis with --through-plane (default: z)", choices=AXES)
    through_plane: bool = _field(False, "upscale only --axis (thick slices) with an arbitrary-scale network, "
                                 "instead of each slice in-plane", action="store_true")
    model: str | None = _field(None, "a shipped model name (rmisr_monai/weights/registry.json), 'bicubic', "
                               "'bilinear' or 'nearest' (no weights), or a network name (its shipped weights). "
                               "Default: the shipped model for the scale and modality", metavar="NAME")
    weights: str | None = _field(None, "a checkpoint (.pt, rmisr-monai format, read weights-only) to use instead "
                                 "of the shipped model", metavar="PATH")
    device: str = _field("auto", "where the network runs: auto = CUDA when available, else CPU (default: auto)",
                         choices=DEVICES)
    precision: str = _field("auto", "network arithmetic: fp32 = the reference; auto = float16 on CUDA, bfloat16 "
                            "on CPUs with native bf16 (AMX / AVX512-BF16) where it is measured accurate, else "
                            "fp32 (default: auto)", choices=PRECISIONS)
    batch: int | None = _field(None, "slices per network call (default: from the memory budget)",
                               type=_positive_int, metavar="N")
    tile: int | None = _field(None, "process large slices in N x N input-pixel windows (default: whole slices "
                              "when they fit the memory budget, else the largest tile that does); on CUDA "
                              "out-of-memory the tile is halved automatically, then the CPU is used",
                              type=_positive_int, metavar="N")
    tile_overlap: int = _field(DEFAULT_TILE_OVERLAP, f"input pixels of context around each window (default: "
                               f"{DEFAULT_TILE_OVERLAP})", type=_non_negative_int, metavar="N")
    self_ensemble: int | None = _field(None, "average the network over N flipped/rotated copies of each slice: 1 "
                                       "(off), 2, 4 or 8, N times the work (default: the model's recipe, 4 for "
                                       "the x3/x4 defaults, else 1)", type=int, choices=SELF_ENSEMBLE_SIZES,
                                       metavar="N")
    memory_limit: int | None = _field(None, "peak memory in MiB that the automatic batch and tile aim at "
                                      "(default: 1.5 x (input + output) + 1 GiB)", type=_mebibytes,
                                      metavar="MIB")
    out_dtype: str | None = _field(None, "voxel type of OUTPUT (default: the input's type; integers are rounded "
                                   "and clipped to the type)", flag="--dtype", choices=OUTPUT_DTYPES)
    adapt: float = _field(0.0, "fine-tune a copy of the model on the scan itself for SECONDS before upscaling "
                          "(per-scan adaptation; default: 0, off)", type=_seconds, metavar="SECONDS")
    seed: int = _field(0, "random seed of --adapt (default: 0)", type=_non_negative_int, metavar="N")
    input_floor: bool = _field(True, "do not write output values below the lowest value of the input slice: "
                               "overshoot below the CT padding or below 0 in MR magnitude is an artefact (default: "
                               "on)", flag="--no-input-floor", action="store_false")
    allow_extrapolation: bool = _field(False, "run a model at a scale outside the range it was trained for "
                                       "(refused otherwise: the result may show artefacts)", action="store_true")

    def __post_init__(self) -> None:
        scale = _number(self.scale, "scale")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"scale must be a finite number > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "axis", str(self.axis).strip().lower())
        if self.axis not in AXES + ("i", "j", "k"):
            raise ConfigurationError(f"axis must be x, y, z or 0, 1, 2, got {self.axis!r}")
        if not (self.device in DEVICES or str(self.device).startswith("cuda:")):
            raise ConfigurationError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("batch", "tile", "memory_limit"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigurationError(f"{name} must be an integer >= 1 or None, got {value!r}")
        if not _is_int(self.tile_overlap) or self.tile_overlap < 0:
            raise ConfigurationError(f"tile_overlap must be an integer >= 0, got {self.tile_overlap!r}")
        if self.self_ensemble is not None and self.self_ensemble not in SELF_ENSEMBLE_SIZES:
            raise ConfigurationError(
                f"self_ensemble must be one of {', '.join(map(str, SELF_ENSEMBLE_SIZES))} or None, got "
                f"{self.self_ensemble!r}"
            )
        if self.out_dtype is not None:
            # a numpy dtype (np.dtype("int16") or the type np.int16) becomes its name
            name = self.out_dtype.__name__ if isinstance(self.out_dtype, type) else str(self.out_dtype)
            if name not in OUTPUT_DTYPES:
                raise ConfigurationError(f"out_dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {self.out_dtype!r}")
            object.__setattr__(self, "out_dtype", name)
        adapt = _number(self.adapt, "adapt")
        if not (math.isfinite(adapt) and adapt >= 0):
            raise ConfigurationError(f"adapt must be a number of seconds >= 0, got {self.adapt!r}")
        object.__setattr__(self, "adapt", adapt)
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigurationError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("through_plane", "input_floor", "allow_extrapolation"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    # -- dictionaries (configs, JSON, checkpoints) -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field by name, JSON-serialisable."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunOptions:
        """The options of a dict such as :meth:`to_dict` gives (missing fields keep their default).

        Raises:
            ConfigurationError: an unknown key (named, with the valid ones).
        """
        names = cls.field_names()
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigurationError(f"unknown run options {unknown}; valid: {', '.join(names)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (unknown names refused as in :meth:`from_dict`)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    # -- the command line --------------------------------------------------------------------------------------
    @classmethod
    def flag(cls, name: str) -> str:
        """The command-line flag of field ``name`` (``--tile-overlap``, ``--dtype`` for ``out_dtype``)."""
        spec = {f.name: f for f in dataclasses.fields(cls)}[name]
        return spec.metadata.get("flag", "--" + name.replace("_", "-"))

    @classmethod
    def add_arguments(
        cls, parser: argparse.ArgumentParser, names: Iterable[str] | None = None, **changes: Mapping[str, Any]
    ) -> None:
        """Add the arguments of fields ``names`` (default: all) to ``parser``, each with its help and checks;
        ``changes[name]`` updates one argument's ``add_argument`` keywords (e.g. ``scale={"required": True}``)."""
        specs = {f.name: f for f in dataclasses.fields(cls)}
        for name in cls.field_names() if names is None else names:
            spec = specs[name]
            kwargs = {k: v for k, v in spec.metadata.items() if k not in ("flag",)}
            if kwargs.get("action") != "store_true":
                kwargs.setdefault("default", spec.default)
            parser.add_argument(cls.flag(name), dest=name, **{**kwargs, **changes.get(name, {})})

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, **changes: Any) -> RunOptions:
        """The options of parsed arguments: every field the parser has (others keep their default), then
        ``changes``."""
        given = {name: getattr(args, name) for name in cls.field_names() if hasattr(args, name)}
        return cls.from_dict({**given, **changes})


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
