"""Engine speed against the machine's fp32 GEMM rate, before/after side by side (a benchmark, not a test).

For each network it times the call the issue-16 acceptance check makes,
``upscale_array(volume, net, scale, device="cpu", progress=False)`` (the engine's default path: memory-budget tile
and batch, channels-last, ``precision="auto"``), on a ``512 x 512 x --slices`` volume, and reports

* the *useful* multiply-add rate: the MACs of the reference network (``torch.utils.flop_counter`` on one slice with
  every :class:`~rmisr_monai.networks.blocks.pyconv.PyramidalBlock` in its level-by-level form, MACs = FLOPs / 2),
  times the slices, over the wall time of the call;
* the fp32 SGEMM rate measured in the same process just before (``torch.mm`` of two 4096 x 4096 matrices, best of
  3) and the ratio useful rate / SGEMM rate (median over runs of each run's own ratio); where the call ran under
  bfloat16 autocast, also the bf16 GEMM rate of the same matrices and the ratio to it (issue 16: "against the best
  GEMM rate of the precision used").

Shipped models run with their own intensity recipe and modality, as ``rmisr upscale`` runs them, so
``precision="auto"`` resolves as it does there (fp32 for CT, bf16 for MR on CPUs with native bf16); the bare networks
take values in [0, 1] with no recipe. ``--precisions fp32 auto`` times the reference path and the default path
side by side.

``--baseline DIR`` also runs the same measurement with ``PYTHONPATH=DIR`` (e.g. ``git archive HEAD~3 rmisr_monai``
unpacked there), alternating baseline and current tree ``--repeats`` times in subprocesses; the table gives medians.
A background training job whose PID is in ``/tmp/team/train.pid`` is paused (SIGSTOP) for the timed runs and always
resumed (SIGCONT), also on errors and Ctrl-C.

    python benchmarks/speed.py --names rmisr_bl rmisr_bl_ct_x2 --slices 2
    python benchmarks/speed.py --precisions fp32 auto --warm          # reference and default path, one run
    python benchmarks/speed.py --baseline /tmp/before --repeats 3
    python benchmarks/speed.py --names rmisr_bl --slices 4 --warm     # per-slice rate once the process is warm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

TRAIN_PID = Path("/tmp/team/train.pid")
DEFAULT_NAMES = (
    "rmisr_bl", "rmisr_bl_ct_x2_percentile", "rmisr_bl_mr_x2", "rmisr_bl_ct_x4_percentile", "rmisr_bl_mr_x4", "imdn"
)


@contextlib.contextmanager
def paused_training():
    """SIGSTOP the background training job (the PIDs in its PID file) and SIGCONT it on exit, errors included."""
    pids: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        pids = [int(p) for p in TRAIN_PID.read_text().split()]

    def send(sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def resume_and_exit(signum, frame):
        send(signal.SIGCONT)
        sys.exit(128 + signum)

    for s in previous:
        signal.signal(s, resume_and_exit)
    send(signal.SIGSTOP)
    try:
        yield pids
    finally:
        send(signal.SIGCONT)
        for s, handler in previous.items():
            signal.signal(s, handler)


def gemm_macs_per_s(dtype: torch.dtype = torch.float32, n: int = 4096, repeats: int = 3) -> float:
    """Best ``torch.mm`` rate of two ``n x n`` matrices of ``dtype``, multiply-adds per second."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return n**3 / best


def network_for(name: str) -> tuple[torch.nn.Module, int, dict | None, str | None]:
    """``(network, scale, intensity, modality)``: a shipped model by name, else ``get_network(name, in_channels=1,
    scale=2)`` with seeded random weights (speed does not depend on the values) and no recipe or modality."""
    from rmisr_monai.networks import get_network
    from rmisr_monai.weights import load_model
    from rmisr_monai.weights.loader import read_registry

    shipped = {e["name"]: e for e in read_registry()}
    if name in shipped:
        net, meta = load_model(name)
        return net, int(shipped[name]["scale"]), meta.get("intensity"), shipped[name]["modality"]
    torch.manual_seed(0)
    return get_network(name, in_channels=1, scale=2), 2, None, None


def reference_macs(net: torch.nn.Module, side: int, probe: int = 64) -> float:
    """Useful multiply-adds of one ``side x side`` slice: counted on a ``probe`` slice with the PyConv levels run
    one by one (the paper's network), scaled by the pixels (exact for these convolutional networks)."""
    blocks = [m for m in net.modules() if hasattr(m, "fuse_levels")]
    for m in blocks:
        m.fuse_levels = False
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net.eval()(torch.rand(1, 1, probe, probe))
    for m in blocks:
        m.fuse_levels = True
    return counter.get_total_flops() / 2 * side**2 / probe**2


