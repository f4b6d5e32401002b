"""The validation records of a training config's split, as genoseg.training holds them out.

    python benchmarks/validation_records.py --config genoseg/models/default/config.toml \\
        --genome ../shared/data/dmel_augustus/train.fa.gz \\
        --annotation ../shared/data/dmel_augustus/train.gff3.gz --gff3 val.gff3

prints the held-out record IDs, comma-separated (for ``genoseg annotate --sequences``), and with
``--gff3`` writes the annotation restricted to them: the reference for ``genoseg evaluate``,
which counts every annotated sequence of its reference, so the full training GFF3 would count
the training records' genes as missed. The split (``[train] val_fraction``, ``seed``) comes from
--config, as ``genoseg train`` makes it (``genoseg.training.data.training_split``), among
the records given to ``--sequences`` at training time if any. Summary on stderr.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from genoseg.config import load_config
    from genoseg.inputs import InputSource
    from genoseg.io.atomic import atomic_open
    from genoseg.training.data import gold_labels, training_split

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training config whose split is used")
    ap.add_argument("--genome", required=True)
    ap.add_argument("--annotation", required=True)
    ap.add_argument("--sequences", metavar="ID,ID,...",
                    help="the records training was restricted to (train --sequences), if any")
    ap.add_argument("--gff3", help="write the annotation of the validation records here")
    args = ap.parse_args()
    cfg = load_config(args.config)
    source = InputSource(args.genome)
    labels, _ = gold_labels(args.annotation, cfg.scheme, source.lengths)
    sequences = args.sequences.split(",") if args.sequences else ()
    train, val = training_split(source.names, source.lengths, labels, sequences,
                                cfg.train.val_fraction, cfg.train.seed)
    if any(r.start != 0 or r.end != source.lengths[r.seqid] for r in val):
        sys.exit("a single-sequence genome: validation is part of a record, not whole records")
    ids = [r.seqid for r in val]
    print(f"{len(train)} training records ({sum(r.length for r in train):,} bp), {len(ids)} "
          f"validation records ({sum(r.length for r in val):,} bp)", file=sys.stderr)
    if args.gff3:
        keep = set(ids)
        opener = gzip.open if args.annotation.endswith(".gz") else open
        with opener(args.annotation, "rt") as src, atomic_open(args.gff3, "w") as out:
            for line in src:
                if line.startswith("##sequence-region"):
                    if line.split()[1] in keep:
                        out.write(line)
                elif line.startswith("#") or line.split("\t", 1)[0] in keep:
                    out.write(line)
    print(",".join(ids))


if __name__ == "__main__":
    main()
