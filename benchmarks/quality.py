"""Side-by-side SR quality on held-out CT/MR scans: bicubic, IMDN and RLFN (published weights), every shipped model.

Protocol (issue 15's table, issue 32's validation / test split; results in benchmarks/RESULTS.md):

* **Data.** The scans of ``--set`` (``validation``, ``test`` or both) named in ``benchmarks/scans.json``
  (:data:`SCANS`): *validation* scans are the ones stages, recipes and defaults are chosen on; *test* scans are looked
  at only to report; neither is in any shipped model's training data (the file lists that too, with the reasons).
  Each scan is read with :func:`rmisr_monai.io.read.read_volume`; ``--max-slices`` axial slices evenly spaced over
  the middle 60 % of the scan are kept (the end slices of a head scan hold little but air).
* **In-plane** (scales 2, 3, 4, 2.5, 3.5): the two in-plane axes are cropped to what the scale reaches exactly and
  shrunk by MATLAB-compatible bicubic (:class:`rmisr_monai.transforms.degrade.BicubicDegrade`), then **rounded and
  stored as int16**, as a low-resolution file would be. **Through-plane** (2.5, 4): the same along the first
  in-plane axis (``i``) alone: a scan with thick ``i`` slices, upscaled with ``--through-plane --axis x``.
* **Methods** run through the volume engine (:func:`rmisr_monai.inference.upscale_volume`), as ``rmisr upscale``
  runs them: bicubic; the shipped default that ``rmisr upscale --scale S`` picks (no ``--model``); every other
  shipped model that serves the scale (each with its registry recipe's geometric self-ensemble, as ``rmisr
  upscale`` runs it; ``--defaults-only`` skips them); the two peers with their published DIV2K RGB weights, at the
  integer scales they exist for: IMDN (x2, x3, x4; ``--imdn-dir``) and RLFN (x2, x4; ``--rlfn-dir``), each on the
  grey slice replicated to 3 channels with the output channels averaged, fed the scan's robust range mapped to
  ``[0, 1]``, in fp32 as published. Every method sees whole slices (one slice per call, no tiles): IMDN's
  contrast-aware channel attention and RMISR's ICCA pool over the whole input, so a tiled run would score a
  network below itself (IMDN CT x2: 0.18 dB). Ours run as ``rmisr upscale`` runs them (bf16 autocast for MR on CPUs
  with native bf16).
* **Scores** on each scan's robust intensity range (0.5 / 99.5 percentiles of HR mapped to ``[0, 1]``, outputs
  clipped to it), per axial slice with ``ceil(s)`` border pixels shaved, averaged over the slices of all scans of
  the set: PSNR, SSIM, edge PSNR (Laplacian maps) and back-projection consistency (the output degraded again vs the
  LR). ``--per-scan`` also prints each scan's PSNR.
* ``--figures DIR`` writes one PNG per set, modality and mode (x2 in-plane, 2.5 through-plane): LR, bicubic, the
  peers, ours, HR, error maps, zoomed inset (:func:`rmisr_monai.evaluation.figure.quality_figure`).

    python benchmarks/quality.py --shared ../shared --imdn-dir ../shared/peers/imdn --rlfn-dir ../shared/peers/rlfn \\
        --set validation test --max-slices 3 --figures benchmarks/figures
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rmisr_monai.evaluation.figure import quality_figure
from rmisr_monai.evaluation.quality import (
    MethodScores,
    QualityReport,
    degrade_volume,
    score_slices,
    scoring_normalization,
    to_scoring_units,
)
from rmisr_monai.inference import upscale_volume
from rmisr_monai.inference.adapt import ScanTooSmallError, adapt_network
from rmisr_monai.inference.selection import intensity_for
from rmisr_monai.io.read import read_volume
from rmisr_monai.io.volume import Volume
from rmisr_monai.networks import get_network
from rmisr_monai.networks.nets.imdn import IMDN
from rmisr_monai.networks.nets.rlfn import RLFN
from rmisr_monai.transforms.intensity import IntensityNormalization
from rmisr_monai.weights.loader import default_model, load_model, read_registry

# the validation and test scans (and, for the record, the training scans), relative to the shared folder
SCANS = json.loads(Path(__file__).with_name("scans.json").read_text())
SETS = ("validation", "test")
HELD_OUT = SCANS["validation"]  # the name of issue 15's scans, which became the validation set
# the published peers: file pattern and the scales a file exists for (shared/peers/*/MANIFEST.md)
PEERS = {
    "IMDN (published weights)": (IMDN, "IMDN_x{s}.pth", (2, 3, 4)),
    "RLFN (published weights)": (RLFN, "rlfn_x{s}.pth", (2, 4)),
}
IN_PLANE_SCALES = (2.0, 3.0, 4.0, 2.5, 3.5)
THROUGH_PLANE_SCALES = (2.5, 4.0)
ROBUST_RANGE = {"kind": "mr"}  # per-volume 0.5 / 99.5 percentiles to [0, 1] (rmisr_monai.transforms.intensity)


class Replicate3(torch.nn.Module):
    """Run an RGB network on a grey image: replicate to 3 channels, average the output channels."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)


