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
A background training job whose PID is in ``/work/team/train.pid`` is paused (SIGSTOP) for the timed runs and always
resumed (SIGCONT), also on errors and Ctrl-C.

    python benchmarks/speed.py --names rmisr_bl rmisr_bl_ct_x2 --slices 2
    python benchmarks/speed.py --precisions fp32 auto --warm          # reference and default path, one run
    python benchmarks/speed.py --baseline /tmp/before --repeats 3
    python benchmarks/speed.py --names rmisr_bl --slices 4 --warm     # per-slice rate once the process is warm

``--report`` (issue 33) gives in one run: the machine (CPU model, cores, bf16 support), the SGEMM and bf16 GEMM
rates, the network alone per 512 x 512 slice for the shipped default, RLFN and IMDN at x2 and x4 in fp32 and bf16
with the ratio of their useful rate to the GEMM rate of that precision, ``--skip-bound`` figures (the constant
windows of the engine on a real CT and MR slice: their share and the largest |network - bicubic| in them), and
``rmisr upscale CT.nii.gz OUT.nii.gz --scale 2`` end to end on a 512 x 512 x ``--e2e-slices`` int16 CT built from the
held-out GE chest series (its 16 slices repeated) in a subprocess: wall time, slices/s and peak RSS
(``--e2e-slices 0`` leaves it out):

    python benchmarks/speed.py --report --e2e-slices 300
    python benchmarks/speed.py --report --e2e-slices 0 --skip-bound    # per slice only, and the skip bound
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

TRAIN_PID = Path("/work/team/train.pid")
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
            run = dict(intensity=recipe, device="cpu", progress=False, precision=precision)
            if warm:
                upscale_array(values[..., :1], net, scale, **run)
            t0 = time.perf_counter()
            upscale_array(values, net, scale, **run)
            key = f"{name}/{precision}"
            result["seconds"][key] = time.perf_counter() - t0
            dtype = resolve_precision(precision, torch.device("cpu"))
            result["dtype"][key] = str(dtype or torch.float32)
    return result


def machine_name() -> str:
    """CPU model, cores and bf16 support (``/proc/cpuinfo``), e.g.
    ``AMD EPYC (family 25 model 1), 2 cores, no bf16``."""

    info: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    bf16 = ", ".join(sorted(flags & {"amx_bf16", "avx512_bf16"})) or "no native bf16"
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}), {os.cpu_count()} cores, {isa}, {bf16}")


# issue 33's per-slice table: (label, network or shipped model, scale)
REPORT_NETWORKS = (
    ("default x2", "rmisr_bl64_ct_x2", 2), ("RLFN x2", "rlfn", 2), ("IMDN x2", "imdn", 2),
    ("default x4", "rmisr_bl64_ct_x4", 4), ("RLFN x4", "rlfn", 4), ("IMDN x4", "imdn", 4),
)


