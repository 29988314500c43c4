#!/usr/bin/env bash
# RMISR-VP x4 for CT (32 features; L1 + 10 L1 + beta contextual loss on the Laplacian branch, RMISR eqs. 18-20), in the
# padded HU window, across sessions:
#
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_vp_ct_x4.sh > runs/vp_ct_x4.log 2>&1 &
#
# Stage 1 (done, 2026-12-03, 2000 iterations, lr 2e-4 halved every 500): the SR body (head, first four PFMDBs)
# started from the shipped RMISR-BL CT x4 in the same window (--transfer rmisr_bl_ct_x4_wide), the Laplacian branch,
# PFMDBs 5-6 and the upsamplers from scratch; it ended at +0.09 dB over bicubic (benchmarks/RESULTS.md §12) with the
# learning rate down to 1.25e-5. Its weights are benchmarks/campaign/vp_ct_x4/stage1.pt. Stage 2 (this script):
# a warm restart from them (--init), 4000 iterations, lr 2e-4 halved every 1000.
# Contextual loss: offline "patches" features (no VGG19 weights can be had here), 1024 random positions per map (the
# count VGG19's relu3_2 has on a 128 x 128 HR patch; the official 65 x 65 on full-resolution maps costs about 10x
# more per step on the CPU), weight beta = 0.05 instead of the paper's 1: with raw-patch features at beta = 1 its
# gradient was 28x the SR branch's L1 gradient (measured at iteration 700, where the SR output was 1.4 dB below
# bicubic); the paper's beta is for VGG19 features. Resume and hand-over as in train_meta.sh
# (benchmarks/campaign/vp_ct_x4/resume.pt, train.log). The volumes: campaign/volumes.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ITERATIONS=${ITERATIONS:-4000}
source benchmarks/campaign/volumes.sh
RESUME=()
if [[ -f benchmarks/campaign/vp_ct_x4/resume.pt ]]; then RESUME=(--resume benchmarks/campaign/vp_ct_x4/resume.pt); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_vp --network-kwargs '{"features": 32}' --scale 4 \
  --loss-kwargs '{"beta": 0.05, "contextual": {"max_positions": 1024}}' --modality CT --volumes "${CT_VOLUMES[@]}" \
  "${CT_PADDED_WINDOW[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 --checkpoint-every 100 \
  --init benchmarks/campaign/vp_ct_x4/stage1.pt --checkpoint-dir runs/vp_ct_x4b --output runs/rmisr_vp_ct_x4.pt \
  "${RESUME[@]}"
