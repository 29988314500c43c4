"""python -m rmisr_monai.training: a short run on a synthetic CT writes a checkpoint the engine can load, resumes;
exactly the iterations asked, with the schedule and log interval of what runs; --help shows the defaults."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from rmisr_monai.training.__main__ import main
from rmisr_monai.training.data import slice_patch_loader
from rmisr_monai.weights.loader import load_model


def _synthetic_ct(path):
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:6, :40, :40]
    body = ((yy - 20) ** 2 + (xx - 20) ** 2 < 15**2) * 1024.0 - 1000.0
    hu = body + rng.normal(0, 20, body.shape) + 300.0 * ((yy - 20) ** 2 + (xx - 14) ** 2 < 16)
    sitk.WriteImage(sitk.GetImageFromArray(hu.astype(np.int16)), str(path))


def test_loader_pairs_are_bicubic_aligned(tmp_path):
    _synthetic_ct(tmp_path / "ct.nii.gz")
    loader, recipe = slice_patch_loader([tmp_path / "ct.nii.gz"], "CT", scale=2, patch=8, batch=4, samples=8)
    batches = list(loader)
    assert len(batches) == 2 and recipe["kind"] == "ct"
    lr, hr = batches[0]["image"], batches[0]["label"]
    assert lr.shape == (4, 1, 8, 8) and hr.shape == (4, 1, 16, 16)
    assert 0.0 <= float(hr.min()) and float(hr.max()) <= 1.0  # CT window -> [0, 1], normalised once
    # LR is the 2x2 box-like MATLAB bicubic of HR: its mean equals the HR mean up to the kernel's border effects
    torch.testing.assert_close(lr.mean(), hr.mean(), atol=0.02, rtol=0)


def test_train_writes_loadable_checkpoint_and_resumes(tmp_path):
    _synthetic_ct(tmp_path / "ct.nii.gz")
    common = [
        "--network", "srcnn", "--scale", "2", "--modality", "CT", "--volumes", str(tmp_path / "ct.nii.gz"),
        "--patch", "8", "--batch", "2", "--epoch-length", "1", "--checkpoint-dir", str(tmp_path / "ckpt"),
    ]
    assert main([*common, "--iterations", "2", "--output", str(tmp_path / "a.pt")]) == 0
    net, meta = load_model(tmp_path / "a.pt")
    assert meta["network"] == "srcnn" and meta["intensity"]["kind"] == "ct"
    assert net(torch.rand(1, 1, 5, 7)).shape == (1, 1, 10, 14)
    final = next((tmp_path / "ckpt").glob("checkpoint_final_iteration=2.pt"))
    assert main([*common, "--iterations", "4", "--resume", str(final), "--output", str(tmp_path / "b.pt")]) == 0
    assert list((tmp_path / "ckpt").glob("checkpoint_final_iteration=4.pt"))  # continued from 2 to 4


def test_init_fine_tunes_from_a_model_checkpoint(tmp_path):
    _synthetic_ct(tmp_path / "ct.nii.gz")
    common = [
        "--scale", "2", "--modality", "CT", "--volumes", str(tmp_path / "ct.nii.gz"), "--patch", "8", "--batch", "2",
        "--epoch-length", "1", "--iterations", "1", "--lr", "1e-12",
    ]
    assert main(["--network", "srcnn", *common, "--checkpoint-dir", str(tmp_path / "c1"),
                 "--output", str(tmp_path / "a.pt")]) == 0
    # another seed: without --init the second run would start from other random weights
    assert main(["--network", "srcnn", *common, "--seed", "1", "--init", str(tmp_path / "a.pt"), "--checkpoint-dir",
                 str(tmp_path / "c2"), "--output", str(tmp_path / "b.pt")]) == 0
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
    assert b["info"]["init"] == "a.pt"
    for key, value in a["state_dict"].items():  # a learning rate of 1e-12 keeps the initial weights
        torch.testing.assert_close(b["state_dict"][key], value, atol=1e-9, rtol=0)
    with pytest.raises(SystemExit, match="holds srcnn"):
        main(["--network", "fsrcnn", *common, "--init", str(tmp_path / "a.pt"), "--checkpoint-dir",
              str(tmp_path / "c3"), "--output", str(tmp_path / "c.pt")])


def test_iterations_run_exactly_with_the_schedule_and_log_interval_of_what_runs(tmp_path, caplog):
    """--iterations 6 in epochs of 100: 6 optimiser steps, 6 recorded, 3 halvings (every 2), a loss line every 2."""
    _synthetic_ct(tmp_path / "ct.nii.gz")
    args = [
        "--network", "srcnn", "--network-kwargs", '{"features": [8, 4]}', "--scale", "2", "--modality", "CT",
        "--volumes", str(tmp_path / "ct.nii.gz"), "--patch", "8", "--batch", "2", "--iterations", "6",
        "--log-every", "2", "--checkpoint-dir", str(tmp_path / "ckpt"), "--output", str(tmp_path / "a.pt"),
    ]
    caplog.set_level(logging.INFO)
    # --transfer logs before the trainer exists (this once silenced every loss line); no tensor of rmisr_bl fits srcnn
    assert main([*args, "--transfer", "rmisr_bl64_ct_x2"]) == 0
    assert [int(m) for m in re.findall(r"Iter: (\d+)/", caplog.text)] == [2, 4, 6]
    caplog.clear()
    assert main(args) == 0
    info = torch.load(tmp_path / "a.pt", weights_only=True)["info"]
    assert info["iterations"] == 6
    assert info["final_lr"] == pytest.approx(2e-4 * 0.5**3)  # halved after iterations 2, 4 and 6
    (final,) = (tmp_path / "ckpt").glob("checkpoint_final_iteration=*.pt")
    assert final.name == "checkpoint_final_iteration=6.pt"
    state = torch.load(final, weights_only=False)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {6}  # Adam counted 6 steps
    logged = [int(m) for m in re.findall(r"Iter: (\d+)/", caplog.text)]
    assert logged == [2, 4, 6]
    # resumed to 9 in all: 3 more steps, in the same (still partial) epoch
    resumed = [*args[:-2], "--output", str(tmp_path / "b.pt"), "--iterations", "9", "--resume", str(final)]
    assert main(resumed) == 0
    assert torch.load(tmp_path / "b.pt", weights_only=True)["info"]["iterations"] == 9
    state = torch.load(tmp_path / "ckpt" / "checkpoint_final_iteration=9.pt", weights_only=False)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {9}


def test_halve_every_replaces_the_quarter_schedule(tmp_path, capsys):
    """--halve-every 4 over 6 iterations: one halving (after 4), where the quarter schedule halves three times."""
    _synthetic_ct(tmp_path / "ct.nii.gz")
    args = [
        "--network", "srcnn", "--network-kwargs", '{"features": [8, 4]}', "--scale", "2", "--modality", "CT",
        "--volumes", str(tmp_path / "ct.nii.gz"), "--patch", "8", "--batch", "2", "--iterations", "6",
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--output", str(tmp_path / "a.pt"),
    ]
    assert main([*args, "--halve-every", "4"]) == 0
    assert torch.load(tmp_path / "a.pt", weights_only=True)["info"]["final_lr"] == pytest.approx(2e-4 * 0.5)
    with pytest.raises(SystemExit):
        main([*args, "--halve-every", "0"])
    assert "--halve-every must be >= 1, not 0" in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--iterations", 2000), ("--batch", 16), ("--lr", 0.0002), ("--log-every", 50),
                            ("--epoch-length", 100), ("--patch", 32), ("--network", "rmisr_bl")]:
        assert re.search(rf"{option} \S+ .*?\(default: {default}\)", text), option
    assert "(default: None)" not in text  # required options and unset ones show no meaningless default


def test_images_train_on_rgb_pictures_in_eight_bit_units(tmp_path):
    """--images: RGB pictures (a folder and a file) for a 3-channel network, 0..255 onto [0, 1] in the checkpoint;
    pictures smaller than the HR patch are left out, and a run on pictures that are all too small stops."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "pics").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / "pics" / f"p{i}.png")
    Image.fromarray(rng.integers(0, 256, (10, 30), dtype=np.uint8)).save(tmp_path / "small.bmp")  # 10 < 16
    args = [
        "--network", "srcnn", "--network-kwargs", '{"in_channels": 3, "features": [8, 4]}', "--scale", "2",
        "--images", str(tmp_path / "pics"), str(tmp_path / "small.bmp"), "--patch", "8", "--batch", "2",
        "--iterations", "2", "--checkpoint-dir", str(tmp_path / "ckpt"), "--output", str(tmp_path / "a.pt"),
    ]
    assert main(args) == 0
    net, meta = load_model(tmp_path / "a.pt")
    assert (meta["intensity"]["kind"], meta["intensity"]["a_min"], meta["intensity"]["a_max"]) == ("range", 0, 255)
    assert meta["info"]["data"] == ["pics", "small.bmp"]
    assert net(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)
    from rmisr_monai.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least 16 pixels"):
        main([*args[:6], "--images", str(tmp_path / "small.bmp"), *args[9:]])