def held_out(shared: Path, modality: str, max_slices: int, scan_set: str = "validation") -> list[Volume]:
    """The scans of ``scan_set`` for a modality, each cut to ``max_slices`` axial slices of its middle 60 %."""
    volumes = []
    for rel in SCANS[scan_set][modality]:
        v = read_volume(shared / rel)
        n = v.array.shape[2]
        keep = sorted({int(k) for k in np.linspace(0.2 * (n - 1), 0.8 * (n - 1), min(n, max_slices)).round()})
        array = np.ascontiguousarray(v.array[:, :, keep])
        volumes.append(Volume(array, v.geometry, v.modality, v.source_dtype, v.source_path, v.source_format))
    return volumes


def degrade(volume: Volume, scale: float, through_plane: bool) -> tuple[Volume, Volume]:
    """``(hr, lr)`` of :func:`rmisr_monai.evaluation.degrade_volume` (in-plane on axial slices, or along ``i``
    alone), the LR rounded and stored as int16 as a low-resolution file would be."""
    hr, lr = degrade_volume(volume, scale, axis=0 if through_plane else 2, through_plane=through_plane)
    lr_int = Volume(np.round(lr.array).astype(np.int16), lr.geometry, lr.modality, np.int16, lr.source_path,
                    lr.source_format)
    return hr, lr_int


def axial_stack(array: np.ndarray, norm: IntensityNormalization) -> torch.Tensor:
    """``(K, 1, I, J)`` float64 axial slices in the scoring units of ``rmisr evaluate`` (the one protocol:
    :func:`rmisr_monai.evaluation.quality.to_scoring_units`)."""
    data = to_scoring_units(array, norm)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(data, 2, 0)))[:, None]


def methods_for(
    modality: str, scale: float, through_plane: bool, imdn_dir: Path | None, weights: dict[str, Path] | None = None,
    weights_ensemble: int = 1, rlfn_dir: Path | None = None, defaults_only: bool = False,
) -> dict:
    """``{name: (network, intensity recipe or None, engine options)}``: bicubic, the default, other shipped models
    (each with its registry recipe's self-ensemble, as ``rmisr upscale`` runs it; none with ``defaults_only``), the
    checkpoints in ``weights`` (``{name: path}``, e.g. a model in training; ``weights_ensemble``) that serve the case,
    and the peers IMDN and RLFN (plain, in fp32, as published) where their folder is given and a file exists."""
    methods = {"bicubic": (get_network("bicubic", scale=scale if scale.is_integer() else 2).eval(), None, {})}
    fits = []
    try:
        default = default_model(scale, modality, arbitrary_scale=through_plane)["name"]
        fits.append((f"{default} (default)", default))
    except Exception as e:  # nothing shipped for this case: say so in the table
        print(f"  no shipped default for {modality} x{scale:g}{' through-plane' if through_plane else ''}: {e}")
        default = None
    for entry in read_registry():
        serves = entry.get("arbitrary_scale") or (not through_plane and float(entry["scale"]) == scale)
        current = entry.get("status", "current") == "current"  # superseded entries are no longer shipped
        if entry["modality"] == modality and serves and current and entry["name"] != default and not defaults_only:
            fits.append((entry["name"], entry["name"]))
    for label, name in fits:
        net, meta = load_model(name)
        methods[label] = (net, intensity_for(meta, modality), {"ensemble": meta["self_ensemble"]})
    for label, path in (weights or {}).items():
        net, meta = load_model(path)
        trained_scale = float(meta["network_kwargs"].get("scale", 0))
        if getattr(net, "arbitrary_scale", False) or not through_plane and trained_scale == scale:
            methods[label] = (net, intensity_for(meta, modality), {"ensemble": weights_ensemble})
    for label, folder in zip(PEERS, (imdn_dir, rlfn_dir)):
        cls, pattern, scales = PEERS[label]
        if folder is None or through_plane or not scale.is_integer() or int(scale) not in scales:
            continue
        path = folder / pattern.format(s=int(scale))
        if path.exists():
            peer = Replicate3(cls.from_official(path, int(scale))).eval()
            methods[label] = (peer, ROBUST_RANGE, {"precision": "fp32"})
    return methods


