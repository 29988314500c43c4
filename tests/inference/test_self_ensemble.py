"""Geometric self-ensemble in the engine: the mean over flipped/rotated copies, checked against the same network run
on numpy-rotated volumes, the identity for an equivariant operator, the scale pair swapped under a quarter turn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmisr_monai.cli import main
from rmisr_monai.errors import ConfigurationError
from rmisr_monai.inference import upscale_array
from rmisr_monai.inference.ensemble import dihedral_transforms, self_ensemble
from rmisr_monai.networks import get_network

VOLUME = np.random.default_rng(0).normal(size=(18, 22, 2)).astype(np.float32)  # (i, j, k): non-square slices


def _plain(volume, net, scale):
    return upscale_array(volume, net, scale, device="cpu", progress=False, precision="fp32", batch_size=2)


def test_bicubic_is_its_own_ensemble():
    bicubic = get_network("bicubic", scale=2)
    plain = _plain(VOLUME, bicubic, 2)
    for n in (2, 4, 8):
        out = upscale_array(VOLUME, bicubic, 2, device="cpu", progress=False, ensemble=n)
        np.testing.assert_allclose(out, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ensemble_is_the_mean_over_numpy_transformed_volumes(n):
    torch.manual_seed(0)
    net = get_network("rmisr_bl", in_channels=1, scale=2, features=32, num_blocks=1).eval()
    out = upscale_array(VOLUME, net, 2, device="cpu", progress=False, precision="fp32", batch_size=2, ensemble=n)
    reference = np.zeros_like(out)
    for turns, flip in dihedral_transforms(n):
        v = np.rot90(VOLUME, turns, axes=(0, 1))
        v = v[:, ::-1] if flip else v
        y = _plain(np.ascontiguousarray(v), net, 2)
        y = y[:, ::-1] if flip else y
        reference += np.rot90(y, -turns, axes=(0, 1))
    reference /= n
    np.testing.assert_allclose(out, reference, rtol=0, atol=2e-5)
    assert np.abs(out - _plain(VOLUME, net, 2)).max() > 1e-3  # the network is not equivariant: the mean differs


def test_quarter_turns_swap_the_scale_pair_and_are_undone():
    calls = []

    def forward(x, pair):  # nearest upscaling by the pair, remembering what it was given
        calls.append((tuple(x.shape[-2:]), pair))
        return x.repeat_interleave(int(pair[0]), dim=2).repeat_interleave(int(pair[1]), dim=3) * 2.0

    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    out = self_ensemble(forward, x, 8, (2.0, 1.0))
    np.testing.assert_array_equal(out.numpy(), forward(x, (2.0, 1.0)).numpy())
    assert [pair for _, pair in calls[:8]] == [(2.0, 1.0)] * 2 + [(1.0, 2.0)] * 2 + [(2.0, 1.0)] * 2 + [(1.0, 2.0)] * 2
    assert [shape for shape, _ in calls[:8]] == [(3, 4), (3, 4), (4, 3), (4, 3)] * 2
    assert len(dihedral_transforms(8)) == len(set(dihedral_transforms(8))) == 8


def test_through_plane_per_axis_scales_keep_their_axes():
    # bicubic at (2.5, 1): any quarter turn run with the unswapped pair would stretch the wrong axis
    bicubic = get_network("bicubic", scale=2)
    kwargs = dict(axis=0, through_plane=True, device="cpu", progress=False)
    plain = upscale_array(VOLUME, bicubic, 2.5, **kwargs)
    out = upscale_array(VOLUME, bicubic, 2.5, ensemble=8, **kwargs)
    assert out.shape == plain.shape == (45, 22, 2)
    np.testing.assert_allclose(out, plain, rtol=0, atol=1e-5)


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="self_ensemble must be one of 1, 2, 4, 8"):
        upscale_array(VOLUME, get_network("bicubic", scale=2), 2, device="cpu", progress=False, ensemble=3)
    argv = ["upscale", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--scale", "2", "--self-ensemble", "3"]
    rc = main(argv)
    assert rc != 0 and not (tmp_path / "b.nii.gz").exists()
