"""The phase gene grammar in the semi-CRF: exact constraints with runs much longer than K.

Checked on the reference backend at small K, so that exons, introns and intergenic runs all
tile: planted genes have exactly one state path (logZ over the gold labelling's paths is 0 with
all scores 0), real example genes are admissible, every decoded gene model from random scores
translates (``violations`` is empty), the exon pieces' stop limits match brute force and admit
exactly the gene models that ``violations`` passes, and the boundary posterior is P(the class
changes after a base), computed independently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest
import torch

from genoseg.crf import reference
from genoseg.crf.phase_head import PhaseGeneHead, codes_from_inputs, encode_sequences
from genoseg.io.features import Transcript
from genoseg.io.gff3 import read_gene_models
from genoseg.labels import codons
from genoseg.labels.gene import transcripts_to_labels
from genoseg.labels.phase import BY_NAME, LABELS, transcript_segments, violations
from genoseg.labels.phase_crf import (PhaseGrammar, complete_transcripts, last_piece_max_end,
                                     piece_max_end)
from genoseg.labels.scheme import load_scheme

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCHEME = load_scheme(Path(__file__).resolve().parents[2] / "configs/schemes/gene_basic.toml")


def _revcomp(s: str) -> str:
    return s.translate(str.maketrans("ACGT", "TGCA"))[::-1]


def _plant_gene(rng, exon_lengths, intron_lengths, strand, flank=25, fixed=None, donor="GT"):
    """(sequence, Transcript) with one valid gene: random codons without stops, GT..AG introns
    (``donor``: GC instead), flanks of random bases; redrawn until the grammar's own check
    passes. ``fixed``: {CDS offset (5' -> 3', from 0): bases} written over the drawn CDS."""
    for _ in range(1000):
        cds_len = sum(exon_lengths)
        assert cds_len % 3 == 0
        codons_ = []
        for _ in range(cds_len // 3 - 2):
            while True:
                c = "".join(rng.choice(list("ACGT"), 3))
                if c not in codons.STOPS:
                    codons_.append(c)
                    break
        cds = "ATG" + "".join(codons_) + rng.choice(list(codons.STOPS))
        for at, bases in (fixed or {}).items():
            cds = cds[:at] + bases + cds[at + len(bases):]
        k = 0
        gene = ""
        for i, L in enumerate(exon_lengths):
            gene += cds[k:k + L]
            k += L
            if i < len(intron_lengths):
                n = intron_lengths[i]
                gene += donor + "".join(rng.choice(list("ACGT"), n - 4)) + "AG"
        left = "".join(rng.choice(list("ACGT"), flank))
        right = "".join(rng.choice(list("ACGT"), flank))
        if strand == "-":
            gene = _revcomp(gene)
        seq = left + gene + right
        # CDS parts in genome coordinates.
        pos, spans = 0, []
        for i, L in enumerate(exon_lengths):
            spans.append((pos, pos + L))
            pos += L + (intron_lengths[i] if i < len(intron_lengths) else 0)
        if strand == "-":
            total = pos
            spans = [(total - e, total - s) for s, e in spans][::-1]
        spans = tuple((s + flank, e + flank) for s, e in spans)
        tx = Transcript("s", strand, "g", "t", spans)
        codes = codons.encode(seq)
        if not violations(codes, transcript_segments(tx, codes)):
            return seq, tx
    raise AssertionError(f"no valid gene drawn with {exon_lengths}, {fixed}")


def _zero_head(K, min_intron=12):
    torch.manual_seed(0)
    return PhaseGeneHead(SCHEME, K=K, min_intron=min_intron).double()


def _assert_one_path_each(head, genes):
    """Every planted (sequence, Transcript) is admissible, has exactly one state path (with all
    scores 0, log Z over the paths of its gold classes is log 1) and is what Viterbi decodes
    when the emissions favour its classes. One padded batch."""
    from genoseg.crf.head import _gold_max_end

    T = max(len(seq) for seq, _ in genes)
    lengths = torch.tensor([len(seq) for seq, _ in genes])
    labels = torch.stack([torch.from_numpy(transcripts_to_labels([tx], "s", T, SCHEME))
                          for _, tx in genes])
    valid = torch.arange(T)[None, :] < lengths[:, None]
    labels = torch.where(valid, labels, torch.zeros_like(labels))
    emissions = torch.zeros(len(genes), T, head.n_outputs, dtype=torch.float64)
    codes = encode_sequences([seq for seq, _ in genes], T)
    _, ok = head.nll(emissions, labels, lengths, codes=codes, relax_cut_runs=False)
    assert ok.tolist() == [True] * len(genes), [tx for (_, tx), o in zip(genes, ok) if not o]
    # Gold logZ = log(number of state paths with the gold classes) = log 1.
    cons = head.constraints(emissions, codes, lengths)
    gold = torch.minimum(_gold_max_end(labels, valid, 5).index_select(-1, head.class_of),
                         cons.pop("max_end"))
    z = reference.semicrf_logz(head.expand(emissions), lengths=lengths, **head.crf_inputs(),
                               **cons, max_end=gold)
    np.testing.assert_allclose(z.detach().numpy(), 0.0, rtol=0, atol=1e-9)
    # And the decoder, steered by emissions that favour the gold classes, returns that gene.
    steer = torch.nn.functional.one_hot(labels, 5).double() * 4.0
    emissions = torch.cat([steer, torch.zeros(len(genes), T, 8, dtype=torch.float64)], dim=-1)
    _, rows, run_labels = head.decode(emissions, lengths, codes=codes, with_labels=True)
    for (_, tx), r, lab in zip(genes, rows, run_labels):
        got = complete_transcripts(r.numpy(), lab, "s")
        assert [(t.strand, t.cds) for t in got] == [(tx.strand, tx.cds)]


@pytest.mark.parametrize("strand", ["+", "-"])
@pytest.mark.parametrize("exons,introns", [
    ([90], []),  # single exon, 5 pieces at K = 20
    ([3, 44, 37, 27], [30, 13, 55]),  # a 3-bp initial/terminal exon, short and long introns
    ([40, 62, 3], [21, 20]),
])
def test_planted_gene_has_exactly_one_path(strand, exons, introns):
    rng = np.random.default_rng(len(exons) * 7 + (strand == "-"))
    _assert_one_path_each(_zero_head(K=20), [_plant_gene(rng, exons, introns, strand)])


def _ta_before_donor(rng, first, middle, strand, donor="GT", full=10):
    """A three-exon gene whose middle exon (``first`` bases of CDS before it, ``middle`` long)
    ends in TA right before the donor (read on the gene's strand). Where the exon leaves TA as
    a partial codon (exit phase 2) the next exon starts with C, so TA + C is no stop."""
    fixed = {first + middle - 2: "TA"}
    if (first + middle) % 3 == 2:
        fixed[first + middle] = "C"
    last = full + (-(first + middle + full)) % 3
    return _plant_gene(rng, [first, middle, last], [15, 16], strand, flank=12, fixed=fixed,
                       donor=donor)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_exons_ending_in_ta_before_the_donor_have_exactly_one_path(strand):
    """An exon that ends in TA before its GT/GC donor, one base past a whole number of exon
    full pieces (F = 18 at K = 20: 19 or 37 bp), with entry phase 1 (so exit phase 2: the TA is
    the partial codon the intron's tail carries): TA + the donor's G spell TAG across the
    exon's end, outside the CDS. A full piece used to forbid every stop starting inside it, so
    this gene had no path on + (its last piece is 1 bp); the - mirror decoded. Both strands,
    GT and GC donors, the neighbouring lengths (2, 4, 18, 20, 21 bp) and all three entry
    phases (a first exon of 4, 5 or 6 bp)."""
    rng = np.random.default_rng(5 + (strand == "-"))
    head = _zero_head(K=20)
    F = head.grammar.exon_piece
    genes = [_ta_before_donor(rng, first, middle, strand, donor)
             for first in (4, 5, 6) for middle in (2, 4, F, F + 1, F + 2, F + 3, 2 * F + 1)
             for donor in ("GT", "GC")]
    for seq, tx in genes:  # the exon's TA and the donor's G, read on the gene's strand
        e = tx.cds[1][1] if strand == "+" else len(seq) - tx.cds[1][0]
        assert (seq if strand == "+" else _revcomp(seq))[e - 2:e + 1] == "TAG"
    _assert_one_path_each(head, genes)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_exon_ending_in_ta_before_the_donor_at_the_shipped_k(strand):
    """The same case at the shipped models' K = 150 (exon full piece 147 bp): a 148-bp middle
    exon with entry phase 1 ending in TA before the donor."""
    head = _zero_head(K=150, min_intron=12)
    assert head.grammar.exon_piece == 147
    rng = np.random.default_rng(7)
    _assert_one_path_each(head, [_ta_before_donor(rng, 4, 148, strand)])


@pytest.mark.parametrize("K", [20, 23])
def test_pieces_admit_exactly_the_valid_exons(K):
    """Differential test of the piece constraints against the whole-exon grammar: three-exon
    genes with middle exons around one and two full pieces, on both strands and in every
    phase, each planted once ending in TA before its donor (``_ta_before_donor``) and once
    with random bases and stop codons (in any frame) written near its piece cuts and exon
    ends. The head admits the gold labelling exactly when ``violations`` (the rules on whole
    exons, no pieces) finds nothing wrong; both kinds occur, in-frame stops at the cuts among
    the rejected."""
    rng = np.random.default_rng(K)
    head = _zero_head(K=K)
    F = head.grammar.exon_piece
    genes = []
    for strand in "+-":
        for first in range(3, 9):  # every entry phase of the middle exon, twice
            for middle in (2, 4, F - 1, F, F + 1, F + 2, F + 3, 2 * F + 1, 2 * F + 2):
                genes.append(_ta_before_donor(rng, first, middle, strand))
                last = 3 + int(rng.integers(0, F))
                last += (-(first + middle + last)) % 3
                seq, tx = _plant_gene(rng, [first, middle, last], [14, 15], strand, flank=8)
                s = list(seq)
                near = [c + d for a, b in tx.cds for c in [*range(a, b, F), *range(b, a, -F)]
                        for d in range(-3, 3)]
                for p in rng.choice(near, size=int(rng.integers(0, 3))):
                    s[p] = str(rng.choice(list("ACGT")))
                for p in rng.choice(near, size=int(rng.integers(0, 3))):
                    s[p:p + 3] = str(rng.choice(codons.STOPS if strand == "+"
                                                else codons.STOPS_MINUS))
                genes.append(("".join(s)[:len(seq)], tx))
    T = max(len(seq) for seq, _ in genes)
    lengths = torch.tensor([len(seq) for seq, _ in genes])
    labels = torch.stack([torch.from_numpy(transcripts_to_labels([tx], "s", T, SCHEME))
                          for _, tx in genes])
    labels = torch.where(torch.arange(T)[None, :] < lengths[:, None], labels, 0)
    emissions = torch.zeros(len(genes), T, head.n_outputs, dtype=torch.float64)
    _, ok = head.nll(emissions, labels, lengths, relax_cut_runs=False,
                     codes=encode_sequences([seq for seq, _ in genes], T))
    problems = [violations(codons.encode(seq), transcript_segments(tx, codons.encode(seq)))
                for seq, tx in genes]
    assert ok.tolist() == [not p for p in problems], [
        (tx, p) for (_, tx), p, o in zip(genes, problems, ok.tolist()) if o != (not p)]
    assert 0.6 < float(ok.double().mean()) < 0.95
    assert sum(any("in-frame stop" in x for x in p) for p in problems) >= 10


def test_example_genes_are_admissible():
    fasta = pysam.FastaFile(str(EXAMPLES / "dmel_tiny.fa"))
    transcripts = read_gene_models(EXAMPLES / "dmel_tiny.gff3")
    head = _zero_head(K=60, min_intron=40)
    seqids = sorted({t.seqid for t in transcripts})[:6]
    for seqid in seqids:
        seq = fasta.fetch(seqid)
        T = len(seq)
        labels = torch.from_numpy(transcripts_to_labels(transcripts, seqid, T, SCHEME))[None]
        emissions = torch.zeros(1, T, head.n_outputs, dtype=torch.float64)
        _, ok = head.nll(emissions, labels, codes=encode_sequences([seq], T))
        assert bool(ok.all()), seqid


def test_random_scores_decode_to_valid_gene_models():
    rng = np.random.default_rng(3)
    head = _zero_head(K=24)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    seqs, T = [], 900
    for b in range(3):
        # Gene-rich random sequence: planted genes on both strands between random stretches.
        parts = []
        for strand in ("+", "-", "+"):
            parts.append(_plant_gene(rng, [30, 45, 21], [25, 31], strand, flank=40)[0])
        seqs.append("".join(parts)[:T])
    codes = encode_sequences(seqs, T)
    n_genes = 0
    for trial in range(4):
        emissions = torch.randn(3, T, head.n_outputs, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(trial))
        emissions[..., 1] += 1.0  # favour exons so that genes appear
        emissions[..., 3] += 1.0
        _, rows, run_labels = head.decode(emissions, codes=codes, with_labels=True)
        for b in range(3):
            c = codons.encode(seqs[b])
            for tx in complete_transcripts(rows[b].numpy(), run_labels[b], "s"):
                n_genes += 1
                assert violations(c, transcript_segments(tx, c)) == [], tx
                cds = "".join(seqs[b][s:e] for s, e in tx.cds)
                if tx.strand == "-":
                    cds = _revcomp(cds)
                assert len(cds) % 3 == 0 and cds[:3] == "ATG" and cds[-3:] in codons.STOPS
                inner = [cds[i:i + 3] for i in range(0, len(cds) - 3, 3)]
                assert not set(inner) & set(codons.STOPS), tx
    assert n_genes >= 5


@pytest.mark.parametrize("complete_genes", [False, True])
def test_decode_and_posteriors_in_one_preparation_matches_the_two_calls(complete_genes):
    """On the compiled CPU backend, decode_and_posteriors prepares the batch once; it returns
    what decode(with_labels=True) and posteriors return under the float64 reference."""
    from genoseg.crf import backend as crf
    from genoseg.crf import cpu

    if not cpu.available():
        pytest.skip("needs numba")
    rng = np.random.default_rng(4)
    head = _zero_head(K=24)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    seqs = ["".join(_plant_gene(rng, [30, 45, 21], [25, 31], st, flank=40)[0]
                    for st in ("+", "-")) for _ in range(3)]
    T = max(map(len, seqs))
    lengths = torch.tensor([len(x) for x in seqs[:2]] + [T - 37])
    codes = encode_sequences(seqs, T)
    emissions = torch.randn(3, T, head.n_outputs, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(2))
    emissions[..., 1] += 1.0
    emissions[..., 3] += 1.0
    with crf.use("torch"):
        scores, rows, labels = head.decode(emissions, lengths, codes=codes, with_labels=True,
                                           complete_genes=complete_genes)
        post = head.posteriors(emissions, lengths, codes=codes, complete_genes=complete_genes)
    with crf.use("cpu"):
        got = head.decode_and_posteriors(emissions, lengths, codes=codes,
                                         complete_genes=complete_genes)
    torch.testing.assert_close(got[0], scores, rtol=1e-10, atol=1e-10)
    for a, b in zip(got[1], rows):
        assert torch.equal(a, b)
    assert got[2] == labels
    assert sum(lab not in (None, "intergenic") for run in labels for lab in run) >= 2
    for a, b in zip(got[3:], post):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("complete_genes", [False, True])
def test_boundary_posterior_is_where_the_class_changes(complete_genes):
    """boundary_post[t] is P(a segment of the five-class labelling has its last base at t):
    consecutive runs always differ in class, so it is 1 - sum_k P(class k at t and at t + 1),
    and 1 at the last base. Computed independently here: log Z over the paths whose classes
    at t and t + 1 are k (the gold-label limits of ``nll``, other bases free), for every t
    and k. A + gene whose initial exon is its ATG alone and a - gene whose terminal exon is its
    stop alone are 3-bp exon runs made of the codon head only, whose ends a track of last
    pieces misses; the reference's posteriors and the compiled CPU backend's
    decode_and_posteriors must both count them."""
    from genoseg.crf import backend as crf
    from genoseg.crf import cpu
    from genoseg.crf.head import _gold_max_end

    rng = np.random.default_rng(8)
    head = _zero_head(K=20)
    plus, tx_plus = _plant_gene(rng, [3, 27, 21], [14, 15], "+", flank=15)
    minus, tx_minus = _plant_gene(rng, [21, 27, 3], [16, 14], "-", flank=15)
    seq, T = plus + minus, len(plus) + len(minus)
    tx_minus = Transcript("s", "-", "g2", "t2", tuple((s + len(plus), e + len(plus))
                                                       for s, e in tx_minus.cds))
    codon_ends = [tx_plus.cds[0][0] + 2, tx_minus.cds[0][0] + 2]  # ATG (+), stop (-)
    gold = torch.from_numpy(transcripts_to_labels([tx_plus, tx_minus], "s", T, SCHEME))
    em = torch.randn(1, T, head.n_outputs, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(9))
    em[0, :, :5] += torch.nn.functional.one_hot(gold, 5).double() * 2.0
    codes = encode_sequences([seq], T)
    with crf.use("torch"):
        _, bp, log_z = head.posteriors(em, codes=codes, complete_genes=complete_genes)

    # The independent computation: one row per (t, k).
    pairs = [(t, k) for t in range(T - 1) for k in range(5)]
    labels = torch.full((len(pairs), T), -1, dtype=torch.int64)
    for row, (t, k) in enumerate(pairs):
        labels[row, t:t + 2] = k
    cons = head.constraints(em, codes, torch.tensor([T]))
    max_end = torch.minimum(_gold_max_end(labels, torch.ones_like(labels, dtype=torch.bool), 5)
                            .index_select(-1, head.class_of), cons.pop("max_end"))
    n = len(pairs)
    with crf.use("cpu" if cpu.available() else "torch"):
        z = crf.semicrf_logz(head.expand(em).expand(n, -1, -1),
                             lengths=torch.full((n,), T), max_end=max_end,
                             **{k: v.expand(n, -1, -1) for k, v in cons.items()},
                             **head.crf_inputs(complete_genes))
    same = torch.exp(z.detach() - log_z).reshape(T - 1, 5).sum(dim=1)
    expect = torch.cat([1.0 - same, torch.ones(1, dtype=torch.float64)])
    torch.testing.assert_close(bp[0], expect, rtol=0, atol=1e-9)
    # The codon-only exons do end runs, with much probability, which last pieces alone miss.
    is_last = torch.from_numpy(head.grammar.is_last())
    with torch.enable_grad():
        c = head.constraints(em, codes, torch.tensor([T]))
        eb = c.pop("end_bias").clone().requires_grad_(True)
        z1 = reference.semicrf_logz(head.expand(em), lengths=torch.tensor([T]), end_bias=eb,
                                    **c, **head.crf_inputs(complete_genes))
        last_piece_ends = (torch.autograd.grad(z1.sum(), eb)[0][0] * is_last).sum(dim=-1)
    for t in codon_ends:
        assert float(bp[0, t]) > 0.5 and float(bp[0, t] - last_piece_ends[t]) > 0.5, t
    if not cpu.available():
        return
    with crf.use("cpu"):
        got = head.decode_and_posteriors(em, codes=codes, complete_genes=complete_genes)
    torch.testing.assert_close(got[4], bp, rtol=0, atol=1e-9)


def test_complete_genes_start_and_end_between_genes():
    """complete_genes=True: every path starts and ends in intergenic sequence, so a gene cut by
    a sequence end cannot be decoded; the posteriors agree (intergenic at both ends), and the
    best score is never above that of free ends. A record cut inside a planted gene's intron
    shows the difference: free ends decode the cut gene, complete ones do not."""
    rng = np.random.default_rng(11)
    seq, tx = _plant_gene(rng, [40, 62, 3], [30, 25], "+", flank=30)
    cut = tx.cds[0][1] + 10  # inside the first intron
    seq = seq[cut:]
    head = _zero_head(K=20)
    T = len(seq)
    gold = torch.from_numpy(transcripts_to_labels([tx], "s", T + cut, SCHEME))[None, cut:]
    steer = torch.nn.functional.one_hot(gold, 5).double() * 4.0
    emissions = torch.cat([steer, torch.zeros(1, T, 8, dtype=torch.float64)], dim=-1)
    codes = encode_sequences([seq], T)
    free_score, free_rows = head.decode(emissions, codes=codes)
    score, rows = head.decode(emissions, codes=codes, complete_genes=True)
    assert int(free_rows[0][0, 2]) == 2  # free ends: the record starts in the cut gene's intron
    assert int(rows[0][0, 2]) == 0 and int(rows[0][-1, 2]) == 0
    assert float(score[0]) < float(free_score[0]) - 1.0
    label_post, _, _ = head.posteriors(emissions, codes=codes, complete_genes=True)
    assert float(label_post[0, 0, 0]) == pytest.approx(1.0, abs=1e-9)
    assert float(label_post[0, -1, 0]) == pytest.approx(1.0, abs=1e-9)
    # Random scores, several sequences: both ends intergenic every time.
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.5)
    seqs = ["".join(rng.choice(list("ACGT"), 300)) for _ in range(3)]
    emissions = torch.randn(3, 300, head.n_outputs, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(5))
    emissions[..., 1:] += 1.0  # against intergenic
    codes = encode_sequences(seqs, 300)
    free_score, free_rows = head.decode(emissions, codes=codes)
    score, rows = head.decode(emissions, codes=codes, complete_genes=True)
    assert any(int(r[0, 2]) != 0 or int(r[-1, 2]) != 0 for r in free_rows)
    for r in rows:
        assert int(r[0, 2]) == 0 and int(r[-1, 2]) == 0
    assert bool((score <= free_score + 1e-9).all())


def _in_frame_stops_held(seq: str, strand: str, frame: int, s: int, e: int,
                         past_e: bool = True) -> list[int]:
    """Brute force: the left ends q of the in-frame stop codons whose 3'-most base on the
    gene's strand lies in [s, e), for an exon piece [s, e) in reading frame ``frame`` (on +
    the phase at s, codons start at s + lead(frame) (mod 3); on - the phase at e, codons end at
    e - lead(frame) (mod 3)). ``past_e`` False: only codons that end by e (a - exon's 5'-end
    piece: past e lies the intron). Codons running off the sequence are no stops."""
    a = codons.lead(frame)
    out = []
    for q in range(max(0, s - 2), min(e, len(seq) - 2)):
        if strand == "+":
            held = s <= q + 2 < e and (q - s - a) % 3 == 0 and seq[q:q + 3] in codons.STOPS
        else:
            held = (s <= q < e and (e - a - q) % 3 == 0 and (past_e or q + 3 <= e)
                    and seq[q:q + 3] in codons.STOPS_MINUS)
        if held:
            out.append(q)
    return out


@pytest.mark.parametrize("strand", ["+", "-"])
@pytest.mark.parametrize("frame", [0, 1, 2])
def test_piece_max_end_matches_brute_force(strand, frame):
    """A full piece may end at e exactly when it holds the 3'-most base of no in-frame stop:
    on + stops that began up to 2 bases before it count, stops running past its end do not
    (the next piece holds their last base); on - the mirror image."""
    rng = np.random.default_rng(frame)
    seq = "".join(rng.choice(list("ACGT"), 200))
    codes = codons.encode(seq)
    T = len(seq)
    limit = piece_max_end(codes, strand, frame)
    for s in range(T):
        for e in range(s + 3, T + 1, 3):  # full pieces have lengths divisible by 3
            bad = bool(_in_frame_stops_held(seq, strand, frame, s, e))
            assert (e <= limit[s]) == (not bad), (s, e)


@pytest.mark.parametrize("name", [lab.name for lab in LABELS if lab.is_exon])
def test_last_piece_max_end_matches_brute_force(name):
    """An exon's last piece [s, e) (length of its label's residue) may end at e exactly when
    it holds the 3'-most base of no in-frame stop but, for a + terminal or single exon, its
    last codon. Its reading frame is the label's entry phase: at s on + (after full pieces,
    or the start codon head: 0), at e on - (the exon's 5' end, so no codon runs past e)."""
    lab = BY_NAME[name]
    rng = np.random.default_rng(len(name))
    seq = "".join(rng.choice(list("ACGT"), 150))
    T = len(seq)
    limit = last_piece_max_end(codons.encode(seq), lab)
    for s in range(T):
        for e in range(s + 1, T + 1):
            if (e - s) % 3 != lab.length_residue:
                continue
            held = _in_frame_stops_held(seq, lab.strand, lab.entry, s, e, past_e=False)
            if lab.strand == "+" and lab.ends_cds:
                held = [q for q in held if q + 3 != e]  # the stop that ends it
            assert (e <= limit[s]) == (not held), (s, e)


def test_grammar_tables():
    g = PhaseGrammar(K=30, min_intron=10)
    assert g.C == 80 and g.exon_piece == 27 and g.intron_piece == 23
    allowed = g.transitions_allowed()
    # Between runs only a last piece (or a 3-bp codon-only exon) hands over; pieces continue.
    for i, s in enumerate(g.states):
        if s.role == "piece":
            assert {g.states[j].cls for j in np.flatnonzero(allowed[i])} == {s.cls}
    # The run ends the boundary posterior counts: a last piece of ``ends``, or a state right
    # before one of ``opens`` (the intron heads), which only the other last pieces (always) and
    # the two codon heads (when they are a whole 3-bp exon) come before.
    ends, opens = g.run_end_states()
    assert {g.states[j].name for j in np.flatnonzero(opens)} == {
        f"{lab.name}^splice" for lab in LABELS if lab.kind == "intron"}
    before = np.flatnonzero(allowed[:, opens].any(axis=1))
    assert {g.states[i].name for i in before if g.states[i].role != "last"} == {
        "exon+^codon", "exon-^codon"}
    for i in before:
        if g.states[i].role == "last":
            assert not ends[i] and allowed[i, ~opens].sum() == 0, g.states[i].name
    assert (ends | np.isin(np.arange(g.C), before)).sum() == g.is_last().sum() + 2


def test_codes_from_inputs():
    x = torch.zeros(1, 4, 6)
    x[0, 0, 0] = x[0, 1, 3] = x[0, 2, 4] = 1.0  # A, T, N, and nothing
    assert codes_from_inputs(x).tolist() == [[0, 3, 4, 4]]


def test_flat_long_runs_pins_long_piece_scores_to_zero():
    """flat_long_runs: intergenic and intron full pieces score exactly 0 per piece (self
    transition + duration) whatever the raw parameters, get no gradient there, and every other
    score stays learned."""
    torch.manual_seed(1)
    flat = PhaseGeneHead(SCHEME, K=30, min_intron=10, flat_long_runs=True).double()
    free = PhaseGeneHead(SCHEME, K=30, min_intron=10).double()
    with torch.no_grad():
        for head in (flat, free):
            head.transitions_raw.normal_()
            head.dur_coef.normal_()
            head.dur_residual.normal_()
        free.load_state_dict(flat.state_dict())
    g = flat.grammar
    long_pieces = [i for i, s in enumerate(g.states) if s.role == "piece"
                   and SCHEME.labels[s.cls] in ("intergenic", "intron+", "intron-")]
    assert len(long_pieces) == 1 + 12  # intergenic* and one full piece per intron label
    pinned_flat, pinned_free = flat.crf_inputs(), free.crf_inputs()
    for i in long_pieces:
        piece = int(np.flatnonzero(g.durations_allowed()[:, i])[0])
        assert pinned_flat["transitions"][i, i].item() == 0.0
        assert pinned_flat["durations"][piece, i].item() == 0.0
        assert pinned_free["transitions"][i, i].item() != 0.0
    # Everything else is the same learned score.
    other = torch.ones_like(flat.flat_trans)
    other[long_pieces, long_pieces] = False
    assert torch.equal(pinned_flat["transitions"][other], pinned_free["transitions"][other])
    assert torch.equal(pinned_flat["durations"][:, [c for c in range(g.C) if c not in long_pieces]],
                       pinned_free["durations"][:, [c for c in range(g.C) if c not in long_pieces]])
    total = sum(v[torch.isfinite(v)].sum() for v in pinned_flat.values())
    total.backward()
    assert flat.transitions_raw.grad[long_pieces, long_pieces].abs().max().item() == 0.0
    assert flat.transitions_raw.grad.abs().sum().item() > 0.0


def test_exons_whose_right_end_is_a_codon_hold_it_whole():
    """A + exon ending with its stop codon and a - exon ending (genomically) with its start
    codon have last pieces of >= 3 bp: a shorter one, alone in its run, would pass the codon
    mask with the neighbouring intron's bases. Every other exon last piece starts at 1 bp."""
    g = PhaseGrammar(K=30, min_intron=10)
    allowed = g.durations_allowed()
    for c, st in enumerate(g.states):
        if st.role != "last" or st.cls not in (1, 3):
            continue
        lab = BY_NAME[st.name]
        codon_at_right = lab.ends_cds if lab.strand == "+" else lab.starts_cds
        lo = 3 if codon_at_right else 1
        expected = next(d for d in range(lo, lo + 3) if d % 3 == lab.length_residue)
        assert int(np.flatnonzero(allowed[:, c])[0]) + 1 == expected, st.name


