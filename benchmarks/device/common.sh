# Shared by the device timing scripts (sourced from the repository root on the device machine).

# install_wheels VERSION...: runs/whl/VERSION/*.whl with the dependency wheels (runs/whl/deps)
# into /tmp/site_VERSION; bytecode goes to /tmp (the device's venv cannot write it).
install_wheels() {
  local v
  for v in "$@"; do
    python3 -m pip install -q --no-index --no-deps --target /tmp/site_$v runs/whl/$v/*.whl \
      runs/whl/deps/*.whl 2>/dev/null || { echo "wheel install failed ($v)"; exit 1; }
  done
  export PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pyc
}

# warm_imports VERSION...: one import of each version first, so no timed run compiles bytecode.
warm_imports() {
  local v
  for v in "$@"; do PYTHONPATH=/tmp/site_$v python3 -c "import genoseg.cli, torch, numba, triton"; done
}

# annotate_row VERSION SECONDS GENOME [annotate_speed.py arguments...]: one row (from runs/snap,
# which holds no genoseg/), after printing which genoseg the row imports.
annotate_row() {
  local v=$1 limit=$2 genome=$3
  shift 3
  PYTHONPATH=/tmp/site_$v python3 -c "import genoseg; print(genoseg.__file__)"
  GENOSEG_COMMIT=$(cat ../commit_$v) PYTHONPATH=/tmp/site_$v timeout $limit \
    python3 benchmarks/annotate_speed.py --csv "$OUT/annotate_speed.csv" --genome "$genome" \
    --genoseg-args "--device cuda" "$@" 2>&1 | grep -v "^genoseg: semi"
}
