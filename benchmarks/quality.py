"""Side-by-side SR quality on held-out CT/MR slices: bicubic, IMDN (published weights), our shipped models.

Protocol (documented in benchmarks/RESULTS.md): each held-out scan is read with ``rmisr_monai.io.read.read_volume``,
normalised with the CT window / MR percentiles of ``rmisr_monai.transforms.intensity``, sliced axially, each slice
cropped to a multiple of the scale, degraded with MATLAB-compatible bicubic (``imresize(hr, 1/s)``, no rounding),
super-resolved, clamped to [0, 1], and scored against the HR slice with PSNR/SSIM on [0, 1] after shaving ``s``
pixels. IMDN is an RGB network: the grey slice is replicated to 3 channels and its output averaged back.

    python benchmarks/quality.py --shared ../shared --scales 2 4 --imdn-dir ../shared/peers/imdn
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rmisr_monai.io.read import read_volume
from rmisr_monai.metrics import psnr, ssim
from rmisr_monai.networks import get_network
from rmisr_monai.networks.nets.imdn import IMDN
from rmisr_monai.ops.resize import imresize
from rmisr_monai.transforms.intensity import IntensityNormalization
from rmisr_monai.weights.loader import load_model, read_registry

# scans never used for training (the training data of each shipped model: benchmarks/RESULTS.md)
HELD_OUT = {
    "CT": ["data/medical/dicom_series/ct_ge_lightspeedplus_chest", "data/medical/dicom_compressed/cq500_head_ct/693_UNCR.dcm"],
    "MR": ["data/medical/mr/stroke_t2_uint8.nii.gz", "data/medical/dicom_series/mr_siemens_avanto_t1_mprage_brain_subset"],
}


class Replicate3(torch.nn.Module):
    """Run an RGB network on a grey image: replicate to 3 channels, average the output channels."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)


def held_out_slices(shared: Path, modality: str, max_slices: int) -> list[np.ndarray]:
    """Normalised axial slices of the held-out scans of one modality."""
    slices = []
    for rel in HELD_OUT[modality]:
        volume = read_volume(shared / rel)
        data = IntensityNormalization.for_modality(modality, volume.array).forward(volume.array.astype(np.float32))
        step = max(1, data.shape[2] // max_slices)
        slices += [data[:, :, k] for k in range(0, data.shape[2], step)][:max_slices]
    return slices


@torch.no_grad()
def score(net: torch.nn.Module, slices: list[np.ndarray], scale: int) -> tuple[float, float, float]:
    """Mean PSNR, mean SSIM and median seconds per slice."""
    psnrs, ssims, times = [], [], []
    for hr_np in slices:
        h, w = hr_np.shape[0] // scale * scale, hr_np.shape[1] // scale * scale
        hr = torch.from_numpy(np.ascontiguousarray(hr_np[:h, :w]))[None, None].float()
        lr = imresize(hr, 1.0 / scale)
        start = time.perf_counter()
        sr = net(lr).clamp(0, 1)
        times.append(time.perf_counter() - start)
        psnrs.append(float(psnr(sr, hr, data_range=1.0, shave=scale)))
        ssims.append(float(ssim(sr, hr, data_range=1.0, shave=scale)))
    return statistics.fmean(psnrs), statistics.fmean(ssims), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--modalities", nargs="+", default=["CT", "MR"])
    parser.add_argument("--imdn-dir", type=Path, default=None, help="folder with IMDN_x{2,3,4}.pth")
    parser.add_argument("--max-slices", type=int, default=8, help="slices per held-out scan")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"{'modality':8} {'scale':5} {'method':28} {'PSNR dB':>8} {'SSIM':>7} {'s/slice':>8}")
    for modality in args.modalities:
        slices = held_out_slices(args.shared, modality, args.max_slices)
        for scale in args.scales:
            methods = {"bicubic": get_network("bicubic", scale=scale).eval()}
            imdn_file = args.imdn_dir / f"IMDN_x{scale}.pth" if args.imdn_dir else None
            if imdn_file is not None and imdn_file.exists():
                methods["IMDN (published weights)"] = Replicate3(IMDN.from_official(imdn_file, scale)).eval()
            for entry in read_registry():
                if entry["scale"] == scale and entry["modality"] == modality:
                    methods[entry["name"]] = load_model(entry["name"])[0]
            for name, net in methods.items():
                p, s, t = score(net, slices, scale)
                print(f"{modality:8} x{scale:<4} {name:28} {p:8.2f} {s:7.4f} {t:8.3f}")


if __name__ == "__main__":
    main()
