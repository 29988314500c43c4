#!/usr/bin/env bash
# Training campaign of the arbitrary-scale RMISR-BL (32 features, Meta-SR upsampler) for CT or MR, across sessions.
#
#   nohup nice bash benchmarks/campaign/train_meta.sh CT > runs/meta_ct.log 2>&1 &
#   nohup nice bash benchmarks/campaign/train_meta.sh MR > runs/meta_mr.log 2>&1 &
#
# The body starts from the shipped x2 model of the modality (--transfer), the Meta-SR head from scratch; scales are
# drawn per batch in 1.1-4.0 (both axes, one axis alone, or each its own). If benchmarks/campaign/meta_<mod>/resume.pt
# exists (the latest trainer checkpoint a previous session committed), the run continues from it. Before a session
# ends: copy the newest runs/meta_<mod>/checkpoint_*.pt over benchmarks/campaign/meta_<mod>/resume.pt (one file,
# replaced) and append the log to benchmarks/campaign/meta_<mod>/train.log. The volumes: campaign/volumes.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOD=${1:?CT or MR}
ITERATIONS=${ITERATIONS:-3000}
mod=${MOD,,}
source benchmarks/campaign/volumes.sh
if [[ $MOD == CT ]]; then VOLUMES=("${CT_VOLUMES[@]}"); WINDOW=("${CT_PADDED_WINDOW[@]}"); else VOLUMES=("${MR_VOLUMES[@]}"); WINDOW=(); fi
RESUME=()
if [[ -f benchmarks/campaign/meta_$mod/resume.pt ]]; then RESUME=(--resume "benchmarks/campaign/meta_$mod/resume.pt"); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"features": 32, "upsampler": "meta"}' \
  --scale-range 1.1 4.0 --modality "$MOD" --volumes "${VOLUMES[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 \
  --lr 2e-4 --checkpoint-every 100 --transfer "rmisr_bl_${mod}_x2" --checkpoint-dir "runs/meta_$mod" \
  --output "runs/rmisr_meta_$mod.pt" "${WINDOW[@]}" "${RESUME[@]}"
