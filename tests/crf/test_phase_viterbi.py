"""The memory-lean phase-grammar Viterbi (CPU, compact inputs) finds the reference's path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genoseg.crf import backend as crf
from genoseg.crf import phase_viterbi
from genoseg.crf.phase_head import PhaseGeneHead, encode_sequences
from genoseg.labels.scheme import load_scheme

pytestmark = pytest.mark.skipif(not phase_viterbi.available(), reason="needs numba")
NEG_INF = float("-inf")
SCHEME = load_scheme(Path(__file__).resolve().parents[2] / "configs/schemes/gene_basic.toml")


def random_head(seed: int) -> PhaseGeneHead:
    """A float64 phase head (K = 18, introns >= 8 bp) with N(0, 0.5^2) scores, seeded."""
    torch.manual_seed(seed)
    head = PhaseGeneHead(SCHEME, K=18, min_intron=8).double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    return head


def gene_rich_sequence(rng: np.random.Generator, pieces: int, limit: int) -> str:
    """Random bases with planted ATG / stops / splice sites: ``pieces`` draws, cut to
    ``limit`` bases."""
    return "".join(rng.choice(["A", "C", "G", "T", "ATG", "TAA", "GTAAG", "TTTAG"],
                              p=[0.2, 0.2, 0.2, 0.2, 0.05, 0.05, 0.05, 0.05],
                              size=pieces))[:limit]


@pytest.mark.parametrize("seed,complete_genes", [(0, False), (1, False), (2, False), (0, True),
                                                 (3, True)])
def test_lean_viterbi_equals_the_reference(seed, complete_genes):
    head = random_head(seed)
    seq = gene_rich_sequence(np.random.default_rng(seed), 260, 600)
    T = len(seq)
    codes = encode_sequences([seq], T)
    emissions = torch.randn(1, T, head.n_outputs, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed)) * 2.0
    emissions[..., 1] += 1.5  # exons, so that genes appear
    emissions[..., 3] += 1.5
    with crf.use("torch"):
        scores, rows, labels = head.decode(emissions, codes=codes, with_labels=True,
                                           complete_genes=complete_genes)
    score, lean_rows, lean_labels = phase_viterbi.decode(head, emissions[0], codes[0].numpy(),
                                                         complete_genes=complete_genes)
    assert score == pytest.approx(float(scores[0]), rel=1e-9, abs=1e-9)
    np.testing.assert_array_equal(lean_rows, rows[0].numpy())
    assert lean_labels == labels[0]
    assert sum(lab is not None and lab != "intergenic" for lab in labels[0]) >= 2


@pytest.mark.parametrize("strand", ["+", "-"])
def test_lean_viterbi_decodes_exons_ending_in_ta_before_the_donor(strand):
    """The lean Viterbi builds its constraints from the same compact columns: a middle exon one
    base past a full piece (19 bp at K = 20), entry phase 1, ending in TA before its GT donor
    decodes on both strands, as the reference's Viterbi decodes it."""
    from crf.test_phase_head import _ta_before_donor
    from genoseg.labels.gene import transcripts_to_labels
    from genoseg.labels.phase_crf import complete_transcripts

    torch.manual_seed(0)
    head = PhaseGeneHead(SCHEME, K=20, min_intron=12).double()
    seq, tx = _ta_before_donor(np.random.default_rng(1), 4, 19, strand)
    T = len(seq)
    gold = torch.from_numpy(transcripts_to_labels([tx], "s", T, SCHEME))
    emissions = torch.zeros(1, T, head.n_outputs, dtype=torch.float64)
    emissions[0, :, :5] = torch.nn.functional.one_hot(gold, 5).double() * 4.0
    codes = encode_sequences([seq], T)
    _, rows, labels = phase_viterbi.decode(head, emissions[0], codes[0].numpy(),
                                           complete_genes=True)
    assert [t.cds for t in complete_transcripts(rows, labels, "s")] == [tx.cds]
    with crf.use("torch"):
        _, ref_rows, ref_labels = head.decode(emissions, codes=codes, with_labels=True,
                                              complete_genes=True)
    np.testing.assert_array_equal(rows, ref_rows[0].numpy())
    assert labels == ref_labels[0]


def chunk_case(seed: int):
    """A random head on 24 kb of gene-rich sequence whose emissions favour intergenic in a 150-bp
    stretch every 700 bp (where the best paths from all states meet)."""
    head = random_head(seed)
    seq = gene_rich_sequence(np.random.default_rng(seed), 16000, 24000)
    T = len(seq)
    codes = encode_sequences([seq], T)[0].numpy()
    emissions = torch.randn(T, head.n_outputs, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed)) * 2.0
    emissions[:, 1] += 1.5
    emissions[:, 3] += 1.5
    for b in range(0, T, 700):
        emissions[b:b + 150, 0] += 8.0
    return head, emissions, codes


