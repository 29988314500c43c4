"""2D training images: PNG/TIFF/JPEG/BMP through Pillow, single-frame DICOM through pydicom (compressed too).

Images are returned channel-first, ``(C, H, W)`` float32, in their stored units: 0-255 for 8-bit pictures, the raw
range for 16-bit PNG/TIFF, rescaled values (``RescaleSlope``/``RescaleIntercept``: HU for CT) for DICOM, so that the
intensity normalisation of :mod:`rmisr_monai.transforms.intensity` decides the mapping to ``[0, 1]``.
``color="gray"`` turns RGB into luma with the ITU-R BT.601 weights (as Pillow's ``"L"`` mode, without its rounding);
``color="rgb"`` repeats a gray image on three channels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_rescale

from rmisr_monai.errors import ConfigurationError, InputFileError

__all__ = ["BT601_LUMA", "COLOR_MODES", "DICOM_SUFFIXES", "read_image_2d", "image_items"]

BT601_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights (Pillow ImageMode "L")
COLOR_MODES = ("gray", "rgb")
DICOM_SUFFIXES = (".dcm", ".dicom")


def read_image_2d(path: str | os.PathLike, color: str = "gray") -> np.ndarray:
    """Read one 2D image as ``(C, H, W)`` float32, ``C = 1`` for ``"gray"`` and 3 for ``"rgb"``.

    Raises:
        InputFileError: unreadable file, multi-frame DICOM (read it as a volume instead) or more than 2 dimensions.
        ConfigurationError: unknown ``color``.
    """
    if color not in COLOR_MODES:
        raise ConfigurationError(f"unknown color {color!r}; use {COLOR_MODES}")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    pixels = _read_dicom(path) if path.suffix.lower() in DICOM_SUFFIXES else _read_picture(path)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4):
        raise InputFileError(path, f"not a 2D gray or RGB image (pixel array of shape {pixels.shape})")
    pixels = pixels[..., :3].astype(np.float32)  # an alpha channel is dropped
    if color == "gray" and pixels.shape[-1] == 3:
        pixels = (pixels @ np.asarray(BT601_LUMA, dtype=np.float32))[..., None]
    elif color == "rgb" and pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(np.moveaxis(pixels, -1, 0))


def _read_picture(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode == "LA":
                image = image.convert("L")
            return np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise InputFileError(path, f"not a readable image ({error})") from error


def _read_dicom(path: Path) -> np.ndarray:
    try:
        dataset = pydicom.dcmread(path)
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            raise InputFileError(path, f"multi-frame DICOM ({dataset.NumberOfFrames} frames): read it as a volume")
        pixels = dataset.pixel_array  # decodes JPEG, JPEG-LS, JPEG 2000 and RLE; YBR is converted to RGB
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, NotImplementedError) as error:
        raise InputFileError(path, f"cannot decode the DICOM pixel data ({error})") from error
    pixels = apply_rescale(pixels, dataset).astype(np.float32)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":  # bright = low values: flip to MONOCHROME2
        pixels = pixels.max() + pixels.min() - pixels
    return pixels


def image_items(paths: Sequence[str | os.PathLike], color: str = "gray") -> list[dict]:
    """``[{"label": (C, H, W) float32, "source": path}, ...]``: the input of
    :class:`~rmisr_monai.data.pairs.PairedPatchDataset`."""
    return [{"label": read_image_2d(path, color), "source": str(path)} for path in paths]
