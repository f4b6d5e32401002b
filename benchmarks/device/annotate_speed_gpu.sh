#!/bin/bash
# GPU annotate speed, old against new code alternating in one call, with AUGUSTUS timed on the
# same host (session 13's protocol). Run on the device machine from the repository root, with
# these carried (the device's `carry`):
#   runs/whl/old/*.whl, runs/whl/new/*.whl   genoseg wheels (`pip wheel --no-deps` of each commit)
#   runs/whl/deps/*.whl                      click, pyfaidx, ... for the device's Python
#   runs/commit_old, runs/commit_new         the commits the rows name
#   runs/data/test.fa.gz                     the fly test records (../shared/data/dmel_augustus)
#   runs/snap                                `git archive HEAD tests benchmarks configs examples`
#   runs/aug                                 benchmarks/device/bundle_augustus.sh runs/aug
# Rows go to $OUT/annotate_speed.csv (copy them into benchmarks/results/annotate_speed.csv).
#
# Why this shape:
# - it runs from runs/snap, which has no genoseg/: `python -m genoseg` from the repository root
#   imports the working tree's genoseg, not the wheel under test (session 13 found one such row);
# - bytecode goes to /tmp: the device's venv has no .pyc files and cannot write them, and
#   compiling ~950 modules cost 3.5 s a process, which a normal install does not pay.
set -u
for v in old new; do
  python3 -m pip install -q --no-index --no-deps --target /tmp/site_$v runs/whl/$v/*.whl \
    runs/whl/deps/*.whl 2>/dev/null || { echo "wheel install failed ($v)"; exit 1; }
done
export PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi -L
G=$PWD/runs/data/test.fa.gz
cd runs/snap
export PATH=$PWD/../aug/bin:$PATH
for v in old new; do PYTHONPATH=/tmp/site_$v python3 -c "import genoseg.cli, torch, numba, triton"; done
row() {  # version, extra annotate_speed.py arguments
  PYTHONPATH=/tmp/site_$1 python3 -c "import genoseg; print(genoseg.__file__)"
  GENOSEG_COMMIT=$(cat ../commit_$1) PYTHONPATH=/tmp/site_$1 timeout 150 \
    python3 benchmarks/annotate_speed.py --csv "$OUT/annotate_speed.csv" --genome "$G" \
    --genoseg-args "--device cuda" "${@:2}" 2>&1 | grep -v "^genoseg: semi"
}
row old --skip-augustus; row new --skip-augustus; row old --skip-augustus; row new