def measure(names: list[str], slices: int, side: int, precisions: list[str], warm: bool = False) -> dict:
    """One process's figures: GEMM rates, then seconds per engine call for each network and precision, and the
    autocast dtype it resolved to (``warm``: after an untimed call on one slice of the same size, so that the
    one-off set-up of the process is not counted)."""
    from rmisr_monai.inference import upscale_array
    from rmisr_monai.inference.engine import cpu_has_fast_bf16, resolve_precision
    from rmisr_monai.transforms.intensity import IntensityNormalization

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    volume = rng.random((side, side, slices), dtype=np.float32)
    bf16_gemm = gemm_macs_per_s(torch.bfloat16) if cpu_has_fast_bf16() else None
    result = {"sgemm": gemm_macs_per_s(), "bf16_gemm": bf16_gemm, "seconds": {}, "dtype": {}}
    for name in names:
        net, scale, intensity, modality = network_for(name)
        # values of the model's modality: HU for CT (MR percentiles refit on whatever comes)
        recipe = None if intensity is None else IntensityNormalization.from_dict(intensity)
        values = volume * 2000.0 - 1000.0 if modality == "CT" else volume
        for precision in precisions:
            run = dict(intensity=recipe, device="cpu", progress=False, precision=precision, modality=modality)
            if warm:
                upscale_array(values[..., :1], net, scale, **run)
            t0 = time.perf_counter()
            upscale_array(values, net, scale, **run)
            key = f"{name}/{precision}"
            result["seconds"][key] = time.perf_counter() - t0
            dtype = resolve_precision(precision, torch.device("cpu"), recipe, hounsfield=modality == "CT")
            result["dtype"][key] = str(dtype or torch.float32)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="*", default=list(DEFAULT_NAMES), help="networks or shipped models")
    parser.add_argument("--slices", type=int, default=2, help="512 x 512 slices per timed call")
    parser.add_argument("--side", type=int, default=512, help="slice side in pixels")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per tree (medians reported)")
    parser.add_argument("--baseline", default=None, help="a package tree to compare with (PYTHONPATH)")
    parser.add_argument("--warm", action="store_true", help="time a second call (the process's set-up excluded)")
    parser.add_argument(
        "--precisions", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "fp16"],
        help="engine precisions to time (auto: the default path)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.names, args.slices, args.side, args.precisions, args.warm)))
        return

    macs = {name: reference_macs(network_for(name)[0], args.side) for name in args.names}
    trees = {"current": str(Path(__file__).resolve().parents[1])}
    if args.baseline:
        trees = {"baseline": str(Path(args.baseline).resolve()), **trees}
    runs: dict[str, list[dict]] = {t: [] for t in trees}
    cmd = [sys.executable, __file__, "--worker", "--slices", str(args.slices), "--side", str(args.side),
           *(["--warm"] if args.warm else []), "--precisions", *args.precisions, "--names"]
    with paused_training():
        for _ in range(args.repeats):
            for tree, path in trees.items():
                env = {**os.environ, "PYTHONPATH": path}
                out = subprocess.run(cmd + args.names, env=env, check=True, capture_output=True, text=True).stdout
                runs[tree].append(json.loads(out.strip().splitlines()[-1]))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.slices} slices of {args.side}^2, "
          f"{args.repeats} alternating run(s) per tree, medians{', warm process' if args.warm else ''}")
    print("| network | tree | precision (ran as) | GMAC/slice (useful) | s/slice | useful GMAC/s | SGEMM GMAC/s "
          "| ratio to SGEMM | bf16 GEMM GMAC/s | ratio to bf16 GEMM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.names:
        for precision in args.precisions:
            key = f"{name}/{precision}"
            for tree in trees:
                rs = runs[tree]
                sec = statistics.median(r["seconds"][key] for r in rs) / args.slices
                rate = macs[name] * args.slices
                sgemm = statistics.median(r["sgemm"] for r in rs)
                ratio = statistics.median(rate / r["seconds"][key] / r["sgemm"] for r in rs)
                dtype = rs[0]["dtype"][key].replace("torch.", "")
                bf16 = "-", "-"
                if rs[0]["bf16_gemm"] and dtype == "bfloat16":
                    bf16 = (f"{statistics.median(r['bf16_gemm'] for r in rs) / 1e9:.1f}",
                            f"{statistics.median(rate / r['seconds'][key] / r['bf16_gemm'] for r in rs):.2f}")
                print(f"| {name} | {tree} | {precision} ({dtype}) | {macs[name] / 1e9:.2f} | {sec:.2f} | "
                      f"{macs[name] / sec / 1e9:.1f} | {sgemm / 1e9:.1f} | {ratio:.2f} | {bf16[0]} | {bf16[1]} |")


if __name__ == "__main__":
    main()
