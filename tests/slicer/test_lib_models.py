"""The model menu from the registry (read without torch), worker arguments, the demo CT (SuperResolutionLib.models)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from SuperResolutionLib.models import (
    BICUBIC,
    CHECKPOINT,
    SAMPLE_SHA256,
    model_choices,
    registry_entries,
    sample_ct_path,
    worker_model_arguments,
)

from rmisr_monai.weights import is_shipped, read_registry
from tests.slicer.conftest import MODULE_DIR


def test_registry_entries_are_the_loaders_shipped_entries_read_without_torch():
    assert registry_entries() == [e for e in read_registry() if is_shipped(e) and "file" in e]
    code = (
        f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); from SuperResolutionLib.models import registry_entries;"
        "assert registry_entries(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_registry_becomes_one_item_per_network_and_modality():
    entries = read_registry()
    choices = model_choices(entries)
    keys = [c.key for c in choices]
    assert keys[-2:] == [BICUBIC, CHECKPOINT]
    shipped = {e["name"] for e in entries}
    offered = {name for c in choices for name in c.names.values()}
    offered |= {c.key for c in choices if c.scale_range is not None and c.key not in (BICUBIC, CHECKPOINT)}
    assert offered == shipped  # every shipped model is reachable, nothing else
    ct = next(c for c in choices if c.key == "rmisr_bl:CT")
    assert ct.scales == (2.0, 3.0, 4.0) and ct.scale_range is None and not ct.through_plane
    # the group's x2 is the CLI's default for CT x2 (the first registry entry of that scale)
    assert ct.names[2.0] == next(e["name"] for e in entries if e["modality"] == "CT" and e.get("scale") == 2)
    assert worker_model_arguments(ct, 4.0) == ["--model", "rmisr_bl64_ct_x4"]
    with pytest.raises(ValueError, match="cannot upscale x5"):
        worker_model_arguments(ct, 5.0)


def test_an_arbitrary_scale_entry_offers_a_range_and_through_plane():
    entries = [
        {"name": "rmisr_vp_mr_meta", "network": "rmisr_vp", "modality": "MR", "arbitrary_scale": True,
         "scale_range": [1.5, 4.0], "description": "meta"},
        {"name": "a_x2", "network": "dense_sr", "modality": "CT", "scale": 2},
    ]
    choices = model_choices(entries)
    meta = next(c for c in choices if c.key == "rmisr_vp_mr_meta")
    assert meta.scale_range == (1.5, 4.0) and meta.through_plane and meta.label == "RMISR-VP MR (any scale)"
    assert worker_model_arguments(meta, 2.7) == ["--model", "rmisr_vp_mr_meta"]
    with pytest.raises(ValueError, match="1.5..4"):
        worker_model_arguments(meta, 5.0)


def test_bicubic_and_checkpoint_arguments():
    choices = {c.key: c for c in model_choices([])}
    assert worker_model_arguments(choices[BICUBIC], 2.5) == ["--model", "bicubic"]
    assert worker_model_arguments(choices[CHECKPOINT], 2.0, "/data/my.pt") == ["--weights", "/data/my.pt"]
    with pytest.raises(ValueError, match="choose the checkpoint"):
        worker_model_arguments(choices[CHECKPOINT], 2.0)


def test_demo_ct_is_found_and_its_checksum_is_the_registered_one():
    path = sample_ct_path()
    assert path is not None and path.name == "ct_demo_abdomen_int16.nii.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SAMPLE_SHA256


def test_a_second_entry_for_a_scale_is_its_own_item_and_the_first_stays_the_default():
    entries = [
        {"name": "new_ct_x2", "network": "rmisr_bl", "modality": "CT", "scale": 2},
        {"name": "old_ct_x2", "network": "rmisr_bl", "modality": "CT", "scale": 2},
        {"name": "old_ct_x4", "network": "rmisr_bl", "modality": "CT", "scale": 4},
    ]
    choices = {c.key: c for c in model_choices(entries)}
    assert choices["rmisr_bl:CT"].names == {2.0: "new_ct_x2", 4.0: "old_ct_x4"}
    assert choices["old_ct_x2"].names == {2.0: "old_ct_x2"} and "old_ct_x2" in choices["old_ct_x2"].label
    assert worker_model_arguments(choices["old_ct_x2"], 2.0) == ["--model", "old_ct_x2"]
