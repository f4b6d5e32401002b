"""The codon-periodic coding content model (genoseg.crf.coding_content) in the phase grammar.

The bias columns must add, to every exon segment of a path, exactly the frame contrast of its
bases at their codon positions. That is checked against gene models decoded from random scores,
whose codon positions come from the transcripts' CDS (``transcript_codon_positions``: another
route, through the GFF3 phases), over many states of both strands. The fitted table is checked
against counts done by hand, and the lean host Viterbi against the reference with content on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crf.test_phase_head import SCHEME, _plant_gene
from genoseg.crf import reference
from genoseg.crf.coding_content import (CodingContent, fit, strand_indices,
                                        transcript_codon_positions)
from genoseg.crf.phase_head import PhaseGeneHead, encode_sequences
from genoseg.io.features import Transcript
from genoseg.labels import codons
from genoseg.labels.phase_crf import complete_transcripts


def _content_head(K=24, order=2, seed=0):
    torch.manual_seed(seed)
    head = PhaseGeneHead(SCHEME, K=K, min_intron=12, content_order=order).double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
        head.content.llr.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed))
        head.content.weight.fill_(1.0)
    return head


def _problem(seed, n, T, head_seed, emission_seed, favour_exons=True):
    """(head, codes, emissions): n gene-rich sequences of length T, a content head with random
    scores, and random emissions (favouring exons, so that genes are decoded)."""
    codes = encode_sequences(_gene_rich(np.random.default_rng(seed), n, T), T)
    head = _content_head(seed=head_seed)
    emissions = torch.randn(n, T, head.n_outputs, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(emission_seed))
    if favour_exons:
        emissions[..., 1] += 1.0
        emissions[..., 3] += 1.0
    return head, codes, emissions


def _gene_rich(rng, n, T):
    seqs = []
    for _ in range(n):
        parts = [_plant_gene(rng, [30, 44, 22], [25, 31], strand, flank=40)[0]
                 for strand in ("+", "-", "+", "-")]
        seqs.append("".join(parts)[:T])
    return seqs


def test_strand_indices_read_each_strand_5_to_3():
    codes = torch.from_numpy(codons.encode("ACGTNAC"))[None]
    index, valid = strand_indices(codes, 2, "+")
    # + at t = 2: context A C, base G -> ((0 * 4 + 1) * 4 + 2)
    assert int(index[0, 2]) == (0 * 4 + 1) * 4 + 2 and bool(valid[0, 2])
    assert not valid[0, :2].any() and not valid[0, 4:7].any()  # edge, N, contexts with N
    index, valid = strand_indices(codes, 2, "-")
    # - at t = 1 (C on +, G on -): the - strand reads ... T(3) G(2) | G: context comp(T)=A,
    # comp(G)=C farthest first: context = comp(x[3]), comp(x[2]) = A, C; base comp(C) = G
    assert int(index[0, 1]) == (0 * 4 + 1) * 4 + 2 and bool(valid[0, 1])
    assert not valid[0, 5:].any() and not valid[0, 2] and bool(valid[0, 0])


def test_fit_counts_coding_bases_by_codon_position():
    # One + gene ATG AAA TAA on a sequence of Cs: with order 0 the coding table is the base
    # frequencies at each codon position, the noncoding one those of the C flanks (both strands).
    seq = "CCCC" + "ATGAAATAA" + "CCCC"
    codes = codons.encode(seq)
    tx = Transcript("s", "+", "g", "g.t", ((4, 13),))
    pos, r = transcript_codon_positions(tx, len(seq))
    assert pos.tolist() == list(range(4, 13)) and r.tolist() == [0, 1, 2] * 3
    noncoding = np.array([0, 1, 2, 3, 13, 14, 15, 16])
    llr, bases = fit([(codes, [("+", pos, r)], noncoding)], order=0, pseudocount=1.0)
    assert bases == {"coding": 9, "noncoding": 16}
    # codon position 0 saw A, A, T; the noncoding chain 8 C (+) and 8 G (-)
    p_coding = np.array([2 + 1, 0 + 1, 0 + 1, 1 + 1]) / (3 + 4)
    p_noncoding = np.array([1, 9, 9, 1]) / (16 + 4)
    np.testing.assert_allclose(llr[0], np.log(p_coding / p_noncoding), rtol=1e-6)
    # - strand transcripts count their codon positions 5' -> 3', i.e. right to left
    tx = Transcript("s", "-", "g", "g.t", ((4, 13),))
    pos, r = transcript_codon_positions(tx, len(seq))
    assert pos[:3].tolist() == [12, 11, 10] and r[:3].tolist() == [0, 1, 2]


def test_content_adds_each_exons_log_likelihood_ratio_at_its_codon_positions():
    """On a decoded path, the content's bias columns add Σ of the frame contrast d(t, r(t)) and
    its exon emissions the mean m(t), together Σ c(t, r(t)) over its genes' CDS bases, with r
    from the GFF3 route (``transcript_codon_positions``), on both strands."""
    rng = np.random.default_rng(5)
    T = 1000
    seqs = _gene_rich(rng, 3, T)
    codes = encode_sequences(seqs, T)
    lengths = torch.full((3,), T)
    used, n_genes = set(), 0
    for trial in range(4):
        head = _content_head(seed=trial)
        g = head.grammar
        emissions = torch.randn(3, T, head.n_outputs, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(10 + trial))
        emissions[..., 1] += 1.0
        emissions[..., 3] += 1.0
        with torch.no_grad():
            with_content = head.constraints(emissions, codes, lengths)
            scored = head.with_content(emissions, codes)
            head.content.weight.zero_()
            without = head.constraints(emissions, codes, lengths)
            assert torch.equal(head.with_content(emissions, codes), emissions)
            head.content.weight.fill_(1.0)
            llr = {s: head.content._llr(codes, s) for s in "+-"}
            contrast = {s: head.content.frame_contrast(codes, s) for s in "+-"}
            _, paths = reference.semicrf_viterbi(
                head.expand(scored), lengths=lengths,
                **head.crf_inputs(complete_genes=True), **with_content)
            _, rows, labels = head.decode(emissions, codes=codes, with_labels=True,
                                          complete_genes=True)
        emission_gain = (scored - emissions)[..., :5].cumsum(dim=1)
        emission_gain = torch.nn.functional.pad(emission_gain, (0, 0, 1, 0))
        for b in range(3):
            bias, mean = 0.0, 0.0
            for s, e, c in paths[b].tolist():
                bias += float(with_content["start_bias"][b, s, c] - without["start_bias"][b, s, c])
                bias += float(with_content["end_bias"][b, e - 1, c]
                              - without["end_bias"][b, e - 1, c])
                k = g.states[c].cls
                mean += float(emission_gain[b, e, k] - emission_gain[b, s, k])
                if k in (1, 3):
                    used.add(c)
            direct_contrast, direct = 0.0, 0.0
            for tx in complete_transcripts(rows[b].numpy(), labels[b], "s"):
                n_genes += 1
                pos, r = transcript_codon_positions(tx, T)
                direct_contrast += float(contrast[tx.strand][b, pos, r].sum())
                direct += float(llr[tx.strand][b, pos, r].sum())
            assert bias == pytest.approx(direct_contrast, abs=1e-6)
            assert bias + mean == pytest.approx(direct, abs=1e-6)
    assert n_genes >= 10
    exon_states = [c for c, st in enumerate(head.grammar.states) if st.cls in (1, 3)]
    assert len(used) >= len(exon_states) // 2, (len(used), len(exon_states))


def test_content_weight_zero_is_the_model_without_content():
    head, codes, emissions = _problem(1, 2, 400, head_seed=0, emission_seed=0,
                                      favour_exons=False)
    plain = PhaseGeneHead(SCHEME, K=24, min_intron=12).double()
    plain.load_state_dict(head.state_dict(), strict=False)
    with torch.no_grad():
        head.content.weight.zero_()
        a = head.decode(emissions, codes=codes)
        b = plain.decode(emissions, codes=codes)
    assert torch.allclose(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


def test_lean_host_viterbi_takes_the_content_too():
    from genoseg.crf import phase_viterbi

    if not phase_viterbi.available():
        pytest.skip("numba missing")
    head, codes, emissions = _problem(2, 2, 700, head_seed=3, emission_seed=1)
    with torch.no_grad():
        scores, rows = head.decode(emissions, codes=codes, complete_genes=True)
        head.content.weight.zero_()
        plain_scores, _ = head.decode(emissions, codes=codes, complete_genes=True)
        head.content.weight.fill_(1.0)
    for b in range(2):
        score, lean_rows, _ = phase_viterbi.decode(head, emissions[b],
                                                  codes[b].numpy(), complete_genes=True)
        # (the lean Viterbi reads the content columns in float32, as the kernels do)
        assert score == pytest.approx(float(scores[b]), abs=1e-4)
        np.testing.assert_array_equal(lean_rows, rows[b].numpy())
    assert (scores - plain_scores).abs().min() > 1.0  # the content moved both scores


def test_columns_are_float32_safe_on_long_sequences():
    """Over 2 Mb of random sequence the bias columns stay small (the contrast's prefix sums are
    a random walk, not a drift), so float32 keeps them to < 1e-3 nats."""
    content = CodingContent(order=4)
    content.llr.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    codes = torch.randint(0, 4, (1, 2_000_000), generator=torch.Generator().manual_seed(1),
                          dtype=torch.uint8)
    with torch.no_grad():
        cols = content.columns(codes, dtype=torch.float64)
        single = content.columns(codes, dtype=torch.float32)
    assert float(cols.abs().max()) < 2e4
    assert float((cols - single.double()).abs().max()) < 1e-3


def test_training_learns_the_content_weight():
    """The weight is a parameter of the likelihood: nll gives it a finite, non-zero gradient,
    and the table (counted, not trained) none."""
    T = 300
    head, codes, emissions = _problem(4, 2, T, head_seed=1, emission_seed=2, favour_exons=False)
    labels = torch.zeros(2, T, dtype=torch.int64)  # all intergenic: a possible labelling
    nll, ok = head.nll(emissions, labels, codes=codes)
    assert ok.all()
    nll.sum().backward()
    grad = head.content.weight.grad
    assert grad is not None and torch.isfinite(grad) and float(grad.abs()) > 1e-6
    assert not head.content.llr.requires_grad
