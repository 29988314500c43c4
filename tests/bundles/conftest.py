"""Shared pieces of the bundle tests: the bundle folders, and small real crops of the shared data as datasets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest

from tests.conftest import REPO_ROOT, shared_path

BUNDLES = REPO_ROOT / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
# the official metadata schema, committed (source: schema/SOURCE.md)
SCHEMA = Path(__file__).resolve().parent / "schema" / "meta_schema_20240725.json"
# the model zoo's per-bundle unit tests (ci/unit_tests/test_<bundle>.py): run by the zoo's runner in
# test_model_zoo_ci.py, not collected by pytest (they import the runner's own ``utils``)
ZOO_UNIT_TESTS = Path(__file__).resolve().parent / "zoo_unit_tests"
collect_ignore_glob = ["zoo_unit_tests/*"]
# a few real slices per modality: (file under data/medical, crop of the (i, j, k) array)
CROPS = {
    "CT": {
        "chest.nii.gz": ("ct/totalseg_chest_cta_crop_1p5mm.nii.gz", (slice(36, 84), slice(40, 88), slice(80, 83))),
        "abdomen.nii.gz": ("ct/totalseg_abdomen_ct_3mm.nii.gz", (slice(37, 85), slice(26, 74), slice(55, 58))),
    },
    "MR": {
        "brain.nii.gz": ("mr/brain_t2w_int16.nii.gz", (slice(88, 136), slice(88, 136), slice(30, 33))),
        "abdomen.nii.gz": ("mr/totalseg_abdomen_mr_3mm.nii.gz", (slice(35, 83), slice(20, 68), slice(9, 12))),
    },
}


def bundle_config(name: str, config: str) -> dict:
    return json.loads((BUNDLES / name / "configs" / f"{config}.json").read_text())


def modality_of(name: str) -> str:
    return bundle_config(name, "inference")["modality"]


def write_crops(folder: Path, modality: str) -> list[Path]:
    """Write the crops of ``modality`` (nibabel slicing keeps the affine exact) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (source, crop) in CROPS[modality].items():
        image = nib.load(shared_path("data", "medical", source))
        nib.save(image.slicer[crop], folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="session")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """``{"CT": folder, "MR": folder}`` of two 48 x 48 x 3 real crops each."""
    root = tmp_path_factory.mktemp("bundle_data")
    return {modality: write_crops(root / modality, modality)[0].parent for modality in CROPS}
