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

from common import config_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from genoseg.io.atomic import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training config whose split is used")
    ap.add_argument("--genome", required=True)
    ap.add_argument("--annotation", required=True)
    ap.add_argument("--sequences", metavar="ID,ID,...",
                    help="the records training was restricted to (train --sequences), if any")
    ap.add_argument("--gff3", help="write the annotation of the validation records here")
    args = ap.parse_args()
    _, source, _, train, val = config_split(args.config, args.genome, args.annotation,
                                            args.sequences or "")
    source.close()
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
