"""The annotate pipeline's encoder pass and score adjustments (``genoseg.annotate.pipeline``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genoseg.annotate.pipeline import biased_emissions, group_emissions, group_scores
from genoseg.config import load_config, override
from genoseg.inputs import InputSource
from genoseg.models import build_network

REPO = Path(__file__).resolve().parents[2]


def _model(**changes):
    cfg = override(load_config(REPO / "configs/models/tiny_phase_test.toml"), changes)
    torch.manual_seed(0)
    model = build_network(cfg).eval()
    # Random (not near-zero) output weights, so that every column carries signal.
    torch.nn.init.normal_(model.encoder.head.weight, std=0.5)
    return model


@pytest.fixture
def genome(tmp_path):
    rng = np.random.default_rng(3)
    # Contig lengths below, at and above one window's core, a 1-bp contig, and near lengths
    # that share a padded pass (within PAD_MIN_FILL["cpu"] of each other).
    lengths = {"a": 700, "b": 95, "c": 650, "d": 1, "e": 600, "f": 431, "g": 90, "h": 580}
    seqs = {n: "".join(rng.choice(list("ACGTacgtN"), size=L)) for n, L in lengths.items()}
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{n}\n{s}\n" for n, s in seqs.items()))
    source = InputSource(str(fa))
    yield source, lengths
    source.close()


@pytest.mark.parametrize("min_fill", [None, 0.0])
@pytest.mark.parametrize("window,batch_size", [(120, 2), (120, 8), (1000, 1), (1000, 4)])
def test_group_emissions_equal_each_whole_contig(genome, window, batch_size, min_fill):
    """Windows of several contigs of different widths share padded forward passes (only near
    widths by default on a CPU, any with min_fill 0, as on a GPU), and each contig's stitched
    scores equal the encoder's output on that whole contig alone (no padding): the masked
    padding is the zero padding of an unpadded pass, and stitching leaves no seam."""
    source, lengths = genome
    model = _model()
    contigs = list(lengths.items())
    ems = group_emissions(model, source, contigs, "cpu", window, batch_size, min_fill)
    assert [tuple(e.shape) for e in ems] == [(L, model.n_outputs) for _, L in contigs]
    for (seqid, L), em in zip(contigs, ems):
        with torch.no_grad():
            whole = model(torch.from_numpy(source.read(seqid, 0, L))[None])[0]
        torch.testing.assert_close(em, whole, rtol=0, atol=2e-5)


def test_group_scores_apply_the_bias_and_the_intron_penalty(genome):
    """The intergenic bias is added to the intergenic column and the intron penalty subtracted
    from both intron columns, per base; the exon and site columns are unchanged."""
    source, lengths = genome
    contigs = list(lengths.items())[:3]
    plain = group_scores(_model(), source, contigs, "cpu")
    model = _model(**{"annotate.intergenic_bias": 0.25, "annotate.intron_penalty": 0.125})
    shifted = group_scores(model, source, contigs, "cpu")
    labels = model.config.scheme.labels
    delta = torch.zeros(model.n_outputs)
    delta[labels.index("intergenic")] = 0.25
    delta[labels.index("intron+")] = delta[labels.index("intron-")] = -0.125
    for p, s in zip(plain, shifted):
        torch.testing.assert_close(s - p, delta.expand_as(p), rtol=0, atol=1e-6)
    # Neither set: the emissions come back untouched.
    em = torch.randn(5, model.n_outputs)
    assert torch.equal(biased_emissions(_model(), em.clone()), em)


def test_group_scores_add_the_orf_start_bonus_at_first_orf_starts_only(genome):
    """The ORF start bonus goes to the start+ site column at the ATGs that open their longest
    ORF and to the start- column at their reverse-strand twins; nothing else changes. Without
    the sequence there is no bonus to place: an error, not silence."""
    from genoseg.crf.phase_head import N_CLASSES
    from genoseg.labels import codons
    from genoseg.labels.phase_crf import SITES

    source, lengths = genome
    contigs = [(seqid, lengths[seqid]) for seqid in ("a", "c", "e")]  # the longest three
    plain = group_scores(_model(), source, contigs, "cpu")
    model = _model(**{"annotate.orf_start_bonus": 1.5})
    boosted = group_scores(model, source, contigs, "cpu")
    for (seqid, _), p, b in zip(contigs, plain, boosted):
        first = codons.first_orf_starts(codons.encode(source.genome.fetch(seqid)))
        assert first["plus"].any() and first["minus"].any()
        delta = torch.zeros_like(p)
        delta[torch.from_numpy(first["plus"]), N_CLASSES + SITES.index("start+")] = 1.5
        delta[torch.from_numpy(first["minus"]), N_CLASSES + SITES.index("start-")] = 1.5
        torch.testing.assert_close(b - p, delta, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sequence"):
        biased_emissions(model, torch.zeros(5, model.n_outputs))


def test_drop_low_scores_keeps_unscored_genes_and_counts_both():
    """A gene scoring at least the threshold stays, one below goes (its extent listed per
    seqid, sorted); an unscored gene (None or NaN: decoded without posteriors) stays and is
    counted as such."""
    from genoseg.annotate.pipeline import Summary, _drop_low_scores
    from genoseg.io.features import Transcript

    def gene(seqid, start, end, score):
        return Transcript(seqid=seqid, strand="+", gene_id=f"{seqid}{start}",
                          transcript_id=f"{seqid}{start}.t1", cds=((start, end),), score=score)

    genes = [gene("a", 500, 900, 0.3), gene("a", 10, 90, 0.6), gene("a", 100, 200, 0.59),
             gene("b", 5, 50, None), gene("b", 60, 99, float("nan")), gene("b", 200, 300, 0.9)]
    summary = Summary()
    kept, dropped = _drop_low_scores(genes, 0.6, summary)
    assert [(t.seqid, t.start) for t in kept] == [("a", 10), ("b", 5), ("b", 60), ("b", 200)]
    assert dropped == {"a": [(100, 200), (500, 900)]}
    assert (summary.genes_below_score, summary.genes_unscored) == (2, 2)


def test_pack_contigs_fills_batches_longest_first():
    """Every contig once; a batch's padded size (longest x count) stays within the cap unless a
    contig is alone; the longest contigs share the first batch, so the batches' longest sum to
    less than packing shortest first would (100 + 50 + 5 here, against 40 + 50 + 100)."""
    from genoseg.annotate.pipeline import pack_contigs

    lengths = {"a": 100, "b": 50, "c": 40, "d": 10, "e": 5}
    groups = pack_contigs(lengths, 150)
    assert groups == [["a"], ["b", "c", "d"], ["e"]]
    assert sorted(s for g in groups for s in g) == sorted(lengths)
    assert pack_contigs({"x": 500, "y": 1}, 150) == [["x"], ["y"]]
    for g in pack_contigs(lengths, 120):
        assert len(g) == 1 or max(lengths[s] for s in g) * len(g) <= 120
