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
source benchmarks/device/common.sh
install_wheels old new
nvidia-smi -L
G=$PWD/runs/data/test.fa.gz
cd runs/snap
export PATH=$PWD/../aug/bin:$PATH
warm_imports old new
row() { annotate_row "$1" 150 "$G" "${@:2}"; }  # version, extra annotate_speed.py arguments
row old --skip-augustus; row new --skip-augustus; row old --skip-augustus; row new
