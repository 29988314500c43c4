"""Safety guards of a run: what the models may be given, and what an output may contain.

A learned model answers well only for what it was trained on; outside that it still answers, without a word.
These guards turn the known cases into one-line refusals (:class:`~rmisr_monai.errors.ConfigurationError` or
:class:`~rmisr_monai.errors.InputFileError`, each in the Python API's words, with the ``rmisr`` command's words as
``RmisrError.cli``), and bound every output by its input:

* **Scale** (:func:`check_scale`): a scale ``<= 1`` is refused for every method (super-resolution enlarges). A
  learned model is refused outside the scales it was trained on (:func:`trained_scale_range`): a sub-pixel model its
  own integer scale only; an arbitrary-scale (Meta-SR) model the range recorded in its checkpoint
  (``info["scale_range"]``, written by ``rmisr_monai.training``: 1.1 to 4 for the shipped one), unless
  ``allow_extrapolation``. Through-plane runs are checked on the one upscaled axis (the other is 1, also trained).
* **Label maps** (:func:`label_map_reason`): a Slicer ``.seg.nrrd``, a DICOM SEG, or an integer volume that is
  piecewise constant (few distinct values, most neighbouring voxels equal) is refused for every method but
  ``nearest``: bicubic and the networks blend neighbouring labels into labels that were never there.
* **Distribution** (:func:`distribution_reason`): the shipped models were trained on CT in HU and MR magnitude
  images (>= 0). MR phase, real or imaginary images and field maps (by DICOM ImageType or ComplexImageComponent, or
  by their signed, symmetric value range) are refused for learned models, unless ``allow_extrapolation``.
* **Output range** (:func:`clip_to_input_range`): each output slice is clipped to the range of the input slice it
  was computed from, per channel; so MR magnitude stays >= 0, a constant slice stays that constant, and CT never
  goes below the padding value or the input minimum, whatever the method (bicubic undershoots too).

:func:`check_run` applies the three input checks to one volume and a loaded model; the engine calls
:func:`clip_to_input_range` on every stored batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rmisr_monai.errors import ConfigurationError, InputFileError

__all__ = [
    "CT_FLOOR_HU",
    "INTERPOLATORS",
    "LABEL_SAFE_METHODS",
    "MAX_LABELS",
    "MIN_EQUAL_NEIGHBOURS",
    "NEGATIVE_SHARE",
    "SEG_SOP_CLASS_UID",
    "SIGNED_COMPLEX_COMPONENTS",
    "SIGNED_IMAGE_TYPES",
    "SIGNED_SYMMETRY",
    "check_distribution",
    "check_label_map",
    "check_run",
    "check_scale",
    "clip_to_input_range",
    "distribution_reason",
    "equal_neighbour_share",
    "is_learned",
    "label_map_reason",
    "trained_scale_range",
]

logger = logging.getLogger(__name__)

# networks without parameters (the names of rmisr_monai.weights.loader.INTERPOLATORS, kept here torch-free)
INTERPOLATORS = ("bicubic", "bilinear", "nearest")
# methods that never make a value the input does not have: the only ones a label map may go through
LABEL_SAFE_METHODS = ("nearest",)
# a label map has at most this many distinct values (TotalSegmentator: 118, FreeSurfer aseg: ~45)
MAX_LABELS = 1024
# ... and at least this share of equal neighbouring voxel pairs outside the most common value (the background):
# label maps > 0.8; the 22 real CT and MR scans of ../shared/data 0.008 to 0.125 (uint8 brain MR 0.03 to 0.12)
MIN_EQUAL_NEIGHBOURS = 0.5
# slices (evenly spaced along the last axis) the label-map test reads: it stays fast on a 512^2 x 600 CT
LABEL_SAMPLE_SLICES = 16
# signed, symmetric value ranges (phase, field map, real / imaginary part): at least this share of voxels below 0
NEGATIVE_SHARE = 0.2
# ... and the 0.5th percentile at least this fraction of the 99.5th below 0 (a phase map: about -1; a CT crop without
# air, read as unknown modality: fat and lung base at -470 against bone at +720, -0.65; a z-scored MR: about -0.2)
SIGNED_SYMMETRY = 0.8
# CT: values below this are below air (-1000 HU); only a padding value (one value) lives there in real CT: the 7 CT
# scans of ../shared/data have 0 % of such voxels besides it, a wrapped phase map read as CT (its minimum is below
# the CT guess's -500) 40 %
CT_FLOOR_HU = -1100.0
CT_BELOW_FLOOR_SHARE = 0.01
SIGNED_PERCENTILES = (0.5, 99.5)
# voxels the value-range test looks at (an even stride through the volume)
DISTRIBUTION_SAMPLE = 1 << 20
# ImageType values (3rd onwards) of signed MR images: Siemens/Philips "P"/"R"/"I", GE/Philips words, field maps
SIGNED_IMAGE_TYPES = frozenset(
    {"P", "R", "I", "PHASE", "REAL", "IMAGINARY", "PHASE_MAP", "FIELD_MAP", "FIELDMAP", "B0_MAP", "B0MAP", "FM"}
)
# Enhanced MR ComplexImageComponent (0008,9208) values other than MAGNITUDE
SIGNED_COMPLEX_COMPONENTS = frozenset({"PHASE", "REAL", "IMAGINARY", "MIXED"})
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
_SCALE_TOLERANCE = 1e-6


# -- which method ------------------------------------------------------------------------------------------------
def is_learned(meta: dict[str, Any] | None, network: Any = None) -> bool:
    """Whether the method is a trained network (not an interpolator): ``meta`` as
    :func:`rmisr_monai.weights.load_model` returns it (an interpolator has ``"path": None`` and its name as
    ``"network"``), else whether ``network`` has parameters."""
    if meta is not None:
        return not (meta.get("path") is None and meta.get("network") in INTERPOLATORS)
    if network is not None and hasattr(network, "parameters"):
        return any(True for _ in network.parameters())
    return False


def _method_name(meta: dict[str, Any] | None) -> str:
    if not meta:
        return "the network"
    if meta.get("path") is None:
        return str(meta.get("network"))
    return f"model {meta.get('name') or meta.get('source') or Path(str(meta['path'])).name}"


# -- scale ---------------------------------------------------------------------------------------------------------
def trained_scale_range(network: Any = None, meta: dict[str, Any] | None = None) -> tuple[float, float] | None:
    """``(low, high)`` of the scales a model was trained on, or ``None`` when any scale > 1 is fine (an
    interpolator) or nothing is recorded (an arbitrary-scale checkpoint without ``info["scale_range"]``).

    Sub-pixel networks: ``(s, s)``, ``s`` their fixed scale (``network.scale``, else ``meta["network_kwargs"]``).
    Arbitrary-scale networks (``network.arbitrary_scale``, or ``network_kwargs["upsampler"] == "meta"``): the
    checkpoint's ``info["scale_range"]`` (a registry entry's ``"scale_range"``, if ``meta`` carries one, wins).
    """
    if meta is not None and not is_learned(meta, network):
        return None
    kwargs = dict((meta or {}).get("network_kwargs") or {})
    arbitrary = bool(getattr(network, "arbitrary_scale", kwargs.get("upsampler") == "meta"))
    if arbitrary:
        recorded = (meta or {}).get("scale_range") or ((meta or {}).get("info") or {}).get("scale_range")
        if recorded is None:
            return None
        low, high = (float(v) for v in recorded)
        return low, high
    fixed = getattr(network, "scale", None) if network is not None else None
    if fixed is None:
        fixed = kwargs.get("scale")
    if isinstance(fixed, (tuple, list)):
        fixed = fixed[0]
    if fixed is None:
        return None
    return float(fixed), float(fixed)


def check_scale(
    scale: float,
    network: Any = None,
    meta: dict[str, Any] | None = None,
    allow_extrapolation: bool = False,
) -> None:
    """Refuse a scale ``<= 1`` (any method) and a scale outside :func:`trained_scale_range` (learned models, unless
    ``allow_extrapolation``). Without ``network`` and ``meta`` only the first check is made (before any model is
    loaded). Through-plane runs pass the one upscaled axis's scale.

    Raises:
        ConfigurationError: the message names the scale, the model and its trained range.
    """
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ConfigurationError(f"scale must be a number > 1, got {scale!r}") from None
    if not np.isfinite(value) or value <= 1.0:
        raise ConfigurationError(
            f"scale must be > 1 (super-resolution enlarges the image), got {scale!r}",
            cli=f"--scale must be > 1 (super-resolution enlarges the image), got {scale!r}",
        )
    if network is None and meta is None:
        return
    trained = trained_scale_range(network, meta)
    if trained is None:
        if meta is not None and is_learned(meta, network) and getattr(network, "arbitrary_scale", False):
            logger.warning("%s records no trained scale range; scale %g is not checked", _method_name(meta), value)
        return
    low, high = trained
    if low - _SCALE_TOLERANCE <= value <= high + _SCALE_TOLERANCE:
        return
    what = _method_name(meta)
    if low == high:
        # a sub-pixel network cannot run at another scale at all: no switch helps
        raise ConfigurationError(
            f"{what} was trained for scale {low:g} only (sub-pixel upsampler), got scale {value:g}; use a model of "
            f"scale {value:g}, an arbitrary-scale model, or model='bicubic'",
            cli=f"{what} was trained for --scale {low:g} only (sub-pixel upsampler), got --scale {value:g}; use "
            f"a model of that scale, an arbitrary-scale model, or --model bicubic",
        )
    if allow_extrapolation:
        logger.warning("scale %g is outside the range %g to %g that %s was trained on", value, low, high, what)
        return
    raise ConfigurationError(
        f"scale {value:g} is outside the scales {what} was trained on ({low:g} to {high:g}); its output there is "
        "untested (e.g. a visible grid); pass allow_extrapolation=True to run it anyway, or use model='bicubic'",
        cli=f"--scale {value:g} is outside the scales {what} was trained on ({low:g} to {high:g}); add "
        "--allow-extrapolation to run it anyway, or use --model bicubic",
    )


# -- label maps ----------------------------------------------------------------------------------------------------
def _dicom_header(volume: Any) -> Any:
    template = getattr(volume, "dicom_template", None)
    return getattr(template, "header", None)


def _sample_slices(array: np.ndarray) -> np.ndarray:
    """At most :data:`LABEL_SAMPLE_SLICES` evenly spaced slices along the last axis (3D: ``(I, J, n)``)."""
    if array.ndim == 4:
        array = array[..., 0]
    n = array.shape[-1]
    if n <= LABEL_SAMPLE_SLICES:
        return np.asarray(array)
    keep = np.unique(np.linspace(0, n - 1, LABEL_SAMPLE_SLICES).round().astype(int))
    return np.asarray(array[..., keep])


def equal_neighbour_share(array: np.ndarray) -> float:
    """Share of equal pairs among the in-plane neighbouring voxel pairs (both in-plane axes of each slice along the
    last axis) that are not both the most common value (the background); 0 for a constant array."""
    values, counts = np.unique(array, return_counts=True)
    background = values[int(counts.argmax())]
    total = equal = 0
    for ax in (0, 1):
        if array.shape[ax] < 2:
            continue
        a = np.take(array, np.arange(array.shape[ax] - 1), axis=ax)
        b = np.take(array, np.arange(1, array.shape[ax]), axis=ax)
        foreground = (a != background) | (b != background)
        total += int(foreground.sum())
        equal += int((foreground & (a == b)).sum())
    return equal / total if total else 0.0


def label_map_reason(volume: Any) -> str | None:
    """Why ``volume`` (a :class:`~rmisr_monai.io.volume.Volume`) is a label map, in words, or ``None``.

    A label map is: a file named ``*.seg.nrrd`` (3D Slicer segmentation); a DICOM SEG (Modality ``SEG`` or the
    Segmentation Storage SOP class); or a non-negative integer-valued volume with at most :data:`MAX_LABELS`
    distinct values whose share of equal neighbouring voxels (:func:`equal_neighbour_share`, outside the
    background) is at least :data:`MIN_EQUAL_NEIGHBOURS`, measured on :data:`LABEL_SAMPLE_SLICES` evenly spaced slices.
    """
    path = str(getattr(volume, "source_path", "") or "")
    if path.lower().rstrip("/").endswith(".seg.nrrd"):
        return "a 3D Slicer segmentation (.seg.nrrd)"
    header = _dicom_header(volume)
    if header is not None and (
        str(header.get("Modality", "")).upper() == "SEG" or str(header.get("SOPClassUID", "")) == SEG_SOP_CLASS_UID
    ):
        return "a DICOM segmentation (SEG)"
    sample = _sample_slices(np.asarray(volume.array))
    if sample.size < 16:
        return None
    if not np.issubdtype(sample.dtype, np.integer):
        if not np.issubdtype(sample.dtype, np.floating) or not np.all(np.isfinite(sample)):
            return None
        if not np.array_equal(sample, np.round(sample)):
            return None
    distinct = np.unique(sample)
    if len(distinct) < 2 or len(distinct) > MAX_LABELS or distinct[0] < 0:  # labels are counted from 0
        return None
    share = equal_neighbour_share(sample)
    if share < MIN_EQUAL_NEIGHBOURS:
        return None
    shown = ", ".join(f"{v:g}" for v in distinct[:8]) + (", ..." if len(distinct) > 8 else "")
    return (
        f"an integer volume with {len(distinct)} distinct values ({shown}) in regions of equal voxels "
        f"({100 * share:.0f} % of neighbouring voxels equal)"
    )


def check_label_map(volume: Any, method: str | None, meta: dict[str, Any] | None = None) -> None:
    """Refuse a label map (:func:`label_map_reason`) for every method but ``nearest``.

    Args:
        volume: the input :class:`~rmisr_monai.io.volume.Volume`.
        method: the interpolator's name or the model's name (``meta`` decides when given).
        meta: the loaded model's metadata (:func:`rmisr_monai.weights.load_model`).

    Raises:
        InputFileError: the file and the reason, pointing at nearest-neighbour upscaling.
    """
    if meta is not None:
        method = None if is_learned(meta) else str(meta.get("network"))
    if method in LABEL_SAFE_METHODS:
        return
    reason = label_map_reason(volume)
    if reason is None:
        return
    tail = "interpolation and the networks would blend neighbouring labels into labels that are not in the input"
    raise InputFileError(
        volume.source_path,
        f"looks like a label map: {reason}; {tail}; use model='nearest' (nearest-neighbour keeps only the "
        "input's labels)",
        cli_reason=f"looks like a label map: {reason}; {tail}; use --model nearest (nearest-neighbour keeps only "
        "the input's labels)",
    )


# -- distribution --------------------------------------------------------------------------------------------------
def _strided_sample(array: np.ndarray, size: int = DISTRIBUTION_SAMPLE) -> np.ndarray:
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // size)
    return flat[::step].astype(np.float64)


def _values(header: Any, keyword: str) -> list[str]:
    value = header.get(keyword)
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = str(value).split("\\")
    return [str(v).strip().upper() for v in value]


def distribution_reason(volume: Any) -> str | None:
    """Why ``volume`` is outside what the shipped models were trained on (CT in HU, MR magnitude), or ``None``.

    * DICOM (MR or unknown modality): ImageType values from the third on name a phase, real or imaginary image or a
      field map (:data:`SIGNED_IMAGE_TYPES`), or ComplexImageComponent is not ``MAGNITUDE``;
    * CT (also a file guessed CT by its low values, :func:`rmisr_monai.io.read.guess_modality`): at least
      :data:`CT_BELOW_FLOOR_SHARE` of the voxels below :data:`CT_FLOOR_HU` besides the most common such value (the
      padding value);
    * any other volume: signed and symmetric values, at least :data:`NEGATIVE_SHARE` of the voxels below 0 and the
      0.5th percentile at least :data:`SIGNED_SYMMETRY` of the 99.5th below 0 (a phase map is symmetric about 0;
      magnitude images are >= 0, up to interpolation ringing).
    """
    modality = str(getattr(volume, "modality", "OT"))
    header = _dicom_header(volume)
    if header is not None and modality != "CT":
        kinds = _values(header, "ImageType")[2:]
        signed = sorted(SIGNED_IMAGE_TYPES.intersection(kinds))
        if signed:
            shown = "/".join(_values(header, "ImageType"))
            return f"its ImageType ({shown}) marks a phase, real/imaginary or field map"
        component = _values(header, "ComplexImageComponent")
        if component and component[0] in SIGNED_COMPLEX_COMPONENTS:
            return f"its ComplexImageComponent is {component[0]} (not MAGNITUDE)"
    sample = _strided_sample(volume.array)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    if modality == "CT":
        below = sample[sample < CT_FLOOR_HU]
        if below.size:
            _, counts = np.unique(below, return_counts=True)
            share = (below.size - int(counts.max())) / sample.size  # the padding value, if any, is allowed
            if share >= CT_BELOW_FLOOR_SHARE:
                return (
                    f"{100 * share:.0f} % of its values lie below air ({CT_FLOOR_HU:g} HU) and are no padding "
                    "value: not Hounsfield units (a phase or field map?)"
                )
        return None
    negative = float((sample < 0).mean())
    low, high = np.percentile(sample, SIGNED_PERCENTILES)
    if negative >= NEGATIVE_SHARE and high > 0 and low <= -SIGNED_SYMMETRY * high:
        return (
            f"its values are signed and symmetric about 0 ({100 * negative:.0f} % below 0, {low:g} to {high:g} "
            "between the 0.5th and 99.5th percentiles), as in a phase, real/imaginary or field map"
        )
    return None


def check_distribution(
    volume: Any, meta: dict[str, Any] | None = None, network: Any = None, allow_extrapolation: bool = False
) -> None:
    """Refuse an input outside the training distribution (:func:`distribution_reason`) for a learned model.

    Raises:
        InputFileError: the file and the reason; interpolators and ``allow_extrapolation`` pass (the latter with a
            warning).
    """
    if not is_learned(meta, network):
        return
    reason = distribution_reason(volume)
    if reason is None:
        return
    if allow_extrapolation:
        logger.warning("%s: %s; running %s on it anyway", volume.source_path, reason, _method_name(meta))
        return
    base = f"outside what the learned models were trained on (CT in HU, MR magnitude images): {reason}"
    raise InputFileError(
        volume.source_path,
        f"{base}; use model='bicubic', or pass allow_extrapolation=True to run {_method_name(meta)} anyway",
        cli_reason=f"{base}; use --model bicubic, or add --allow-extrapolation to run {_method_name(meta)} anyway",
    )


# -- all input checks of one run -----------------------------------------------------------------------------------
def check_run(
    volume: Any,
    scale: float,
    network: Any = None,
    meta: dict[str, Any] | None = None,
    method: str | None = None,
    allow_extrapolation: bool = False,
) -> None:
    """:func:`check_scale`, :func:`check_label_map` and :func:`check_distribution` for one volume and one loaded
    model (``network``, ``meta`` from :func:`rmisr_monai.weights.load_model`; ``method``: the interpolator's or
    model's name when there is no ``meta``). Call it after the model is loaded and before the engine runs."""
    check_scale(scale, network, meta, allow_extrapolation=allow_extrapolation)
    check_label_map(volume, method, meta)
    check_distribution(volume, meta, network, allow_extrapolation=allow_extrapolation)


# -- output range --------------------------------------------------------------------------------------------------
def clip_to_input_range(output: Any, source: Any) -> Any:
    """Clip each output slice to ``[min, max]`` of the input slice it was computed from.

    Args:
        output: ``(N, C', H', W')`` output slices in the input's units (after the inverse normalisation), torch
            tensor or numpy array.
        source: ``(N, C, H, W)`` the input slices, in the same order, in their original units (before any
            normalisation), torch or numpy.

    Returns:
        ``output`` clipped (same type; a new tensor / array): with ``C' == C`` channel ``c`` of slice ``n`` to the
        range of channel ``c`` of input slice ``n``; otherwise every channel to the range of all input channels of
        slice ``n``. NaN in the source is ignored; an all-NaN slice leaves its output as it is.
    """
    import torch

    if isinstance(output, np.ndarray):
        return clip_to_input_range(torch.from_numpy(output), source).numpy()
    src = torch.as_tensor(np.asarray(source) if not isinstance(source, torch.Tensor) else source)
    if src.ndim != 4 or output.ndim != 4 or src.shape[0] != output.shape[0]:
        raise ConfigurationError(
            f"clip_to_input_range needs (N, C, H, W) slices of the same N, got {tuple(output.shape)} and "
            f"{tuple(src.shape)}"
        )
    src = src.to(torch.float64)
    dims: Sequence[int] = (2, 3) if src.shape[1] == output.shape[1] else (1, 2, 3)
    finite = torch.isfinite(src)
    low = torch.where(finite, src, torch.inf).amin(dim=dims, keepdim=True)
    high = torch.where(finite, src, -torch.inf).amax(dim=dims, keepdim=True)
    empty = ~torch.isfinite(low)
    low = torch.where(empty, -torch.inf, low).to(output.dtype if output.is_floating_point() else torch.float64)
    high = torch.where(empty, torch.inf, high).to(low.dtype)
    return torch.clamp(output.to(low.dtype), min=low, max=high).to(output.dtype)
