"""Score a gene model's decoding settings (``[annotate] intergenic_bias`` x ``intron_penalty``
x ``orf_start_bonus``) on held-out sequences with a reference; append one row per setting and level to
benchmarks/results/decode_settings.tsv.

Reads ../shared/data (not part of the test suite). For models trained on whole chromosomes
(yeast), whose validation chromosomes are held out by ``[train] val_fraction``: the settings are
chosen by gene F1 there, and the test chromosomes are scored afterwards with the chosen one.
(The fly model, trained on short records, is calibrated on chr2R instead:
benchmarks/intergenic_bias.py.) The encoder runs once per sequence; each setting is one decode
(the memory-lean phase Viterbi on the CPU, with the model's ``[annotate] gene_model``, as
``genoseg annotate`` decodes) and one ``genoseg evaluate``.

    python benchmarks/validation_records.py --config genoseg/models/yeast/config.toml \\
        --genome ../shared/data/yeast_s288c/genome.fa.gz \\
        --annotation ../shared/data/yeast_s288c/genes.gff3.gz \\
        --sequences chrI,chrII,...,chrXII --gff3 yeast_val.gff3      # prints chrIII,chrX
    python benchmarks/decode_settings.py --model yeast \\
        --genome ../shared/data/yeast_s288c/genome.fa.gz \\
        --sequences chrIII,chrX --reference yeast_val.gff3 \\
        --biases 0,0.002 --intron-penalties 0,0.002,0.004 --label "yeast validation"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import (append_rows, decode_settings_grid, decode_with_setting,  # noqa: E402
                    raw_scores, scored_levels)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIELDS = ["date", "commit", "label", "model", "sequences", "bias", "intron_penalty", "level",
          "sensitivity", "specificity", "F1", "pred_genes", "orf_start_bonus"]


def main(argv=None) -> int:
    from genoseg.models import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--genome", required=True)
    p.add_argument("--sequences", required=True, help="comma-separated sequence IDs")
    p.add_argument("--reference", required=True, help="GFF3 of those sequences' genes only")
    p.add_argument("--biases", default="0", help="intergenic biases (nats per base)")
    p.add_argument("--intron-penalties", default="0", help="intron penalties (nats per base)")
    p.add_argument("--orf-start-bonuses", default="0",
                   help="start-codon bonuses for ATGs opening their longest ORF (nats)")
    p.add_argument("--label", required=True, help="what the rows are")
    p.add_argument("--tsv", type=Path, default=ROOT / "benchmarks/results/decode_settings.tsv")
    args = p.parse_args(argv)
    settings = [(bias, penalty, float(bonus))
                for bias, penalty in decode_settings_grid(args.biases, args.intron_penalties)
                for bonus in args.orf_start_bonuses.split(",")]
    model, meta = load_model(args.model)
    a = model.config.annotate
    raw, codes, lengths = raw_scores(model, args.genome, args.sequences)
    rows, f1 = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for bias, penalty, bonus in settings:
            pred = Path(tmp) / f"pred_{bias}_{penalty}_{bonus}.gff3"
            n_genes = decode_with_setting(model, meta, raw, codes, lengths, bias, penalty, pred,
                                          complete_genes=a.gene_model == "complete",
                                          orf_start_bonus=bonus)
            levels, new_rows = scored_levels(args.reference, pred, label=args.label,
                                             model=args.model, sequences=args.sequences,
                                             bias=bias, intron_penalty=penalty,
                                             pred_genes=n_genes, orf_start_bonus=bonus)
            rows += new_rows
            f1[(bias, penalty, bonus)] = levels["gene"]["f1"]
            print(f"bias {bias} penalty {penalty} ORF start bonus {bonus}: gene F1 "
                  f"{levels['gene']['f1']:.4f}, exon F1 {levels['exon']['f1']:.4f}, "
                  f"{n_genes} genes", flush=True)
    append_rows(args.tsv, FIELDS, rows)
    # Ties: the smallest departure from the raw scores.
    best = max(f1, key=lambda k: (f1[k], -abs(k[0]) - abs(k[1]) - abs(k[2])))
    print(f"best by gene F1: intergenic bias {best[0]}, intron penalty {best[1]}, ORF start "
          f"bonus {best[2]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
