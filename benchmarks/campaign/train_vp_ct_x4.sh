#!/usr/bin/env bash
# RMISR-VP x4 for CT (32 features; L1 + 10 L1 + beta contextual loss on the Laplacian branch, RMISR eqs. 18-20), with
# per-volume percentile normalisation (--modality MR on CT volumes, as the CT defaults since §13), across sessions:
#
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_vp_ct_x4.sh > runs/vp_ct_x4.log 2>&1 &
#
# Lineage 2 (this script, from 2026-12-03 §13): the SR body (head, first four PFMDBs, tail) from the CT x4
# percentile RMISR-BL (--transfer rmisr_bl_ct_x4_percentile), the Laplacian branch, PFMDBs 5-6 and the upsamplers from
# scratch; 6000 iterations, lr 2e-4 halved every 1500. Lineage 1 (the padded HU window -3072..3071, stage 1 +0.09 dB,
# stage 2 +0.28 dB at 900 iterations; benchmarks/RESULTS.md §12) was dropped when the HU window proved the CT
# models' limit (§13); its log stays in benchmarks/campaign/vp_ct_x4/train.log.
# Contextual loss: offline "patches" features (no VGG19 weights can be had here), 1024 random positions per map (the
# count VGG19's relu3_2 has on a 128 x 128 HR patch; the official 65 x 65 on full-resolution maps costs about 10x
# more per step on the CPU), weight beta = 0.05 instead of the paper's 1: with raw-patch features at beta = 1 its
# gradient was 28x the SR branch's L1 gradient (measured at iteration 700, where the SR output was 1.4 dB below
# bicubic); the paper's beta is for VGG19 features. Resume and hand-over as in train_meta.sh
# (benchmarks/campaign/vp_ct_x4/resume.pt, train.log). The volumes: campaign/volumes.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ITERATIONS=${ITERATIONS:-6000}
source benchmarks/campaign/volumes.sh
START=(--transfer rmisr_bl_ct_x4_percentile)
if [[ -f benchmarks/campaign/vp_ct_x4/resume.pt ]]; then START=(--resume benchmarks/campaign/vp_ct_x4/resume.pt); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_vp --network-kwargs '{"features": 32}' --scale 4 \
  --loss-kwargs '{"beta": 0.05, "contextual": {"max_positions": 1024}}' --modality MR \
  --volumes "${CT_ALL_VOLUMES[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 --lr 2e-4 \
  --checkpoint-every 100 --checkpoint-dir runs/vp_ct_x4c --output runs/rmisr_vp_ct_x4.pt "${START[@]}"
