"""Score a gene model (or a peer's predictions) on a held-out gene set; append rows to a TSV.

Reads ../shared/data (not part of the test suite). Two modes:

    # annotate GENOME with MODEL (timed), then score it against REFERENCE
    python benchmarks/gene_accuracy.py --model default \\
        --genome ../shared/data/dmel_augustus/test.fa.gz \\
        --reference ../shared/data/dmel_augustus/test.gff3.gz --label "provisional default"

    # the same with more annotate options (name them in the label)
    python benchmarks/gene_accuracy.py --model default --annotate-args '--rc-average' ...

    # score an existing prediction (e.g. a peer's) without annotating
    python benchmarks/gene_accuracy.py --prediction peers/augustus_fly_noUTR.gff3.gz \\
        --reference ../shared/data/dmel_augustus/test.gff3.gz --label "AUGUSTUS fly --UTR=off"

Scoring is ``genoseg evaluate`` (CDS basis, counted as genometools ``gt eval`` after
``eval_genes.sh``'s normalization). Rows go to benchmarks/results/gene_accuracy.tsv: date,
commit, label, model, reference, level, Sn, Sp, F1, counts, annotate wall seconds, device.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_rows, commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["date", "commit", "label", "model", "reference", "level", "sensitivity",
          "specificity", "F1", "sn_counts", "sp_counts", "annotate_wall_s", "device"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True)
    p.add_argument("--label", required=True, help="what the row is (model, peer, config)")
    p.add_argument("--model", help="genoseg model to annotate --genome with")
    p.add_argument("--genome")
    p.add_argument("--prediction", help="score this GFF3 instead of annotating")
    p.add_argument("--device", default="cpu",
                   help="annotate on this device; with --prediction: where it was made (text)")
    p.add_argument("--backend", default="auto", help="semi-CRF backend for annotate")
    p.add_argument("--annotate-args", default="", metavar="'ARGS'",
                   help="more options for genoseg annotate, one shell-quoted string, e.g. "
                        "'--intergenic-bias 0 --rc-average' (say so in --label)")
    p.add_argument("--wall-s", default="",
                   help="with --prediction: the wall time that prediction took, if known")
    p.add_argument("--tsv", type=Path, default=ROOT / "benchmarks/results/gene_accuracy.tsv")
    args = p.parse_args(argv)
    if bool(args.prediction) == bool(args.model):
        p.error("give --prediction, or --model with --genome")
    with tempfile.TemporaryDirectory() as tmp:
        wall = args.wall_s
        prediction = args.prediction
        if args.model:
            if not args.genome:
                p.error("--model needs --genome")
            prediction = str(Path(tmp) / "pred.gff3")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "genoseg", "annotate", args.genome, "-m",
                            args.model, "--device", args.device, "--backend", args.backend,
                            "-q", "-o", prediction, *shlex.split(args.annotate_args)],
                           check=True)
            wall = f"{time.perf_counter() - t0:.1f}"
        scores = Path(tmp) / "scores.tsv"
        subprocess.run([sys.executable, "-m", "genoseg", "evaluate", "--reference",
                        args.reference, prediction, "--tsv", str(scores)], check=True)
        rows = list(csv.DictReader(scores.open(), delimiter="\t"))
    append_rows(args.tsv, FIELDS, [
        dict(date=datetime.date.today().isoformat(), commit=commit(), label=args.label,
             model=args.model or "", reference=Path(args.reference).name, level=r["level"],
             sensitivity=r["sensitivity"], specificity=r["specificity"], F1=r["F1"],
             sn_counts=r["sn_counts"], sp_counts=r["sp_counts"], annotate_wall_s=wall,
             device=args.device) for r in rows])
    print(f"appended {len(rows)} rows to {args.tsv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
