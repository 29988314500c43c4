"""Random-scale batches for arbitrary-scale (Meta-SR) training: sampler, aligned pairs, trainer hand-over, CLI run."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from rmisr_monai.data.random_scale import RandomScalePatchDataset, ScaleBatchSampler
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.training.__main__ import main
from rmisr_monai.training.data import PrepareScaledBatch, random_scale_loader
from rmisr_monai.weights.loader import load_model


def test_sampler_one_scale_per_batch_all_modes_in_range():
    sampler = ScaleBatchSampler(num_items=5, batch_size=3, num_batches=400, scale_range=(1.5, 3.0), seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 400
    kinds = set()
    for batch in batches:
        assert len(batch) == 3 and len({(sy, sx) for _, sy, sx in batch}) == 1
        assert all(0 <= i < 5 for i, _, _ in batch)
        _, sy, sx = batch[0]
        for s in (sy, sx):
            assert s == 1.0 or 1.5 <= s <= 3.0
        kinds.add("iso" if sy == sx else "rows" if sx == 1.0 else "cols" if sy == 1.0 else "indep")
    assert kinds == {"iso", "rows", "cols", "indep"}  # through-plane pairs (one axis alone) are drawn
    again = [b[0] for b in ScaleBatchSampler(5, 3, 400, (1.5, 3.0), seed=1)]
    assert again == [b[0] for b in batches]  # seeded


def test_sampler_rejects_bad_range():
    with pytest.raises(ConfigurationError):
        ScaleBatchSampler(5, 3, 10, scale_range=(0.5, 2.0))


@pytest.mark.parametrize("sy, sx", [(2.0, 2.0), (2.5, 1.0), (1.0, 3.7), (1.3, 3.1)])
def test_pairs_are_aligned_by_the_matlab_coordinate_rule(sy, sx):
    # a linear ramp: cubic convolution reproduces it (the stretched antialiasing kernel nearly: ~2e-5 here), so away
    # from the borders LR pixel j holds the ramp at the HR coordinate (j + 0.5) * s - 0.5 (MATLAB imresize); 1e-4 is
    # 0.05 HR pixel of the ramp, far below the half-pixel error of a wrong alignment rule.
    p = 12
    yy, xx = np.mgrid[:200, :200].astype(np.float64)
    ramp = (0.002 * yy + 0.003 * xx)[None]
    dataset = RandomScalePatchDataset([{"label": ramp}], patch_size=p, augment=False, seed=0)
    item = dataset[(0, sy, sx)]
    hr, lr = item["label"].double(), item["image"].double()
    assert hr.shape == (1, round(p * sy), round(p * sx)) and lr.shape == (1, p, p)
    # the patch's effective scale round(p * s) / p (3.7 -> 44 / 12), the one the engine runs a network at
    sy, sx = round(p * sy) / p, round(p * sx) / p
    assert item["scale"].tolist() == [sy, sx]
    j = np.arange(p)
    expect = (float(hr[0, 0, 0]) + 0.002 * ((j[:, None] + 0.5) * sy - 0.5) + 0.003 * ((j[None, :] + 0.5) * sx - 0.5))
    inner = slice(3, p - 3)
    np.testing.assert_allclose(lr[0, inner, inner].numpy(), expect[inner, inner], atol=1e-4)


def test_hr_patch_is_a_dihedral_copy_of_the_source():
    rng = np.random.default_rng(0)
    image = rng.random((1, 40, 40)).astype(np.float32)
    dataset = RandomScalePatchDataset([{"label": image}], patch_size=8, seed=3)
    hr = dataset[(0, 2.5, 1.0)]["label"][0].numpy()  # 20 x 8
    src = torch.from_numpy(image[0])
    views = [torch.rot90(v, k).numpy() for v in (src, src.flip(0)) for k in range(4)]
    found = any(
        np.array_equal(view[y : y + 20, x : x + 8], hr) for view in views for y in range(21) for x in range(33)
    )
    assert found


def test_prepare_scaled_batch_passes_the_batch_scale():
    batch = {"image": torch.zeros(2, 1, 4, 4), "label": torch.zeros(2, 1, 10, 4),
             "scale": torch.tensor([[2.5, 1.0], [2.5, 1.0]], dtype=torch.float64)}
    image, label, args, kwargs = PrepareScaledBatch()(batch, "cpu")
    assert image.shape == (2, 1, 4, 4) and label.shape == (2, 1, 10, 4) and args == ()
    assert kwargs == {"scale": (2.5, 1.0)}


def _synthetic_mr(path):
    zz, yy, xx = np.mgrid[:3, :48, :48]
    head = ((yy - 24) ** 2 + (xx - 24) ** 2 < 20**2) * (600.0 + 200.0 * np.sin(yy / 3.0))
    sitk.WriteImage(sitk.GetImageFromArray(head.astype(np.int16)), str(path))


def test_loader_batches_stack_at_their_scale(tmp_path):
    _synthetic_mr(tmp_path / "mr.nii.gz")
    loader, recipe = random_scale_loader([tmp_path / "mr.nii.gz"], "MR", patch=8, batch=3, batches=6,
                                         scale_range=(1.1, 4.0))
    assert recipe["kind"] == "mr"
    for batch in loader:
        sy, sx = batch["scale"][0].tolist()
        assert batch["image"].shape == (3, 1, 8, 8)
        assert batch["label"].shape == (3, 1, round(8 * sy), round(8 * sx))


def test_cli_trains_an_arbitrary_scale_network_and_transfers_a_body(tmp_path):
    _synthetic_mr(tmp_path / "mr.nii.gz")
    kwargs = '{"features": 32, "distilled": 8, "num_blocks": 1, "upsampler": "meta"}'
    common = ["--network", "rmisr_bl", "--network-kwargs", kwargs, "--modality", "MR", "--volumes",
              str(tmp_path / "mr.nii.gz"), "--patch", "8", "--batch", "2", "--epoch-length", "1"]
    sub = ["--network", "rmisr_bl", "--network-kwargs", '{"features": 32, "distilled": 8, "num_blocks": 1}',
           "--scale", "2", "--modality", "MR", "--volumes", str(tmp_path / "mr.nii.gz"), "--patch", "8", "--batch", "2",
           "--epoch-length", "1", "--iterations", "1", "--checkpoint-dir", str(tmp_path / "c0")]
    assert main([*sub, "--output", str(tmp_path / "x2.pt")]) == 0
    assert main([*common, "--scale-range", "1.1", "4.0", "--iterations", "2", "--lr", "1e-12",
                 "--transfer", str(tmp_path / "x2.pt"),
                 "--checkpoint-dir", str(tmp_path / "c1"), "--output", str(tmp_path / "meta.pt")]) == 0
    net, meta = load_model(tmp_path / "meta.pt")
    x2, _ = load_model(tmp_path / "x2.pt")
    assert meta["info"]["scale_range"] == [1.1, 4.0] and net.arbitrary_scale
    torch.testing.assert_close(net.head.weight, x2.head.weight)  # the body was transferred (lr ~0 keeps it)
    assert net(torch.rand(1, 1, 7, 9), (2.5, 1.0)).shape == (1, 1, 18, 9)
    with pytest.raises(SystemExit):  # a sub-pixel network cannot train on random scales
        main([*sub[:-2], "--scale-range", "1.1", "2.0", "--checkpoint-dir", str(tmp_path / "c2"),
              "--output", str(tmp_path / "bad.pt")])