def run_case(volumes: list[Volume], modality: str, scale: float, through_plane: bool, imdn_dir: Path | None,
             weights: dict[str, Path] | None = None, weights_ensemble: int = 1, rlfn_dir: Path | None = None,
             defaults_only: bool = False, adapt: tuple[float, ...] = (), seed: int = 0):
    """Mean scores per method over the slices of all scans, the first scan's figure report, and
    ``{scan: {method: PSNR}}`` (each scan's mean over its slices). ``adapt``: also the default adapted to each LR
    scan for each of these many seconds (:func:`rmisr_monai.inference.adapt.adapt_network`, ``seed``; its time
    counts in the method's seconds)."""
    methods = methods_for(modality, scale, through_plane, imdn_dir, weights, weights_ensemble, rlfn_dir, defaults_only)
    default = next((name for name in methods if name.endswith("(default)")), None)
    adapted = {f"{default} adapted {t:g} s": t for t in adapt if default is not None and t > 0}
    sums: dict[str, list[MethodScores]] = {name: [] for name in [*methods, *adapted]}
    per_scan: dict[str, dict[str, float]] = {}
    report = None
    for volume in volumes:
        hr, lr = degrade(volume, scale, through_plane)
        norm = scoring_normalization(hr.array)
        hr_s, lr_s = axial_stack(hr.array, norm), axial_stack(lr.array, norm)
        shave = math.ceil(scale)
        figure_k = int(hr_s.flatten(1).std(dim=1).argmax())
        if report is None:
            report = QualityReport(
                input=str(volume.source_path), scale=scale, axis=2, modality=modality, intensity=norm.to_dict(),
                hr_shape=hr.array.shape, lr_shape=lr.array.shape, slices=list(range(hr_s.shape[0])),
                slice_index=figure_k,
            )
            report.images["LR"] = lr_s[figure_k, 0].numpy()
            report.images["HR"] = hr_s[figure_k, 0].numpy()
        for name in sums:
            start = time.perf_counter()
            if name in adapted:
                net, intensity, options = methods[default]
                try:
                    net = adapt_network(net, lr.array, scale=scale, axis=0 if through_plane else 2,
                                        through_plane=through_plane, intensity=intensity, seconds=adapted[name],
                                        seed=seed)
                except ScanTooSmallError as error:  # as rmisr upscale --adapt: the unadapted result, and why
                    print(f"  {Path(str(volume.source_path)).name}: {error}", flush=True)
                else:
                    r = net.adaptation_report
                    print(f"  {Path(str(volume.source_path)).name}: {name}: {r.iterations} of "
                          f"{r.iterations_planned} iterations in {r.seconds:.1f} s, held-out crops "
                          f"{r.holdout_psnr_before} -> {r.holdout_psnr_after} dB, kept {r.kept}", flush=True)
            else:
                net, intensity, options = methods[name]
            sr = upscale_volume(lr, net, scale, axis=0 if through_plane else 2, through_plane=through_plane,
                                intensity=intensity, device="cpu", progress=False, batch_size=1, **options)
            seconds = time.perf_counter() - start
            sr_s = axial_stack(sr.array, norm)
            factors = (scale, 1.0) if through_plane else (scale, scale)
            sums[name].append(score_slices(name, sr_s, hr_s, lr_s, factors, seconds, shave=shave))
            per_scan.setdefault(Path(str(volume.source_path)).name, {})[name] = sums[name][-1].psnr
            if report.input == str(volume.source_path):
                report.images[name] = sr_s[figure_k, 0].numpy()
    means = []
    for name, rows in sums.items():
        fields = {f: statistics.fmean(getattr(r, f) for r in rows)
                  for f in ("psnr", "ssim", "edge_psnr", "backprojection_psnr", "seconds")}
        means.append(MethodScores(method=name, **fields))
    report.scores = means
    return means, report, per_scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--set", nargs="+", choices=SETS, default=["validation"], dest="sets",
                        help="scans of benchmarks/scans.json to score: validation (choose on it), test (report only)")
    parser.add_argument("--modalities", nargs="+", default=["CT", "MR"])
    parser.add_argument("--scales", type=float, nargs="*", default=list(IN_PLANE_SCALES),
                        help="in-plane scales (none: through-plane only)")
    parser.add_argument("--through-plane-scales", type=float, nargs="*", default=list(THROUGH_PLANE_SCALES))
    parser.add_argument("--imdn-dir", type=Path, default=None, help="folder with IMDN_x{2,3,4}.pth")
    parser.add_argument("--rlfn-dir", type=Path, default=None, help="folder with rlfn_x{2,4}.pth")
    parser.add_argument("--defaults-only", action="store_true", help="of the shipped models, only the default")
    parser.add_argument("--max-slices", type=int, default=3, help="axial slices per scan")
    parser.add_argument("--per-scan", action="store_true", help="also print each scan's PSNR per method")
    parser.add_argument("--adapt", type=float, nargs="*", default=[], metavar="SECONDS",
                        help="also score the default adapted to each LR scan for these many seconds each")
    parser.add_argument("--seed", type=int, default=0, help="seed of the adaptation crops")
    parser.add_argument("--figures", type=Path, default=None, help="write a PNG per set, modality and mode here")
    parser.add_argument("--json", type=Path, default=None, help="write every score here")
    parser.add_argument(
        "--weights", nargs="*", default=[], metavar="MOD:NAME=PATH",
        help="more checkpoints to score, e.g. CT:meta_100=runs/ct100.pt (only for that modality)",
    )
    parser.add_argument(
        "--weights-ensemble", type=int, default=1, choices=(1, 2, 4, 8),
        help="self-ensemble size for the --weights checkpoints (shipped models use their registry recipe)",
    )
    args = parser.parse_args()
    rows = []
    print(f"{'set':10} {'modality':8} {'case':16} {'method':34} {'PSNR':>7} {'gain':>6} {'SSIM':>7} {'edge':>7} "
          f"{'backproj':>8}")
    for scan_set in args.sets:
        for modality in args.modalities:
            volumes = held_out(args.shared, modality, args.max_slices, scan_set)
            cases = [(s, False) for s in args.scales] + [(s, True) for s in args.through_plane_scales]
            for scale, through in cases:
                case = f"x{scale:g}{' through-plane' if through else ''}"
                extra = {}
                for spec in args.weights:
                    mod, _, rest = spec.partition(":")
                    name, _, path = rest.partition("=")
                    if mod.upper() == modality:
                        extra[name] = Path(path)
                means, report, per_scan = run_case(volumes, modality, float(scale), through, args.imdn_dir, extra,
                                                   args.weights_ensemble, args.rlfn_dir, args.defaults_only,
                                                   tuple(args.adapt), args.seed)
                base = means[0].psnr
                for m in means:
                    print(f"{scan_set:10} {modality:8} {case:16} {m.method:34} {m.psnr:7.2f} {m.psnr - base:+6.2f} "
                          f"{m.ssim:7.4f} {m.edge_psnr:7.2f} {m.backprojection_psnr:8.2f}", flush=True)
                    rows.append({"set": scan_set, "modality": modality, "case": case, **vars(m)})
                if args.per_scan:
                    for scan, scores in per_scan.items():
                        cells = ", ".join(f"{name} {value:.2f}" for name, value in scores.items())
                        print(f"{'':10} {'':8} {'':16} {scan}: {cells}", flush=True)
                for row in rows[-len(means):]:
                    row["per_scan_psnr"] = {scan: scores[row["method"]] for scan, scores in per_scan.items()}
                if args.figures is not None and (scale, through) in ((2.0, False), (2.5, True)):
                    args.figures.mkdir(parents=True, exist_ok=True)
                    name = f"quality_{scan_set}_{modality.lower()}_{case.replace(' ', '_').replace('.', 'p')}.png"
                    quality_figure(report, args.figures / name, overwrite=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
