"""Weights loader: round trip of the checkpoint format, prefix stripping, and clear errors naming the file."""

from __future__ import annotations

import json

import pytest
import torch

from rmisr_monai.errors import WeightsError
from rmisr_monai.networks import get_network
from rmisr_monai.weights import loader
from rmisr_monai.weights.loader import default_model, load_model, save_checkpoint, sha256_of

KWARGS = {"in_channels": 1, "scale": 2, "features": 4, "num_blocks": 1}
INTENSITY = {"kind": "ct", "a_min": -1024.0, "a_max": 3071.0, "clip": True}


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    return get_network("edsr_baseline", **KWARGS).eval()


def test_round_trip_gives_the_same_outputs(tmp_path):
    net = _tiny()
    path = save_checkpoint(tmp_path / "m.pt", net, "edsr_baseline", KWARGS, INTENSITY, {"note": "test"})
    loaded, meta = load_model(path)
    x = torch.rand(1, 1, 9, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert not loaded.training
    assert meta["network"] == "edsr_baseline" and meta["intensity"] == INTENSITY and meta["info"] == {"note": "test"}
    assert "state_dict" not in meta
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "rmisr-monai/1" and set(raw) >= {"network_kwargs", "state_dict", "intensity", "info"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_dataparallel_prefix_is_stripped(tmp_path):
    net = _tiny(1)
    ckpt = {
        "format": "rmisr-monai/1",
        "network": "edsr_baseline",
        "network_kwargs": KWARGS,
        "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
        "intensity": None,
        "info": {},
    }
    torch.save(ckpt, tmp_path / "dp.pt")
    loaded, _ = load_model(tmp_path / "dp.pt")
    x = torch.rand(2, 1, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_missing_corrupt_and_mismatched_files_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match="missing.pt.*not found.*belong in"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="corrupt.pt"):
        load_model(bad)
    path = save_checkpoint(tmp_path / "m.pt", _tiny(), "edsr_baseline", KWARGS)
    ckpt = torch.load(path, weights_only=True)
    ckpt["network_kwargs"] = {**KWARGS, "features": 8}
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(WeightsError, match="mismatch.pt.*do not fit"):
        load_model(tmp_path / "mismatch.pt")
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(WeightsError, match="foreign.pt.*not an rmisr-monai checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_learned_network_name_without_weights_is_refused_interpolator_is_built():
    with pytest.raises(WeightsError, match=r"needs trained weights: load_model\(PATH\).*load_model\('bicubic'\)") as e:
        load_model("rmisr_bl")
    assert "--" not in str(e.value)  # Python words for the Python API; the CLI's are kept for the CLI
    assert "--weights PATH" in e.value.cli and "--model bicubic" in e.value.cli
    net, meta = load_model("bicubic")
    assert meta["path"] is None and meta["intensity"] is None
    assert net(torch.rand(1, 1, 4, 6), (2.0, 2.0)).shape == (1, 1, 8, 12)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "tiny_ct_x2.pt", _tiny(), "edsr_baseline", KWARGS, INTENSITY)
    entries = [
        {"name": "tiny_mr_x2", "file": "tiny_ct_x2.pt", "network": "edsr_baseline", "scale": 2, "modality": "MR",
         "sha256": sha256_of(path), "description": "test"},
        {"name": "tiny_ct_x2", "file": "tiny_ct_x2.pt", "network": "edsr_baseline", "scale": 2, "modality": "CT",
         "sha256": sha256_of(path), "description": "test"},
        {"name": "bad_sum", "file": "tiny_ct_x2.pt", "network": "edsr_baseline", "scale": 3, "modality": "CT",
         "sha256": "0" * 64, "description": "test"},
        {"name": "any_scale_mr", "file": "tiny_ct_x2.pt", "network": "rmisr_bl", "scale": 2, "modality": "MR",
         "arbitrary_scale": True, "sha256": sha256_of(path), "description": "test"},
    ]
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"models": entries}))
    (tmp_path / "no_meta.json").write_text(json.dumps({"models": entries[:3]}))
    monkeypatch.setattr(loader, "REGISTRY_PATH", reg)
    monkeypatch.setattr(loader, "WEIGHTS_DIR", tmp_path)
    return tmp_path


def test_registry_default_model_and_sha256(registry):
    assert default_model(2, "CT")["name"] == "tiny_ct_x2"
    assert default_model(2, "MR")["name"] == "tiny_mr_x2"
    assert default_model(2, "OT")["name"] == "tiny_mr_x2"  # unknown modality: the percentile-normalised MR model
    assert default_model(2, None)["name"] == "tiny_mr_x2"
    no_weights = r"no shipped edsr_baseline weights for scale 4.*load_model\('bicubic'\)"
    with pytest.raises(WeightsError, match=no_weights) as e:
        default_model(4, "CT", network="edsr_baseline")
    assert "--" not in str(e.value) and "--model bicubic" in e.value.cli and "--weights PATH" in e.value.cli
    assert default_model(2, "CT", network="edsr_baseline")["name"] == "tiny_ct_x2"  # a network name -> its weights
    with pytest.raises(WeightsError, match="no shipped rmisr_bl weights for scale 2 and modality MR"):
        default_model(2, "MR", network="rmisr_bl", registry=registry / "no_meta.json")
    # an arbitrary-scale entry fits every scale, and only such entries serve through-plane upscaling
    assert default_model(3.7, "MR")["name"] == "any_scale_mr"
    assert default_model(2, "MR", arbitrary_scale=True)["name"] == "any_scale_mr"


