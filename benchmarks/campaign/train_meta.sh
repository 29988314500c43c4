#!/usr/bin/env bash
# Training campaign of the arbitrary-scale RMISR-BL (32 features, Meta-SR upsampler) for CT or MR, across sessions.
#
#   nohup nice bash benchmarks/campaign/train_meta.sh CT > runs/meta_ct.log 2>&1 &
#   nohup nice bash benchmarks/campaign/train_meta.sh MR > runs/meta_mr.log 2>&1 &
#
# MR: the body starts from the shipped MR x2 model (--transfer), the Meta-SR head from scratch. CT: the whole network
# starts from the shipped MR arbitrary-scale model (--init rmisr_bl_meta_mr) and is fine-tuned in the padded HU window:
# as it stands that model gains +0.53 / +0.58 dB over bicubic on CT through-plane x2.5 / x4, where the first CT run
# (CT x2 body + fresh head, 700 iterations in the narrow window, then 100 in the padded one) was 9 dB below bicubic
# at iteration 800 (benchmarks/RESULTS.md §11). Scales are drawn per batch in 1.1-4.0 (both axes, one axis alone, or each its own). If benchmarks/campaign/meta_<mod>/resume.pt
# exists (the latest trainer checkpoint a previous session committed), the run continues from it. Before a session
# ends: copy the newest runs/meta_<mod>/checkpoint_*.pt over benchmarks/campaign/meta_<mod>/resume.pt (one file,
# replaced) and append the log to benchmarks/campaign/meta_<mod>/train.log. The volumes: campaign/volumes.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOD=${1:?CT or MR}
ITERATIONS=${ITERATIONS:-$([[ $MOD == CT ]] && echo 1500 || echo 3000)}  # CT fine-tunes a trained model
mod=${MOD,,}
source benchmarks/campaign/volumes.sh
if [[ $MOD == CT ]]; then
  VOLUMES=("${CT_VOLUMES[@]}"); WINDOW=("${CT_PADDED_WINDOW[@]}"); START=(--init rmisr_bl_meta_mr)
else
  VOLUMES=("${MR_VOLUMES[@]}"); WINDOW=(); START=(--transfer rmisr_bl_mr_x2)
fi
RESUME=()
if [[ -f benchmarks/campaign/meta_$mod/resume.pt ]]; then RESUME=(--resume "benchmarks/campaign/meta_$mod/resume.pt"); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"features": 32, "upsampler": "meta"}' \
  --scale-range 1.1 4.0 --modality "$MOD" --volumes "${VOLUMES[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 \
  --lr 2e-4 --checkpoint-every 100 "${START[@]}" --checkpoint-dir "runs/meta_$mod" \
  --output "runs/rmisr_meta_$mod.pt" "${WINDOW[@]}" "${RESUME[@]}"
