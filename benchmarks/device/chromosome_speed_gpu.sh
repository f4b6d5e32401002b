#!/bin/bash
# GPU annotate of one whole chromosome (fly chr2R, 21.1 Mb: one contig, so its gene models come
# from the lean Viterbi on the host's cores while the card runs the encoder), new code then the
# previous (runs/whl/prev, runs/commit_prev) in one call. Carry as for annotate_speed_gpu.sh,
# with runs/data/chr2R.fa.gz (../shared/data/dmel_augustus). Rows go to $OUT/annotate_speed.csv, each run's GFF3 to
# $OUT/gff3_VERSION/genoseg.gff3 (the two should hold the same features).
set -u
for v in prev new; do
  python3 -m pip install -q --no-index --no-deps --target /tmp/site_$v runs/whl/$v/*.whl \
    runs/whl/deps/*.whl 2>/dev/null || { echo "wheel install failed ($v)"; exit 1; }
done
export PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi -L; nproc; free -g | head -2
G=$PWD/runs/data/chr2R.fa.gz
cd runs/snap
for v in prev new; do PYTHONPATH=/tmp/site_$v python3 -c "import genoseg.cli, torch, numba, triton"; done
row() {  # version, seconds allowed
  PYTHONPATH=/tmp/site_$1 python3 -c "import genoseg; print(genoseg.__file__)"
  GENOSEG_COMMIT=$(cat ../commit_$1) PYTHONPATH=/tmp/site_$1 timeout $2 \
    python3 benchmarks/annotate_speed.py --csv "$OUT/annotate_speed.csv" --genome "$G" \
    --genoseg-args "--device cuda" --skip-augustus --keep-gff3 "$OUT/gff3_$1" 2>&1 \
    | grep -v "^genoseg: semi"
}
row new ${NEW_LIMIT:-200}
[ -n "${SKIP_PREV:-}" ] && exit 0  # (a short device budget: the new code alone)
row prev ${PREV_LIMIT:-330}
features() { grep -v "^#" "$1"; }  # the header names the command and the date
cmp <(features "$OUT/gff3_new/genoseg.gff3") <(features "$OUT/gff3_prev/genoseg.gff3") \
  && echo "same gene models"
