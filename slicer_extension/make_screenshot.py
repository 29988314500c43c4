"""Make the extension's screenshot (slicer_extension/Screenshots/SuperResolution.png) from a real run.

    python slicer_extension/make_screenshot.py [--slices 3] [--out slicer_extension/Screenshots/SuperResolution.png]

Packages the module folder (package.py), takes a few axial slices of the shipped demo CT
(``rmisr_monai/sample``), runs the PACKAGED worker script on them twice -- bicubic and the shipped default x2
model -- exactly as the module starts it, and draws the middle slice of the input and of both results side by
side at the module's display window (W 400 / L 40), with what the worker reported (model, device, precision, time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import package  # noqa: E402

WINDOW, LEVEL = 400.0, 40.0


def _run(python: str, worker: Path, source: Path, output: Path, model: list[str]) -> dict:
    command = [python, str(worker), "--input", str(source), "--output", str(output), "--scale", "2", *model]
    done = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    return json.loads(next(line for line in reversed(done) if '"kind": "done"' in line)[len("@rmisr "):])


def _grey(slice_ij: np.ndarray, size: tuple[int, int]) -> Image.Image:
    low = LEVEL - WINDOW / 2
    grey = np.clip((slice_ij.astype(np.float64) - low) / WINDOW * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(grey.T).resize(size, Image.NEAREST)  # rows = j, columns = i, as Slicer's axial view


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=3, help="axial slices of the demo CT to run on")
    parser.add_argument("--out", default=str(HERE / "Screenshots" / "SuperResolution.png"))
    args = parser.parse_args(argv)
    import dataclasses

    from rmisr_monai.io.geometry import Geometry
    from rmisr_monai.io.read import read_volume
    from rmisr_monai.io.write import write_volume

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        module = package.write_module(folder / "extension")
        sample = read_volume(module / "rmisr_monai" / "sample" / "ct_demo_abdomen_int16.nii.gz")
        start = sample.array.shape[2] // 2 - args.slices // 2
        g = sample.geometry
        origin = tuple(g.index_to_world([[0.0, 0.0, float(start)]])[0])
        crop = dataclasses.replace(sample, array=np.ascontiguousarray(sample.array[:, :, start : start + args.slices]),
                                   geometry=Geometry(g.spacing, origin, g.direction))  # fmt: skip
        write_volume(crop, folder / "input.mha")
        worker = module / "Scripts" / "super_resolution_worker.py"
        runs = [(["--model", "bicubic"], "bicubic.mha"), ([], "default.mha")]
        reports = [_run(sys.executable, worker, folder / "input.mha", folder / name, model) for model, name in runs]
        middle = args.slices // 2
        low = crop.array[:, :, middle]
        size = (2 * low.shape[0], 2 * low.shape[1])
        panels = [("input (nearest x2)", _grey(low, size))]
        for (_, name), report in zip(runs, reports):
            result = read_volume(folder / name).array[:, :, middle]
            text = f"{report['model']} x2: {report['device']}, {report['precision']}, {report['seconds']:.1f} s"
            panels.append((text, _grey(result, size)))
    margin = 28
    sheet = Image.new("L", (len(panels) * size[0], size[1] + margin), 0)
    draw = ImageDraw.Draw(sheet)
    for index, (text, image) in enumerate(panels):
        sheet.paste(image, (index * size[0], margin))
        draw.text((index * size[0] + 8, 8), text, fill=255)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(args.out, sheet.size, [r["model"] for r in reports])
    return 0


if __name__ == "__main__":
    sys.exit(main())
