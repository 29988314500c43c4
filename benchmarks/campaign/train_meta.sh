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
# replaced) and append the log to benchmarks/campaign/meta_<mod>/train.log. Held-out scans (never listed here) are
# those of benchmarks/quality.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOD=${1:?CT or MR}
ITERATIONS=${ITERATIONS:-3000}
mod=${MOD,,}
D=${RMISR_SHARED:-../shared}/data/medical
S=$D/dicom_series
WINDOW=()
if [[ $MOD == CT ]]; then
  WINDOW=(--ct-window -3072 3071)  # spans the scanners' padding values (CT_PADDED_WINDOW_HU)
  VOLUMES=("$S/ct_siemens_biograph_abdomen_j2k" "$S/ct_philips_brilliance16p_chest_subset"
           "$S/ct_ge_lightspeed16_abdomen_subset" "$S/ct_philips_bigbore_pelvis_subset")
else
  VOLUMES=("$D/mr/brain_t1_0p88mm_uint8.nii.gz" "$D/mr/brain_t2w_int16.nii.gz" "$D/mr/brain_pd_2p4mm_uint8.nii.gz"
           "$D/mr/totalseg_abdomen_mr_3mm.nii.gz" "$S/mr_siemens_prisma_t1_sag_brain" "$S/mr_siemens_avanto_t1_thigh_subset"
           "$S/mr_siemens_avanto_t2fs_thigh_subset" "$S/mr_toshiba_titan_t2_abdomen_pelvis_subset"
           "$S/mr_ge_signa_breast_dce_subset")
fi
RESUME=()
if [[ -f benchmarks/campaign/meta_$mod/resume.pt ]]; then RESUME=(--resume "benchmarks/campaign/meta_$mod/resume.pt"); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"features": 32, "upsampler": "meta"}' \
  --scale-range 1.1 4.0 --modality "$MOD" --volumes "${VOLUMES[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 \
  --lr 2e-4 --checkpoint-every 100 --transfer "rmisr_bl_${mod}_x2" --checkpoint-dir "runs/meta_$mod" \
  --output "runs/rmisr_meta_$mod.pt" "${WINDOW[@]}" "${RESUME[@]}"