@pytest.mark.parametrize("seed", [0, 3])
def test_lean_viterbi_in_chunks_equals_one_scan(seed, monkeypatch):
    """Four chunks on four threads: chunks whose warm-up met their predecessor's state are kept
    (their scores shifted by a constant, taken off the total), the others scanned again from
    their predecessor's end; either way the path and score of one sequential scan."""
    head, emissions, codes = chunk_case(seed)
    score, rows, labels = phase_viterbi.decode(head, emissions, codes)
    assert sum(lab not in (None, "intergenic") for lab in labels) > 50
    monkeypatch.setattr(phase_viterbi, "MIN_CHUNK", 6000)
    for warmup in (5500, 0):
        monkeypatch.setattr(phase_viterbi, "WARMUP", warmup)
        stats = {}
        chunked = phase_viterbi.decode(head, emissions, codes, threads=4, stats=stats)
        assert stats["chunks"] == 4
        # 5.5 kb of warm-up reaches the true state for some chunks of these seeds; without it
        # every chunk after the first is scanned again at least once
        assert stats["reruns"] < 3 if warmup else stats["reruns"] >= 3
        assert chunked[0] == pytest.approx(score, rel=1e-12, abs=1e-6)
        np.testing.assert_array_equal(chunked[1], rows)
        assert chunked[2] == labels


def test_chunk_states_compare_live_starts_up_to_a_constant():
    """_same_state: equal up to one constant (returned), within tolerance; a different finite
    pattern, live start or score is a mismatch; starts no segment can use any more are not
    compared."""
    C, K, t = 3, 4, 10
    max_end = np.full(20, 20, dtype=np.int32)  # each start's, as the scan copies it to its ring
    max_end[9] = 9  # a start at 9 whose open frame ended before 10: dead

    def state(shift, ring):
        s = phase_viterbi.ScanState(C, K)
        s.alpha[:] = np.array([1.0, NEG_INF, 3.0]) + shift
        for c, starts in ring.items():
            for i, (pos, val) in enumerate(starts):
                s.ring_pos[c, i], s.ring_val[c, i] = pos, val + shift
                s.ring_me[c, i] = max_end[pos]
            s.ring_n[c] = len(starts)
        return s

    ring = {0: [(7, 0.5), (8, 0.25)], 2: [(9, 4.0)]}

    def compare(a, b):
        return phase_viterbi._same_state(t, K, *a.arrays(), *b.arrays(), 1e-6, 1e-13)

    assert compare(state(0.0, ring), state(-7.5, ring)) == (True, -7.5)
    assert compare(state(0.0, ring), state(2.0, {0: ring[0]}))[0]  # only the dead start differs
    old = {0: [(6, 9.0)] + ring[0], 2: ring[2]}  # 10 + 1 - 6 > K: too old to end anywhere
    assert compare(state(0.0, old), state(1.0, ring))[0]
    assert not compare(state(0.0, ring), state(0.0, {0: [(7, 0.5)], 2: ring[2]}))[0]
    assert not compare(state(0.0, ring), state(0.0, {0: [(7, 0.5), (8, 0.2501)]}))[0]
    b = state(0.0, ring)
    b.alpha[1] = 0.0
    assert not compare(state(0.0, ring), b)[0]
    b = state(0.0, ring)
    b.alpha[2] += 1e-3
    assert not compare(state(0.0, ring), b)[0]


def test_lean_columns_are_the_columns_with_max_end_clipped_to_int32():
    """The lean Viterbi's own columns (``sequence_columns(codes, lean=True)``) equal the dense
    paths' columns, max_end clipped at T as int32; it decodes the same either way."""
    head = random_head(1)
    seq = gene_rich_sequence(np.random.default_rng(1), 900, 2000)
    codes = encode_sequences([seq], len(seq))[0].numpy()
    dense = head.grammar.sequence_columns(codes)
    lean = head.grammar.sequence_columns(codes, lean=True)
    assert lean["max_end"].dtype == np.int32 and dense["max_end"].max() > len(seq)
    np.testing.assert_array_equal(lean["max_end"], np.minimum(dense["max_end"], len(seq)))
    for key in ("start_ok", "end_ok", "start_gc", "end_gc"):
        np.testing.assert_array_equal(lean[key], dense[key])
    emissions = torch.randn(len(seq), head.n_outputs, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(1)) * 2.0
    own = phase_viterbi.decode(head, emissions, codes)
    given = phase_viterbi.decode(head, emissions, codes, columns=dense)
    assert own[0] == given[0] and own[2] == given[2]
    np.testing.assert_array_equal(own[1], given[1])
