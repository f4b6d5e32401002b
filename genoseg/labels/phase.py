"""Codon-phase gene labels: the state set of the coming phase grammar, and its rules.

The grammar follows AUGUSTUS's state set. Per strand s in {+, -}:

    single{s}            a whole CDS in one exon: start codon .. stop codon, length = 0 (mod 3)
    initial{s}:o         first exon of a spliced CDS, exit phase o (its length = o (mod 3))
    internal{s}:io       entry phase i, exit phase o (length = o - i (mod 3))
    terminal{s}:i        last exon, entry phase i, ends with the stop codon (length = -i (mod 3))
    intron{s}:p<tail>    intron after an exon with exit phase p; the tail names the partial codon
                         the exon left behind where it could become a stop across the splice
                         (phase 1: T or N(ot T); phase 2: TA, TG or N(either)): 0, 1T, 1N, 2TA,
                         2TG, 2N

plus ``intergenic``: 1 + 2 x 22 = 45 labels. Phases are read 5' -> 3' on the gene's strand (an
exon's entry phase = CDS bases before it, mod 3); GFF3's CDS phase is ``codons.lead(entry)``.

Every rule is a hard constraint the semi-CRF can carry in its generic inputs:
  - which label may follow which (intron{s}:p only after an exon with exit phase p, and only
    before an exon with entry phase p): ``transitions``;
  - an exon's length residue mod 3, and >= 3 bp for one holding a start or stop codon:
    ``durations`` (-inf elsewhere);
  - start codon at the 5' end of initial/single exons, stop codon at the 3' end of terminal/single
    exons, GT (or GC) .. AG introns: ``start_bias`` / ``end_bias`` masks (``codons.site_masks``);
  - no in-frame stop inside an exon: ``max_end`` (``codons.exon_max_end``);
  - no stop codon split across a splice: the intron's tail is checked against the bases before
    it (start_bias on +) and the next exon's first bases after it (end_bias on +), both masks.
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
    tail: str = ""  # introns: the partial codon before them, where it could start a stop

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
        out += [PhaseLabel(f"intron{s}:{p}{tail}", "intron", s, p, p, tail)
                for p, tails in ((0, ("",)), (1, ("T", "N")), (2, ("TA", "TG", "N")))
                for tail in tails]
    return tuple(out)


LABELS: tuple[PhaseLabel, ...] = _labels()
BY_NAME: dict[str, PhaseLabel] = {lab.name: lab for lab in LABELS}


def exon_kind(k: int, n: int) -> str:
    """Kind of the k-th exon (5' -> 3', from 0) of a CDS with n exons."""
    if n == 1:
        return "single"
    return "initial" if k == 0 else ("terminal" if k == n - 1 else "internal")


def transcript_segments(tx: Transcript, codes: np.ndarray) -> list[tuple[int, int, str]]:
    """The transcript as labelled segments in genome order: (start, end, label name), exons and
    the introns between them, 0-based half-open. ``codes`` (``codons.encode`` of the sequence)
    picks each intron's tail."""
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
            i_s, i_e = e, parts[idx + 1][0]
            out.append((i_s, i_e, f"intron{tx.strand}:{p}{_tail_of(codes, tx.strand, p, i_s, i_e)}"))
    return out


def _bases(codes: np.ndarray, lo: int, hi: int) -> str:
    """seq[lo:hi] as text, N outside the sequence."""
    return "".join("ACGTN"[codes[i]] if 0 <= i < len(codes) else "N" for i in range(lo, hi))


def _revcomp(text: str) -> str:
    return text.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


def _tail_of(codes: np.ndarray, strand: str, phase: int, i_s: int, i_e: int) -> str:
    """The tail of an intron [i_s, i_e) of this phase: the partial codon before it (5' side)."""
    if phase == 0:
        return ""
    part = _bases(codes, i_s - phase, i_s) if strand == "+" else _revcomp(
        _bases(codes, i_e, i_e + phase))
    if phase == 1:
        return "T" if part == "T" else "N"
    return part if part in ("TA", "TG") else "N"


