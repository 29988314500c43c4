"""Training iterations per second, before/after side by side (a benchmark, not a test).

Runs ``python -m rmisr_monai.training`` for ``--iterations`` steps (the shipped models' recipe: RMISR-BL with 32
features, x2, 32 x 32 LR patches, batch 16, CT) on one CT volume of the shared data, with ``PYTHONPATH`` set to each
tree in turn (``--baseline DIR``: an older package tree, e.g. ``git archive HEAD rmisr_monai`` unpacked there),
alternating ``--repeats`` times, and prints the median wall time per iteration of each tree. The whole command is
timed, so start-up and data loading count once per run (same for both trees). A background training job
(``/tmp/team/train.pid``) is paused during the runs and always resumed.

    python benchmarks/training_speed.py --baseline /tmp/before --iterations 20 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed import paused_training

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VOLUME = ROOT.parent / "shared/data/medical/dicom_series/ct_siemens_biograph_abdomen_j2k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="a package tree to compare with (PYTHONPATH)")
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME), help="training volume")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    trees = {"current": str(ROOT)}
    if args.baseline:
        trees = {"baseline": str(Path(args.baseline).resolve()), **trees}
    times: dict[str, list[float]] = {t: [] for t in trees}
    with paused_training(), tempfile.TemporaryDirectory(prefix="rmisr-train-bench-") as tmp:
        for r in range(args.repeats):
            for tree, path in trees.items():
                out = Path(tmp) / f"{tree}{r}"
                cmd = [
                    sys.executable, "-m", "rmisr_monai.training", "--network", "rmisr_bl", "--network-kwargs",
                    '{"features": 32}', "--modality", "CT", "--volumes", args.volume, "--iterations",
                    str(args.iterations), "--log-every", str(args.iterations), "--checkpoint-dir", str(out / "ck"),
                    "--checkpoint-every", str(args.iterations), "--output", str(out / "model.pt"),
                ]
                t0 = time.perf_counter()
                subprocess.run(cmd, env={**os.environ, "PYTHONPATH": path}, check=True, capture_output=True)
                times[tree].append(time.perf_counter() - t0)
    print(f"{args.iterations} iterations (batch 16 of 32x32 LR patches, RMISR-BL 32 features, x2), "
          f"{args.repeats} alternating run(s), median of whole-command wall time")
    print("| tree | s per run | iterations / s |")
    print("|---|---|---|")
    for tree, values in times.items():
        sec = statistics.median(values)
        print(f"| {tree} | {sec:.1f} | {args.iterations / sec:.2f} |")


if __name__ == "__main__":
    main()
