"""End-to-end speed and memory of ``rmisr upscale`` on a real 512 x 512 CT series, x2 on the CPU (a benchmark).

Measures read -> engine -> atomic write of ``/work/shared/data/medical/dicom_series/ct_siemens_biograph_abdomen_j2k``
(or ``--input``) and prints a table:

* wall time of each stage and slices per second of the engine;
* useful network multiply-adds per second (MACs of one slice of the reference network, counted with
  ``torch.utils.flop_counter.FlopCounterMode`` by :func:`speed.reference_macs`, times the slices, over the engine
  time) against the fp32 SGEMM rate measured in the same run (:func:`speed.gemm_macs_per_s`), and against the
  theoretical fp32 peak ``logical CPUs x GHz x FLOPs/cycle / 2`` (FLOPs/cycle from the ``/proc/cpuinfo`` flags,
  two FMA units assumed: AVX-512F 64, AVX2+FMA 32, else 8; an upper bound);
* peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the process including Python, torch and
  MONAI) against the target ``1.5 x (input + output stored size) + 1 GiB``, stored size = voxels x bytes of the
  stored dtype (int16 here).

The network is ``rmisr_bl`` (RMISR-BL, x2 sub-pixel, paper sizes) with random weights unless ``--weights`` or
``--model`` is given: speed does not depend on the weight values. Tile and batch default to the engine's choice from
its memory budget. ``--synthetic I J K`` replaces the input by a smooth random int16 CT-like volume of that shape
(e.g. ``512 512 600`` for the memory bound), written to a temporary ``.nii.gz`` first so that reading is measured.
A background training job (``/tmp/team/train.pid``) is paused while the benchmark runs and always resumed.

    python benchmarks/volume.py --model rmisr_bl_ct_x2                     # the shipped default on the real CT
    python benchmarks/volume.py --model rmisr_bl_ct_x2 --synthetic 512 512 300
    python benchmarks/volume.py --slices 4 --tile 256 --batch 1            # explicit tile and batch
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from speed import paused_training, reference_macs

from rmisr_monai.inference.engine import upscale_volume
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.write import write_volume
from rmisr_monai.networks import get_network
from rmisr_monai.transforms.intensity import IntensityNormalization
from rmisr_monai.weights import load_model

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared/data/medical/dicom_series/ct_siemens_biograph_abdomen_j2k"
GIB = 2**30


def cpu_peak_macs() -> tuple[float, str]:
    """fp32 multiply-add peak of the visible CPUs and how it was estimated."""
    flags, mhz = set(), None
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "cpu MHz" and mhz is None:
                mhz = float(value)
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512F"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "AVX2+FMA"
    else:
        per_cycle, isa = 8, "SSE"
    cpus = len(os.sched_getaffinity(0))
    ghz = (mhz or 2000.0) / 1000
    flops = cpus * ghz * 1e9 * per_cycle
    return flops / 2, f"{cpus} CPUs x {ghz:.2f} GHz x {per_cycle} FLOP/cycle ({isa}, 2 FMA units assumed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(DEFAULT_INPUT), help="a volume file or DICOM folder")
    parser.add_argument("--model", default=None, help="network name (random weights) or shipped model name")
    parser.add_argument("--weights", default=None, help="a checkpoint to benchmark")
    parser.add_argument("--slices", type=int, default=None, help="use only the first N slices (quick runs)")
    parser.add_argument("--tile", type=int, default=None, help="tile size (default: the engine's, from its budget)")
    parser.add_argument("--batch", type=int, default=None, help="slices per call (default: the engine's)")
    parser.add_argument("--precision", default="auto", help="engine precision: auto or fp32")
    parser.add_argument("--synthetic", type=int, nargs=3, default=None, metavar=("I", "J", "K"),
                        help="a synthetic int16 CT of this shape instead of --input")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="rmisr-bench-") as tmp, paused_training():
        if args.synthetic:
            args.input = str(Path(tmp) / "synthetic_ct.nii.gz")
            write_synthetic_ct(args.synthetic, args.input)
        run(args, Path(tmp))


def sgemm_in_child() -> float:
    """:func:`speed.gemm_macs_per_s` in a child process: its three 64 MiB matrices would otherwise count in this
    process's peak resident memory (``ru_maxrss``), which is the figure compared with the memory target."""
    code = "import torch, speed; torch.set_num_threads({}); print(speed.gemm_macs_per_s())".format(
        torch.get_num_threads()
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, check=True, capture_output=True,
                         text=True).stdout
    return float(out.strip().splitlines()[-1])


