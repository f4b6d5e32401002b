"""Reverse-complement averaging (``genoseg.annotate.rc``): the column map mirrors the CRF.

The proof that ``rc_column_map`` is the right map, with t <-> L - 1 - t and no other shift: on
random sequences with planted genes on both strands, a strand-neutral phase head (zero
transitions, durations, init/final; a nonzero GC-donor offset) gives the reverse-complemented
sequence with mapped scores (``from_reverse_complement``)
  - the same sequence constraints: where a run of each of the 45 gene labels may start, with
    which site offset, is where a run of its mirrored label may end, and the other way round;
  - the same log Z for random scores in every column (a site column mapped to the wrong
    strand or shifted by one base changes it), mirrored label posteriors, and mirrored
    boundary posteriors (also at the end of a 3-bp exon that is only its codon: a codon head
    on one strand, a last piece on the other);
  - the mirrored gene models from Viterbi.
The grammar once broke the symmetry (``test_ta_before_a_donor_decodes_on_both_strands``).
Then the pipeline: the reverse-complement reader, and the averaged scores of a contig and of
its reverse complement mirror each other exactly (the estimator is strand-symmetric).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from crf.test_phase_head import _plant_gene, _revcomp, _zero_head
from genoseg.annotate.rc import (ReverseComplementSource, from_reverse_complement, mirror_names,
                                 rc_column_map)
from genoseg.config import config_from_dict, load_config, override
from genoseg.crf import reference
from genoseg.crf.phase_head import encode_sequences
from genoseg.errors import InputError
from genoseg.io.features import Transcript
from genoseg.labels.gene import transcripts_to_labels
from genoseg.labels.phase import BY_NAME, LABELS
from genoseg.labels.phase_crf import SITES, PhaseGrammar, complete_transcripts
from genoseg.labels.scheme import load_scheme
from genoseg.models import build_network

REPO = Path(__file__).resolve().parents[2]
SCHEME = load_scheme(REPO / "configs/schemes/gene_basic.toml")
# The phase model's 13 columns: intergenic, exon+, intron+, exon-, intron-, then SITES.
PHASE_MAP = [0, 3, 4, 1, 2, 9, 10, 11, 12, 5, 6, 7, 8]


def _genome(seed: int, genes) -> tuple[str, list[Transcript]]:
    """Planted genes (strand, exon lengths, intron lengths) one after another."""
    rng = np.random.default_rng(seed)
    seq, txs = "", []
    for strand, exons, introns in genes:
        part, tx = _plant_gene(rng, exons, introns, strand, flank=30)
        txs.append(Transcript("s", strand, "g", "t", tuple((s + len(seq), e + len(seq))
                                                           for s, e in tx.cds)))
        seq += part
    return seq, txs


def _mirror(tx: Transcript, L: int) -> Transcript:
    return Transcript(tx.seqid, "-" if tx.strand == "+" else "+", tx.gene_id, tx.transcript_id,
                      tuple(sorted((L - e, L - s) for s, e in tx.cds)))


GENES = [("+", [40, 62, 3], [21, 20]), ("-", [3, 44, 37, 27], [30, 13, 55]),
         ("+", [90], []), ("-", [31, 29], [44])]


def _head():
    head = _zero_head(K=20)
    with torch.no_grad():
        head.gc_donor.fill_(0.7)  # the GC offset sits at the start of + introns, the end of -
    return head


def _model(config: str, **changes):
    cfg = load_config(REPO / "configs/models" / config)
    if changes:
        cfg = override(cfg, changes)
    torch.manual_seed(0)
    return build_network(cfg).eval()


def test_column_map():
    phase = _model("tiny_phase_test.toml")
    assert rc_column_map(phase).tolist() == PHASE_MAP
    assert [SITES[i] for i in mirror_names(SITES, "site")] == [
        "start-", "stop-", "donor-", "acceptor-", "start+", "stop+", "donor+", "acceptor+"]
    assert rc_column_map(_model("tiny_test.toml")).tolist() == PHASE_MAP[:5]  # tiled: classes
    generic = _model("generic_small.toml")
    assert rc_column_map(generic).tolist() == list(range(generic.n_outputs))  # no strands
    table = {"scheme": {"name": "tss", "kind": "generic", "background": "bg", "max_duration": 8,
                        "init": "all", "final": "all", "transitions": "all",
                        "labels": [{"name": "bg", "tile": True}, {"name": "tss+"}]}}
    with pytest.raises(InputError, match="'tss\\+' has no 'tss-'"):
        rc_column_map(build_network(config_from_dict(table)))


def test_site_channels_swap_start_and_end_with_the_strand():
    """Every site scored on a run's first base on one strand is scored on a run's last base on
    the other: the reason the site columns swap like the labels, without a shift."""
    start, end = PhaseGrammar(K=150).site_channels()  # the shipped models' K
    at_start = {SITES[i] for i in start if i >= 0}
    at_end = {SITES[i] for i in end if i >= 0}
    assert at_start == {"start+", "donor+", "stop-", "acceptor-"}
    assert {SITES[i] for i in mirror_names(SITES, "site")[sorted(SITES.index(s)
                                                                 for s in at_start)]} == at_end


def _run_masks(head, seq: str) -> tuple[dict, dict]:
    """label -> (T,) start_bias / end_bias of a run of that label with zero site scores: -inf
    where the sequence forbids a run to start (end) there, else 0 or the GC offset."""
    T = len(seq)
    em = torch.zeros(1, T, head.n_outputs, dtype=torch.float64)
    cons = head.constraints(em, encode_sequences([seq], T), torch.tensor([T]))
    sb, eb = (cons[key][0].detach().numpy() for key in ("start_bias", "end_bias"))
    g = head.grammar
    starts = {lab.name: sb[:, g._entry_states(lab.name)].max(axis=1) for lab in LABELS}
    ends = {lab.name: eb[:, g.index[lab.name]] for lab in LABELS}
    return starts, ends


def test_constraint_masks_mirror():
    head = _head()
    seq, _ = _genome(1, GENES)
    starts, ends = _run_masks(head, seq)
    rc_starts, rc_ends = _run_masks(head, _revcomp(seq))
    # A phase label's twin: the same kind and phases (read 5' -> 3' on the gene's strand).
    twin = [lab.name.translate(str.maketrans("+-", "-+")) for lab in LABELS]
    assert all(BY_NAME[t].kind == lab.kind for lab, t in zip(LABELS, twin))
    for lab, other in zip(LABELS, twin):
        np.testing.assert_array_equal(starts[lab.name], rc_ends[other][::-1], err_msg=lab.name)
        np.testing.assert_array_equal(ends[lab.name], rc_starts[other][::-1], err_msg=lab.name)
    assert np.isinf(starts["single+"]).mean() > 0.9  # the masks do forbid (ATG only)
    assert (starts["intron+:0"] == 0.7).any()  # and GC donors are among them


def _logz(head, em: torch.Tensor, seq: str) -> float:
    T = len(seq)
    cons = head.constraints(em[None], encode_sequences([seq], T), torch.tensor([T]))
    z = reference.semicrf_logz(head.expand(em[None]), lengths=torch.tensor([T]),
                               **head.crf_inputs(complete_genes=True), **cons)
    return float(z.detach())


def test_reverse_complement_with_mapped_scores_is_the_same_crf():
    head = _head()
    seq, _ = _genome(2, GENES)
    rc_seq, T = _revcomp(seq), len(seq)
    em = torch.randn(T, head.n_outputs, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(3))
    cmap = np.array(PHASE_MAP)
    em_rc = from_reverse_complement(em, cmap)  # an involution: forward -> rc works the same
    torch.testing.assert_close(from_reverse_complement(em_rc, cmap), em, rtol=0, atol=0)
    z = _logz(head, em, seq)
    assert _logz(head, em_rc, rc_seq) == pytest.approx(z, rel=1e-12, abs=1e-9)
    # Sensitivity: sites left on their strand, or shifted by one base, give another CRF.
    unswapped = from_reverse_complement(em, np.array(PHASE_MAP[:5] + list(range(5, 13))))
    shifted = em_rc.clone()
    shifted[:, 5:] = torch.roll(em_rc[:, 5:], 1, dims=0)
    for other in (unswapped, shifted):
        assert abs(_logz(head, other, rc_seq) - z) > 0.1
    # Posteriors mirror: label posteriors per base, and "a run ends at t" forward is "a run
    # starts at L - 1 - t" (the previous one ends at L - 2 - t) on the reverse complement.
    lp, bp, _ = head.posteriors(em[None], codes=encode_sequences([seq], T), complete_genes=True)
    lp_rc, bp_rc, _ = head.posteriors(em_rc[None], codes=encode_sequences([rc_seq], T),
                                      complete_genes=True)
    torch.testing.assert_close(from_reverse_complement(lp_rc[0], cmap[:5]), lp[0],
                               rtol=0, atol=1e-9)
    assert float(lp[0, :, 1:].max()) > 0.5  # genes do get probability
    np.testing.assert_allclose(bp_rc[0, :-1].flip(0).numpy(), bp[0, :-1].numpy(),
                               rtol=0, atol=1e-9)
    assert float(bp[0, :-1].max()) > 0.5


def test_viterbi_on_the_reverse_complement_gives_the_mirrored_genes():
    head = _head()
    seq, txs = _genome(4, GENES)
    T = len(seq)
    gold = torch.from_numpy(transcripts_to_labels(txs, "s", T, SCHEME))
    em = torch.cat([torch.nn.functional.one_hot(gold, 5).double() * 4.0,
                    torch.zeros(T, 8, dtype=torch.float64)], dim=-1)

    def genes(scores, sequence):
        _, rows, labels = head.decode(scores[None], codes=encode_sequences([sequence], T),
                                      with_labels=True, complete_genes=True)
        return {(t.strand, t.cds) for t in complete_transcripts(rows[0].numpy(), labels[0], "s")}

    assert genes(em, seq) == {(t.strand, t.cds) for t in txs}
    mirrored = {(m.strand, m.cds) for m in (_mirror(t, T) for t in txs)}
    assert genes(from_reverse_complement(em, np.array(PHASE_MAP)), _revcomp(seq)) == mirrored


def test_ta_before_a_donor_decodes_on_both_strands():
    """A + exon with entry phase 1 and exit phase 2 (internal+:12) one base longer than a
    multiple of the full exon piece (K = 20: 19 bp; the shipped K = 150: 148, 295, ... bp)
    whose last two bases are TA before the GT donor, and its mirror on -. Found by the symmetry
    tests: the + gene had no path, because a full piece forbade every stop starting inside it,
    and with a 1-bp last piece the partial codon TA starts in the full piece, so the piece read
    TA + the donor's G as a stop (``phase_crf.piece_max_end`` now leaves a stop to the piece
    holding its last base). On - the pieces are cut from the other end, and the mirrored gene
    decoded all along."""
    head = _head()
    s = ("AGTGCCATCTCAGACGCGCGGGCTCTGGGGTAACTACTGCTGATTTGAAAGCCCTAATTCGGTAAATACCTCTTACGAGCCCT"
         "TCTCATTCTAATCGT")
    minus = Transcript("s", "-", "g", "t", ((9, 22), (34, 53), (76, 89)))
    plus = _mirror(minus, len(s))
    assert (45, 64) in plus.cds and _revcomp(s)[62:66] == "TAGT"

    def decoded(tx, seq):
        """Whether the gene is possible, and what Viterbi finds steered towards its classes."""
        T = len(seq)
        gold = torch.from_numpy(transcripts_to_labels([tx], "s", T, SCHEME))
        codes = encode_sequences([seq], T)
        em = torch.zeros(1, T, head.n_outputs, dtype=torch.float64)
        _, ok = head.nll(em, gold[None], codes=codes, relax_cut_runs=False)
        em[0, :, :5] = torch.nn.functional.one_hot(gold, 5).double() * 4.0
        _, rows, labels = head.decode(em, codes=codes, with_labels=True, complete_genes=True)
        return bool(ok.all()), [t.cds for t in complete_transcripts(rows[0].numpy(), labels[0],
                                                                    "s")]

    assert decoded(minus, s) == (True, [minus.cds])
    assert decoded(plus, _revcomp(s)) == (True, [plus.cds])


# ------------------------------------------------------------------------------------------------
# The pipeline


def _write_genome(tmp_path, records: dict[str, str], tracks: bool = False):
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    h5 = None
    if tracks:
        import h5py

        h5 = tmp_path / "t.h5"
        with h5py.File(h5, "w") as f:
            for name, seq in records.items():
                f[f"{name}/cov"] = np.arange(len(seq), dtype=np.float32)
    return fa, h5


def test_reverse_complement_source(tmp_path):
    from genoseg.inputs import InputSource

    seq = "acgTTNaGGCrATGCCCgt"
    fa, h5 = _write_genome(tmp_path, {"a": seq, "b": _revcomp(seq.upper())}, tracks=True)
    source = InputSource(fa, tracks=h5)
    rc = ReverseComplementSource(source)
    L = len(seq)
    comp = str.maketrans("ACGTacgtRr", "TGCAtgcaNn")
    whole = InputSource(_write_genome(tmp_path, {"a": seq[::-1].translate(comp)})[0]).read("a")
    for s, e in ((0, L), (3, 11), (L - 1, L), (0, 1)):
        got = rc.read("a", s, e)
        np.testing.assert_array_equal(got[:, :6], whole[s:e])  # soft-mask and N kept
        np.testing.assert_array_equal(got[:, 6], np.arange(L)[::-1][s:e])  # tracks reversed
    np.testing.assert_array_equal(rc.read("b", 2, 9)[:, :5], source.read("a", 2, 9)[:, :5])
    stranded = SimpleNamespace(spec=SimpleNamespace(bam_stranded=True), lengths={})
    with pytest.raises(InputError, match="stranded BAM"):
        ReverseComplementSource(stranded)


def test_averaged_scores_are_strand_symmetric(tmp_path):
    """contig_scores with rc_average on a contig and on its reverse complement mirror each
    other (windows smaller than the contig: stitching on both passes), and are the mean of the
    forward and the mapped reverse-complement pass."""
    from genoseg.annotate.pipeline import contig_emissions, contig_scores
    from genoseg.inputs import InputSource

    seq, _ = _genome(5, GENES[:2])
    fa, _ = _write_genome(tmp_path, {"f": seq, "r": _revcomp(seq)})
    source = InputSource(fa)
    model = _model("tiny_phase_test.toml", **{"annotate.window": 120,
                                              "annotate.intergenic_bias": 0.01})
    rc = ReverseComplementSource(source)
    L = len(seq)
    fwd = contig_scores(model, source, "f", L, "cpu", rc)
    rev = contig_scores(model, source, "r", L, "cpu", rc)
    cmap = rc_column_map(model)
    torch.testing.assert_close(from_reverse_complement(rev, cmap), fwd, rtol=0, atol=1e-5)
    plain = contig_scores(model, source, "f", L, "cpu")
    other = contig_emissions(model, source, "r", L, "cpu", 120, 2)
    mean = (plain + from_reverse_complement(other, cmap) + torch.tensor(
        [0.01] + [0.0] * 12)) / 2
    torch.testing.assert_close(fwd, mean, rtol=0, atol=1e-5)
    assert float((fwd - plain).abs().max()) > 1e-3  # the reverse pass does change the scores
