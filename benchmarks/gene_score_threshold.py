"""Score ``[annotate] min_gene_score`` thresholds on a prediction with gene scores (a GFF3 that
``genoseg annotate`` wrote with posteriors, i.e. not from the memory-lean Viterbi) against a
reference; append one row per threshold and level to benchmarks/results/gene_score_threshold.tsv.

Reads ../shared/data when pointed there (not part of the test suite). Leaving out a gene below
the threshold is exactly what annotate's filter does (``pipeline._drop_low_scores``: a gene
scoring at least the threshold stays), so the rows are what ``--min-gene-score`` would give.
Choose a threshold on held-out sequences the model did not train on (its validation records or
chromosomes), then apply it to the test set:

    genoseg annotate ../shared/data/yeast_s288c/genome.fa.gz -m yeast --sequences chrIII,chrX \\
        --min-gene-score 0 -o yeast_val_pred.gff3     # every gene, scored
    python benchmarks/gene_score_threshold.py --reference yeast_val.gff3 \\
        --prediction yeast_val_pred.gff3 --thresholds 0,0.5,0.6,0.7,0.8,0.9 \\
        --label "yeast validation"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import append_rows, scored_levels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIELDS = ["date", "commit", "label", "prediction", "threshold", "level", "sensitivity",
          "specificity", "F1", "pred_genes"]


def main(argv=None) -> int:
    import math

    from genoseg.annotate.pipeline import Summary, _drop_low_scores
    from genoseg.io.gff3 import read_gene_models, write_gff3

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True)
    p.add_argument("--prediction", required=True, help="GFF3 with gene scores")
    p.add_argument("--thresholds", default="0,0.5,0.6,0.7,0.8,0.85,0.9,0.95")
    p.add_argument("--label", required=True, help="what the rows are")
    p.add_argument("--tsv", type=Path,
                   default=ROOT / "benchmarks/results/gene_score_threshold.tsv")
    args = p.parse_args(argv)
    genes = read_gene_models(args.prediction)
    if not genes or all(t.score is None or not math.isfinite(t.score) for t in genes):
        sys.exit(f"error: {args.prediction}: no gene carries a score (decoded without "
                 "posteriors?)")
    lengths = _sequence_lengths(args.prediction)
    rows, f1 = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for th in [float(x) for x in args.thresholds.split(",")]:
            kept, _ = _drop_low_scores(genes, th, Summary()) if th > 0 else (genes, {})
            pred = Path(tmp) / f"pred_{th}.gff3"
            write_gff3(str(pred), kept, lengths, source="genoseg")
            levels, new_rows = scored_levels(args.reference, pred, label=args.label,
                                             prediction=Path(args.prediction).name,
                                             threshold=th, pred_genes=len(kept))
            rows += new_rows
            f1[th] = levels["gene"]["f1"]
            print(f"threshold {th}: gene F1 {levels['gene']['f1']:.4f} (Sn "
                  f"{levels['gene']['sensitivity']:.4f}, Sp {levels['gene']['specificity']:.4f}), "
                  f"exon F1 {levels['exon']['f1']:.4f}, {len(kept)} genes", flush=True)
    append_rows(args.tsv, FIELDS, rows)
    best = max(f1, key=lambda k: (f1[k], -k))
    print(f"best by gene F1: threshold {best}", file=sys.stderr)
    return 0


def _sequence_lengths(gff3: str) -> dict[str, int]:
    """seqid -> length from a GFF3's ##sequence-region lines (genoseg writes one per contig)."""
    import gzip

    opener = gzip.open if gff3.endswith(".gz") else open
    out = {}
    with opener(gff3, "rt") as handle:
        for line in handle:
            if line.startswith("##sequence-region"):
                _, seqid, _, end = line.split()[:4]
                out[seqid] = int(end)
            elif not line.startswith("#"):
                break
    return dict(sorted(out.items()))


if __name__ == "__main__":
    sys.exit(main())
