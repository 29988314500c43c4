"""bf16 against fp32 on held-out CT with the shipped defaults (issue 33: may `auto` pick bf16 for CT?).

The protocol of ``benchmarks/quality.py`` (same scans of ``benchmarks/scans.json``, same degradation to int16 LR,
same scoring units and shave), with only the shipped default of each scale, run as ``rmisr upscale`` runs it
(its recipe's self-ensemble), once with ``precision="fp32"`` and once with ``precision="bf16"`` (the engine's bf16:
head, tail and upsampler in fp32, ``engine._Runner.FP32_UNDER_BF16``). Prints per scan and over all slices the PSNR
of each and the difference, the largest |bf16 - fp32| in HU, and the seconds of each run (same process).

    python benchmarks/precision_ct.py --set validation test --scales 2 3 4 --max-slices 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.quality import axial_stack, degrade, held_out, methods_for
from rmisr_monai.evaluation.quality import score_slices, scoring_normalization
from rmisr_monai.inference import upscale_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--set", nargs="+", default=["validation", "test"], dest="sets")
    parser.add_argument("--scales", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument("--max-slices", type=int, default=3)
    parser.add_argument("--modality", default="CT")
    args = parser.parse_args()
    volumes = [v for s in args.sets for v in held_out(args.shared, args.modality, args.max_slices, s)]
    worst = 0.0
    for scale in args.scales:
        (label, (net, intensity, options)), = [
            (k, v) for k, v in methods_for(args.modality, scale, False, None, defaults_only=True).items()
            if k.endswith("(default)")
        ]
        rows = {"fp32": [], "bf16": []}
        seconds = {"fp32": 0.0, "bf16": 0.0}
        for volume in volumes:
            hr, lr = degrade(volume, scale, False)
            norm = scoring_normalization(hr.array)
            hr_s, lr_s = axial_stack(hr.array, norm), axial_stack(lr.array, norm)
            out = {}
            for precision in rows:
                t0 = time.perf_counter()
                sr = upscale_volume(lr, net, scale, intensity=intensity, device="cpu", progress=False, batch_size=1,
                                    precision=precision, **options)
                seconds[precision] += time.perf_counter() - t0
                out[precision] = sr.array.astype(np.float64)
                sr_s = axial_stack(sr.array, norm)
                rows[precision].append(
                    score_slices(precision, sr_s, hr_s, lr_s, (scale, scale), 0.0, shave=math.ceil(scale)).psnr
                )
            hu = float(np.abs(out["bf16"] - out["fp32"]).max())
            worst = max(worst, rows["fp32"][-1] - rows["bf16"][-1])
            print(f"x{scale:g} {label} {Path(str(volume.source_path)).name} ({lr.array.shape}): fp32 "
                  f"{rows['fp32'][-1]:.4f} dB, bf16 {rows['bf16'][-1]:.4f} dB, bf16 - fp32 "
                  f"{rows['bf16'][-1] - rows['fp32'][-1]:+.4f} dB, max |bf16 - fp32| {hu:.1f} HU", flush=True)
        mean = {p: statistics.fmean(r) for p, r in rows.items()}
        print(f"x{scale:g} mean over scans: fp32 {mean['fp32']:.4f}, bf16 {mean['bf16']:.4f}, bf16 - fp32 "
              f"{mean['bf16'] - mean['fp32']:+.4f} dB; engine seconds fp32 {seconds['fp32']:.1f}, "
              f"bf16 {seconds['bf16']:.1f}", flush=True)
    print(f"largest per-scan loss of bf16: {worst:+.4f} dB (tolerance 0.05)")


if __name__ == "__main__":
    main()
