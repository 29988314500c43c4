"""Size and speed of every network of :func:`rmisr_monai.networks.get_network` (a benchmark, not a test).

Prints one row per network: parameters (1 and 3 channels, x2 and x4), multiply-adds for one 256 x 256 LR input
(1 channel, x2; counted with ``torch.utils.flop_counter.FlopCounterMode``, MACs = FLOPs / 2; interpolators count
their matrix products), and the median CPU time of a forward pass on one 512 x 512 LR slice at x2 in eval mode with
``torch.set_num_threads(os.cpu_count())``.

    python benchmarks/networks.py            # 5 timed runs per network after one warm-up
    python benchmarks/networks.py --quick    # 2 timed runs, for a shared machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from rmisr_monai.networks import NETWORK_NAMES, count_parameters, get_network

MAC_SIZE = 256  # LR side for the multiply-add count (the NTIRE efficient-SR convention)
TIME_SIZE = 512  # LR side of the timed slice


def macs(name: str, size: int = MAC_SIZE) -> float:
    """Multiply-adds of one forward pass on a ``1 x 1 x size x size`` LR image at x2."""
    net = get_network(name, in_channels=1, scale=2).eval()
    for m in net.modules():  # the paper's multiply-adds: PyConv levels one by one, not the composed fast form
        if hasattr(m, "fuse_levels"):
            m.fuse_levels = False
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.rand(1, 1, size, size))
    return counter.get_total_flops() / 2


def cpu_seconds(name: str, repeats: int, size: int = TIME_SIZE) -> float:
    """Median wall time of a forward pass on a ``1 x 1 x size x size`` LR slice at x2 (after one warm-up)."""
    net = get_network(name, in_channels=1, scale=2).eval()
    x = torch.rand(1, 1, size, size)
    times = []
    with torch.no_grad():
        net(x)
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed runs instead of 5")
    parser.add_argument("--names", nargs="*", default=list(NETWORK_NAMES), help="networks to measure")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    repeats = 2 if args.quick else 5
    header = f"| network | params 1ch x2 | params 1ch x4 | params 3ch x2 | params 3ch x4 | GMACs {MAC_SIZE}^2 x2 |"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} timed runs")
    print(header + f" CPU s {TIME_SIZE}^2 x2 |")
    print("|---" * 7 + "|")
    for name in args.names:
        params = [count_parameters(get_network(name, in_channels=c, scale=s)) for c in (1, 3) for s in (2, 4)]
        row = " | ".join(f"{p:,}" for p in params)
        print(f"| {name} | {row} | {macs(name) / 1e9:.2f} | {cpu_seconds(name, repeats):.3f} |", flush=True)


if __name__ == "__main__":
    main()
