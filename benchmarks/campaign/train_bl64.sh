#!/usr/bin/env bash
# Full-size RMISR-BL (64 features, the paper's width) at x2, x3 or x4 for CT and MR in one model: per-volume
# percentile normalisation (--modality MR) on the six CT and nine MR training volumes, bf16 autocast on CPUs with
# native bf16, across sessions (benchmarks/RESULTS.md §13):
#
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_bl64.sh 3 > runs/bl64_x3.log 2>&1 &
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_bl64.sh 4 2 > runs/bl64_x4s2.log 2>&1 &   # stage 2
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_bl64.sh 4 3 > runs/bl64_x4s3.log 2>&1 &   # stage 3
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_bl64.sh 4 4 > runs/bl64_x4s4.log 2>&1 &   # stage 4
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_bl64.sh 4 5 > runs/bl64_x4s5.log 2>&1 &   # stage 5
#   OMP_NUM_THREADS=1 nohup nice bash benchmarks/campaign/train_bl64.sh 4 mr > runs/bl64_mr_x4.log 2>&1 &  # MR only
#
# x2 starts from scratch (lr 5e-4); x3 and x4 take the body of the shipped x2 model rmisr_bl64_mr_x2 (--transfer; the upsampler
# starts fresh) at lr 2.5e-4. Stage 2 (second argument 2) is a warm restart of the shipped model of that scale
# (--init rmisr_bl64_ct_xS, fresh optimiser, new patches: seed 2) at lr 1.25e-4, 6000 iterations, in bl64_xSs2/, with
# the grey T91 + BSD200 pictures mixed in (30 % of the patches, --pictures): the held-out head CT is where IMDN's
# natural-image prior beat the medical-only models (x4 +5.69 against +3.78 dB, benchmarks/RESULTS.md §14). Stage 3
# (second argument 3) restarts the shipped stage-2 model the same way with half the patches pictures, lr 1e-4, 8000
# iterations, seed 3, in bl64_xSs3/: stage 2 gained most on the head slice (+0.35 dB), so push the prior further.
# Stage 4 (second argument 4) restarts the shipped stage-3 model again (lr 1e-4, 8000 iterations, half pictures,
# seed 5, in bl64_xSs4/) with the CT volumes of a whole unpadded field also given padded outside the reconstruction
# circle (--fov-padding -3024 -2048, as GE scanners write it): the circle's rim held most of the x4 error on the
# held-out head slice (benchmarks/RESULTS.md §16).
# Stage 5 (second argument 5) restarts the shipped stage-4 model with a quarter of the patches drawn from the padded
# copies (--fov-padding-share 0.25), pictures at 40 %, lr 5e-5, 5000 iterations, seed 6, in bl64_xSs5/: outside a band
# of 5 pixels along the padding rim the x4 default beat IMDN on both held-out CT scans by 1.4-2.2 dB; the rim held
# 50-88 % of its squared error (benchmarks/RESULTS.md §16). Stage 6: stage 5 again from its shipped result (seed 7).
# Stage 7 restarts the shipped stage-6 model (lr 5e-5, 5000 iterations, pictures at 35 %, seed 8, in bl64_xSs7/) with
# the padded copies cut into squares on the rim (--fov-rim-tiles: every patch drawn from them crosses it) at 30 % of
# the patches, padded by GE's own staircase (FieldOfViewPad's "chord" rule, now its default; stages 4-6 padded by
# voxel centres, 480 voxels of a 512 x 512 slice off the held-out scans' rim). Stage 8: stage 7 again from its shipped
# result (seed 9), stage 9 from stage 8's (seed 10).
# Stage "mr" specialises the shipped model for MR alone: --init rmisr_bl64_mr_xS, the nine MR volumes with the
# pictures at 30 %, lr 5e-5, 3000 iterations, seed 4, in bl64_mr_xS/ (a separate file for the MR entry if it wins).
# Each run resumes from benchmarks/campaign/<run>/resume.pt when it exists (the hand-over: copy the newest
# runs/<run>/checkpoint_*.pt over it and append the log to train.log beside it).
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE=${1:?scale 2, 3 or 4}
STAGE=${2:-1}
source benchmarks/campaign/volumes.sh
case $SCALE in
  2) START=(); LR=5e-4; DEFAULT_ITERATIONS=20000 ;;
  3|4) START=(--transfer rmisr_bl64_mr_x2); LR=2.5e-4; DEFAULT_ITERATIONS=8000 ;;
  *) echo "scale 2, 3 or 4, not $SCALE" >&2; exit 2 ;;
