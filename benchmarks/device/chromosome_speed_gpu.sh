#!/bin/bash
# GPU annotate of one whole chromosome (fly chr2R, 21.1 Mb: one contig, so its gene models come
# from the lean Viterbi on the host's cores while the card runs the encoder), new code then the
# previous (runs/whl/prev, runs/commit_prev) in one call. Carry as for annotate_speed_gpu.sh,
# with runs/data/chr2R.fa.gz (../shared/data/dmel_augustus). Rows go to $OUT/annotate_speed.csv,
# each run's GFF3 to $OUT/gff3_VERSION/genoseg.gff3 (the two should hold the same features).
# NEW_LIMIT / PREV_LIMIT: seconds each run may take; SKIP_PREV=1: the new code alone.
set -u
source benchmarks/device/common.sh
install_wheels prev new
nvidia-smi -L; nproc; free -g | head -2
G=$PWD/runs/data/chr2R.fa.gz
cd runs/snap
warm_imports prev new
row() { annotate_row "$1" "$2" "$G" --skip-augustus --keep-gff3 "$OUT/gff3_$1"; }
row new ${NEW_LIMIT:-200}
[ -n "${SKIP_PREV:-}" ] && exit 0
row prev ${PREV_LIMIT:-330}
features() { grep -v "^#" "$1"; }  # the header names the command and the date
cmp <(features "$OUT/gff3_new/genoseg.gff3") <(features "$OUT/gff3_prev/genoseg.gff3") \
  && echo "same gene models"
