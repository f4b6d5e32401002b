"""Join gene records that abut in their genome back into the stretches they were cut from.

The fly training set (../shared/data/dmel_augustus/train.*) is one gene per record with flanks
of up to 1 kb, named ``<chrom>_<a>-<b>`` after the slice of the chromosome it holds (1-based,
inclusive; see that folder's README). 260 of its 486 records abut the next one (``b + 1`` is
the next record's ``a``), so 368 of them join into 108 stretches of 2-10 genes of real sequence,
with the real intergenic sequence between the genes. A model trained on single records never
sees a gene follow another one; on a whole chromosome it joins neighbouring genes through long
"introns". Training on the joined stretches shows it that pattern, with no sequence or
annotation added.

    python configs/recipes/join_abutting_records.py \\
        --genome ../shared/data/dmel_augustus/train.fa.gz \\
        --annotation ../shared/data/dmel_augustus/train.gff3.gz \\
        --keep-separate $(cat val_ids.txt) -o train_joined

writes ``train_joined.fa`` and ``train_joined.gff3``. ``--keep-separate``: records left as they
are (e.g. a model's validation records, so ``genoseg train --val-sequences`` holds out exactly
those and a stretch never straddles training and validation). Records whose name gives no
slice are copied as they are. Joined stretches are named ``<chrom>_<a>-<b>`` too, after the
slice they cover; the GFF3's features move with their record.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SLICE = re.compile(r"^(?P<chrom>.+)_(?P<a>\d+)-(?P<b>\d+)$")


def stretches(names: list[str], lengths: dict[str, int], keep_separate: set[str]
              ) -> list[list[str]]:
    """Records grouped into runs that abut, in chromosome order; every record appears once
    (a record with no slice name, a kept-separate one, or one with no abutting neighbour is a
    run of its own). A record whose slice length disagrees with its sequence is an error."""
    sliced, alone = [], []
    for name in names:
        m = SLICE.match(name)
        if m is None or name in keep_separate:
            alone.append([name])
            continue
        a, b = int(m["a"]), int(m["b"])
        if b - a + 1 != lengths[name]:
            sys.exit(f"error: record {name}: the name gives {b - a + 1:,} bp, the sequence has "
                     f"{lengths[name]:,}")
        sliced.append((m["chrom"], a, b, name))
    sliced.sort()
    runs: list[list[tuple]] = []
    for rec in sliced:
        prev = runs[-1][-1] if runs else None
        if prev is not None and prev[0] == rec[0] and prev[2] + 1 == rec[1]:
            runs[-1].append(rec)
        else:
            runs.append([rec])
    return [[r[3] for r in run] for run in runs] + alone


def main(argv=None) -> int:
    import pysam

    from genoseg.io.atomic import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genome", required=True, help="FASTA of the records")
    ap.add_argument("--annotation", required=True, help="GFF3 of the records")
    ap.add_argument("--keep-separate", default="", metavar="ID,ID,...",
                    help="records never joined (e.g. validation records)")
    ap.add_argument("-o", "--output", required=True, help="prefix: writes PREFIX.fa, PREFIX.gff3")
    args = ap.parse_args(argv)
    with pysam.FastxFile(args.genome) as fa:
        seqs = {r.name: r.sequence for r in fa}
    names = list(seqs)
    keep = {s for s in args.keep_separate.split(",") if s}
    unknown = sorted(keep - set(names))
    if unknown:
        sys.exit(f"error: --keep-separate: no record {unknown[0]!r} in {args.genome}")
    runs = stretches(names, {n: len(s) for n, s in seqs.items()}, keep)
    # where each record lands: (stretch name, offset of its first base in the stretch)
    place, out_len = {}, {}
    for run in runs:
        if len(run) == 1:
            name = run[0]
        else:
            first, last = SLICE.match(run[0]), SLICE.match(run[-1])
            name = f"{first['chrom']}_{first['a']}-{last['b']}"
        offset = 0
        for rec in run:
            place[rec] = (name, offset)
            offset += len(seqs[rec])
        out_len[name] = offset
    with atomic_open(f"{args.output}.fa", "w") as out:
        for run in runs:
            name = place[run[0]][0]
            seq = "".join(seqs[r] for r in run)
            out.write(f">{name}\n")
            out.writelines(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60))
    opener = gzip.open if args.annotation.endswith(".gz") else open
    features = {name: [] for name in out_len}
    with opener(args.annotation, "rt") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if f[0] not in place:
                sys.exit(f"error: {args.annotation}: feature on {f[0]!r}, not a record of "
                         f"{args.genome}")
            name, offset = place[f[0]]
            f[0], f[3], f[4] = name, str(int(f[3]) + offset), str(int(f[4]) + offset)
            features[name].append("\t".join(f) + "\n")
    with atomic_open(f"{args.output}.gff3", "w") as out:
        out.write("##gff-version 3\n")
        for name, length in out_len.items():
            out.write(f"##sequence-region {name} 1 {length}\n")
        for name in out_len:
            out.writelines(features[name])
    joined = [r for r in runs if len(r) > 1]
    print(f"{len(names)} records -> {len(runs)} sequences: {sum(map(len, joined))} records "
          f"joined into {len(joined)} stretches (longest {max(map(len, joined), default=0)} "
          f"records, {max((out_len[place[r[0]][0]] for r in joined), default=0):,} bp), "
          f"{len(runs) - len(joined)} left as they are", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
