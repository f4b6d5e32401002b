#!/bin/bash
# Score fly stage-4 candidates by the rule in configs/recipes/fly.md ("Stage 4 selection rule"),
# on a CPU, from the repository root: for each NAME:MODEL_DIR, the chr2R:2.0-3.6 Mb grid of
# intron penalties with ORF start bonus 0.5 (the rule's setting: --max-genes-per-mb 150; since
# session 10 also check the genic fraction <= 0.6 in the printed rows), then the 67 validation
# records at penalty 0 and at that setting. About 7 minutes per candidate on 2 cores.
#   bash configs/recipes/fly_stage4_eval.sh joined:runs/joined/joined soup:runs/soup
set -eu
G=${G:-../shared/data/dmel_augustus}
VAL=$(mktemp -d)
python benchmarks/validation_records.py --config genoseg/models/default/config.toml \
    --genome $G/train.fa.gz --annotation $G/train.gff3.gz --gff3 $VAL/val.gff3 | tail -1 > $VAL/ids
for nd in "$@"; do
  n=${nd%%:*}; d=${nd#*:}
  python benchmarks/intergenic_bias.py --model $d --genome $G/chr2R.fa.gz \
      --reference $G/chr2R_genes.gff3.gz --start 2000000 --end 3600000 --biases 0 \
      --intron-penalties 0,0.001,0.002,0.003,0.004,0.006 --orf-start-bonus 0.5 \
      --max-genes-per-mb 150 2>&1 | tee $VAL/$n.log
  pen=$(grep "best among" $VAL/$n.log | sed 's/.*intron penalty \([0-9.]*\) .*/\1/')
  python benchmarks/decode_settings.py --model $d --genome $G/train.fa.gz --sequences $(cat $VAL/ids) \
      --reference $VAL/val.gff3 --biases 0 --intron-penalties 0,$pen --orf-start-bonuses 0.5 \
      --label "stage-4 candidate $n ($d), the 67 validation records"
done
