"""Every bundle: the files the MONAI Bundle Specification and the model zoo ask for, metadata against the official
schema, the weights (bare state dicts of the package's shipped files, one per scale the ``scale`` option picks, each
loading strictly into the ``network_def`` that inference.json builds), MONAI's ``verify_net_in_out`` and
``ckpt_export`` (TorchScript equal to the eager network), and ``check_properties()`` of every workflow."""

from __future__ import annotations

import json
import re

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

import rmisr_monai
from rmisr_monai.weights.loader import WEIGHTS_DIR
from tests.bundles.conftest import BUNDLE_NAMES, BUNDLES, SCHEMA, bundle_config, write_crops

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
    "eval_metrics": dict,
}
TENSOR_FORMAT_TYPES = {
    "type": str, "format": str, "modality": str, "num_channels": int, "spatial_shape": list, "dtype": str,
    "value_range": list, "is_patch_data": bool, "channel_def": dict,
}
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"  # schema/SOURCE.md
MAX_FILE_BYTES = 5 << 20  # the project's limit outside rmisr_monai/weights (the zoo's is 25 MB)
# which shipped file each bundle weight is (the bundle is self-contained; the package file is the provenance)
PACKAGE_FILES = {
    "ct_mri_super_resolution": {
        "model.pt": "rmisr_bl64_x2.pt", "model_mr_x2.pt": "rmisr_bl64_mr_x2.pt", "model_x3.pt": "rmisr_bl64_x3.pt",
        "model_mr_x3.pt": "rmisr_bl64_mr_x3.pt",
        "model_x4.pt": "rmisr_bl64_x4.pt",
    },
    "ct_edge_super_resolution": {"model.pt": "rmisr_vp_ct_x4.pt"},
    "ct_mri_through_plane_super_resolution": {"model.pt": "rmisr_bl64_meta.pt"},
}
NETWORKS = {
    "ct_mri_super_resolution": "RMISR-BL", "ct_edge_super_resolution": "RMISR-VP",
    "ct_mri_through_plane_super_resolution": "RMISR-BL, Meta-SR",
}


def _meta(name: str) -> dict:
    return json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())


def _weight_choices(name: str) -> list[tuple[str, float, str | None]]:
    """``(file, scale, modality)`` for every entry of the bundle's weights table (``*``: the default scale)."""
    table = bundle_config(name, "inference")["weights"]
    default = float(bundle_config(name, "inference")["scale"])
    if all(isinstance(v, dict) for v in table.values()):
        return [(f, default if s == "*" else float(s), m) for m, t in table.items() for s, f in t.items()]
    return [(f, default if s == "*" else float(s), None) for s, f in table.items()]


def _network_def(name: str, scale: float, modality: str | None = None) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
    parser["scale"] = scale
    if modality is not None:
        parser["modality"] = modality
    return parser.get_parsed_content("network_def")