def test_ct_input_without_ct_model_gets_the_mr_model_with_a_warning(registry, caplog):
    """The MR model normalises each volume by its percentiles, so it serves CT where no CT model does; a CT model
    (fixed HU window) never serves MR."""
    with caplog.at_level("WARNING", logger=loader.__name__):
        assert default_model(2.5, "CT", arbitrary_scale=True)["name"] == "any_scale_mr"
        assert default_model(4, "CT")["name"] == "any_scale_mr"
    assert "no shipped CT model for scale 2.5 (arbitrary scale); using the MR model any_scale_mr" in caplog.text
    assert default_model(2, "CT")["name"] == "tiny_ct_x2"  # a CT model, where there is one, wins
    with pytest.raises(WeightsError, match="no shipped weights for scale 3 and modality MR"):
        default_model(3, "MR", registry=registry / "no_meta.json")
    net, meta = load_model("tiny_ct_x2")
    assert meta["path"].endswith("tiny_ct_x2.pt")
    with pytest.raises(WeightsError, match="sha256 does not match"):
        load_model("bad_sum")


def test_shipped_registry_entries_are_consistent():
    """Every shipped entry names an existing file with the recorded sha256 and a loadable network; a superseded
    name is answered with its successor."""
    for entry in loader.read_registry():
        if entry["status"] == "superseded":
            with pytest.raises(WeightsError, match=f"{entry['name']}' is superseded.*'{entry['replaced_by']}'"):
                load_model(entry["name"])
            assert loader.is_shipped(loader._registry_entry(entry["replaced_by"]))
            continue
        assert {"name", "file", "network", "scale", "modality", "sha256", "description"} <= set(entry)
        assert sha256_of(loader.WEIGHTS_DIR / entry["file"]) == entry["sha256"]
        assert entry.get("self_ensemble", 1) in (1, 2, 4, 8)
        net, meta = load_model(entry["name"])
        assert meta["network"] == entry["network"] and meta["self_ensemble"] == entry.get("self_ensemble", 1)


def test_unknown_name_lists_the_valid_ones_and_a_missing_file_says_where_weights_belong(registry, tmp_path):
    with pytest.raises(WeightsError, match="'unknown': neither a checkpoint file nor a model name") as e:
        load_model("unknown")
    for name in ("tiny_ct_x2", "tiny_mr_x2", "bicubic", "bilinear", "nearest"):  # the registry's names, read back
        assert name in str(e.value)
    with pytest.raises(WeightsError, match="missing.pt: weights file not found; shipped weights belong in"):
        load_model(tmp_path / "missing.pt")


def test_model_that_does_not_match_the_weights_is_named_in_each_interfaces_words(tmp_path):
    from rmisr_monai.errors import ConfigurationError
    from rmisr_monai.inference.selection import select_network

    path = save_checkpoint(tmp_path / "m.pt", _tiny(), "edsr_baseline", KWARGS)
    with pytest.raises(ConfigurationError, match="model='srcnn' does not match the network 'edsr_baseline'") as e:
        select_network("srcnn", str(path), 2, "CT")
    assert e.value.cli.startswith("--model srcnn does not match")


def test_registry_recipe_sets_the_self_ensemble_unless_the_user_chooses(tmp_path, monkeypatch):
    import nibabel as nib
    import numpy as np

    from rmisr_monai.inference import upscale_volume
    from rmisr_monai.inference.batch import BatchUpscaler
    from rmisr_monai.io.read import read_volume

    path = save_checkpoint(tmp_path / "t.pt", _tiny(), "edsr_baseline", KWARGS, {"kind": "mr"})
    entry = {"name": "tiny_mr_x2", "file": "t.pt", "network": "edsr_baseline", "scale": 2, "modality": "MR",
             "sha256": sha256_of(path), "description": "test", "self_ensemble": 8}
    (tmp_path / "registry.json").write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(loader, "REGISTRY_PATH", tmp_path / "registry.json")
    monkeypatch.setattr(loader, "WEIGHTS_DIR", tmp_path)
    net, meta = load_model("tiny_mr_x2")
    assert meta["self_ensemble"] == 8 and load_model(path)[1]["self_ensemble"] == 1
    assert load_model("bicubic")[1]["self_ensemble"] == 1
    scan = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(0, 400, (12, 10, 2)).astype(np.float32), np.eye(4)), scan)
    volume = read_volume(scan)
    options = dict(scale=2, device="cpu", progress=False, precision="fp32", dtype="float32")
    by_recipe = BatchUpscaler(**options).upscale(volume).array
    chosen = BatchUpscaler(ensemble=1, **options).upscale(volume).array
    eight = upscale_volume(volume, net, 2, intensity={"kind": "mr"}, device="cpu", progress=False, precision="fp32",
                           ensemble=8).array
    np.testing.assert_allclose(by_recipe, eight, rtol=0, atol=1e-4)
    assert np.abs(chosen - eight).max() > 1e-3
