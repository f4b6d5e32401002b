"""genoseg.labels.codons against brute-force translation of every possible exon."""

from __future__ import annotations

import numpy as np
import pytest

from genoseg.labels.codons import (
    encode,
    exon_max_end,
    first_orf_starts,
    lead,
    next_in_class,
    site_masks,
)

STOPS = {"TAA", "TAG", "TGA"}
COMP = str.maketrans("ACGTN", "TGCAN")


def revcomp(s: str) -> str:
    return s.translate(COMP)[::-1]


def random_seq(seed: int, T: int) -> str:
    rng = np.random.default_rng(seed)
    # T- and A-rich so that stop codons are frequent and every branch is exercised.
    return "".join(rng.choice(list("ACGTN"), size=T, p=[0.3, 0.15, 0.15, 0.38, 0.02]))


def exon_ok(seq: str, s: int, e: int, strand: str, phase: int, terminal: bool) -> bool:
    """Translate exon [s, e) in its frame: no complete in-frame stop, except a terminal exon's
    last codon."""
    x = seq[s:e] if strand == "+" else revcomp(seq[s:e])
    codons = [(o, x[o:o + 3]) for o in range(lead(phase), len(x) - 2, 3)]
    for o, codon in codons:
        if codon in STOPS and not (terminal and o + 3 == len(x)):
            return False
    return True


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("strand", ["+", "-"])
def test_exon_max_end_is_exactly_the_translation_limit(seed, strand):
    T = 90
    seq = random_seq(seed, T)
    codes = encode(seq)
    for phase in range(3):
        labels = [(r, False) for r in range(3)] + [(lead(phase) % 3, True)]
        for residue, terminal in labels:
            me = exon_max_end(codes, strand, phase, residue, terminal)
            for s in range(T):
                for e in range(s + 1, T + 1):
                    if (e - s) % 3 != residue:
                        continue
                    want = exon_ok(seq, s, e, strand, phase, terminal)
                    assert (e <= me[s]) == want, (strand, phase, residue, terminal, s, e, me[s],
                                                  seq[s:e])


def test_site_masks_against_string_search():
    seq = random_seq(7, 200)
    codes = encode(seq)
    m = site_masks(codes)
    T = len(seq)

    def starts(words):
        return np.array([any(seq.startswith(w, i) for w in words) for i in range(T)])

    def lasts(words, k):
        return np.array([i >= k - 1 and seq[i - k + 1:i + 1] in words for i in range(T)])

    np.testing.assert_array_equal(m["start_codon_plus"], starts({"ATG"}))
    np.testing.assert_array_equal(m["stop_codon_plus"], lasts(STOPS, 3))
    np.testing.assert_array_equal(m["donor_gt_plus"], starts({"GT"}))
    np.testing.assert_array_equal(m["donor_gc_plus"], starts({"GC"}))
    np.testing.assert_array_equal(m["acceptor_plus"], lasts({"AG"}, 2))
    np.testing.assert_array_equal(m["start_codon_minus"], lasts({"CAT"}, 3))
    np.testing.assert_array_equal(m["stop_codon_minus"], starts({"TTA", "CTA", "TCA"}))
    np.testing.assert_array_equal(m["donor_gt_minus"], lasts({"AC"}, 2))
    np.testing.assert_array_equal(m["donor_gc_minus"], lasts({"GC"}, 2))
    np.testing.assert_array_equal(m["acceptor_minus"], starts({"CT"}))


def test_lowercase_and_ambiguity_codes():
    assert encode("acgtNRy").tolist() == [0, 1, 2, 3, 4, 4, 4]
    m = site_masks(encode("aTgNNtag"))
    assert m["start_codon_plus"][0] and m["stop_codon_plus"][7]
    assert not m["start_codon_plus"][1:].any()


def test_next_in_class():
    hits = np.array([0, 0, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    nxt = next_in_class(hits)
    assert nxt[2] == 2 and nxt[7] == 7 and nxt[4] == 7 and nxt[1] == 7
    assert nxt[0] > 11 and nxt[3] > 11 and nxt[5] > 11 and nxt[8] > 11  # no hit in that class
    assert len(nxt) == len(hits) + 3


def test_bad_strand():
    with pytest.raises(ValueError, match="strand"):
        exon_max_end(encode("ACGT"), "x", 0, 0, False)


def first_orf_starts_brute(seq: str) -> tuple[np.ndarray, np.ndarray]:
    """Walk upstream from every start codon, codon by codon, on its own strand."""
    T = len(seq)
    plus, minus = np.zeros(T, dtype=bool), np.zeros(T, dtype=bool)
    for s in range(T - 2):
        if seq[s:s + 3] == "ATG":  # + strand: upstream is to the left
            i = s - 3
            while i >= 0 and seq[i:i + 3] not in STOPS and seq[i:i + 3] != "ATG":
                i -= 3
            plus[s] = i < 0 or seq[i:i + 3] in STOPS
        if seq[s:s + 3] == "CAT":  # - strand ATG, indexed by its last base on +
            i = s + 3
            while i + 3 <= T and revcomp(seq[i:i + 3]) not in STOPS | {"ATG"}:
                i += 3
            minus[s + 2] = i + 3 > T or revcomp(seq[i:i + 3]) in STOPS
    return plus, minus


@pytest.mark.parametrize("seed", range(6))
def test_first_orf_starts_against_walking_upstream(seed):
    """The ATGs that open their reading frame's longest ORF, on both strands, equal a codon by
    codon walk upstream to the previous in-frame stop; each mask is a subset of the start-codon
    site mask it refines."""
    rng = np.random.default_rng(seed)
    for T in (0, 1, 2, 3, 5, 40, 301):
        seq = "".join(rng.choice(list("ACGTN"), size=T, p=[0.3, 0.2, 0.2, 0.28, 0.02]))
        got = first_orf_starts(encode(seq))
        plus, minus = first_orf_starts_brute(seq)
        np.testing.assert_array_equal(got["plus"], plus)
        np.testing.assert_array_equal(got["minus"], minus)
        sites = site_masks(encode(seq))
        assert not (got["plus"] & ~sites["start_codon_plus"]).any()
        assert not (got["minus"] & ~sites["start_codon_minus"]).any()


def test_first_orf_starts_example():
    """ATG ... ATG in one frame: only the first opens the ORF; after an in-frame stop the next
    ATG opens a new one; an ATG in another frame has its own. The CAT at 15-17 (an ATG on -)
    has nothing upstream (to its right) but a partial codon."""
    seq = "ATGAAAATGTAAATGCATGC"
    #      0  3  6  9  12 15
    got = first_orf_starts(encode(seq))
    assert np.flatnonzero(got["plus"]).tolist() == [0, 12, 16]
    assert np.flatnonzero(got["minus"]).tolist() == [17]