def test_the_bundle_set():
    """One bundle per network and task (CT and MR share the RMISR-BL weights, so they share a bundle), named
    ``<modality>_<task>`` as in the model zoo, with the network in the display name."""
    assert BUNDLE_NAMES == sorted(PACKAGE_FILES)
    for name in BUNDLE_NAMES:
        assert re.fullmatch(r"(ct|ct_mri)(_[a-z]+)*_super_resolution", name)
        assert f"({NETWORKS[name]}" in _meta(name)["name"]
    digests = [torch.load(p, weights_only=True) for p in BUNDLES.glob("*/models/*.pt")]
    for i, a in enumerate(digests):  # no weights shipped twice
        for b in digests[i + 1:]:
            assert a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_layout_and_size(name):
    root = BUNDLES / name
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    assert not missing, f"{name} lacks {missing}"
    big = [p.name for p in root.rglob("*") if p.is_file() and p.stat().st_size >= MAX_FILE_BYTES]
    assert not big
    assert "Apache License" in (root / "LICENSE").read_text()
    assert sorted(p.name for p in (root / "models").iterdir()) == sorted(PACKAGE_FILES[name])


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_metadata_keys_types_and_text(name):
    raw = (BUNDLES / name / "configs" / "metadata.json").read_bytes()
    assert raw.isascii()  # pre-commit's pretty-format-json rejects raw non-ASCII
    meta = json.loads(raw)
    for key, kind in METADATA_TYPES.items():
        assert isinstance(meta.get(key), kind), f"{name}: metadata {key!r} must be a {kind.__name__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"]) and meta["version"] in meta["changelog"]
    assert meta["required_packages_version"]["rmisr-monai"] == rmisr_monai.__version__
    assert all(isinstance(v, str) for v in meta["required_packages_version"].values())
    assert meta["monai_version"] and "+" not in meta["pytorch_version"]
    refs = " ".join(meta["references"])
    assert "Ren" in refs and "10.1007/s00521-021-06287-x" in refs and "Wang" in refs  # both papers
    io = meta["network_data_format"]
    scale = bundle_config(name, "inference")["scale"]
    for spec in (io["inputs"]["image"], io["outputs"]["pred"]):
        for key, kind in TENSOR_FORMAT_TYPES.items():
            assert isinstance(spec.get(key), kind), f"{name}: tensor format {key!r} must be a {kind.__name__}"
        assert spec["num_channels"] == 1 and spec["dtype"] == "float32" and spec["is_patch_data"] is False
        assert set(spec["channel_def"]) == {"0"}
    # every symbol is defined: the output is the scale times the input's n x p (MONAI's symbols)
    assert io["inputs"]["image"]["spatial_shape"] == ["n", "p"]
    assert io["outputs"]["pred"]["spatial_shape"] == [f"{scale}*n", f"{scale}*p"]
    assert any(isinstance(v, float) and k.endswith("_psnr") for k, v in meta["eval_metrics"].items())


# a Performance row of a bundle README: "| CT x3 (4-fold) | ... | **35.79 / 0.9795 (+5.20)** | ..."
PERFORMANCE_ROW = re.compile(
    r"^\| (CT|MR)( through-plane)? x([\d.]+)(?: \(4-fold\))? \|.*\*\*([\d.]+) / ([\d.]+) \(\+([\d.]+)\)\*\*", re.M
)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_eval_metrics_are_the_readme_performance_table(name):
    """metadata ``eval_metrics`` give the figures of the README's Performance table (the bundle's own evaluate.json
    on the test scans), row for row: the zoo's listing and the README cannot disagree."""
    readme = (BUNDLES / name / "docs" / "README.md").read_text()
    table = {
        f"{m.lower()}{'_through_plane' if thick else ''}_x{s}": (float(p), float(q), float(g))
        for m, thick, s, p, q, g in PERFORMANCE_ROW.findall(readme)
    }
    metrics = _meta(name)["eval_metrics"]
    assert table and "test scans" in metrics["protocol"]
    listed = {k[: -len("_psnr")] for k in metrics if k.endswith("_psnr")}
    assert listed == set(table), name
    for key, (value, ssim, gain) in table.items():
        assert (metrics[f"{key}_psnr"], metrics[f"{key}_ssim"], metrics[f"{key}_gain_over_bicubic_db"]) == (
            value, ssim, gain
        ), key


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_metadata_against_the_official_schema(name, tmp_path):
    """``verify_metadata`` with the committed copy of the official schema (no download: the file exists)."""
    meta = _meta(name)
    assert meta["schema"].endswith("/" + SCHEMA.name)
    schema = tmp_path / SCHEMA.name
    schema.write_bytes(SCHEMA.read_bytes())
    verify_metadata(meta_file=str(BUNDLES / name / "configs" / "metadata.json"), filepath=str(schema),
                    hash_val=SCHEMA_MD5)
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps({k: v for k, v in meta.items() if k != "network_data_format"}))
    with pytest.raises(ValueError):  # the schema check is real: a required key missing fails
        verify_metadata(meta_file=str(broken), filepath=str(schema), hash_val=SCHEMA_MD5)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_weights_are_bare_state_dicts_loading_strictly_into_network_def(name):
    """Each ``models/*.pt`` is a dict of tensors only, loads strictly into ``network_def`` at the scale (and
    modality) the config's table maps it to, and holds exactly the tensors of the package's shipped file."""
    choices = _weight_choices(name)
    assert {f for f, _, _ in choices} == set(PACKAGE_FILES[name])
    for file, scale, modality in choices:
        state = torch.load(BUNDLES / name / "models" / file, weights_only=True)
        assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
        assert not any(k.startswith("module.") for k in state)
        _network_def(name, scale, modality).load_state_dict(state, strict=True)
        package = WEIGHTS_DIR / PACKAGE_FILES[name][file]
        if package.is_file():
            shipped = torch.load(package, weights_only=True)["state_dict"]
            assert shipped.keys() == state.keys() and all(torch.equal(shipped[k], state[k]) for k in state)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_verify_net_in_out_and_ckpt_export_equal_eager(name, tmp_path):
    """MONAI's checks as the zoo's CI runs them (no ``key_in_ckpt``), and the TorchScript export equal to the eager
    network with the weights loaded."""
    root = BUNDLES / name
    configs = {"meta_file": str(root / "configs" / "metadata.json"),
               "config_file": str(root / "configs" / "inference.json")}
    verify_net_in_out(net_id="network_def", device="cpu", n=4, p=5, bundle_root=str(root), **configs)
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(root / "models" / "model.pt"),
                bundle_root=str(root), **configs)
    scripted = torch.jit.load(str(exported))
    scale = bundle_config(name, "inference")["scale"]
    eager = _network_def(name, scale).eval()
    eager.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 1, 13, 17)
    with torch.no_grad():
        expected = eager(x)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-5)
    assert expected.shape[-2:] == (13 * scale, 17 * scale)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
