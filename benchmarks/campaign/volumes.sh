# Training volumes of the campaign scripts (sourced). Held-out scans (never listed here) are those of
# benchmarks/quality.py. RMISR_SHARED: the shared data folder (default ../shared).
D=${RMISR_SHARED:-../shared}/data/medical
S=$D/dicom_series
CT_VOLUMES=("$S/ct_siemens_biograph_abdomen_j2k" "$S/ct_philips_brilliance16p_chest_subset"
            "$S/ct_ge_lightspeed16_abdomen_subset" "$S/ct_philips_bigbore_pelvis_subset")
MR_VOLUMES=("$D/mr/brain_t1_0p88mm_uint8.nii.gz" "$D/mr/brain_t2w_int16.nii.gz" "$D/mr/brain_pd_2p4mm_uint8.nii.gz"
            "$D/mr/totalseg_abdomen_mr_3mm.nii.gz" "$S/mr_siemens_prisma_t1_sag_brain" "$S/mr_siemens_avanto_t1_thigh_subset"
            "$S/mr_siemens_avanto_t2fs_thigh_subset" "$S/mr_toshiba_titan_t2_abdomen_pelvis_subset"
            "$S/mr_ge_signa_breast_dce_subset")
# the six CT volumes of the CT defaults (rmisr_bl_ct_x*_percentile, benchmarks/RESULTS.md §10, §13)
CT_ALL_VOLUMES=("$D/ct/totalseg_chest_cta_crop_1p5mm.nii.gz" "$D/ct/totalseg_abdomen_ct_3mm.nii.gz" "${CT_VOLUMES[@]}")
NATURAL_TRAIN=${RMISR_SHARED:-../shared}/data/natural_train  # T91 + BSD200 ("291"), pictures for pre-training and mixing
CT_PADDED_WINDOW=(--ct-window -3072 3071)  # spans the scanners' padding values (CT_PADDED_WINDOW_HU)
