"""Fixed engine cases whose outputs were saved before the run-options refactor (issue 35): the refactor must give
the same voxels. ``python -m tests.inference.reference_cases`` rewrites ``data/reference_outputs.npz`` (only when
an intended change of the outputs is made; say so in the commit)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rmisr_monai.cli import SAMPLE_PATH

DATA = Path(__file__).resolve().parent / "data" / "reference_outputs.npz"
# (name, registry model or interpolator, scale, engine options): whole slices, fp32, so that the figures do not
# depend on bf16 support or on the memory plan of the machine
CASES = (
    ("ct_bicubic_x2_int16", "bicubic", 2.0, {"out_dtype": "int16"}),
    ("ct_default_x2", None, 2.0, {}),
    ("ct_default_x3_ensemble4", None, 3.0, {}),
    ("ct_default_x4_plain", None, 4.0, {"self_ensemble": 1}),
    ("ct_through_plane_2_5", None, 2.5, {"axis": "z", "through_plane": True}),
    # the MR x2 default before 2026-12-07 was this file (rmisr_bl64_x2.pt); MR x2 now has its own
    ("mr_default_x2", "rmisr_bl64_ct_x2", 2.0, {"modality": "MR"}),
)


def sample_crop(modality: str = "CT"):
    """A 40 x 32 x 4 crop of the shipped sample CT (the MR case: the same voxels shifted to a positive range and
    read as MR, so that the percentile-normalised MR path runs)."""
    from rmisr_monai.io.read import read_volume

    volume = read_volume(SAMPLE_PATH)
    array = np.ascontiguousarray(volume.array[150:190, 100:132, 8:12])
    if modality == "MR":
        array = (array.astype(np.float32) + 1024.0).clip(0, None)
    return dataclasses.replace(volume, array=array, modality=modality, source_dtype=array.dtype)


def generate() -> dict[str, np.ndarray]:
    """The outputs of the current code for :data:`CASES`."""
    from rmisr_monai.inference.batch import BatchUpscaler

    outputs = {}
    for name, model, scale, options in CASES:
        options = dict(options)
        modality = options.pop("modality", "CT")
        volume = sample_crop(modality)
        upscaler = BatchUpscaler(
            model=model, scale=scale, device="cpu", precision="fp32", progress=False, tile=None,
            axis=options.pop("axis", "z"), through_plane=options.pop("through_plane", False),
            ensemble=options.pop("self_ensemble", None), dtype=options.pop("out_dtype", "float32"),
            input_floor=False,  # saved before the floor existed
        )
        outputs[name] = np.asarray(upscaler.upscale(volume).array)
    return outputs


if __name__ == "__main__":
    DATA.parent.mkdir(exist_ok=True)
    np.savez_compressed(DATA, **generate())
    print(f"wrote {DATA}")