def write_synthetic_ct(shape: tuple[int, int, int], path: str) -> None:
    """An int16 volume of ``shape`` with CT-like values (air, soft tissue, bone) and smooth structure, 0.8 mm."""
    from rmisr_monai.io.geometry import Geometry
    from rmisr_monai.io.volume import Volume

    i, j, k = shape
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, i), np.linspace(-1, 1, j), indexing="ij")
    body = (x**2 + y**2 < 0.8).astype(np.float32)
    array = np.empty(shape, dtype=np.int16)
    for z in range(k):
        texture = rng.normal(0, 30, (i, j)).astype(np.float32)
        bone = 1000 * ((x - 0.3 * np.sin(z / 40)) ** 2 + y**2 < 0.02)
        array[:, :, z] = np.clip(-1000 + body * (1040 + texture) + bone, -1024, 3071).astype(np.int16)
    geometry = Geometry((0.8, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(map(tuple, np.eye(3))))
    write_volume(Volume(array, geometry, "CT", np.dtype(np.int16), path, "nifti"), path)


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Read, upscale and write once; print the table."""
    t0 = time.perf_counter()
    volume = read_volume(args.input)
    if args.slices:
        volume = dataclasses.replace(volume, array=np.ascontiguousarray(volume.array[:, :, : args.slices]))
    t_read = time.perf_counter() - t0

    name = args.weights or args.model or "rmisr_bl"
    if args.weights or name in ("bicubic", "bilinear", "nearest"):
        net, meta = load_model(name)
        intensity = meta.get("intensity")
    else:
        try:
            net, meta = load_model(name)
            intensity = meta.get("intensity")
        except Exception:  # a network name without weights: random weights, the speed is the same
            torch.manual_seed(0)
            net = get_network(name, in_channels=1, scale=2).eval()
            intensity = IntensityNormalization.ct().to_dict()
    i, j, k = volume.array.shape
    scale = float(getattr(net, "scale", (2.0, 2.0))[0]) if not getattr(net, "arbitrary_scale", False) else 2.0
    macs = reference_macs(net, i) * j / i
    gemm = sgemm_in_child()

    t0 = time.perf_counter()
    result = upscale_volume(
        volume, net, scale, axis="z", intensity=intensity, device="cpu", tile=args.tile, batch_size=args.batch,
        progress=False, out_dtype=volume.source_dtype, precision=args.precision,
    )
    t_engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_volume(result, tmp / "sr.nii.gz")
    t_write = time.perf_counter() - t0

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    stored_in = volume.array.size * volume.source_dtype.itemsize
    stored_out = result.array.size * np.dtype(volume.source_dtype).itemsize
    target = 1.5 * (stored_in + stored_out) + GIB
    peak, how = cpu_peak_macs()
    rate = macs * k / t_engine

    rows = [
        ("input", f"{args.input} ({i}x{j}x{k}, {volume.source_dtype})"),
        ("network", f"{name} x{scale:g}, {macs / 1e9:.2f} useful GMAC per slice, tile {args.tile}, batch {args.batch}"),
        ("torch threads", str(torch.get_num_threads())),
        ("read s", f"{t_read:.2f}"),
        ("engine s", f"{t_engine:.2f}"),
        ("write s (nii.gz)", f"{t_write:.2f}"),
        ("end-to-end s", f"{t_read + t_engine + t_write:.2f}"),
        ("slices / s", f"{k / t_engine:.3f}"),
        ("network useful GMAC/s", f"{rate / 1e9:.1f}"),
        ("fp32 SGEMM GMAC/s (same run)", f"{gemm / 1e9:.1f}"),
        ("useful rate / SGEMM", f"{rate / gemm:.2f}"),
        ("CPU fp32 peak GMAC/s", f"{peak / 1e9:.0f}  [{how}]"),
        ("fraction of peak", f"{rate / peak:.1%}"),
        ("peak RSS MiB", f"{peak_rss / 2**20:.0f}"),
        ("target MiB", f"{target / 2**20:.0f}  [1.5 x ({stored_in / 2**20:.1f} + {stored_out / 2**20:.1f}) + 1024]"),
        ("within target", "yes" if peak_rss <= target else "NO"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'quantity':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in rows:
        print(f"| {key:<{width}} | {value} |")


if __name__ == "__main__":
    main()
