"""A gene model on a whole chromosome: known genes recovered, and whether the gene count, size and
density are plausible. Appends one row to benchmarks/results/whole_chromosome.tsv.

Reads ../shared/data (not part of the test suite). The reference there lists only some of the
chromosome's genes (fly chr2R: the 586 AUGUSTUS tutorial genes of 2.0-7.0 Mb, out of roughly
2,400 protein-coding genes on the arm), so only sensitivities are meaningful; plausibility is
judged from the prediction itself (fly: about 13,900 protein-coding genes in 120 Mb of
euchromatin, i.e. ~116 genes per Mb, median ~4 CDS exons and ~1.7 kb CDS span per gene here).

    # annotate (timed) and score
    python benchmarks/whole_chromosome.py --model default \\
        --genome ../shared/data/dmel_augustus/chr2R.fa.gz \\
        --reference ../shared/data/dmel_augustus/chr2R_genes.gff3.gz
    # score an existing prediction, with the wall time / peak RSS measured when it was made
    python benchmarks/whole_chromosome.py --prediction chr2R.pred.gff3 --genome ... \\
        --reference ... --wall-s 1416.7 --peak-rss-mb 13292 --device "cpu (2 cores)"
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import append_rows, commit, split_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIELDS = ["date", "commit", "model", "genome", "bp", "device", "wall_s", "peak_rss_mb",
          "pred_genes", "genes_per_mb", "median_exons_per_gene", "median_gene_span_bp",
          "genic_fraction", "ref_genes", "gene_sn", "exon_sn", "nucleotide_sn",
          "test_ref_genes", "test_gene_sn", "test_exon_sn"]


def main(argv=None) -> int:
    from genoseg import evaluate as ev
    from genoseg.io.fasta import Genome
    from genoseg.io.gff3 import read_gene_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genome", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--model", help="annotate --genome with this model (timed)")
    p.add_argument("--prediction", help="score this GFF3 instead")
    p.add_argument("--label", default="", help="the model column for --prediction rows")
    p.add_argument("--device", default="cpu")
    p.add_argument("--wall-s", default="")
    p.add_argument("--peak-rss-mb", default="")
    p.add_argument("--keep", type=Path, help="with --model: also save the prediction here")
    p.add_argument("--tsv", type=Path, default=ROOT / "benchmarks/results/whole_chromosome.tsv")
    args = p.parse_args(argv)
    if bool(args.prediction) == bool(args.model):
        p.error("give --prediction, or --model")
    with tempfile.TemporaryDirectory() as tmp:
        wall, rss, prediction = args.wall_s, args.peak_rss_mb, args.prediction
        if args.model:
            prediction = str(Path(tmp) / "pred.gff3")
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "genoseg", "annotate", args.genome,
                                     "-m", args.model, "--device", args.device, "-q", "-o",
                                     prediction])
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit("annotate failed")
            wall = f"{time.perf_counter() - t0:.1f}"
            rss = f"{usage.ru_maxrss / 1024:.0f}"
        with Genome(args.genome) as genome:
            bp = sum(genome.lengths.values())
        pred = read_gene_models(prediction)
        scores = ev.to_dict(ev.evaluate(args.reference, prediction))["levels"]
        # The genes of the test split alone (a reference that marks splits): the others were
        # training genes.
        splits = split_reference(args.reference, tmp)
        test = (ev.to_dict(ev.evaluate(splits["test"], prediction))["levels"]
                if splits else None)
        if args.keep and args.model:
            shutil.copyfile(prediction, args.keep)
    exons = np.array([len(t.cds) for t in pred]) if pred else np.zeros(1)
    spans = np.array([t.end - t.start for t in pred]) if pred else np.zeros(1)
    levels = scores
    row = dict(date=datetime.date.today().isoformat(), commit=commit(),
               model=args.model or args.label, genome=Path(args.genome).name, bp=bp, device=args.device,
               wall_s=wall, peak_rss_mb=rss, pred_genes=len(pred),
               genes_per_mb=f"{len(pred) / (bp / 1e6):.1f}",
               median_exons_per_gene=f"{np.median(exons):.0f}",
               median_gene_span_bp=f"{np.median(spans):.0f}",
               genic_fraction=f"{spans.sum() / bp:.3f}" if pred else "0",
               ref_genes=levels["gene"]["reference"],
               gene_sn=f"{levels['gene']['sensitivity']:.4f}",
               exon_sn=f"{levels['exon']['sensitivity']:.4f}",
               nucleotide_sn=f"{levels['nucleotide']['sensitivity']:.4f}",
               test_ref_genes=test["gene"]["reference"] if test else "",
               test_gene_sn=f"{test['gene']['sensitivity']:.4f}" if test else "",
               test_exon_sn=f"{test['exon']['sensitivity']:.4f}" if test else "")
    append_rows(args.tsv, FIELDS, [row])
    print("\t".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
