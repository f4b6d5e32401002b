"""Sweep ``[annotate] intergenic_bias`` and ``intron_penalty`` of a gene model over a stretch of a
chromosome that holds training genes, and append one row per setting to
benchmarks/results/intergenic_bias.tsv.

Reads ../shared/data (not part of the test suite). Why: gene models trained on records with
short flanks never see long intergenic stretches, so on a whole chromosome the balance between
a long intron and intergenic sequence is not learnt (the fly default merged neighbouring genes
through "introns" spanning 89 % of chr2R). The bias (nats per base added to the intergenic
emission) or the intron penalty (nats per base subtracted from the intron emissions; exons keep
their scores) sets that balance. A setting is chosen by the **training** genes lying in the
stretch (``split=train`` in chr2R_genes.gff3.gz): the one with the best gene sensitivity on
them. The test genes of the stretch are reported beside it, never used for the choice.

The encoder runs once; each setting (every bias with every penalty) is one decode (the
memory-lean phase Viterbi, CPU). The swept values replace the model's own ``[annotate]``
ones (they apply to the raw emissions).

    python benchmarks/intergenic_bias.py --model default \\
        --genome ../shared/data/dmel_augustus/chr2R.fa.gz \\
        --reference ../shared/data/dmel_augustus/chr2R_genes.gff3.gz \\
        --start 2000000 --end 3600000 --biases 0,0.004,0.006,0.008,0.01,0.012,0.02 \\
        --intron-penalties 0
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (append_rows, commit, decode_settings_grid, decode_with_setting,  # noqa: E402
                    split_reference)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIELDS = ["date", "commit", "model", "genome", "region", "bias", "intron_penalty", "pred_genes",
          "genes_per_mb", "genic_fraction", "median_exons_per_gene", "train_genes", "train_gene_sn",
          "train_exon_sn", "test_genes", "test_gene_sn", "test_exon_sn", "orf_start_bonus"]


def main(argv=None) -> int:
    import pysam

    from genoseg import evaluate as ev
    from genoseg.annotate.pipeline import contig_emissions
    from genoseg.inputs import InputSource
    from genoseg.io.gff3 import read_gene_models
    from genoseg.labels import codons
    from genoseg.models import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--genome", required=True)
    p.add_argument("--reference", required=True, help="GFF3 with split=train|test on genes")
    p.add_argument("--seqid", default="chr2R")
    p.add_argument("--start", type=int, default=2_000_000,
                   help="scored stretch [start, end); the decode runs over [0, end)")
    p.add_argument("--end", type=int, default=3_600_000)
    p.add_argument("--biases", default="0,0.004,0.006,0.008,0.01,0.012,0.02",
                   help="intergenic biases (nats per base)")
    p.add_argument("--intron-penalties", default="0", help="intron penalties (nats per base)")
    p.add_argument("--orf-start-bonus", type=float, default=None,
                   help="the [annotate] orf_start_bonus of every decode (default: the model's)")
    p.add_argument("--max-genes-per-mb", type=float, default=None,
                   help="also report the best setting among those predicting at most this many "
                        "genes per Mb in the scored stretch (fly: about 116 protein-coding genes "
                        "per Mb of euchromatin)")
    p.add_argument("--tsv", type=Path, default=ROOT / "benchmarks/results/intergenic_bias.tsv")
    args = p.parse_args(argv)
    settings = decode_settings_grid(args.biases, args.intron_penalties)
    model, meta = load_model(args.model)
    with pysam.FastxFile(args.genome) as fa:
        seq = next(r.sequence for r in fa if r.name == args.seqid)[:args.end]
    end = len(seq)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fasta = tmp / "region.fa"
        fasta.write_text(f">{args.seqid}\n" + "\n".join(seq[i:i + 80]
                                                      for i in range(0, end, 80)) + "\n")
        refs = split_reference(args.reference, tmp, args.seqid, end)
        source = InputSource(str(fasta))
        t0 = time.perf_counter()
        em = contig_emissions(model, source, args.seqid, end, "cpu", 50_000, 8)
        source.close()
        print(f"encoder: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        codes = codons.encode(seq)
        scored_mb = (end - args.start) / 1e6
        for bias, penalty in settings:
            pred_path = tmp / f"pred_{bias}_{penalty}.gff3"
            # Free sequence ends: the stretch ends inside the chromosome, maybe inside a gene.
            decode_with_setting(model, meta, {args.seqid: em}, {args.seqid: codes},
                                {args.seqid: end}, bias, penalty, pred_path,
                                complete_genes=False, orf_start_bonus=args.orf_start_bonus)
            pred = [t for t in read_gene_models(pred_path) if t.start >= args.start]
            spans = np.array([t.end - t.start for t in pred]) if pred else np.zeros(1)
            row = dict(date=datetime.date.today().isoformat(), commit=commit(),
                       model=args.model, genome=Path(args.genome).name,
                       region=f"{args.seqid}:{args.start}-{end}", bias=bias,
                       intron_penalty=penalty,
                       pred_genes=len(pred), genes_per_mb=f"{len(pred) / scored_mb:.1f}",
                       genic_fraction=f"{spans.sum() / (end - args.start):.3f}",
                       median_exons_per_gene=f"{np.median([len(t.cds) for t in pred]) if pred else 0:.0f}",
                       orf_start_bonus=model.config.annotate.orf_start_bonus)
            for split in ("train", "test"):
                levels = ev.to_dict(ev.evaluate(refs[split], pred_path))["levels"]
                row[f"{split}_genes"] = levels["gene"]["reference"]
                row[f"{split}_gene_sn"] = f"{levels['gene']['sensitivity']:.3f}"
                row[f"{split}_exon_sn"] = f"{levels['exon']['sensitivity']:.3f}"
            rows.append(row)
            print("\t".join(f"{k}={v}" for k, v in row.items()), flush=True)
    append_rows(args.tsv, FIELDS, rows)

    def rank(r):  # the best sensitivity; on a tie, the setting closest to the raw scores
        return float(r["train_gene_sn"]), -abs(r["bias"]) - abs(r["intron_penalty"])

    best = max(rows, key=rank)
    print(f"best by train-gene sensitivity: intergenic bias {best['bias']}, intron penalty "
          f"{best['intron_penalty']}", file=sys.stderr)
    if args.max_genes_per_mb is not None:
        plausible = [r for r in rows if float(r["genes_per_mb"]) <= args.max_genes_per_mb]
        if plausible:
            best = max(plausible, key=rank)
            print(f"best among settings with at most {args.max_genes_per_mb:g} genes per Mb: "
                  f"intergenic bias {best['bias']}, intron penalty {best['intron_penalty']} "
                  f"({best['genes_per_mb']} per Mb)", file=sys.stderr)
        else:
            print(f"no setting predicts at most {args.max_genes_per_mb:g} genes per Mb",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