# Bases that would complete a stop codon after each tail (5' -> 3' on the gene's strand).
_STOP_COMPLETIONS = {"T": ("AA", "AG", "GA"), "TA": ("A", "G"), "TG": ("A",)}


def _word_at(codes: np.ndarray, offset: int, words) -> np.ndarray:
    """(T,) bool: one of the words (all of one length) lies at i + offset .. for each i; N
    outside the sequence (so nothing matches there)."""
    T = len(codes)
    out = np.zeros(T, dtype=bool)
    for w in words:
        hit = np.ones(T, dtype=bool)
        for j, base in enumerate(codons.encode(w)):
            k = offset + j
            shifted = np.full(T, codons.NONE, dtype=np.uint8)
            if 0 <= k < T:
                shifted[:T - k] = codes[k:]
            elif -T < k < 0:
                shifted[-k:] = codes[:T + k]
            hit &= shifted == base
        out |= hit
    return out


def tail_masks(codes: np.ndarray, strand: str, phase: int, tail: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """(ok at the intron's first base s, ok at its last base u), both (T,) bool, for an intron
    label of this phase and tail: the partial codon before the intron (5' side) must be the tail
    (N: none of the stop-prone tails), and the bases after it (3' side) must not complete a stop
    codon with it. Genome coordinates; on - the gene reads right to left."""
    T = len(codes)
    start_ok = np.ones(T, dtype=bool)
    last_ok = np.ones(T, dtype=bool)
    if phase == 0:
        return start_ok, last_ok
    prone = ("T",) if phase == 1 else ("TA", "TG")
    words = (tail,) if tail != "N" else prone
    after = _STOP_COMPLETIONS[tail] if tail != "N" else ()
    if strand == "+":
        before = _word_at(codes, -phase, words)
        start_ok = before if tail != "N" else ~before
        if after:
            last_ok = ~_word_at(codes, 1, after)
    else:
        before = _word_at(codes, 1, [_revcomp(w) for w in words])
        last_ok = before if tail != "N" else ~before
        if after:
            start_ok = ~_word_at(codes, -(3 - phase), [_revcomp(w) for w in after])
    return start_ok, last_ok


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
            if (lab.starts_cds or lab.ends_cds) and e - s < 3:
                # The codon mask looks at 3 bases; an exon shorter than that would borrow
                # the neighbouring intron's bases, while the spliced codon is something else.
                problems.append(f"{where}: {e - s} bp, too short to hold its start/stop codon")
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
            start_ok, last_ok = tail_masks(codes, lab.strand, lab.entry, lab.tail)
            if not (start_ok[s] and last_ok[e - 1]):
                problems.append(f"{where}: tail does not match, or a stop codon spans the splice")
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


# ----------------------------------------------------------------------------------------------
# The grammar as semi-CRF inputs
# ----------------------------------------------------------------------------------------------


def transitions_mask() -> np.ndarray:
    """(C, C) bool: label b may directly follow label a, as ``violations`` checks it."""
    return np.array([[_may_follow(a, b) for b in LABELS] for a in LABELS], dtype=bool)


def crf_constraints(codes: np.ndarray, max_duration: int, *, min_intron: int = 20,
                    gc_donors: bool = True) -> dict[str, np.ndarray]:
    """The grammar's hard constraints for one sequence, as semi-CRF inputs (0 or -inf; max_end
    as int64), label order ``LABELS``:

    transitions (C, C), durations (K, C) (exon length residues, intron minimum length),
    start_bias / end_bias (T, C) (start and stop codons, splice sites), max_end (T, C) (no
    in-frame stop inside an exon). A decoded segmentation that respects all of them is a set of
    valid gene models.

    Intergenic may follow itself (runs longer than K). Exons and introns are single segments, so
    here they are at most K long; the model head will tile long ones (donor on the first piece,
    acceptor on the last), as it tiles runs today.
    """
    T, K, C = len(codes), max_duration, len(LABELS)
    neg = -np.inf
    transitions = np.where(transitions_mask(), 0.0, neg)
    d = np.arange(1, K + 1)
    durations = np.zeros((K, C))
    start_bias = np.zeros((T, C))
    end_bias = np.zeros((T, C))
    max_end = np.full((T, C), T, dtype=np.int64)
    sites = codons.site_masks(codes)
    for c, lab in enumerate(LABELS):
        if lab.is_exon:
            # An exon holding a start or stop codon holds all of it (>= 3 bp): a shorter one
            # would pass the codon mask with the neighbouring intron's bases.
            holds_codon = lab.starts_cds or lab.ends_cds
            durations[:, c] = np.where((d % 3 == lab.length_residue) & (~holds_codon | (d >= 3)),
                                       0.0, neg)
            plus = lab.strand == "+"
            reach = codons.exon_max_end(codes, lab.strand, lab.entry, lab.length_residue,
                                        lab.ends_cds)
            max_end[:, c] = np.minimum(reach, T)
            if lab.starts_cds:
                if plus:
                    start_bias[:, c] = np.where(sites["start_codon_plus"], 0.0, neg)
                else:
                    end_bias[:, c] = np.where(sites["start_codon_minus"], 0.0, neg)
            if lab.ends_cds:
                if plus:
                    end_bias[:, c] = np.where(sites["stop_codon_plus"], 0.0, neg)
                else:
                    start_bias[:, c] = np.where(sites["stop_codon_minus"], 0.0, neg)
        elif lab.kind == "intron":
            durations[:, c] = np.where(d >= min_intron, 0.0, neg)
            if lab.strand == "+":
                donor = sites["donor_gt_plus"] | (sites["donor_gc_plus"] if gc_donors else False)
                start_bias[:, c] = np.where(donor, 0.0, neg)
                end_bias[:, c] = np.where(sites["acceptor_plus"], 0.0, neg)
            else:
                donor = sites["donor_gt_minus"] | (sites["donor_gc_minus"] if gc_donors
                                                   else False)
                end_bias[:, c] = np.where(donor, 0.0, neg)
                start_bias[:, c] = np.where(sites["acceptor_minus"], 0.0, neg)
            start_ok, last_ok = tail_masks(codes, lab.strand, lab.entry, lab.tail)
            start_bias[~start_ok, c] = neg
            end_bias[~last_ok, c] = neg
    return dict(transitions=transitions, durations=durations, start_bias=start_bias,
                end_bias=end_bias, max_end=max_end)


def segments_to_transcripts(segments, seqid: str) -> list[Transcript]:
    """Complete gene models from decoded phase-labelled segments (rows start, end, label index)
    in genome order. A gene is a chain exon (intron exon)* from a CDS start to a CDS end on one
    strand; chains cut by the sequence ends are not genes and are dropped."""
    rows = [(int(s), int(e), LABELS[int(c)]) for s, e, c in segments]
    # Abutting pieces of one intron or intergenic label are one run.
    runs: list[list] = []
    for s, e, lab in rows:
        if runs and runs[-1][2] is lab and not lab.is_exon and runs[-1][1] == s:
            runs[-1][1] = e
        else:
            runs.append([s, e, lab])
    out = []
    i = 0
    while i < len(runs):
        s, e, lab = runs[i]
        first_ok = lab.is_exon and (lab.starts_cds if lab.strand == "+" else lab.ends_cds)
        if not first_ok:
            i += 1
            continue
        chain = [(s, e)]
        j = i
        done = lab.ends_cds if lab.strand == "+" else lab.starts_cds
        while not done and j + 2 < len(runs) and runs[j + 1][2].kind == "intron":
            nxt = runs[j + 2][2]
            if not nxt.is_exon or nxt.strand != lab.strand:
                break
            chain.append((runs[j + 2][0], runs[j + 2][1]))
            j += 2
            done = nxt.ends_cds if lab.strand == "+" else nxt.starts_cds
        if done:
            n = len(out) + 1
            out.append(Transcript(seqid=seqid, strand=lab.strand, gene_id=f"{seqid}.{n}",
                                  transcript_id=f"{seqid}.{n}.t1", cds=tuple(chain)))
        i = j + 1
    return out
