"""Posterior (maximum expected accuracy) decoding of a phase gene model against Viterbi, on
held-out sequences with a reference; appends one row per setting and level to
benchmarks/results/mea_decoding.tsv.

Reads ../shared/data (not part of the test suite). Viterbi finds the single most probable
segmentation; with 486 training genes the model's scores are not sharp, and the best path can
differ from the labelling with the most expected correct bases and boundaries. Here each
sequence's marginals come from one forward-outside pass (the compiled CPU twin), and the
decoder then finds, under the same grammar (every -inf of the transitions, durations, site
constraints and open reading frames kept, every finite score replaced by 0), the segmentation
maximising

    sum over bases t of P(class of the path at t)  +  boundary x sum over the path's segments
    of (P(a segment of its state starts there) + P(... ends there))

so the decoded gene models stay valid. ``boundary`` 0 is per-base MEA; larger values weigh
the exact splice sites, starts and stops that exon and gene accuracy count. Rows with
``--boundaries viterbi`` (the literal word) are the ordinary decode of the same scores.

    python benchmarks/validation_records.py --config genoseg/models/default/config.toml \\
        --genome ../shared/data/dmel_augustus/train.fa.gz \\
        --annotation ../shared/data/dmel_augustus/train.gff3.gz --gff3 val.gff3 > val_ids.txt
    python benchmarks/mea_decoding.py --genome ../shared/data/dmel_augustus/train.fa.gz \\
        --sequences $(cat val_ids.txt) --reference val.gff3 --boundaries viterbi,0,1,2,4 \\
        --label "fly validation records"
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

from common import (append_rows, decode_with_setting, raw_scores,  # noqa: E402
                    scored_levels, write_decoded)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIELDS = ["date", "commit", "label", "model", "sequences", "intron_penalty", "decoder", "level",
          "sensitivity", "specificity", "F1", "pred_genes"]


def marginals(model, em, codes, complete):
    """(state posteriors (L, C'), start marginals (L, C'), end marginals (L, C'), dense inputs)
    of one sequence's biased emissions (L, n_outputs) under the model's head."""
    import torch

    from genoseg.crf import cpu

    head = model.head
    L = em.shape[0]
    em = em[None]
    lengths = torch.tensor([L])
    cons = head.constraints(em, torch.from_numpy(codes)[None], lengths)
    inputs = {k: v.detach() for k, v in head.crf_inputs(complete).items()}
    args = (head.expand(em), inputs["transitions"], inputs["durations"], lengths,
            inputs["init"], inputs["final"], cons["start_bias"], cons["end_bias"],
            cons["max_end"])
    seqs = cpu._Sequences(args)
    logz, W, alpha, _, _ = seqs.forward(0, False, True)
    if not math.isfinite(logz):
        raise RuntimeError("no valid segmentation")
    part = seqs.outside(0, W, alpha)
    return part[0][:L], part[1][:L], part[2][:L], args


def mea_decode(model, post, start_m, end_m, args, boundary, codes):
    """Class rows and run labels of the grammar's segmentation with the most expected correct
    bases plus ``boundary`` x expected correct segment starts and ends."""
    import numpy as np
    import torch

    from genoseg.crf import cpu

    head = model.head
    em, trans, dur, lengths, init, final, sb, eb, me = args
    neg = torch.tensor(-math.inf, dtype=torch.float64)
    zero_or_neg = lambda x: torch.where(torch.isfinite(x), 0.0, neg).to(torch.float64)  # noqa
    class_of = head.class_of.numpy()
    n_classes = int(class_of.max()) + 1
    class_post = np.zeros((post.shape[0], n_classes))
    for state, cls in enumerate(class_of):
        class_post[:, cls] += post[:, state]
    gain = torch.from_numpy(class_post[:, class_of])[None]
    sb_gain = torch.where(torch.isfinite(sb), boundary * torch.from_numpy(start_m)[None], neg)
    eb_gain = torch.where(torch.isfinite(eb), boundary * torch.from_numpy(end_m)[None], neg)
    _, paths = cpu.semicrf_viterbi(gain, zero_or_neg(trans), zero_or_neg(dur), lengths,
                                   init=zero_or_neg(init), final=zero_or_neg(final),
                                   start_bias=sb_gain, end_bias=eb_gain, max_end=me)
    runs, labels = head._runs(paths[0], int(lengths[0]), codes)
    return runs.numpy(), labels


def main(argv=None) -> int:
    import dataclasses

    from genoseg.annotate.pipeline import biased_emissions
    from genoseg.models import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--genome", required=True)
    p.add_argument("--sequences", required=True, help="comma-separated sequence IDs")
    p.add_argument("--reference", required=True, help="GFF3 of those sequences' genes only")
    p.add_argument("--boundaries", default="viterbi,0,1,2",
                   help="boundary weights to try; 'viterbi' for the ordinary decode")
    p.add_argument("--intron-penalties", default="0", help="intron penalties (nats per base)")
    p.add_argument("--label", required=True, help="what the rows are")
    p.add_argument("--tsv", type=Path, default=ROOT / "benchmarks/results/mea_decoding.tsv")
    args = p.parse_args(argv)
    model, meta = load_model(args.model)
    a = model.config.annotate
    complete = a.gene_model == "complete"
    raw, codes, lengths = raw_scores(model, args.genome, args.sequences)
    seqids = list(raw)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for penalty in [float(x) for x in args.intron_penalties.split(",")]:
            model.config = dataclasses.replace(model.config, annotate=dataclasses.replace(
                a, intergenic_bias=0.0, intron_penalty=penalty))
            ems = {s: biased_emissions(model, raw[s].clone()) for s in seqids}
            cache = {}
            for decoder in args.boundaries.split(","):
                t1 = time.perf_counter()
                pred = Path(tmp) / f"pred_{penalty}_{decoder}.gff3"
                if decoder == "viterbi":
                    n_genes = decode_with_setting(model, meta, raw, codes, lengths, 0.0, penalty,
                                                  pred, complete_genes=complete)
                else:
                    decoded = {}
                    for s in seqids:
                        if s not in cache:
                            cache[s] = marginals(model, ems[s], codes[s], complete)
                        decoded[s] = mea_decode(model, *cache[s], float(decoder), codes[s])
                    n_genes = write_decoded(model, meta, decoded, lengths, pred)
                name = "viterbi" if decoder == "viterbi" else f"mea boundary {decoder}"
                levels, new_rows = scored_levels(args.reference, pred, label=args.label,
                                                 model=args.model,
                                                 sequences=f"{len(seqids)} sequences",
                                                 intron_penalty=penalty, decoder=name,
                                                 pred_genes=n_genes)
                rows += new_rows
                print(f"penalty {penalty} {name}: gene F1 {levels['gene']['f1']:.4f}, exon F1 "
                      f"{levels['exon']['f1']:.4f}, nt F1 {levels['nucleotide']['f1']:.4f}, "
                      f"{n_genes} genes ({time.perf_counter() - t1:.0f} s)", flush=True)
    append_rows(args.tsv, FIELDS, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
