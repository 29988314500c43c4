"""Eager engine against torch.compile, ONNX Runtime and OpenVINO on the shipped x2 default, one run (issue 33).

The network alone on one real 512 x 512 CT slice (the GE chest series, slice 8, normalised by the model's recipe),
channels-last, ``--threads`` threads (default: every core), one untimed call then best of ``--repeats``:

* eager fp32 (the reference) and eager bf16 as the engine runs it (``engine._Runner._context``: autocast with the
  head, reconstruction and upsampler in fp32);
* ``torch.compile`` (inductor) of the same, fp32 and bf16 (same context), compile time reported apart;
* ONNX Runtime (CPU execution provider, graph optimisation all) of the ONNX export (TorchScript exporter), fp32;
  ORT's CPU provider has no bf16 convolution kernels, so no bf16 row;
* OpenVINO (CPU plugin) of the same ONNX file with ``INFERENCE_PRECISION_HINT`` f32 and bf16 (OpenVINO's bf16 is
  every layer in bf16);
* eager fp32 once more at the end: the ratios hold only where it matches the first row.

Accuracy against eager fp32 on the same slice: largest |difference| in HU and PSNR of the difference over the
model's [0, 1] range. A background training job in ``/work/team/train.pid`` is paused meanwhile (speed.py).

    python benchmarks/backends.py
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.speed import machine_name, paused_training
from rmisr_monai.inference.engine import _Runner
from rmisr_monai.io.read import read_volume
from rmisr_monai.transforms.intensity import IntensityNormalization
from rmisr_monai.weights import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "medical"


def best_of(fn, repeats: int) -> tuple[float, float, np.ndarray]:
    """(first call's seconds, best of ``repeats`` further calls, output of the last)."""
    t0 = time.perf_counter()
    y = fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = fn()
        best = min(best, time.perf_counter() - t0)
    return first, best, np.asarray(y, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rmisr_bl64_ct_x2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", nargs="*", default=[],
                        help="rows to leave out (compile, ort, openvino; bf16: every bf16 row, for CPUs without it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, meta = load_model(args.model)
    net = net.eval().to(memory_format=torch.channels_last)
    volume = read_volume(SHARED / "dicom_series" / "ct_ge_lightspeedplus_chest").array
    norm = IntensityNormalization.from_dict(meta["intensity"]).fit(volume)
    span = float(norm.a_max - norm.a_min)
    x = norm.forward(torch.from_numpy(np.ascontiguousarray(volume[:, :, 8], dtype=np.float32))[None, None])
    x = x.contiguous(memory_format=torch.channels_last)
    print(f"machine: {machine_name()}; torch {torch.__version__}, {args.threads} threads; {args.model} on a "
          f"{tuple(x.shape[-2:])} CT slice")

    def runner(dtype):
        return _Runner(net, None, False, torch.device("cpu"), None, 0, dtype)

    def eager(dtype, module=net):
        r = runner(dtype)

        def call():
            with r._context():
                return module(x).float()
        return call

    rows: list[tuple[str, float, float, np.ndarray | None, str]] = []
    with paused_training():
        bf16 = "bf16" not in args.skip
        for label, dtype in (("eager fp32 (engine)", None), ("eager bf16 (engine, head/tail fp32)", torch.bfloat16)):
            if dtype is not None and not bf16:
                continue
            first, best, y = best_of(eager(dtype), args.repeats)
            rows.append((label, first, best, y, ""))
        reference = rows[0][3]
        if "compile" not in args.skip:
            for label, dtype in (("torch.compile fp32", None), ("torch.compile bf16 (head/tail fp32)", torch.bfloat16)):
                if dtype is not None and not bf16:
                    continue
                try:
                    compiled = torch.compile(net)
                    first, best, y = best_of(eager(dtype, compiled), args.repeats)
                    rows.append((label, first, best, y, f"first call {first:.0f} s (compile)"))
                except Exception as e:  # noqa: BLE001 - a benchmark row, not a failure
                    rows.append((label, math.nan, math.nan, None, f"failed: {type(e).__name__}: {e}"[:200]))
                torch._dynamo.reset()
        with tempfile.TemporaryDirectory(prefix="rmisr-backends-") as tmp:
            onnx_path = Path(tmp) / "net.onnx"
            if not {"ort", "openvino"} <= set(args.skip):
                with torch.inference_mode():
                    torch.onnx.export(net, (x.contiguous(),), str(onnx_path), dynamo=False, opset_version=17,
                                      input_names=["x"], output_names=["y"])
            if "ort" not in args.skip:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = args.threads
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
                xn = x.contiguous().numpy()
                first, best, y = best_of(lambda: sess.run(None, {"x": xn})[0], args.repeats)
                rows.append((f"ONNX Runtime {ort.__version__} fp32", first, best, y, ""))
                rows.append((f"ONNX Runtime {ort.__version__} bf16", math.nan, math.nan, None,
                             "not run: the CPU provider has no bf16 Conv"))
                del sess
            if "openvino" not in args.skip:
                try:
                    import openvino as ov
                except ImportError:
                    rows.append(("OpenVINO", math.nan, math.nan, None, "not installed"))
                else:
                    core = ov.Core()
                    model = core.read_model(str(onnx_path))
                    xn = x.contiguous().numpy()
                    for hint in ("f32", "bf16") if bf16 else ("f32",):
                        cfg = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": args.threads,
                               "PERFORMANCE_HINT": "LATENCY"}
                        t0 = time.perf_counter()
                        compiled = core.compile_model(model, "CPU", cfg)
                        setup = time.perf_counter() - t0
                        request = compiled.create_infer_request()

                        def call(request=request):
                            return request.infer({0: xn})[compiled.output(0)]
                        first, best, y = best_of(call, args.repeats)
                        rows.append((f"OpenVINO {ov.__version__.split('-')[0]} {hint} (every layer)", first, best,
                                     y, f"compile_model {setup:.1f} s"))
                        del request, compiled
        # eager again, last: a machine whose load changed during the run shows it here, not in the ratios
        first, best, y = best_of(eager(None), args.repeats)
        rows.append(("eager fp32 (engine), timed again last", first, best, y, "load drift check"))
    print("| path | s / 512^2 slice (best) | speed vs eager fp32 | max abs diff vs eager fp32 (HU) | PSNR of the "
          "difference (dB, [0, 1]) | note |")
    print("|---|---|---|---|---|---|")
    base = rows[0][2]
    for label, _first, best, y, note in rows:
        if y is None:
            print(f"| {label} | - | - | - | - | {note} |")
            continue
        diff = np.abs(y - reference)
        mse = float((diff.astype(np.float64) ** 2).mean())
        psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
        print(f"| {label} | {best:.2f} | {base / best:.2f}x | {diff.max() * span:.1f} | {psnr:.1f} | {note} |",
              flush=True)
    with contextlib.suppress(Exception):
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
