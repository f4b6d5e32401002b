"""Where a gene predictor goes wrong: each reference transcript is classed as exact, missed (no
predicted CDS overlaps it), split (several predictions overlap it), wrong strand, or wrong
structure (start / stop / splice sites); wrong introns are counted as shifted splice sites,
missed introns and extra introns. A diagnostic for choosing what to improve next (the session 6
note of issue 5 cites it); it reads any two GFF3 files, e.g. ../shared/data.

    python benchmarks/gene_errors.py ../shared/data/dmel_augustus/test.gff3.gz pred.gff3
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from genoseg.io.gff3 import read_gene_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference")
    ap.add_argument("prediction")
    args = ap.parse_args()
    ref = read_gene_models(args.reference)
    pred = read_gene_models(args.prediction)
    by_seq = collections.defaultdict(list)
    for t in pred:
        by_seq[t.seqid].append(t)

    genes, introns = collections.Counter(), collections.Counter()
    for t in ref:
        over = [p for p in by_seq[t.seqid] if p.start < t.end and p.end > t.start]
        if any(p.strand == t.strand and p.cds == t.cds for p in over):
            genes["exact"] += 1
            continue
        if not over:
            genes["missed"] += 1
            continue
        if len(over) > 1:
            genes["split"] += 1
            continue
        p = over[0]
        if p.strand != t.strand:
            genes["wrong strand"] += 1
            continue
        five = 0 if t.strand == "+" else -1  # the CDS part holding the start codon
        start_ok = (t.cds[five][0] == p.cds[five][0]) if t.strand == "+" else \
            (t.cds[five][1] == p.cds[five][1])
        three = -1 - five
        stop_ok = (t.cds[three][1] == p.cds[three][1]) if t.strand == "+" else \
            (t.cds[three][0] == p.cds[three][0])
        r_in = {(a[1], b[0]) for a, b in zip(t.cds, t.cds[1:])}
        p_in = {(a[1], b[0]) for a, b in zip(p.cds, p.cds[1:])}
        genes[f"start {'ok' if start_ok else 'wrong'}, stop {'ok' if stop_ok else 'wrong'}, "
              f"introns {'ok' if r_in == p_in else 'wrong'}"] += 1
        only_r, only_p = r_in - p_in, p_in - r_in
        matched = set()
        for a, b in only_r:
            shifted = [x for x in only_p if x[0] == a or x[1] == b]
            if shifted:
                introns["shifted splice site"] += 1
                matched.add(shifted[0])
            else:
                introns["missed intron"] += 1
        introns["extra intron"] += len(only_p - matched)
    print(f"reference transcripts: {len(ref)}, predicted: {len(pred)}")
    for name, n in genes.most_common():
        print(f"  {n:5d}  {name}")
    print("introns of the wrongly structured genes:")
    for name, n in introns.most_common():
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