@pytest.mark.parametrize("config", ["inference", "evaluate", "train"])
def test_workflow_properties(name, config, tmp_path):
    """``ConfigWorkflow.check_properties()`` finds every property MONAI requires (inference and evaluation: the
    InferProperties; train: the TrainProperties) and no optional one under a wrong id."""
    data = write_crops(tmp_path / "data", "CT")[0].parent
    root = BUNDLES / name
    workflow = ConfigWorkflow(
        workflow_type="train" if config == "train" else "infer",
        config_file=str(root / "configs" / f"{config}.json"), meta_file=str(root / "configs" / "metadata.json"),
        bundle_root=str(root), dataset_dir=str(data), output_dir=str(tmp_path / "out"), patch_size=8,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    if config == "train":
        assert workflow.max_epochs == bundle_config(name, "train")["max_epochs"]
        assert workflow.train_inferer is not None and len(workflow.train_dataset) > 0
    else:
        assert isinstance(workflow.network_def, torch.nn.Module) and workflow.inferer.scale == workflow.parser["scale"]
        assert len(workflow.dataset) == 2


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_multi_gpu_config_merges_over_train(name):
    """DDP network, distributed sampling, and only rank 0 writing (the handlers disabled elsewhere are the writers)."""
    configs = BUNDLES / name / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "multi_gpu_train.json")])
    assert parser["device"]["_target_"] == "rmisr_monai.bundles.distributed_device"
    assert parser["network"]["_target_"] == "rmisr_monai.training.distributed.distributed_network"
    assert "@device" in parser["initialize"] and "destroy_process_group" in parser["finalize"][0]
    loader = parser["train"]["dataloader"]
    if "batch_sampler" in loader:  # random scale per batch: a sampler per rank, seeded by the rank
        assert "get_rank" in parser["train"]["batch_sampler"]["seed"]
    else:
        assert loader["sampler"] == "@train#sampler" and loader["shuffle"] is False
        assert parser["train"]["sampler"]["_target_"] == "DistributedSampler"
    writers = (
        "TensorBoardStatsHandler", "LogfileHandler", "CheckpointSaver", "rmisr_monai.training.handlers.BestModelSaver"
    )
    for section in ("train", "validate"):
        for handler in parser[section]["handlers"]:
            disabled = handler.get("_disabled_", "")
            assert ("get_rank() > 0" in disabled) == (handler["_target_"] in writers), (section, handler["_target_"])
