"""CDS-level accuracy of gene predictions, counted exactly as genometools ``gt eval`` counts it.

The specification is ``eval_genes.sh`` (the project's scoring script): it normalizes both GFF3
files to a *CDS view* and runs ``gt eval`` (genometools 1.6.2, ``src/extended/stream_evaluator.c``).
This module does both steps in pure Python and reproduces its CDS-basis numbers.

CDS view (as eval_genes.sh builds it):
  * type ``transcript`` counts as ``mRNA``; a CDS line belongs to every mRNA named in its
    ``Parent``; CDS lines whose parent is not an mRNA (e.g. gene -> CDS) are not used;
  * mRNA range = span of its CDS parts; mRNAs without CDS are dropped;
  * an mRNA whose ``Parent`` is a ``gene`` belongs to it, any other mRNA is its own gene; gene
    range = span of its mRNAs; gene seqid and strand = those of its first mRNA.

Counting (per sequence: a reference seqid with at least one CDS is a *slot*; predictions on
other seqids are ignored entirely, as gt eval does):
  * gene / mRNA: reference count = genes (mRNAs) on strand + or -; predicted count = all
    predicted genes (mRNAs) on slots. A predicted mRNA is true if an as yet unmatched reference
    mRNA on the same seqid and strand has the same range and the same sorted list of CDS ranges.
    A predicted gene is true likewise, where genes are "equal" if their ranges agree and, when
    both have the same number of mRNAs, the mRNAs (sorted by range) agree pairwise. If the mRNA
    numbers differ, equal ranges suffice (a gt eval quirk, kept on purpose). Each reference
    feature is matched at most once; predictions are processed in (seqid, start, end) order.
  * exon ("all"): every CDS line counts, once per transcript (an exon shared by two reference
    transcripts counts twice). Reference count = CDS parts on + or -; predicted count = all
    predicted CDS parts on slots (any strand). True = sum over distinct (seqid, strand, start,
    end) of min(reference multiplicity, predicted multiplicity): exact boundaries and strand.
  * nucleotide: per seqid and strand, the union of CDS bases. The slot's range is the span of
    all reference CDS on that seqid (gt eval's implicit ``##sequence-region``). TP = reference
    union & predicted union, FN = reference minus predicted, FP = predicted union within the
    range minus reference, plus every predicted CDS base outside the range counted once per
    CDS line (so overlapping predictions outside the range count twice, as in gt eval).

Sensitivity = TP / reference, specificity (gt's word for precision) = TP / predicted, each 0 when
its denominator is 0; F1 = 2 Sn Sp / (Sn + Sp) (0 when both are 0).

Known difference: gt eval pairs the mRNAs of two genes after sorting them by range only; when a
gene has two mRNAs with the same CDS span its pairing depends on node order inside gt. Here such
ties are broken by the CDS ranges, so the gene counts of such genes may differ from gt's.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genoseg.errors import InputError
from genoseg.io.atomic import atomic_open
from genoseg.io.gff3 import numbered_lines

logger = logging.getLogger(__name__)

LEVELS = ("gene", "mRNA", "exon", "nucleotide")
_TYPE_MAP = {"transcript": "mRNA"}
_STRANDS = frozenset("+-.?")
_TSV_HEADER = ("basis", "level", "sensitivity", "specificity", "F1", "sn_counts", "sp_counts")


# --------------------------------------------------------------------------------------------
# The CDS view


@dataclass
class Mrna:
    """One transcript of the CDS view: 1-based closed range = span of its CDS parts."""

    seqid: str
    strand: str
    start: int
    end: int
    cds: list[tuple[str, int, int]]  # (strand, start, end) per CDS line, sorted by start, end
    line: int

    def cds_ranges(self) -> list[tuple[int, int]]:
        return sorted((s, e) for _, s, e in self.cds)


@dataclass
class Gene:
    seqid: str
    strand: str
    start: int
    end: int
    mrnas: list[Mrna] = field(default_factory=list)
    line: int = 0


def _attributes(text: str) -> dict[str, str]:
    # eval_genes.sh: tag=value pairs split on ';'; items without '=' are ignored; values raw
    out: dict[str, str] = {}
    for item in text.strip().rstrip(";").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            out.setdefault(key.strip(), value.strip())
    return out


def read_cds_view(path: str | os.PathLike) -> list[Gene]:
    """Read a GFF3 file (plain or gzip) into its CDS view (see the module docstring).

    Returns genes in file order of their first mRNA. Raises InputError (file and line) for a
    missing file, a line without 9 tab-separated columns, bad coordinates or strand, a
    duplicated mRNA ID, or a CDS / mRNA on another sequence than its mRNA / gene.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    gene_ids: set[str] = set()
    mrnas: dict[str, tuple[int, str, str, str | None]] = {}  # ID -> (line, seqid, strand, Parent)
    cds: dict[str, list[tuple[int, int, str, str, int]]] = defaultdict(list)
    saw_feature = False
    for number, line in numbered_lines(path, "GFF3"):
        if line.startswith("##FASTA"):
            break
        if line.startswith("#") or not line.strip():
            continue
        where = f"{path}:{number}"
        cols = line.split("\t")
        if len(cols) != 9:
            raise InputError(f"{where}: expected 9 tab-separated columns, found {len(cols)}"
                             + (" (is this a GFF3 file?)" if not saw_feature else ""))
        saw_feature = True
        seqid, _, ftype, start, end, _, strand, _, attr_text = cols
        try:
            start_1, end_1 = int(start), int(end)
        except ValueError:
            raise InputError(f"{where}: non-integer coordinates {start!r}, {end!r}") from None
        if start_1 < 1 or start_1 > end_1:
            raise InputError(f"{where}: invalid range {start_1}..{end_1} (1-based, start <= end)")
        if strand not in _STRANDS:
            raise InputError(f"{where}: invalid strand {strand!r} (expected +, -, . or ?)")
        ftype = _TYPE_MAP.get(ftype, ftype)
        if ftype not in ("gene", "mRNA", "CDS"):
            continue
        attrs = _attributes(attr_text)
        fid = attrs.get("ID")
        if ftype == "gene":
            if fid is not None:
                gene_ids.add(fid)
        elif ftype == "mRNA":
            if fid is None:
                continue  # nothing can name it as Parent: it has no CDS in the view
            if fid in mrnas:
                raise InputError(f"{where}: mRNA ID '{fid}' already used on line {mrnas[fid][0]}")
            mrnas[fid] = (number, seqid, strand, attrs.get("Parent"))
        else:
            for parent in attrs.get("Parent", "").split(","):
                cds[parent].append((start_1, end_1, strand, seqid, number))

    genes: dict[str, Gene] = {}
    for mid, (number, seqid, strand, parent) in mrnas.items():
        parts = sorted(cds.get(mid, ()))
        if not parts:
            continue
        for _, _, _, part_seqid, part_line in parts:
            if part_seqid != seqid:
                raise InputError(f"{path}:{part_line}: CDS on '{part_seqid}' but its mRNA "
                                 f"'{mid}' (line {number}) is on '{seqid}'")
        mrna = Mrna(seqid, strand, parts[0][0], max(p[1] for p in parts),
                    [(p[2], p[0], p[1]) for p in parts], number)
        gkey = parent if parent in gene_ids else f"gene_of_{mid}"
        gene = genes.get(gkey)
        if gene is None:
            genes[gkey] = Gene(seqid, strand, mrna.start, mrna.end, [mrna], number)
        else:
            if gene.seqid != seqid:
                raise InputError(f"{path}:{number}: mRNA '{mid}' on '{seqid}' but another mRNA "
                                 f"of gene '{gkey}' (line {gene.line}) is on '{gene.seqid}'")
            gene.start, gene.end = min(gene.start, mrna.start), max(gene.end, mrna.end)
            gene.mrnas.append(mrna)
    return list(genes.values())


