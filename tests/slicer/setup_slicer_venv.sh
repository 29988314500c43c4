#!/usr/bin/env bash
# Create the Slicer-like Python that tests/slicer uses for real MRML and for a fresh environment (no rmisr_monai):
# a venv at $RMISR_SLICER_VENV (default ~/.cache/rmisr-monai/slicer-venv) holding what Slicer 5.10's Python holds
# (slicer-core: real MRML + slicer.util, with its own VTK and numpy; pydicom 2.4.4), then torch==2.13.0 (in Slicer:
# the PyTorch extension), then the module's Resources/requirements.txt installed the way SuperResolutionLib.dependencies
# installs it: with every package already there pinned (pip -c). Plus pytest, which runs the checks inside it.
# slicer-core failing to install is not fatal: the real-MRML tests then skip with the reason; the worker tests still run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${RMISR_SLICER_VENV:-$HOME/.cache/rmisr-monai/slicer-venv}"
base_python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$base_python" -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check "pydicom==2.4.4" pytest
"$py" -m pip install -q --disable-pip-version-check slicer-core \
  || echo "setup_slicer_venv: slicer-core could not be installed for $("$py" -V); the real-MRML tests will skip"
"$py" -m pip install -q --disable-pip-version-check "torch==2.13.0"
pins="$(mktemp)"
"$py" -c "import sys; sys.path.insert(0, sys.argv[1]); from SuperResolutionLib.dependencies import constraints
print('\n'.join(constraints()))" "$repo/slicer_extension/SuperResolution" > "$pins"
"$py" -m pip install -q --disable-pip-version-check -c "$pins" \
  -r "$repo/slicer_extension/SuperResolution/Resources/requirements.txt"
rm -f "$pins"
echo "setup_slicer_venv: $venv ready ($("$py" -c 'import torch, monai; print("torch", torch.__version__, "monai", monai.__version__)'))"
