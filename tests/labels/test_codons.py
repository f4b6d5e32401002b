"""genoseg.labels.codons against brute-force translation of every possible exon."""

from __future__ import annotations

import numpy as np
import pytest

from genoseg.labels.codons import (
    encode,
    exon_max_end,
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
