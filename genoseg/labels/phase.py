"""Codon-phase gene labels: the state set of the coming phase grammar, and its rules.

The grammar follows AUGUSTUS's state set. Per strand s in {+, -}:

    single{s}            a whole CDS in one exon: start codon .. stop codon, length = 0 (mod 3)
    initial{s}:o         first exon of a spliced CDS, exit phase o (its length = o (mod 3))
    internal{s}:io       entry phase i, exit phase o (length = o - i (mod 3))
    terminal{s}:i        last exon, entry phase i, ends with the stop codon (length = -i (mod 3))
    intron{s}:p          intron after an exon with exit phase p

plus ``intergenic``: 1 + 2 x 19 = 39 labels. Phases are read 5' -> 3' on the gene's strand (an
exon's entry phase = CDS bases before it, mod 3); GFF3's CDS phase is ``codons.lead(entry)``.

Every rule is a hard constraint the semi-CRF can carry in its generic inputs:
  - which label may follow which (intron{s}:p only after an exon with exit phase p, and only
    before an exon with entry phase p): ``transitions``;
  - an exon's length residue mod 3: ``durations`` (-inf at the other residues);
  - start codon at the 5' end of initial/single exons, stop codon at the 3' end of terminal/single
    exons, GT (or GC) .. AG introns: ``start_bias`` / ``end_bias`` masks (``codons.site_masks``);
  - no in-frame stop inside an exon: ``max_end`` (``codons.exon_max_end``).
``violations`` checks one transcript against all of them; the test suite runs it over real fly
genes, so the grammar is known to admit the data it will be trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genoseg.io.features import Transcript
from genoseg.labels import codons

STRANDS = ("+", "-")


@dataclass(frozen=True)
class PhaseLabel:
    name: str
    kind: str  # intergenic, single, initial, internal, terminal, intron
    strand: str | None
    entry: int | None  # entry phase (exons) or the intron's phase
    exit: int | None  # exit phase (exons) or the intron's phase

    @property
    def is_exon(self) -> bool:
        return self.kind in ("single", "initial", "internal", "terminal")

    @property
    def length_residue(self) -> int | None:
        """Exon length mod 3 that the label allows (None: any length)."""
        if not self.is_exon:
            return None
        return (self.exit - self.entry) % 3

    @property
    def starts_cds(self) -> bool:
        return self.kind in ("single", "initial")

    @property
    def ends_cds(self) -> bool:
        return self.kind in ("single", "terminal")


def _labels() -> tuple[PhaseLabel, ...]:
    out = [PhaseLabel("intergenic", "intergenic", None, None, None)]
    for s in STRANDS:
        out.append(PhaseLabel(f"single{s}", "single", s, 0, 0))
        out += [PhaseLabel(f"initial{s}:{o}", "initial", s, 0, o) for o in range(3)]
        out += [PhaseLabel(f"internal{s}:{i}{o}", "internal", s, i, o)
                for i in range(3) for o in range(3)]
        out += [PhaseLabel(f"terminal{s}:{i}", "terminal", s, i, 0) for i in range(3)]
        out += [PhaseLabel(f"intron{s}:{p}", "intron", s, p, p) for p in range(3)]
    return tuple(out)


LABELS: tuple[PhaseLabel, ...] = _labels()
BY_NAME: dict[str, PhaseLabel] = {lab.name: lab for lab in LABELS}


def exon_kind(k: int, n: int) -> str:
    """Kind of the k-th exon (5' -> 3', from 0) of a CDS with n exons."""
    if n == 1:
        return "single"
    return "initial" if k == 0 else ("terminal" if k == n - 1 else "internal")


def transcript_segments(tx: Transcript) -> list[tuple[int, int, str]]:
    """The transcript as labelled segments in genome order: (start, end, label name), exons and
    the introns between them, 0-based half-open."""
    if tx.strand not in STRANDS:
        raise ValueError(f"transcript {tx.transcript_id}: strand must be '+' or '-'")
    parts = sorted(tx.cds)
    five_to_three = parts if tx.strand == "+" else parts[::-1]
    n = len(parts)
    entry = {}
    done = 0
    for k, (s, e) in enumerate(five_to_three):
        entry[(s, e)] = (k, done % 3)
        done += e - s
    out = []
    for idx, (s, e) in enumerate(parts):
        k, phi = entry[(s, e)]
        kind = exon_kind(k, n)
        exit_phase = (phi + e - s) % 3
        name = {"single": f"single{tx.strand}",
                "initial": f"initial{tx.strand}:{exit_phase}",
                "internal": f"internal{tx.strand}:{phi}{exit_phase}",
                "terminal": f"terminal{tx.strand}:{phi}"}[kind]
        out.append((s, e, name))
        if idx + 1 < n:
            # The intron's phase is the exit phase of the exon 5' of it: the left one on +, the
            # right one on -.
            if tx.strand == "+":
                p = exit_phase
            else:
                s2, e2 = parts[idx + 1]
                k2, phi2 = entry[(s2, e2)]
                p = (phi2 + e2 - s2) % 3
            out.append((e, parts[idx + 1][0], f"intron{tx.strand}:{p}"))
    return out


def violations(codes: np.ndarray, segments: list[tuple[int, int, str]]) -> list[str]:
    """Every grammar rule the labelled segments of one transcript break (empty: a valid gene).

    Checks label succession, exon length residues, start/stop codons, splice sites (GT or GC
    donor, AG acceptor) and in-frame stops, with the same masks and reach limits the CRF inputs
    will be built from.
    """
    sites = codons.site_masks(codes)
    problems = []
    labs = [BY_NAME[name] for _, _, name in segments]
    for (s, e, name), lab, nxt in zip(segments, labs, labs[1:] + [None]):
        where = f"{name} [{s}, {e})"
        if nxt is not None and not _may_follow(lab, nxt):
            problems.append(f"{where}: {nxt.name} may not follow it")
        if lab.is_exon:
            if (e - s) % 3 != lab.length_residue:
                problems.append(f"{where}: length {e - s} is not {lab.length_residue} (mod 3)")
            plus = lab.strand == "+"
            if lab.starts_cds and not (sites["start_codon_plus"][s] if plus
                                       else sites["start_codon_minus"][e - 1]):
                problems.append(f"{where}: no start codon")
            if lab.ends_cds and not (sites["stop_codon_plus"][e - 1] if plus
                                     else sites["stop_codon_minus"][s]):
                problems.append(f"{where}: no stop codon")
            reach = codons.exon_max_end(codes, lab.strand, lab.entry, lab.length_residue,
                                        lab.ends_cds)
            if e > reach[s]:
                problems.append(f"{where}: in-frame stop codon inside")
        elif lab.kind == "intron":
            if lab.strand == "+":
                donor = sites["donor_gt_plus"][s] or sites["donor_gc_plus"][s]
                acceptor = sites["acceptor_plus"][e - 1]
            else:
                donor = sites["donor_gt_minus"][e - 1] or sites["donor_gc_minus"][e - 1]
                acceptor = sites["acceptor_minus"][s]
            if not donor:
                problems.append(f"{where}: no GT/GC donor")
            if not acceptor:
                problems.append(f"{where}: no AG acceptor")
    return problems


def _may_follow(a: PhaseLabel, b: PhaseLabel) -> bool:
    """Whether label b may directly follow label a (genome order, left to right)."""
    if a.kind == "intergenic":
        return b.kind == "intergenic" or (b.is_exon and (b.starts_cds if b.strand == "+"
                                                         else b.ends_cds))
    if b.kind == "intergenic":
        return a.is_exon and (a.ends_cds if a.strand == "+" else a.starts_cds)
    if a.strand != b.strand:
        return False
    if a.strand == "+":
        if a.is_exon and b.kind == "intron":
            return not a.ends_cds and a.exit == b.entry
        if a.kind == "intron" and b.is_exon:
            return not b.starts_cds and b.entry == a.exit
        return False
    # '-': genome order runs 3' -> 5', so the exon right of an intron comes before it in the gene.
    if a.is_exon and b.kind == "intron":
        return not a.starts_cds and a.entry == b.exit
    if a.kind == "intron" and b.is_exon:
        return not b.ends_cds and b.exit == a.entry
    return False
