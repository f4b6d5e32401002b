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