def slice_seconds(net: torch.nn.Module, side: int, dtype: torch.dtype | None, repeats: int = 2) -> float:
    """Best time of the network alone on one ``side x side`` slice (channels-last, inference mode, autocast
    ``dtype`` or fp32), after one untimed call."""
    x = torch.rand(1, 1, side, side).contiguous(memory_format=torch.channels_last)
    net = net.eval().to(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    best = float("inf")
    with torch.inference_mode(), autocast:
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            net(x)
            if i:
                best = min(best, time.perf_counter() - t0)
    return best


def report_networks(side: int) -> list[dict]:
    """Rows of the per-slice table: network, scale, useful GMAC, and seconds and ratio to the GEMM rate in fp32
    and in bf16."""
    from rmisr_monai.inference.engine import cpu_has_fast_bf16
    from rmisr_monai.networks import NETWORK_NAMES, get_network
    from rmisr_monai.weights import load_model

    native = cpu_has_fast_bf16()
    # without native bf16 torch.mm runs a reference kernel (0.15 GMAC/s on the Zen 3 EPYC): a small one, once
    sgemm = gemm_macs_per_s()
    bgemm = gemm_macs_per_s(torch.bfloat16) if native else gemm_macs_per_s(torch.bfloat16, n=512, repeats=1)
    rows = [{"sgemm": sgemm, "bf16_gemm": bgemm, "native": native}]
    for label, name, scale in REPORT_NETWORKS:
        if name in NETWORK_NAMES:
            torch.manual_seed(0)
            net = get_network(name, in_channels=1, scale=scale)
        else:
            net = load_model(name)[0]
        macs = reference_macs(net, side)
        row = {"label": label, "name": name, "gmac": macs / 1e9}
        for key, dtype, gemm in (("fp32", None, sgemm), ("bf16", torch.bfloat16, bgemm)):
            if dtype is not None and not native:  # emulated: not what `auto` would run, and far slower
                row[key] = row[f"{key}_ratio"] = float("nan")
                continue
            sec = slice_seconds(net, side, dtype)
            row[key] = sec
            row[f"{key}_ratio"] = macs / sec / gemm
        rows.append(row)
    return rows


def skip_bound(windows: tuple[tuple[int, int], ...] = ((64, 24), (96, 32))) -> list[str]:
    """The engine's constant windows on a real CT and MR slice with each shipped x2 default: the share of the slice
    in their cores and the largest |network - bicubic| there (0..1 of the normalisation, and in the input's units)."""
    from rmisr_monai.inference.tiling import SKIP_RANGE, axis_windows
    from rmisr_monai.io.read import read_volume
    from rmisr_monai.ops.resize import imresize
    from rmisr_monai.transforms.intensity import IntensityNormalization
    from rmisr_monai.weights import load_model

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "medical"
    cases = {"CT": (shared / "dicom_series" / "ct_ge_lightspeedplus_chest", 8),
             "MR": (shared / "mr" / "brain_pd_2p4mm_uint8.nii.gz", 27)}
    lines = []
    for modality, (path, k) in cases.items():
        net, meta = load_model(f"rmisr_bl64_{modality.lower()}_x2")
        volume = read_volume(path).array
        norm = IntensityNormalization.from_dict(meta["intensity"]).fit(volume)
        x = norm.forward(torch.from_numpy(np.ascontiguousarray(volume[:, :, k], dtype=np.float32))[None, None])
        with torch.inference_mode():
            y = net.eval()(x).float()
        diff = (y - imresize(x, None, output_shape=y.shape[-2:])).abs()
        for tile, overlap in windows:
            rows, cols = (axis_windows(n, 2.0, tile, overlap) for n in x.shape[-2:])
            share, worst = 0, 0.0
            for r in rows:
                for c in cols:
                    w = x[..., r.start : r.stop, c.start : c.stop]
                    if float(w.max() - w.min()) <= SKIP_RANGE:
                        share += (r.core_stop - r.core_start) * (c.core_stop - c.core_start)
                        core = diff[..., r.out_start : r.out_stop, c.out_start : c.out_stop]
                        worst = max(worst, float(core.max()))
            lines.append(f"{modality} {path.name} slice {k}, windows of {tile} (overlap {overlap}): constant share "
                         f"{share / x[0, 0].numel():.3f}, max |net - bicubic| {worst:.5f} of [0, 1] = "
                         f"{worst * float(norm.a_max - norm.a_min):.2f} input units")
    return lines


def end_to_end(slices: int, workdir: Path) -> str:
    """``rmisr upscale CT.nii.gz OUT.nii.gz --scale 2`` on a 512 x 512 x ``slices`` int16 CT (the GE chest series
    repeated), in a subprocess: wall time, slices/s, peak RSS."""
    import resource

    import nibabel as nib

    from rmisr_monai.io.read import read_volume

    series = Path(__file__).resolve().parents[2] / "shared" / "data" / "medical" / "dicom_series"
    ct = read_volume(series / "ct_ge_lightspeedplus_chest")
    reps = -(-slices // ct.array.shape[2])
    array = np.tile(ct.array, (1, 1, reps))[:, :, :slices].astype(np.int16)
    affine = np.diag([*map(float, ct.geometry.spacing), 1.0])  # the geometry does not change the speed
    src, dst = workdir / "ct.nii.gz", workdir / "out.nii.gz"
    nib.save(nib.Nifti1Image(array, affine), src)
    cmd = [sys.executable, "-m", "rmisr_monai.cli", "upscale", str(src), str(dst), "--scale", "2"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return (f"`{' '.join(['rmisr', *cmd[3:5]]).replace(str(workdir) + '/', '')} OUT --scale 2` on 512 x 512 x "
            f"{slices} int16 CT: wall {wall:.0f} s, {slices / wall:.3f} slices/s, peak RSS {peak / 2**20:.0f} MiB "
            f"(input {array.nbytes / 2**20:.0f} MiB, int16 output {4 * array.nbytes / 2**20:.0f} MiB)")


def report(args: argparse.Namespace) -> None:
    import tempfile

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {machine_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = report_networks(args.side)
    gemm = rows.pop(0)
    print(f"SGEMM {gemm['sgemm'] / 1e9:.1f} GMAC/s (torch.mm 4096^2, best of 3), bf16 GEMM "
          f"{gemm['bf16_gemm'] / 1e9:.2f} GMAC/s" + (" (4096^2, best of 3)" if gemm["native"] else
                                                     " (emulated, 512^2 once; bf16 networks not timed: nan)"))
    print(f"| network ({args.side}^2 slice, network alone) | GMAC/slice | fp32 s/slice | ratio to SGEMM "
          "| bf16 s/slice | ratio to bf16 GEMM |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} ({r['name']}) | {r['gmac']:.1f} | {r['fp32']:.2f} | {r['fp32_ratio']:.2f} | "
              f"{r['bf16']:.2f} | {r['bf16_ratio']:.2f} |")
    if args.skip_bound:
        for line in skip_bound():
            print(line)
    if args.e2e_slices > 0:
        with tempfile.TemporaryDirectory(prefix="rmisr-speed-") as tmp:
            print(end_to_end(args.e2e_slices, Path(tmp)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="issue 33's figures in one run (module docstring)")
    parser.add_argument("--e2e-slices", type=int, default=300, help="--report: slices of the end-to-end CT")
    parser.add_argument("--skip-bound", action="store_true", help="--report: constant windows on real CT and MR")
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
    if args.report:
        report(args)
        return
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
