"""Batches of paired patches at a random scale per batch, for arbitrary-scale (Meta-SR) networks.

Meta-SR (Hu et al., CVPR 2019, §4.1) trains one network for every scale by drawing the scale per batch, so that
all patches of a batch share the HR size and can be stacked. RMISR §4.3 uses the same upsampler. Here:

* :class:`ScaleBatchSampler` draws, per batch, a pair ``(sy, sx)``: both axes the same scale, one axis alone
  (``(s, 1)`` or ``(1, s)``: through-plane upscaling of a thick-slice volume, where a slice is upscaled along one
  axis only), or both axes independently; each scale uniform in ``scale_range`` (Meta-SR: 1.1 to 4.0). It yields
  lists of ``(item index, sy, sx)``.
* :class:`RandomScalePatchDataset` answers such a key with an HR patch of ``(round(p * sy), round(p * sx))``
  pixels and its LR of ``p x p`` pixels: MATLAB-compatible bicubic ``imresize(hr, 1 / s)`` per axis with the
  output size fixed to ``p`` (the same degradation as :mod:`rmisr_monai.data.pairs`), where ``s`` is the patch's
  effective scale ``round(p * s) / p`` (the one the volume engine runs a network at), which is also the
  ``"scale"`` returned; the network output ``round(p * s)``
  (:func:`~rmisr_monai.networks.blocks.upsample.scaled_size`) is exactly the HR size. The crop,
  the 8 dihedral symmetries and the optional LR noise are those of :mod:`rmisr_monai.data.pairs`, done here with
  one random generator per dataset because the crop size changes per batch.

A batch is ``{"image": (N, C, p, p), "label": (N, C, Hy, Hx), "scale": (N, 2)}``; the trainer passes
``scale[0]`` to the network (:class:`rmisr_monai.training.data.PrepareScaledBatch`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rmisr_monai.errors import ConfigurationError
from rmisr_monai.networks.blocks.upsample import scaled_size
from rmisr_monai.ops.resize import imresize

__all__ = ["META_SCALE_RANGE", "SCALE_MODES", "ScaleBatchSampler", "RandomScalePatchDataset"]

META_SCALE_RANGE = (1.1, 4.0)  # Meta-SR §4.1: scales 1.1 to 4.0
# per-batch scale modes and their probabilities: both axes alike, one axis alone (either), both independent
SCALE_MODES = {"isotropic": 0.4, "rows": 0.2, "columns": 0.2, "independent": 0.2}


class ScaleBatchSampler(Sampler):
    """Batches of ``(item index, sy, sx)`` keys, one random scale pair per batch (module docstring).

    Args:
        num_items: items to draw from (with replacement).
        batch_size: keys per batch.
        num_batches: batches in one pass (the sampler's length).
        scale_range: ``(low, high)`` of the uniform scale draw; ``low >= 1``.
        modes: ``{mode: probability}`` over :data:`SCALE_MODES`'s keys.
        seed: random state; a second pass continues the same stream.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        num_batches: int,
        scale_range: Sequence[float] = META_SCALE_RANGE,
        modes: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        low, high = (float(s) for s in scale_range)
        if not 1.0 <= low <= high:
            raise ConfigurationError(f"scale_range must satisfy 1 <= low <= high, got {tuple(scale_range)}")
        if min(num_items, batch_size, num_batches) < 1:
            raise ConfigurationError(
                f"num_items, batch_size and num_batches must be >= 1, got {num_items}, {batch_size}, {num_batches}"
            )
        modes = dict(SCALE_MODES if modes is None else modes)
        unknown = set(modes) - set(SCALE_MODES)
        if unknown or not modes or sum(modes.values()) <= 0:
            raise ConfigurationError(f"modes must weight some of {', '.join(SCALE_MODES)}, got {modes}")
        self.num_items, self.batch_size, self.num_batches = num_items, batch_size, num_batches
        self.low, self.high = low, high
        self.mode_names = list(modes)
        self.mode_probs = np.asarray([modes[m] for m in self.mode_names], dtype=float) / sum(modes.values())
        self.rng = np.random.default_rng(seed)

    def draw_pair(self) -> tuple[float, float]:
        """One ``(sy, sx)`` pair."""
        mode = self.mode_names[self.rng.choice(len(self.mode_names), p=self.mode_probs)]
        s = float(self.rng.uniform(self.low, self.high))
        if mode == "isotropic":
            return s, s
        if mode == "rows":
            return s, 1.0
        if mode == "columns":
            return 1.0, s
        return s, float(self.rng.uniform(self.low, self.high))

    def __iter__(self) -> Iterator[list[tuple[int, float, float]]]:
        for _ in range(self.num_batches):
            sy, sx = self.draw_pair()
            indices = self.rng.integers(0, self.num_items, size=self.batch_size)
            yield [(int(i), sy, sx) for i in indices]

    def __len__(self) -> int:
        return self.num_batches


class RandomScalePatchDataset(Dataset):
    """Paired patches at the scale given with each key ``(index, sy, sx)`` (module docstring).

    Args:
        data: items ``{"label": (C, H, W) array or tensor in [0, 1], ...}``, e.g. from
            :func:`~rmisr_monai.data.slices.volume_slice_items` (already normalised per volume).
        patch_size: LR patch size ``p``.
        augment: the 8 dihedral symmetries with equal probability.
        noise_sigma: maximum standard deviation of additive Gaussian LR noise (uniform in ``[0, noise_sigma]``),
            in the items' normalised units.
        seed: random state of crops, augmentation and noise.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        patch_size: int,
        augment: bool = True,
        noise_sigma: float = 0.0,
        seed: int = 0,
    ) -> None:
        if patch_size < 1 or noise_sigma < 0:
            raise ConfigurationError(f"need patch_size >= 1 and noise_sigma >= 0, got {patch_size}, {noise_sigma}")
        self.items = [torch.as_tensor(np.asarray(d["label"]), dtype=torch.float32) for d in data]
        if not self.items:
            raise ConfigurationError("RandomScalePatchDataset needs at least one item")
        self.patch_size, self.augment, self.noise_sigma = patch_size, augment, noise_sigma
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def _crop(self, image: torch.Tensor, size_h: int, size_w: int) -> torch.Tensor:
        """A random ``size_h x size_w`` window, after edge padding (as ``SpatialPadd(mode="edge")`` in data.pairs)."""
        h, w = image.shape[-2:]
        if h < size_h or w < size_w:
            pad = (0, max(0, size_w - w), 0, max(0, size_h - h))
            image = torch.nn.functional.pad(image[None], pad, mode="replicate")[0]
            h, w = image.shape[-2:]
        y = int(self.rng.integers(0, h - size_h + 1))
        x = int(self.rng.integers(0, w - size_w + 1))
        return image[..., y : y + size_h, x : x + size_w]

    def __getitem__(self, key: tuple[int, float, float]) -> dict[str, torch.Tensor]:
        index, sy, sx = key
        p = self.patch_size
        out_h, out_w = scaled_size(p, sy), scaled_size(p, sx)
        side = max(out_h, out_w)  # augment a square, then cut the HR window: rotations keep the HR shape
        square = self._crop(self.items[index], side, side)
        if self.augment:  # a flip then k quarter turns: the 8 symmetries of the square, 1/8 each
            if self.rng.random() < 0.5:
                square = square.flip(-2)
            square = torch.rot90(square, int(self.rng.integers(0, 4)), dims=(-2, -1))
        hr = self._crop(square, out_h, out_w).contiguous()
        # the pair the patch really has: round(p * s) / p, as the engine runs a network on a slice (its effective
        # scale); the degradation and the network's position projection then agree on where each pixel lies
        sy, sx = out_h / p, out_w / p
        lr = imresize(hr, (1.0 / sy, 1.0 / sx), output_shape=(p, p))
        if self.noise_sigma > 0:
            sigma = float(self.rng.uniform(0.0, self.noise_sigma))
            noise = torch.from_numpy(self.rng.standard_normal(lr.shape).astype(np.float32))
            lr = lr + sigma * noise
        return {"image": lr.to(torch.float32), "label": hr, "scale": torch.tensor([sy, sx], dtype=torch.float64)}
