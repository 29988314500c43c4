"""Every bundle: the files the MONAI Bundle Specification and the model zoo ask for, metadata keys and types, the
weights being the package's shipped file, and MONAI's ``verify_net_in_out`` / ``ckpt_export`` on its network."""

from __future__ import annotations

import json
import re

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

from rmisr_monai.weights import read_registry, sha256_of
from rmisr_monai.weights.loader import WEIGHTS_DIR, load_model
from tests.bundles.conftest import BUNDLE_NAMES, BUNDLES, bundle_config

REQUIRED_FILES = (
    "LICENSE", "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
    "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md", "docs/data_license.txt",
    "models/model.pt",
)
# mb_specification.rst "metadata.json File": mandatory keys and their types (DEFAULT_METADATA in monai/bundle/utils.py)
METADATA_TYPES = {
    "version": str, "changelog": dict, "monai_version": str, "pytorch_version": str, "numpy_version": str,
    "required_packages_version": dict, "task": str, "description": str, "authors": str, "copyright": str,
    "network_data_format": dict, "references": list, "intended_use": str, "data_source": str, "name": str,
}
TENSOR_FORMAT_TYPES = {
    "type": str, "format": str, "modality": str, "num_channels": int, "spatial_shape": list, "dtype": str,
    "value_range": list, "is_patch_data": bool, "channel_def": dict,
}
MAX_BUNDLE_BYTES = 4 << 20  # model.pt is a shipped checkpoint (at most about 3.95 MB); nothing large is duplicated


def test_there_are_the_four_bundles():
    assert {n.split("_")[0] for n in BUNDLE_NAMES} == {"ct", "mri"}
    networks = {bundle_config(n, "inference")["network_name"] for n in BUNDLE_NAMES}
    assert {"rmisr_bl", "rmisr_vp"} <= networks
    assert any(bundle_config(n, "inference")["network_kwargs"].get("upsampler") == "meta" for n in BUNDLE_NAMES)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_layout_and_size(name):
    root = BUNDLES / name
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    assert not missing, f"{name} lacks {missing}"
    assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", name)  # model-zoo style <modality>_<model>_<task>
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < MAX_BUNDLE_BYTES
    assert "Apache License" in (root / "LICENSE").read_text()


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_metadata_keys_and_types(name):
    meta = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    for key, kind in METADATA_TYPES.items():
        assert isinstance(meta.get(key), kind), f"{name}: metadata {key!r} must be a {kind.__name__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"]) and meta["version"] in meta["changelog"]
    assert all(isinstance(v, str) for v in meta["required_packages_version"].values())
    assert meta["monai_version"] and "+" not in meta["pytorch_version"]
    refs = " ".join(meta["references"])
    assert "Ren" in refs and "10.1007/s00521-021-06287-x" in refs and "Wang" in refs  # both papers
    io = meta["network_data_format"]
    for spec in (io["inputs"]["image"], io["outputs"]["pred"]):
        for key, kind in TENSOR_FORMAT_TYPES.items():
            assert isinstance(spec.get(key), kind), f"{name}: tensor format {key!r} must be a {kind.__name__}"
        assert spec["format"] == ("hounsfield" if name.startswith("ct_") else "magnitude")
        assert spec["modality"] == ("CT" if name.startswith("ct_") else "MR")
        assert spec["num_channels"] == 1 and spec["dtype"] == "float32" and spec["is_patch_data"] is False
        assert set(spec["channel_def"]) == {"0"}


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_weights_are_the_package_file(name):
    """models/model.pt is byte for byte a file the registry lists (sha256 of the package file and the registry's own),
    trained, of the bundle's network and default scale; the README quotes its sha256."""
    path = BUNDLES / name / "models" / "model.pt"
    _, meta = load_model(path)
    readme = (BUNDLES / name / "docs" / "README.md").read_text()
    digest = sha256_of(path)
    assert digest in readme
    assert meta["info"].get("trained") is not False, f"{name}: models/model.pt is marked untrained"
    entries = [e for e in read_registry() if sha256_of(WEIGHTS_DIR / e["file"]) == digest]
    assert entries, f"{name}: models/model.pt is not one of the package's shipped files"
    inference = bundle_config(name, "inference")
    for entry in entries:
        assert entry["sha256"] == digest and entry["network"] == inference["network_name"]
        assert entry.get("arbitrary_scale") or float(entry["scale"]) == float(inference["scale"]), entry["name"]


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_verify_net_in_out_and_ckpt_export(name, tmp_path):
    root = BUNDLES / name
    configs = {"meta_file": str(root / "configs" / "metadata.json"),
               "config_file": str(root / "configs" / "inference.json")}
    verify_net_in_out(net_id="network_def", device="cpu", n=4, any=16, bundle_root=str(root), **configs)
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(exported), ckpt_file=str(root / "models" / "model.pt"),
        key_in_ckpt="state_dict", bundle_root=str(root), **configs,
    )
    scripted = torch.jit.load(str(exported))
    eager, _ = load_model(root / "models" / "model.pt")
    x = torch.rand(1, 1, 13, 17)
    with torch.no_grad():
        expected = eager(x)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-5)
    scale = bundle_config(name, "inference")["scale"]  # the bundle's default scale (x4 for RMISR-VP, else x2)
    assert expected.shape[-2:] == (13 * scale, 17 * scale)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_multi_gpu_config_merges_over_train(name):
    """DDP network, distributed sampling, and only rank 0 writing (the handlers disabled elsewhere are the writers)."""
    configs = BUNDLES / name / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "multi_gpu_train.json")])
    assert parser["device"]["_target_"] == "rmisr_monai.training.distributed.init_distributed"
    assert parser["network"]["_target_"] == "rmisr_monai.training.distributed.distributed_network"
    assert "@device" in parser["initialize"] and "destroy_process_group" in parser["finalize"][0]
    loader = parser["train"]["dataloader"]
    if "batch_sampler" in loader:  # random scale per batch: a sampler per rank, seeded by the rank
        assert "get_rank" in parser["train"]["batch_sampler"]["seed"]
    else:
        assert loader["sampler"] == "@train#sampler" and loader["shuffle"] is False
        assert parser["train"]["sampler"]["_target_"] == "DistributedSampler"
    writers = ("TensorBoardStatsHandler", "LogfileHandler", "rmisr_monai.training.handlers.BestModelSaver")
    for section in ("train", "validate"):
        for handler in parser[section]["handlers"]:
            disabled = handler.get("_disabled_", "")
            assert ("get_rank() > 0" in disabled) == (handler["_target_"] in writers), (section, handler["_target_"])
