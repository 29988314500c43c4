#!/usr/bin/env bash
# RMISR Table 1's protocol, on the data we have: RMISR-BL x4 (64 features, 3 channels, the paper's 0.848 M network)
# trained on RGB natural pictures, T91 + BSD200 ("291"; the paper used DIV2K), HR crops of 192 x 192 (LR 48),
# mini-batch 16, Adam 2e-4 (RMISR §5.1); evaluated on Set5/Set14/B100 with benchmarks/natural.py. Across sessions:
#
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_natural_x4.sh > runs/natural_x4.log 2>&1 &
#
# If benchmarks/campaign/natural_x4/resume.pt exists (the latest trainer checkpoint a previous session committed), the
# run continues from it. Before a session ends: copy the newest runs/natural_x4/checkpoint_*.pt over
# benchmarks/campaign/natural_x4/resume.pt (one file, replaced) and append the log to its train.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
ITERATIONS=${ITERATIONS:-3500}
N=${RMISR_SHARED:-../shared}/data/natural_train
RESUME=()
if [[ -f benchmarks/campaign/natural_x4/resume.pt ]]; then RESUME=(--resume benchmarks/campaign/natural_x4/resume.pt); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"in_channels": 3}' --scale 4 \
  --images "$N/T91" "$N/BSD200" --iterations "$ITERATIONS" --patch 48 --batch 16 --checkpoint-every 100 \
  --checkpoint-dir runs/natural_x4 --output runs/rmisr_bl_natural_x4.pt "${RESUME[@]}"
