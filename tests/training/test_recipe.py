"""Training recipes (``python -m rmisr_monai.training --recipe FILE``): the loader refuses what is not an option,
naming the file; a recipe parses to the command the old shell tables ran (the literal x4 stage-8 command, and the
commands recorded in the shipped checkpoints); a recipe runs (2 iterations on tiny synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rmisr_monai.errors import InputFileError
from rmisr_monai.training.__main__ import build_parser, main, parse_args
from rmisr_monai.training.recipe import RECIPE_FORMAT, load_recipe, recipe_arguments
from rmisr_monai.weights.loader import load_model

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "benchmarks" / "recipes"
WEIGHTS = REPO / "rmisr_monai" / "weights"
# what the run was, not how it was asked for
NOT_COMPARED = {"recipe", "arguments", "shared"}


def _parsed(arguments: list[str]) -> dict:
    return {k: v for k, v in vars(parse_args(arguments)).items() if k not in NOT_COMPARED}


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def test_loader_rejects_what_is_not_a_training_option_and_names_the_file(tmp_path):
    parser = build_parser()
    good = {"format": RECIPE_FORMAT, "network": "srcnn", "scale": 2, "record": {"any": ["thing"]}}
    assert load_recipe(_write(tmp_path / "good.json", good), parser) == good
    for name, recipe, message in [
        ("unknown.json", {**good, "iteration": 5}, r"unknown recipe keys \['iteration'\]"),
        ("format.json", {**good, "format": "rmisr-monai/recipe/0"}, "expected 'rmisr-monai/recipe/1'"),
        ("noformat.json", {"network": "srcnn"}, "format None"),
        ("resume.json", {**good, "resume": "runs/x/checkpoint.pt"}, r"unknown recipe keys \['resume'\]"),
        ("list.json", {**good, "scale": [2, 3]}, "scale: one value"),
        ("nested.json", {**good, "volumes": [["a", "b"]]}, "volumes: a list of values"),
        ("pair.json", {**good, "scale_range": [1.1, 2.0, 4.0]}, "scale_range: 2 values, not 3"),
        ("kwargs.json", {**good, "network_kwargs": "{}"}, "network_kwargs: a JSON object"),
        ("flag.json", {**good, "fov_rim_tiles": "yes"}, "fov_rim_tiles: true or false"),
    ]:
        path = _write(tmp_path / name, recipe)
        with pytest.raises(InputFileError, match=message) as error:
            load_recipe(path, parser)
        assert error.value.path == str(path) and str(error.value).startswith(f"{path}: ")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputFileError, match="broken.json: not a JSON recipe"):
        load_recipe(tmp_path / "broken.json", parser)
    _write(tmp_path / "array.json", [good])
    with pytest.raises(InputFileError, match="array.json: a recipe is a JSON object"):
        load_recipe(tmp_path / "array.json", parser)
    with pytest.raises(InputFileError, match="missing.json: cannot read the recipe"):
        parse_args(["--recipe", str(tmp_path / "missing.json")])


def test_arguments_follow_the_recipe_and_the_command_line_overrides_them(tmp_path):
    recipe = {
        "format": RECIPE_FORMAT, "description": "not an option", "network": "rmisr_bl",
        "network_kwargs": {"features": 8}, "volumes": ["d/a.nii.gz", "d/b"], "modality": "MR", "lr": 5e-05,
        "fov_padding": [-3024, -2048], "fov_rim_tiles": True, "checkpoint_dir": "runs/x", "output": "runs/x.pt",
    }
    path = _write(tmp_path / "r.json", recipe)
    arguments = recipe_arguments(load_recipe(path, build_parser()), build_parser(), shared="/data")
    assert arguments == [
        "--network", "rmisr_bl", "--network-kwargs", '{"features": 8}', "--volumes", "/data/d/a.nii.gz", "/data/d/b",
        "--modality", "MR", "--lr", "5e-05", "--fov-padding", "-3024", "-2048", "--fov-rim-tiles",
        "--checkpoint-dir", "runs/x", "--output", "runs/x.pt",
    ]
    args = parse_args(["--recipe", str(path), "--shared", "/data", "--lr", "1e-3", "--volumes", "own.nii.gz",
                       "--no-fov-rim-tiles"])
    assert (args.lr, args.volumes, args.fov_rim_tiles) == (1e-3, ["own.nii.gz"], False)  # own paths as given
    assert args.fov_padding == [-3024.0, -2048.0] and args.recipe == path
    assert args.arguments[: len(arguments)] == arguments


# benchmarks/campaign/train_bl64.sh 4 8 before the recipes replaced its case table (commit cec5a6f), with
# volumes.sh expanded: SEED=$((STAGE + 1)), the stage 7-9 line of the table
_M, _S = "../shared/data/medical", "../shared/data/medical/dicom_series"
OLD_X4_STAGE_8 = [
    "--network", "rmisr_bl", "--network-kwargs", '{"features": 64}', "--scale", "4", "--modality", "MR", "--volumes",
    f"{_M}/ct/totalseg_chest_cta_crop_1p5mm.nii.gz", f"{_M}/ct/totalseg_abdomen_ct_3mm.nii.gz",
    f"{_S}/ct_siemens_biograph_abdomen_j2k", f"{_S}/ct_philips_brilliance16p_chest_subset",
    f"{_S}/ct_ge_lightspeed16_abdomen_subset", f"{_S}/ct_philips_bigbore_pelvis_subset",
    f"{_M}/mr/brain_t1_0p88mm_uint8.nii.gz", f"{_M}/mr/brain_t2w_int16.nii.gz", f"{_M}/mr/brain_pd_2p4mm_uint8.nii.gz",
    f"{_M}/mr/totalseg_abdomen_mr_3mm.nii.gz", f"{_S}/mr_siemens_prisma_t1_sag_brain",
    f"{_S}/mr_siemens_avanto_t1_thigh_subset", f"{_S}/mr_siemens_avanto_t2fs_thigh_subset",
    f"{_S}/mr_toshiba_titan_t2_abdomen_pelvis_subset", f"{_S}/mr_ge_signa_breast_dce_subset",
    "--iterations", "5000", "--patch", "32", "--batch", "16", "--lr", "5e-5", "--seed", "9",
    "--checkpoint-every", "500",
    "--checkpoint-dir", "runs/bl64_x4s8", "--output", "runs/rmisr_bl64_x4s8.pt", "--init", "rmisr_bl64_ct_x4",
    "--pictures", "../shared/data/natural_train/T91", "../shared/data/natural_train/BSD200", "--pictures-share", "0.35",
    "--fov-padding", "-3024", "-2048", "--fov-padding-share", "0.3", "--fov-rim-tiles",
]


def test_x4_recipe_is_the_old_shell_table_command():
    recipe = ["--recipe", str(RECIPES / "rmisr_bl64_x4.json"), "--shared", "../shared"]
    assert _parsed(recipe) == _parsed(OLD_X4_STAGE_8)
    expanded = parse_args(recipe).arguments
    flags = [a for a in OLD_X4_STAGE_8 if a.startswith("--")]
    assert sorted(a for a in expanded if a.startswith("--") and a not in ("--recipe", "--shared")) == sorted(flags)


def _recorded_command(file: str) -> list[str]:
    """The arguments a shipped checkpoint's ``info["command"]`` records (written as ``" ".join(argv)``, so a JSON
    argument with spaces is split: its words are joined again until the braces balance)."""
    command = torch.load(WEIGHTS / file, weights_only=True, map_location="cpu")["info"]["command"]
    words = command.removeprefix("python -m rmisr_monai.training ").split(" ")
    arguments: list[str] = []
    while words:
        word = words.pop(0)
        while word.count("{") > word.count("}"):
            word += " " + words.pop(0)
        arguments.append(word)
    return arguments


@pytest.mark.parametrize("file", ["rmisr_bl64_x3.pt", "rmisr_bl64_mr_x3.pt", "rmisr_bl64_meta.pt"])
def test_recipe_is_the_command_its_shipped_checkpoint_records(file):
    recorded = _recorded_command(file)
    assert recorded[0] == "--network" and "--volumes" in recorded
    recipe = ["--recipe", str(RECIPES / file.replace(".pt", ".json")), "--shared", "../shared"]
    assert _parsed(recipe) == _parsed(recorded)


def test_every_recipe_names_the_network_its_models_were_saved_with():
    """What the recipe builds is what the registry entries it names hold: network, arguments, intensity kind."""
    registry = {m["name"]: m for m in json.loads((WEIGHTS / "registry.json").read_text())["models"]}
    recipes = sorted(RECIPES.glob("*.json"))
    assert len(recipes) >= 7
    for path in recipes:
        recipe = load_recipe(path, build_parser())
        args = parse_args(["--recipe", str(path)])
        kwargs = {"in_channels": 1, "scale": args.scale, **json.loads(args.network_kwargs)}
        for name in recipe["models"]:
            checkpoint = torch.load(WEIGHTS / registry[name]["file"], weights_only=True, map_location="cpu")
            assert (checkpoint["network"], checkpoint["network_kwargs"]) == (args.network, kwargs), path.name
            assert checkpoint["intensity"]["kind"] == args.modality.lower(), path.name


def test_a_recipe_runs_two_iterations_from_its_shipped_file(data, ct, tmp_path):
    """The x4 recipe as it is (its network, --init of the shipped file, pictures, padded rim tiles), on a tiny CT
    and MR volume and two pictures: the weights move a little from the shipped ones, the checkpoint records it."""
    volume, pictures = data
    args = [
        "--recipe", str(RECIPES / "rmisr_bl64_x4.json"), "--volumes", str(ct), str(volume), "--pictures",
        *map(str, pictures[:2]), "--iterations", "2", "--patch", "8", "--batch", "2", "--epoch-length", "1",
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--output", str(tmp_path / "x4.pt"),
    ]
    assert main(args) == 0
    trained, meta = load_model(tmp_path / "x4.pt")
    shipped, shipped_meta = load_model("rmisr_bl64_ct_x4")
    assert meta["network_kwargs"] == shipped_meta["network_kwargs"] and meta["intensity"]["kind"] == "mr"
    info = meta["info"]
    assert info["recipe"] == str(RECIPES / "rmisr_bl64_x4.json") and info["init"] == "rmisr_bl64_ct_x4"
    assert (info["iterations"], info["pictures_share"], info["fov_padding"], info["fov_padding_share"]) == (
        2, 0.35, [-3024.0, -2048.0], 0.3)
    assert info["fov_rim_tiles"] and info["arguments"][-len(args):] == args
    moved = [float((a - b).abs().max()) for a, b in zip(trained.state_dict().values(), shipped.state_dict().values())]
    assert 0 < max(moved) < 0.01  # two Adam steps at lr 5e-5 from the shipped weights, not from random ones


def test_every_shipped_file_of_a_recipe_points_at_it_and_the_recipe_parses():
    """The registry's ``recipe`` fields and the recipes' ``models`` lists name each other; every recipe a registry
    entry points at exists and parses to a training command."""
    registry = json.loads((WEIGHTS / "registry.json").read_text())["models"]
    pointed = {entry["name"]: entry["recipe"] for entry in registry if "recipe" in entry}
    named = {name: f"benchmarks/recipes/{path.name}" for path in RECIPES.glob("*.json")
             for name in json.loads(path.read_text())["models"]}
    assert pointed == named
    files = {entry["file"] for entry in registry if "recipe" in entry}
    assert files == {"rmisr_bl64_x2.pt", "rmisr_bl64_mr_x2.pt", "rmisr_bl64_x3.pt", "rmisr_bl64_mr_x3.pt",
                     "rmisr_bl64_x4.pt",
                     "rmisr_bl64_meta.pt", "rmisr_vp_ct_x4.pt"}
    for name, recipe in pointed.items():
        assert (REPO / recipe).is_file(), name
        assert parse_args(["--recipe", str(REPO / recipe)]).output.suffix == ".pt"
