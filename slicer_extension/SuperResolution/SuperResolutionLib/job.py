"""One super-resolution run of the module: input node -> temporary file -> worker process -> output node.

:func:`start_job` copies the input (or its ROI) to a temporary ``.mha`` (exact geometry), chooses the engine axis
from the mode and starts the worker; :meth:`UpscaleJob.finish` reads the result back into the output node (created
only now, so a cancelled or failed run leaves no node behind), puts it under the input's parent transform (so it
is shown where the input is), copies the input's display settings, fills the quality table and removes the
temporary folder; :attr:`UpscaleJob.summary` then says what ran (model, device, precision, seconds);
:meth:`UpscaleJob.cancel` kills the worker and removes the folder.
The input node is only read.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import slicer

from SuperResolutionLib.models import ModelChoice, worker_model_arguments
from SuperResolutionLib.process import WorkerProcess

__all__ = ["MODES", "THICK_AXES", "DEVICES", "SELF_ENSEMBLES", "UpscaleJob", "start_job", "engine_axis"]

MODES = ("axial", "coronal", "sagittal", "through-plane")
THICK_AXES = ("auto", "axial", "coronal", "sagittal")
DEVICES = ("auto", "cuda", "cpu")
# geometric self-ensemble: "model" runs the model's own recipe (4 copies for the shipped x3/x4 defaults), a number
# that many flipped / turned copies of each slice (rmisr_monai.inference.ensemble.SELF_ENSEMBLE_SIZES)
SELF_ENSEMBLES = ("model", "1", "2", "4", "8")
WORKER_SCRIPT = Path(__file__).resolve().parents[1] / "Scripts" / "super_resolution_worker.py"
INPUT_FILE, OUTPUT_FILE, REFERENCE_FILE, QUALITY_FILE = "input.mha", "output.mha", "reference.mha", "quality.json"


def engine_axis(ijk_to_ras, spacing, mode: str, thick_axis_plane: str = "auto") -> tuple[int, bool]:
    """``(index axis, through_plane)`` for the engine: in-plane, the axis the chosen anatomical slices stack along;
    through-plane, the thick axis (largest spacing by default, or the axis normal to the named plane)."""
    from SuperResolutionLib.geometry import slice_axis_for_plane, thick_axis

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "through-plane":
        return slice_axis_for_plane(ijk_to_ras, mode), False
    if thick_axis_plane not in THICK_AXES:
        raise ValueError(f"thick axis must be one of {THICK_AXES}, got {thick_axis_plane!r}")
    if thick_axis_plane == "auto":
        return thick_axis(spacing), True
    return slice_axis_for_plane(ijk_to_ras, thick_axis_plane), True


@dataclass
class UpscaleJob:
    """A started run; the GUI polls :attr:`worker`, then calls :meth:`finish` or :meth:`cancel`."""

    input_node: object
    output_node: object | None
    table_node: object | None
    folder: Path
    worker: WorkerProcess
    output_name: str
    quality: bool = True
    closed: bool = field(default=False)
    summary: dict = field(default_factory=dict)

    def summary_text(self) -> str:
        """``"bicubic on CPU, fp32, 1.2 s"`` for a finished run (empty before)."""
        s = self.summary
        if not s:
            return ""
        where = f"{s.get('device', '?')}, {s.get('precision', '?')}"
        return f"{s.get('model', '?')} on {where}, {s.get('seconds', 0):.1f} s"

    def finish(self, show: bool = True):
        """Read the finished result into the output node (a new one unless one was given) and the quality table.

        Returns:
            ``(output_node, table_node)``; the table is a new one unless one was given, None without ``quality``.

        Raises:
            WorkerFailed: the worker failed or was cancelled (its error sentence); no node is created.
        """
        from rmisr_monai.io.read import read_volume
        from SuperResolutionLib import nodes
        from SuperResolutionLib.quality import TABLE_COLUMNS, table_rows

        created = []
        try:
            done = self.worker.result()
            result = read_volume(done.fields["output"])
            report = json.loads(Path(done.fields["quality"]).read_text(encoding="utf-8")) if self.quality else None
            node, table = self.output_node, self.table_node
            if node is None:
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", self.output_name)
                created.append(node)
            if report is not None and table is None:
                table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.output_name} quality")
                created.append(table)
            nodes.update_node_from_volume(node, result)
            # the result's geometry is that of the input's voxels: under the same parent transform it sits on them
            node.SetAndObserveTransformNodeID(self.input_node.GetTransformNodeID())
            nodes.copy_display(self.input_node, node)
            if report is not None:
                nodes.fill_table(table, TABLE_COLUMNS, table_rows(report))
            if show:
                slicer.util.setSliceViewerLayers(background=node, fit=True)
            self.summary = {k: done.fields[k] for k in ("model", "device", "precision", "seconds") if k in done.fields}
            return node, table
        except BaseException:
            for partial in created:  # no half-made node stays in the scene
                slicer.mrmlScene.RemoveNode(partial)
            raise
        finally:
            self.close()

    def cancel(self) -> None:
        """Kill the worker (and its children) and remove the temporary files; nothing is added to the scene."""
        self.worker.kill()
        self.close()

    def close(self) -> None:
        if not self.closed:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.closed = True


def start_job(
    input_node,
    choice: ModelChoice,
    scale: float,
    *,
    python: str,
    mode: str = "axial",
    thick_axis_plane: str = "auto",
    roi=None,
    device: str = "auto",
    self_ensemble: str = "model",
    reference=None,
    checkpoint: str = "",
    output_node=None,
    table_node=None,
    quality: bool = True,
    log: Callable[[str], None] | None = None,
) -> UpscaleJob:
    """Validate the choices, write the input (and reference) to a temporary folder and start the worker.

    Args:
        input_node: the scalar volume to upscale (read only).
        choice, scale, checkpoint: the model (:func:`~SuperResolutionLib.models.model_choices`) and its factor.
        python: the interpreter that runs the worker (``PythonSlicer`` in Slicer).
        mode: ``"axial"``, ``"coronal"``, ``"sagittal"`` (in-plane) or ``"through-plane"``.
        thick_axis_plane: through-plane: ``"auto"`` (largest spacing) or the plane normal to the thick axis.
        roi: a markups ROI node: only the voxels inside are upscaled.
        device: ``"auto"`` (GPU when available), ``"cuda"`` or ``"cpu"``.
        self_ensemble: one of :data:`SELF_ENSEMBLES`: ``"model"`` (the model's recipe) or how many flipped / turned
            copies of each slice are averaged (``"1"``: plain, fastest; ``"8"``: every flip and quarter turn).
        reference: a volume on the result's grid to score PSNR/SSIM against.
        output_node, table_node: existing nodes to fill (None: new ones, created only when the run succeeds).
        quality: score the result (back-projection; PSNR/SSIM with ``reference``) into the quality table.
        log: receives the worker's plain output lines.

    Raises:
        ValueError: a choice that cannot work (said in words); nothing is started or created.
    """
    from rmisr_monai.io.write import write_volume
    from SuperResolutionLib import nodes

    if output_node is not None and output_node is input_node:
        raise ValueError("the output volume must differ from the input volume (the input is never modified)")
    if output_node is not None and reference is not None and output_node is reference:
        raise ValueError("the output volume must differ from the reference volume")
    if self_ensemble not in SELF_ENSEMBLES:
        raise ValueError(f"self-ensemble must be one of {', '.join(SELF_ENSEMBLES)}, not {self_ensemble!r}")
    model_arguments = worker_model_arguments(choice, scale, checkpoint)
    volume = nodes.volume_from_node(input_node, roi)
    axis, through_plane = engine_axis(nodes.ijk_to_ras_of(input_node), volume.geometry.spacing, mode, thick_axis_plane)
    if through_plane and not choice.through_plane:
        raise ValueError(f"{choice.label} upscales in-plane only; through-plane needs bicubic or an any-scale model")
    folder = Path(tempfile.mkdtemp(prefix="SlicerSuperResolution-"))
    try:
        write_volume(volume, folder / INPUT_FILE)
        command = [
            python, str(WORKER_SCRIPT),
            "--input", str(folder / INPUT_FILE),
            "--output", str(folder / OUTPUT_FILE),
            "--scale", repr(float(scale)),
            "--axis", str(axis),
            "--device", device,
            *model_arguments,
        ]  # fmt: skip
        if through_plane:
            command.append("--through-plane")
        if self_ensemble != "model":
            command += ["--self-ensemble", self_ensemble]
        if quality:
            command += ["--quality", str(folder / QUALITY_FILE)]
        if reference is not None and quality:
            write_volume(nodes.volume_from_node(reference), folder / REFERENCE_FILE)
            command += ["--reference", str(folder / REFERENCE_FILE)]
        environment = {"CUDA_VISIBLE_DEVICES": "-1"} if device == "cpu" else None
        worker = WorkerProcess(command, slicer.util.launchConsoleProcess, environment, log)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    name = f"{input_node.GetName()} x{scale:g}" + (" (ROI)" if roi is not None else "")
    return UpscaleJob(input_node, output_node, table_node, folder, worker, name, quality)