# --------------------------------------------------------------------------------------------
# Counting


@dataclass(frozen=True)
class LevelResult:
    """Counts of one level. ``reference``/``predicted`` are TP+FN / TP+FP."""

    basis: str
    level: str
    tp: int
    reference: int
    predicted: int

    @property
    def sensitivity(self) -> float:
        return self.tp / self.reference if self.reference else 0.0

    @property
    def specificity(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def f1(self) -> float:
        sn, sp = self.sensitivity, self.specificity
        return 2 * sn * sp / (sn + sp) if sn + sp > 0 else 0.0


@dataclass(frozen=True)
class Evaluation:
    reference_path: str
    prediction_path: str
    levels: tuple[LevelResult, ...]
    ignored_seqids: tuple[str, ...]  # predicted seqids without any reference CDS
    ignored_genes: int

    def level(self, name: str) -> LevelResult:
        return next(r for r in self.levels if r.level == name)


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of 1-based closed intervals as sorted, disjoint, non-adjacent intervals."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _length(intervals: list[tuple[int, int]]) -> int:
    return sum(e - s + 1 for s, e in intervals)


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Bases shared by two merged interval lists."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            total += hi - lo + 1
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _mrnas_equal(a: Mrna, b: Mrna) -> bool:
    return a.cds_ranges() == b.cds_ranges()


def _mrna_order(m: Mrna) -> tuple:
    return (m.start, m.end, m.cds_ranges())  # gt sorts by range only; ties: see module docstring


def _genes_equal(a: Gene, b: Gene) -> bool:
    if len(a.mrnas) != len(b.mrnas):
        return True  # gt eval compares the mRNAs only when their numbers agree
    return all(_mrnas_equal(x, y) for x, y in
               zip(sorted(a.mrnas, key=_mrna_order), sorted(b.mrnas, key=_mrna_order)))


def _count_matches(reference: list, predicted: list, equal) -> int:
    """Greedy one-to-one matching as in gt eval's compare_features (items: Gene or Mrna)."""
    candidates: dict[tuple, list[int]] = defaultdict(list)
    for k, item in enumerate(reference):
        if item.strand in "+-":
            candidates[(item.seqid, item.strand, item.start, item.end)].append(k)
    used = [False] * len(reference)
    tp = 0
    for item in predicted:
        if item.strand not in "+-":
            continue
        for k in candidates.get((item.seqid, item.strand, item.start, item.end), ()):
            if equal(item, reference[k]) and not used[k]:
                used[k] = True
                tp += 1
                break
    return tp


def _sort_key(item) -> tuple:
    return (item.seqid.encode(), item.start, item.end, item.line)


def evaluate_views(ref_genes: list[Gene], pred_genes: list[Gene]) -> tuple[list[LevelResult], list[str], int]:
    """CDS-basis counts of a predicted CDS view against a reference one.

    Returns (results for gene, mRNA, exon, nucleotide; ignored predicted seqids; number of
    predicted genes on them)."""
    # slots: reference seqids and their range (span of all reference features there)
    ranges: dict[str, tuple[int, int]] = {}
    for g in ref_genes:
        lo, hi = ranges.get(g.seqid, (g.start, g.end))
        ranges[g.seqid] = (min(lo, g.start), max(hi, g.end))
    kept = [g for g in pred_genes if g.seqid in ranges]
    ignored = sorted({g.seqid for g in pred_genes if g.seqid not in ranges})
    ref_genes = sorted(ref_genes, key=_sort_key)
    kept.sort(key=_sort_key)
    ref_mrnas = sorted((m for g in ref_genes for m in g.mrnas), key=_sort_key)
    pred_mrnas = sorted((m for g in kept for m in g.mrnas), key=_sort_key)

    results = [
        LevelResult("CDS", "gene", _count_matches(ref_genes, kept, _genes_equal),
                    sum(g.strand in "+-" for g in ref_genes), len(kept)),
        LevelResult("CDS", "mRNA", _count_matches(ref_mrnas, pred_mrnas, _mrnas_equal),
                    sum(m.strand in "+-" for m in ref_mrnas), len(pred_mrnas)),
    ]

    ref_exons: Counter = Counter()
    ref_bases: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for m in ref_mrnas:
        for strand, start, end in m.cds:
            if strand in "+-":
                ref_exons[(m.seqid, strand, start, end)] += 1
                ref_bases[(m.seqid, strand)].append((start, end))
    pred_exons: Counter = Counter()
    pred_bases: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    n_pred_exons = outside = 0
    for m in pred_mrnas:
        lo, hi = ranges[m.seqid]
        for strand, start, end in m.cds:
            n_pred_exons += 1
            if strand not in "+-":
                continue
            pred_exons[(m.seqid, strand, start, end)] += 1
            clipped = (max(start, lo), min(end, hi))
            outside += (end - start + 1) - max(0, clipped[1] - clipped[0] + 1)
            if clipped[0] <= clipped[1]:
                pred_bases[(m.seqid, strand)].append(clipped)
    exon_tp = sum(min(n, pred_exons[key]) for key, n in ref_exons.items())
    results.append(LevelResult("CDS", "exon", exon_tp, sum(ref_exons.values()), n_pred_exons))

    tp = n_ref = n_pred = 0
    for key in set(ref_bases) | set(pred_bases):
        real, pred = _merge(ref_bases.get(key, [])), _merge(pred_bases.get(key, []))
        shared = _overlap(real, pred)
        tp += shared
        n_ref += _length(real)
        n_pred += _length(pred)
    results.append(LevelResult("CDS", "nucleotide", tp, n_ref, n_pred + outside))
    n_ignored = sum(g.seqid not in ranges for g in pred_genes)
    return results, ignored, n_ignored


def evaluate(reference: str | os.PathLike, prediction: str | os.PathLike) -> Evaluation:
    """Score PREDICTION against REFERENCE (GFF3, plain or gzip) at the CDS basis.

    Raises InputError for unreadable or malformed files and for a reference without any CDS
    under an mRNA/transcript. A prediction without CDS, or with none on a reference sequence,
    scores 0 (with a warning on the log).
    """
    ref_genes = read_cds_view(reference)
    if not ref_genes:
        raise InputError(f"{reference}: no CDS under an mRNA/transcript feature; "
                         "nothing to evaluate against")
    pred_genes = read_cds_view(prediction)
    levels, ignored, n_ignored = evaluate_views(ref_genes, pred_genes)
    if not pred_genes:
        logger.warning("%s: no CDS under an mRNA/transcript feature; every level scores 0", prediction)
    elif ignored:
        logger.warning("ignored %d predicted gene(s) on %d sequence(s) without any reference gene%s",
                       n_ignored, len(ignored),
                       " (all of them: do the seqids match?)" if n_ignored == len(pred_genes) else "")
    return Evaluation(str(reference), str(prediction), tuple(levels), tuple(ignored), n_ignored)


# --------------------------------------------------------------------------------------------
# Output


def _counts(tp: int, n: int) -> str:
    return f"{tp}/{n}"


def tsv_rows(evaluation: Evaluation) -> list[tuple[str, ...]]:
    """Rows in eval_genes.sh's TSV layout (4 decimals), header first."""
    rows = [_TSV_HEADER]
    for r in evaluation.levels:
        rows.append((r.basis, r.level, f"{r.sensitivity:.4f}", f"{r.specificity:.4f}", f"{r.f1:.4f}",
                     _counts(r.tp, r.reference), _counts(r.tp, r.predicted)))
    return rows


def format_table(evaluation: Evaluation) -> str:
    """Aligned text table for the terminal."""
    rows = [("basis", "level", "Sn", "Sp", "F1", "Sn (TP/ref)", "Sp (TP/pred)")]
    rows += tsv_rows(evaluation)[1:]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows) + "\n"


def write_tsv(path: str | os.PathLike, evaluation: Evaluation) -> None:
    with atomic_open(path, "w") as out:
        for row in tsv_rows(evaluation):
            out.write("\t".join(row) + "\n")


def to_dict(evaluation: Evaluation) -> dict:
    levels = {}
    for r in evaluation.levels:
        entry = asdict(r)
        del entry["basis"], entry["level"]
        entry.update(sensitivity=r.sensitivity, specificity=r.specificity, f1=r.f1)
        levels[r.level] = entry
    return {
        "reference": evaluation.reference_path,
        "prediction": evaluation.prediction_path,
        "basis": "CDS",
        "counting": "genometools gt eval (eval_genes.sh CDS view)",
        "levels": levels,
        "ignored_seqids": list(evaluation.ignored_seqids),
        "ignored_genes": evaluation.ignored_genes,
    }


def write_json(path: str | os.PathLike, evaluation: Evaluation) -> None:
    with atomic_open(path, "w") as out:
        json.dump(to_dict(evaluation), out, indent=2)
        out.write("\n")