esac
RUN=bl64_x$SCALE
SEED=0
PICTURE_SHARE=
FOV_PADDING=()
case $STAGE in
  1) ;;
  2) START=(--init "rmisr_bl64_ct_x$SCALE"); LR=1.25e-4; DEFAULT_ITERATIONS=6000;
     PICTURE_SHARE=0.3; RUN=bl64_x${SCALE}s2; SEED=2 ;;
  3) START=(--init "rmisr_bl64_ct_x$SCALE"); LR=1e-4; DEFAULT_ITERATIONS=8000;
     PICTURE_SHARE=0.5; RUN=bl64_x${SCALE}s3; SEED=3 ;;
  4) START=(--init "rmisr_bl64_ct_x$SCALE"); LR=1e-4; DEFAULT_ITERATIONS=8000;
     PICTURE_SHARE=0.5; RUN=bl64_x${SCALE}s4; SEED=5; FOV_PADDING=(--fov-padding -3024 -2048) ;;
  5|6) START=(--init "rmisr_bl64_ct_x$SCALE"); LR=5e-5; DEFAULT_ITERATIONS=5000; PICTURE_SHARE=0.4;
     RUN=bl64_x${SCALE}s$STAGE; SEED=$((STAGE + 1)); FOV_PADDING=(--fov-padding -3024 -2048 --fov-padding-share 0.25) ;;
  7|8|9) START=(--init "rmisr_bl64_ct_x$SCALE"); LR=5e-5; DEFAULT_ITERATIONS=5000; PICTURE_SHARE=0.35;
     RUN=bl64_x${SCALE}s$STAGE; SEED=$((STAGE + 1)); FOV_PADDING=(--fov-padding -3024 -2048 --fov-padding-share 0.3 --fov-rim-tiles) ;;
  mr) START=(--init "rmisr_bl64_mr_x$SCALE"); LR=5e-5; DEFAULT_ITERATIONS=3000;
     PICTURE_SHARE=0.3; RUN=bl64_mr_x${SCALE}; SEED=4 ;;
  *) echo "stage 1-9 or mr, not $STAGE" >&2; exit 2 ;;
esac
PICTURES=()
if [[ -n $PICTURE_SHARE ]]; then
  PICTURES=(--pictures "$NATURAL_TRAIN/T91" "$NATURAL_TRAIN/BSD200" --pictures-share "$PICTURE_SHARE")
fi
VOLUMES=("${CT_ALL_VOLUMES[@]}" "${MR_VOLUMES[@]}")
if [[ $STAGE == mr ]]; then VOLUMES=("${MR_VOLUMES[@]}"); fi
ITERATIONS=${ITERATIONS:-$DEFAULT_ITERATIONS}
RESUME=benchmarks/campaign/$RUN/resume.pt
if [[ -f $RESUME ]]; then START=(--resume "$RESUME"); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"features": 64}' --scale "$SCALE" \
  --modality MR --volumes "${VOLUMES[@]}" --iterations "$ITERATIONS" --patch 32 --batch 16 \
  --lr "$LR" --seed "$SEED" --checkpoint-every 500 --checkpoint-dir "runs/$RUN" --output "runs/rmisr_$RUN.pt" "${START[@]}" \
  "${PICTURES[@]}" "${FOV_PADDING[@]}"
