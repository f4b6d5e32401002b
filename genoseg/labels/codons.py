"""Sequence-derived constraints for coding exons: codon sites and in-frame stop codons.

The codon-phase gene grammar (next step of the plan) turns biology into the semi-CRF's generic
inputs: start/stop codons and splice sites become ``start_bias`` / ``end_bias`` masks, and "no
in-frame stop codon inside a CDS segment" becomes ``max_end`` (how far a segment starting at s may
reach). This module computes those from the sequence alone, for both strands; it knows nothing of
labels or tensors.

Conventions. Positions are 0-based; a segment is [s, e). A mask indexed by "start" is read at s,
one indexed by "last" at e - 1 (as ``start_bias`` / ``end_bias`` are). An exon's entry phase phi
is the number of bases of its first codon already emitted by earlier exons (cumulative CDS
length mod 3, read 5' -> 3' on the gene's strand), so its first complete codon begins
``lead(phi) = (3 - phi) % 3`` bases into the exon from its 5' end (the left end on +, the right
end on -); GFF3's CDS phase column is exactly ``lead(phi)``. The exon's length L then fixes its
exit phase (phi + L) % 3.

Stops. A non-terminal exon may contain no complete in-frame stop codon; a terminal (or single)
exon ends with its only one. On + that is a limit on e given s. On - translation starts at the
right end, so the limit is on s given e; but the grammar's durations fix L mod 3 per label, so
for a start s only ends in one residue class are possible, and over that class the limit is
monotone: it becomes a limit on e given s as well. ``exon_max_end`` returns it in that form.
"""

from __future__ import annotations

import numpy as np