def test_images_and_volumes_options_are_checked(tmp_path, capsys):
    common = ["--checkpoint-dir", str(tmp_path / "c"), "--output", str(tmp_path / "a.pt")]
    for bad, message in [
        (["--volumes", "v.nii.gz"], "--volumes needs --modality"),
        (["--images", "p.png", "--modality", "MR"], "--images trains at one --scale"),
        (["--images", "p.png", "--volumes", "v.nii.gz", "--modality", "MR"], "not allowed with argument"),
        ([], "one of the arguments --volumes --images is required"),
        (["--images", "p.png", "--contrast-gamma", "0.6", "1.7"], "--contrast-gamma changes the contrast"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*bad, *common])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "vols").mkdir()
    _synthetic_ct(tmp_path / "vols" / "ct.nii.gz")
    from rmisr_monai.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="vols: not a 2D image file or a folder of them"):
        main(["--images", str(tmp_path / "vols"), *common])


def test_sr_loss_takes_json_arguments_of_the_network_loss():
    from rmisr_monai.errors import ConfigurationError
    from rmisr_monai.losses import DualTaskLoss, RMISRVPLoss
    from rmisr_monai.training.trainer import sr_loss

    vp = sr_loss("rmisr_vp", alpha=3.0, contextual={"max_positions": 100, "patch_size": 1})
    assert isinstance(vp, RMISRVPLoss) and vp.alpha == 3.0 and vp.beta == 1.0
    assert (vp.contextual.max_positions, vp.contextual.patch_size) == (100, 1)
    assert sr_loss("rmisr_vp").contextual.max_positions == 65 * 65  # the official default
    assert isinstance(sr_loss("dense_sr"), DualTaskLoss)
    assert isinstance(sr_loss("rmisr_bl"), torch.nn.L1Loss)
    with pytest.raises(ConfigurationError, match="plain L1 loss, which takes no"):
        sr_loss("rmisr_bl", alpha=1.0)
