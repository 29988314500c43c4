"""What made an output: the provenance record every writer stores, and the research-use notice.

The caller (the CLI, the batch upscaler, the Slicer worker) builds a :class:`Provenance` -- or passes a plain
mapping with the same keys, or any dataclass / object with ``as_dict()`` -- and hands it to
:func:`rmisr_monai.io.write.write_volume` (``provenance=``). Where it goes:

* NIfTI: ``descrip`` (80 bytes) gets :meth:`Provenance.short`, e.g. ``"rmisr 0.1.0 rmisr_bl64_x2 1.2 sha256:1a2b3c4d x2
  RESEARCH USE"``; the input's own ``descrip`` is not kept there (there is no room for both) but moves to the
  sidecar as ``source.descrip``. Without provenance the input's ``descrip`` is kept as it was.
* Every single-file output (NIfTI, NRRD, MHA): a JSON sidecar beside it, ``OUT.json`` for ``OUT.nii.gz`` /
  ``OUT.nrrd`` / ``OUT.mha`` (dcm2niix's naming), holding :meth:`Provenance.as_dict` plus the notice and what is
  known of the source (format, NIfTI descrip).
* NRRD and MetaImage: the key ``rmisr_provenance`` (one line of JSON) in the header.
* DICOM: DerivationDescription, a ContributingEquipmentSequence item (Processing Equipment), SoftwareVersions
  (the source's values plus ours) and the notice in ImageComments (see :mod:`rmisr_monai.io.dicom`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmisr_monai.io.volume import FILE_FORMATS

__all__ = ["Provenance", "RESEARCH_NOTICE", "SHORT_NOTICE", "as_provenance", "PROVENANCE_KEY", "sidecar_path"]

RESEARCH_NOTICE = (
    "RESEARCH USE ONLY: super-resolved by software; it can invent or hide detail. Not for diagnosis."
)
SHORT_NOTICE = "RESEARCH USE"
PROVENANCE_KEY = "rmisr_provenance"  # NRRD / MetaImage header key
NIFTI_DESCRIP_BYTES = 80
SHA_PREFIX = 8  # characters of the weights' sha256 shown in short texts


def package_version() -> str:
    from rmisr_monai import __version__  # the package top level is light (no torch)

    return __version__


@dataclass(frozen=True)
class Provenance:
    """What produced an output.

    Attributes:
        model: model name as the user chose it or the registry resolved it (``"rmisr_bl64_x2"``, ``"bicubic"``).
        model_version: registry version of the weights (``""`` when none, e.g. bicubic).
        sha256: sha256 of the weights file (full or a prefix; ``""`` when none).
        scale: the factor(s): a number or a per-axis ``(i, j, k)`` sequence.
        options: the other run options that change voxels (axis, self-ensemble, tile, precision...), JSON-ready.
        package_version: ``rmisr_monai.__version__`` (filled in when empty).
        software: the producing software's name.
    """

    model: str
    model_version: str = ""
    sha256: str = ""
    scale: float | tuple[float, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    package_version: str = ""
    software: str = "rmisr_monai"

    def __post_init__(self) -> None:
        if not self.package_version:
            object.__setattr__(self, "package_version", package_version())
        if isinstance(self.scale, (list, tuple)):
            object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))

    def scale_text(self) -> str:
        """``"x2"``, or ``"x2x2x1"`` when the axes differ; ``""`` without a scale."""
        if self.scale is None:
            return ""
        factors = self.scale if isinstance(self.scale, tuple) else (float(self.scale),)
        if len(set(factors)) == 1:
            return f"x{factors[0]:g}"
        return "x" + "x".join(f"{f:g}" for f in factors)

    def short(self, limit: int = NIFTI_DESCRIP_BYTES) -> str:
        """At most ``limit`` ASCII characters: software version, model, version, sha256 prefix, scale, notice
        (the notice and the model are kept first when it must be cut)."""
        parts = [f"{self.software} {self.package_version}", self.model]
        if self.model_version:
            parts.append(self.model_version)
        if self.sha256:
            parts.append(f"sha256:{self.sha256[:SHA_PREFIX]}")
        if self.scale_text():
            parts.append(self.scale_text())
        text = " ".join(parts)
        notice = f" {SHORT_NOTICE}"
        text = text.encode("ascii", "replace").decode("ascii")
        return text[: max(0, limit - len(notice))] + notice

    def text(self) -> str:
        """One sentence for DICOM DerivationDescription and the console."""
        model = self.model + (f" {self.model_version}" if self.model_version else "")
        if self.sha256:
            model += f" (sha256 {self.sha256[:16]})"
        options = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()) if v is not None)
        scale = f" {self.scale_text()}" if self.scale_text() else ""
        return (
            f"Super-resolved{scale} by {self.software} {self.package_version} with model {model}"
            + (f"; options: {options}" if options else "")
            + f". {RESEARCH_NOTICE}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every attribute, and the notice."""
        record = {
            "software": self.software,
            "package_version": self.package_version,
            "model": self.model,
            "model_version": self.model_version,
            "sha256": self.sha256,
            "scale": list(self.scale) if isinstance(self.scale, tuple) else self.scale,
            "options": _jsonable(dict(self.options)),
            "notice": RESEARCH_NOTICE,
        }
        return record

    def header_value(self) -> str:
        """One line of JSON (NRRD / MetaImage header value)."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    """Values made JSON-serialisable (tuples to lists, paths and other objects to strings)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


_FIELDS = {f.name for f in dataclasses.fields(Provenance)}
_ALIASES = {"name": "model", "version": "model_version", "registry_version": "model_version", "sha": "sha256",
            "sha256_prefix": "sha256", "rmisr_version": "package_version", "scales": "scale"}  # fmt: skip


def as_provenance(value: Provenance | Mapping[str, Any] | Any | None) -> Provenance | None:
    """A :class:`Provenance` from what a caller passes: one already, a mapping (keys as the attributes, or the
    aliases ``name``, ``version``, ``sha``, ``sha256_prefix``...; unknown keys go into ``options``), a dataclass
    or an object with ``as_dict()``; None stays None.

    Raises:
        TypeError: anything else, or a mapping without a model name.
    """
    if value is None or isinstance(value, Provenance):
        return value
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"provenance must be a Provenance, a mapping or a dataclass, got {type(value).__name__}")
    known: dict[str, Any] = {}
    options = dict(value.get("options") or {})
    for key, item in value.items():
        name = _ALIASES.get(key, key)
        if name == "options" or name == "notice":
            continue
        if name in _FIELDS:
            known[name] = "" if item is None and name not in ("scale",) else item
        else:
            options[key] = item
    if not known.get("model"):
        raise TypeError("provenance needs a model name ('model')")
    known["options"] = options
    for key in ("model", "model_version", "sha256", "package_version", "software"):
        if key in known:
            known[key] = str(known[key])
    return Provenance(**known)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``OUT.json`` for ``OUT.nii.gz``, ``OUT.nii``, ``OUT.nrrd``, ``OUT.nhdr``, ``OUT.mha``, ``OUT.mhd``."""
    path = Path(path)
    name = path.name
    for suffix in sorted(FILE_FORMATS, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return path.with_name(name[: len(name) - len(suffix)] + ".json")
    return path.with_name(name + ".json")