NONE = 4  # code of anything that is not A, C, G or T
_CODE = np.full(256, NONE, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _CODE[ord(_b)] = _i
    _CODE[ord(_b.lower())] = _i

STOPS = ("TAA", "TAG", "TGA")
STOPS_MINUS = ("TTA", "CTA", "TCA")  # reverse complements, as read on the + strand


def encode(seq: str) -> np.ndarray:
    """(T,) uint8: A C G T -> 0 1 2 3 (either case), anything else -> 4."""
    return _CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def _matches(codes: np.ndarray, words: tuple[str, ...]) -> np.ndarray:
    """(T,) bool: one of the words starts at each position (False where it would run off)."""
    T = len(codes)
    out = np.zeros(T, dtype=bool)
    for w in words:
        k = len(w)
        if T < k:
            continue
        hit = np.ones(T - k + 1, dtype=bool)
        for j, b in enumerate(encode(w)):
            hit &= codes[j:T - k + 1 + j] == b
        out[:T - k + 1] |= hit
    return out


def site_masks(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean (T,) masks of the sites a gene model may use, by the segment end they constrain.

    + strand: ``start_codon_plus`` (an initial/single exon may start at s: ATG at s),
    ``stop_codon_plus`` (a terminal/single exon may have its last base at u: a stop at u-2..u),
    ``donor_gt_plus`` / ``donor_gc_plus`` (an intron may start at s: GT / GC at s),
    ``acceptor_plus`` (an intron may have its last base at u: AG at u-1..u).
    - strand, the same sites read on the reverse complement: ``start_codon_minus`` (last base u
    of an initial/single exon: CAT at u-2..u), ``stop_codon_minus`` (start s of a terminal/single
    exon: TTA/CTA/TCA at s), ``donor_gt_minus`` / ``donor_gc_minus`` (last base u of an intron:
    AC / GC at u-1..u), ``acceptor_minus`` (start s of an intron: CT at s).
    """
    T = len(codes)

    def at_last(words, k):
        """Word of length k ending at u (mask indexed by u)."""
        m = _matches(codes, words)
        out = np.zeros(T, dtype=bool)
        out[k - 1:] = m[:T - k + 1] if T >= k else out[k - 1:]
        return out

    return {
        "start_codon_plus": _matches(codes, ("ATG",)),
        "stop_codon_plus": at_last(STOPS, 3),
        "donor_gt_plus": _matches(codes, ("GT",)),
        "donor_gc_plus": _matches(codes, ("GC",)),
        "acceptor_plus": at_last(("AG",), 2),
        "start_codon_minus": at_last(("CAT",), 3),
        "stop_codon_minus": _matches(codes, STOPS_MINUS),
        "donor_gt_minus": at_last(("AC",), 2),
        "donor_gc_minus": at_last(("GC",), 2),
        "acceptor_minus": _matches(codes, ("CT",)),
    }


def next_in_class(hits: np.ndarray) -> np.ndarray:
    """(T + 3,) int64: for each p, the first q >= p with q = p (mod 3) and hits[q]; a value
    >= T + 3 where there is none. Entries T..T+2 exist so callers may look past the end."""
    T = len(hits)
    big = T + 3 + 3 * ((T + 3) // 3 + 1)  # beyond any position, and stays so when +2 is added
    out = np.full(T + 3, big, dtype=np.int64)
    for r in range(3):
        idx = np.arange(r, T, 3)
        if len(idx) == 0:
            continue
        pos = np.where(hits[idx], idx, big)
        out[idx] = np.minimum.accumulate(pos[::-1])[::-1]
    return out


def first_in_orf(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """(T,) bool: the ``starts`` (codon starts, a (T,) mask) with no start in the same frame
    earlier since the last in-frame ``stops`` codon (or the sequence's beginning), reading left
    to right."""
    T = len(starts)
    out = np.zeros(T, dtype=bool)
    for r in range(3):
        idx = np.arange(r, T, 3)
        if len(idx) == 0:
            continue
        a, stop = starts[idx], stops[idx]
        before = np.cumsum(a) - a  # starts strictly before each codon
        reset = stop.copy()
        reset[0] = True
        last_reset = np.maximum.accumulate(np.where(reset, np.arange(len(idx)), 0))
        out[idx] = a & (before == before[last_reset])
    return out


def first_orf_starts(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Start codons that open the longest reading frame they are in: no in-frame ATG upstream
    before an in-frame stop (or the sequence's edge). ``plus`` is indexed like
    ``site_masks``' ``start_codon_plus`` (ATG at s), ``minus`` like ``start_codon_minus``
    (CAT at u-2..u, indexed by u); each is a subset of that mask. Annotations of compact genomes
    mostly start there (5,522 of the 5,666 single-exon S288C genes)."""
    T = len(codes)
    plus = first_in_orf(_matches(codes, ("ATG",)), _matches(codes, STOPS))
    # On - "upstream" is to the right: the same scan on the reversed codon-start masks.
    minus_at_codon = first_in_orf(_matches(codes, ("CAT",))[::-1],
                                  _matches(codes, STOPS_MINUS)[::-1])[::-1]
    minus = np.zeros(T, dtype=bool)
    minus[2:] = minus_at_codon[:max(T - 2, 0)]  # a codon starting at p has its last base at p+2
    return {"plus": plus, "minus": minus}


def lead(phase: int) -> int:
    """Bases before an exon's first complete codon, for entry phase ``phase`` (GFF3 phase)."""
    return (3 - phase) % 3


def exon_max_end(codes: np.ndarray, strand: str, entry_phase: int, length_residue: int,
                 terminal: bool) -> np.ndarray:
    """(T,) int64 max_end for an exon label: a segment starting at s may end (exclusive) at e only
    if e <= max_end[s] (and e = s + length_residue (mod 3), which the label's durations enforce).

    ``terminal``: the exon ends the CDS (terminal or single exon), so its last codon is a stop
    (the end/start mask enforces that) and no earlier in-frame codon is one. Otherwise no complete
    in-frame codon may be a stop. Values may exceed T (no limit within the sequence).
    """
    if strand not in "+-" or len(strand) != 1:
        raise ValueError(f"strand must be '+' or '-', got {strand!r}")
    T = len(codes)
    s = np.arange(T)
    a = lead(entry_phase)
    if strand == "+":
        nxt = next_in_class(_matches(codes, STOPS))
        first = s + a  # first complete codon of an exon starting at s
        p = nxt[np.minimum(first, T + 2)]
        # Non-terminal: the stop at p must stay incomplete (e <= p + 2); terminal: it may be the
        # last codon (e <= p + 3).
        return p + (3 if terminal else 2)
    nxt = next_in_class(_matches(codes, STOPS_MINUS))
    # On - the codons are counted from the right end e: codon k occupies [e - a - 3k - 3, e - a
    # - 3k). With e = s + length_residue (mod 3) their left ends lie in the class of
    # s + (length_residue - a) (mod 3). A complete stop at q (s <= q, q + 3 <= e - a) is
    # forbidden unless, for a terminal exon, it is the last codon (q = s).
    q0 = s + (length_residue - a) % 3
    if terminal:
        q0 = q0 + 3 * (q0 == s)  # the codon at s is the (required) stop itself
    p = nxt[np.minimum(q0, T + 2)]
    return p + a + 2
