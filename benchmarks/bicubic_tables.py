"""Reproduce the "Bicubic" rows of SR tables (RMISR Table 1, Ren et al. 2021; IMDN/VDSR tables) with our transforms.

Protocol, one HR image at a time (the standard MATLAB one, no tuning):

1. read the 8-bit HR PNG, channel first, float64 in 0..255 (``bridge`` in Set14 is single-channel grey);
2. ``BicubicDegrade(s, crop_to_multiple=True)``: crop the HR image to a multiple of ``s`` and downscale with
   MATLAB-compatible antialiased bicubic; round and clip the LR image to uint8 as saving it in MATLAB does;
3. ``bicubic_resize(lr, s)`` back to the HR size, rounded and clipped to 0..255;
4. PSNR and SSIM on the BT.601 Y channel (grey: R = G = B), ``s`` pixels shaved from each border, data range 255;
5. the dataset figure is the mean over its images.

    python benchmarks/bicubic_tables.py [--shared ../shared] [--datasets Set5 Set14] [--scales 2 3 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from rmisr_monai.metrics import psnr, ssim
from rmisr_monai.transforms import BicubicDegrade, bicubic_resize

# Published Y-channel PSNR / SSIM of bicubic interpolation (REFERENCES.md f2: IMDN images/psnr_ssim.png for x2,
# the VDSR-derived tables for x3/x4; RMISR Table 1 prints 26.10 dB for Set14 x4 where most tables print 26.00).
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}
RMISR_TABLE1_SET14_X4 = 26.10
PIXEL_MAX = 255.0  # 8-bit images


def to_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's float -> uint8 conversion: round half away from zero (values are >= 0 after clipping), clip."""
    return np.floor(np.clip(x, 0.0, PIXEL_MAX) + 0.5)


def read_hr(path: Path) -> np.ndarray:
    """An 8-bit PNG as a channel-first float64 array in 0..255."""
    array = np.asarray(Image.open(path), dtype=np.float64)
    return array[None] if array.ndim == 2 else np.moveaxis(array[..., :3], -1, 0)


def bicubic_scores(hr: np.ndarray, scale: int) -> tuple[float, float]:
    """Y-channel PSNR and SSIM of the bicubic round trip of one HR image (module docstring)."""
    degrade = BicubicDegrade(scale, crop_to_multiple=True)
    hr = degrade.crop(hr)
    lr = to_uint8(degrade(hr))
    sr = to_uint8(bicubic_resize(lr, scale))
    kwargs = dict(data_range=PIXEL_MAX, shave=scale, y_channel=True)
    return float(psnr(sr, hr, **kwargs)), float(ssim(sr, hr, **kwargs))


def dataset_scores(folder: Path, scale: int) -> tuple[float, float]:
    """Mean Y-channel PSNR and SSIM of bicubic over the PNG images of ``folder``."""
    scores = np.array([bicubic_scores(read_hr(path), scale) for path in sorted(folder.glob("*.png"))])
    return float(scores[:, 0].mean()), float(scores[:, 1].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--datasets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args()
    print(f"{'dataset':8} {'scale':>5} {'PSNR':>7} {'published':>9} {'diff':>6} {'SSIM':>7} {'published':>9}")
    for name in args.datasets:
        for scale in args.scales:
            value_psnr, value_ssim = dataset_scores(args.shared / "data" / "natural" / name, scale)
            pub_psnr, pub_ssim = PUBLISHED.get((name, scale), (float("nan"), float("nan")))
            print(
                f"{name:8} {'x' + str(scale):>5} {value_psnr:7.2f} {pub_psnr:9.2f} {value_psnr - pub_psnr:+6.2f}"
                f" {value_ssim:7.4f} {pub_ssim:9.4f}"
            )
    print(f"(RMISR Table 1 prints {RMISR_TABLE1_SET14_X4:.2f} dB for Set14 x4)")


if __name__ == "__main__":
    main()
