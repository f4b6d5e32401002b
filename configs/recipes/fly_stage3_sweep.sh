#!/bin/bash
# (session 6: run on a 4-GPU host through the device tool with carry .whl runs/data runs/sweep_whl
# runs/sweep; runs/sweep_whl held the wheel of commit 18bb90e: pip wheel --no-deps .)
# Stage-3 sweep: four runs, one per GPU, resumed from runs/sweep/<name>.tar when carried.
# BUDGET: seconds of training per run in this call; EVAL=1: then annotate the test set.
set -u
REPO=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl runs/sweep_whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
mkdir -p /tmp/w && cd /tmp/w
python3 -c "import genoseg, genoseg_kernels; print(genoseg.__file__)"
nvidia-smi -L
BUDGET=${BUDGET:-500}
EVAL=${EVAL:-0}
one() {  # name gpu config [extra train args]
  name=$1; gpu=$2; cfg=$3; shift 3
  [ -f $REPO/runs/sweep/$name.tar ] && tar -xf $REPO/runs/sweep/$name.tar -C /tmp/w
  export CUDA_VISIBLE_DEVICES=$gpu
  cores=$((gpu*16))-$((gpu*16+15))
  t0=$(date +%s)
  taskset -c $cores timeout $BUDGET python3 -m genoseg train -g $REPO/runs/data/train.fa.gz \
    -a $REPO/runs/data/train.gff3.gz -c $REPO/configs/models/$cfg.toml --init-from default \
    -o /tmp/w/$name --device cuda -q "$@" >> /tmp/w/$name/train.log 2>&1
  echo "$name: train exit $? after $(( $(date +%s) - t0 )) s" >> /tmp/w/$name/train.log
  if [ "$EVAL" = 1 ] && [ -f /tmp/w/$name/weights.pt ]; then
    for bias in 0 0.005; do
      taskset -c $cores python3 -m genoseg annotate $REPO/runs/data/test.fa.gz -m /tmp/w/$name \
        --device cuda --intergenic-bias $bias -q -o /tmp/w/$name/test_bias$bias.gff3 >> /tmp/w/$name/train.log 2>&1
    done
  fi
  tar -cf $OUT/$name.tar $name
}
mkdir -p A B C D
one A 0 fly_phase_ema &
one B 1 fly_phase_ema_w12k --steps 700 &
one C 2 fly_phase_ema_reg &
one D 3 fly_phase_ema --seed 1 &
wait
for n in A B C D; do echo "== $n"; grep -v "^\s*$" $n/train.log | tail -8; done