def test_violations_flags_a_codon_split_by_an_intron():
    """A 2-bp initial exon on - right after an intron (CT..AC): the start-codon mask sees
    C (the intron's last base) + AT = CAT, but the spliced start codon is AT + whatever the
    next exon brings. violations flags the exon as too short to hold its codon."""
    seq = "GG" + "CT" + "A" * 16 + "AC" + "AT" + "GG"
    codes = codons.encode(seq)
    e0 = 2 + 20
    problems = violations(codes, [(e0, e0 + 2, "initial-:2")])
    assert any("too short" in p for p in problems), problems
    assert codons.site_masks(codes)["start_codon_minus"][e0 + 1]  # the mask alone is fooled


@pytest.mark.parametrize("dtype,grad", [(torch.bool, False), (torch.int64, False),
                                        (torch.float64, False), (torch.float64, True)])
def test_gather_last_is_index_select(dtype, grad):
    """The CPU gather of per-state columns (numpy take, or whole rows of the transpose under
    autograd) equals index_select along the last dimension, gradients included."""
    from genoseg.crf.phase_head import _gather_last

    x = (torch.rand(3, 17, 9, dtype=torch.float64) * 5).to(dtype)
    index = torch.tensor([0, 8, 3, 3, 1, 8, 2])
    if grad:
        x.requires_grad_(True)
    got, expect = _gather_last(x, index), x.index_select(-1, index)
    assert got.shape == (3, 17, 7) and got.is_contiguous()
    assert torch.equal(got, expect)
    if grad:
        w = torch.randn(3, 17, 7, dtype=torch.float64)
        g1, = torch.autograd.grad((got * w).sum(), x)
        g2, = torch.autograd.grad((expect * w).sum(), x)
        assert torch.equal(g1, g2)
