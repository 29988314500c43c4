"""RMISR Table 1's protocol: a model trained on natural RGB pictures, scored on Set5 / Set14 / B100 beside the paper.

Per HR image (the MATLAB protocol of ``bicubic_tables.py``, no tuning): crop to a multiple of the scale, MATLAB
bicubic downscale, LR rounded and clipped to uint8; the network runs on LR / 255 (gray images repeated to RGB), its
output is clipped to [0, 1] and rounded to uint8; PSNR / SSIM on the BT.601 Y channel with ``scale`` pixels shaved;
each dataset's figure is the mean over its images. Bicubic and, with ``--imdn-dir``, IMDN with its published DIV2K
weights are scored on the same LR images in the same run. Set5/Set14/B100 are evaluation data only: nothing is tuned
on them.

    python benchmarks/natural.py --model runs/rmisr_bl_natural_x4.pt --imdn-dir ../shared/peers/imdn
    python benchmarks/natural.py --trainer-checkpoint benchmarks/campaign/natural_x4/resume.pt   # mid-campaign
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bicubic_tables import PIXEL_MAX, read_hr, to_uint8

from rmisr_monai.metrics import psnr, ssim
from rmisr_monai.networks import get_network
from rmisr_monai.networks.nets.imdn import IMDN
from rmisr_monai.transforms import BicubicDegrade, bicubic_resize
from rmisr_monai.weights.loader import load_model

# RMISR Table 1 (x4), Y-channel PSNR / SSIM: the paper's RMISR-BL row (0.848 M, DIV2K) and its bicubic row
PAPER_X4 = {
    "RMISR-BL": {"Set5": (31.96, 0.890), "Set14": (28.44, 0.780), "B100": (27.49, 0.735)},
    "Bicubic": {"Set5": (28.42, 0.810), "Set14": (26.10, 0.702), "B100": (25.96, 0.667)},
}
DATASETS = ("Set5", "Set14", "B100")

Upscaler = Callable[[np.ndarray], np.ndarray]  # (3, h, w) uint8-valued float64 LR -> (3, H, W) uint8-valued SR


def network_upscaler(network: torch.nn.Module) -> Upscaler:
    """Run ``network`` (3 channels in [0, 1]) on an 8-bit LR image, rounding its output to 8 bits."""

    def upscale(lr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            sr = network(torch.from_numpy(lr / PIXEL_MAX).float()[None])[0]
        return to_uint8(sr.clamp(0, 1).double().numpy() * PIXEL_MAX)

    return upscale


def dataset_scores(folder: Path, scale: int, upscalers: dict[str, Upscaler]) -> dict[str, tuple[float, float]]:
    """Mean Y PSNR / SSIM of every upscaler over the images of ``folder`` (module docstring)."""
    degrade = BicubicDegrade(scale, crop_to_multiple=True)
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in upscalers}
    kwargs = dict(data_range=PIXEL_MAX, shave=scale, y_channel=True)
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".bmp")):
        hr = read_hr(path)
        hr = np.repeat(hr, 3, axis=0) if hr.shape[0] == 1 else hr
        hr = degrade.crop(hr)
        lr = to_uint8(degrade(hr))
        for name, upscale in upscalers.items():
            sr = upscale(lr)
            scores[name].append((float(psnr(sr, hr, **kwargs)), float(ssim(sr, hr, **kwargs))))
    return {name: tuple(np.mean(values, axis=0)) for name, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a 3-channel model checkpoint (python -m rmisr_monai.training --output)")
    source.add_argument(
        "--trainer-checkpoint", help="a resumable trainer checkpoint of the recipe "
        "benchmarks/recipes/rmisr_bl_natural_x4.json (RMISR-BL x4, 64 features, 3 channels)",
    )
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--imdn-dir", type=Path, default=None, help="folder of IMDN_x{2,3,4}.pth (published weights)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model is not None:
        network, meta = load_model(args.model)
        info = meta.get("info", {})
        model_name = Path(args.model).name
    else:
        state = torch.load(args.trainer_checkpoint, map_location="cpu", weights_only=False)
        meta = {"network": "rmisr_bl", "network_kwargs": {"in_channels": 3, "scale": 4}}
        network = get_network(meta["network"], **meta["network_kwargs"])
        network.load_state_dict(state["network"])
        info = {"iterations": state["trainer"]["iteration"]}
        model_name = Path(args.trainer_checkpoint).name
    scale = int(meta["network_kwargs"]["scale"])
    upscalers: dict[str, Upscaler] = {
        "Bicubic": lambda lr: to_uint8(bicubic_resize(lr, scale)),
        "ours": network_upscaler(network.eval()),
    }
    if args.imdn_dir is not None:
        upscalers["IMDN"] = network_upscaler(IMDN.from_official(args.imdn_dir / f"IMDN_x{scale}.pth").eval())
    print(f"model {model_name}: {meta['network']} x{scale}, {info.get('iterations')} iterations")
    print(f"{'dataset':8} {'method':10} {'PSNR':>7} {'SSIM':>7}   paper (Table 1, x{scale})")
    for name in args.datasets:
        scores = dataset_scores(args.shared / "data" / "natural" / name, scale, upscalers)
        for method, (value_psnr, value_ssim) in scores.items():
            paper_row = {"ours": "RMISR-BL", "Bicubic": "Bicubic"}.get(method)
            paper = PAPER_X4.get(paper_row, {}).get(name) if scale == 4 else None
            reference = f"{paper[0]:.2f} / {paper[1]:.3f} ({paper_row})" if paper else ""
            print(f"{name:8} {method:10} {value_psnr:7.2f} {value_ssim:7.4f}   {reference}")


if __name__ == "__main__":
    main()
