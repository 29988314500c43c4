#!/usr/bin/env bash
# Training campaigns of the arbitrary-scale RMISR-BL (32 features, Meta-SR upsampler), across sessions:
#
#   nohup nice bash benchmarks/campaign/train_meta.sh MR > runs/meta_mr.log 2>&1 &    # rmisr_bl_meta_mr
#   nohup nice bash benchmarks/campaign/train_meta.sh ANY > runs/meta_any.log 2>&1 &  # rmisr_bl_meta, stage 1
#   nohup nice bash benchmarks/campaign/train_meta.sh ANY2 > runs/meta_any2.log 2>&1 & # rmisr_bl_meta, stage 2
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_meta.sh ANY64 > runs/meta_any64.log 2>&1 &  # rmisr_bl64_meta
#
# MR: the body starts from the shipped MR x2 model (--transfer), the Meta-SR head from scratch, 3000 iterations on
# the nine MR volumes. ANY: the whole network starts from rmisr_bl_meta_mr (--init) and is fine-tuned 1500 iterations
# (lr 1e-4) on the four CT and the nine MR volumes together, every volume normalised by its own 0.5 / 99.5
# percentiles (the MR convention, `--modality MR`), so one model serves CT and MR. ANY2: a warm restart of its result
# (--init runs/rmisr_meta_any.pt, lr 1e-4 again), 1200 iterations; its output is the shipped rmisr_bl_meta. Two
# ANY64: the full-size network (64 features): body from the shipped x2 default rmisr_bl64_mr_x2 (--transfer), Meta-SR
# head from scratch, lr 2.5e-4, on the six CT and nine MR volumes of the bl64 defaults (train_bl64.sh). Two
# CT-only runs in the padded HU window were dropped: they gained nothing through-plane
# (benchmarks/campaign/meta_ct/train.log, RESULTS.md §12). A resumed run takes its weights from resume.pt alone (no
# --init / --transfer source needed, e.g. runs/rmisr_meta_any.pt on a fresh machine).
# Scales are drawn per batch in 1.1-4.0 (both axes, one axis alone, or each its own). If
# benchmarks/campaign/meta_<mode>/resume.pt exists (the latest trainer checkpoint a previous session committed), the
# run continues from it. Before a session ends: copy the newest runs/meta_<mode>/checkpoint_*.pt over
# benchmarks/campaign/meta_<mode>/resume.pt (one file, replaced) and append the log to
# benchmarks/campaign/meta_<mode>/train.log. The volumes: campaign/volumes.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:?MR, ANY, ANY2 or ANY64}
mode=${MODE,,}
source benchmarks/campaign/volumes.sh
FEATURES=32
case $MODE in
  MR) VOLUMES=("${MR_VOLUMES[@]}"); START=(--transfer rmisr_bl_mr_x2); LR=2e-4; ITERATIONS=${ITERATIONS:-3000} ;;
  ANY) VOLUMES=("${CT_VOLUMES[@]}" "${MR_VOLUMES[@]}"); START=(--init rmisr_bl_meta_mr); LR=1e-4
       ITERATIONS=${ITERATIONS:-1500} ;;
  ANY2) VOLUMES=("${CT_VOLUMES[@]}" "${MR_VOLUMES[@]}"); START=(--init runs/rmisr_meta_any.pt); LR=1e-4
        ITERATIONS=${ITERATIONS:-1200} ;;
  ANY64) VOLUMES=("${CT_ALL_VOLUMES[@]}" "${MR_VOLUMES[@]}"); START=(--transfer rmisr_bl64_mr_x2); LR=2.5e-4
         ITERATIONS=${ITERATIONS:-6000}; FEATURES=64 ;;
  *) echo "MR, ANY, ANY2 or ANY64, not $MODE" >&2; exit 2 ;;
esac
RESUME=()
if [[ -f benchmarks/campaign/meta_$mode/resume.pt ]]; then
  RESUME=(--resume "benchmarks/campaign/meta_$mode/resume.pt"); START=()
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"features": '"$FEATURES"', "upsampler": "meta"}' \
  --scale-range 1.1 4.0 --modality MR --volumes "${VOLUMES[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 \
  --lr "$LR" --checkpoint-every 250 "${START[@]}" --checkpoint-dir "runs/meta_$mode" \
  --output "runs/rmisr_meta_$mode.pt" "${RESUME[@]}"
