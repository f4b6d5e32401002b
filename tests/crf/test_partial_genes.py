"""Partial gene models: genes cut by a sequence end, decoded with free ends (``--gene-model
partial``), written to the GFF3 with NCBI's partial markers and the right CDS phases.

Planted genes (``test_phase_head._plant_gene``) are cut by either end of the sequence on both
strands, inside an intron, inside an inner or an outer exon at each of the three reading
frames, and exactly at the start or stop codon; strong emissions steer the decoder to the gold
classes. The expected partial gene is computed from the planted gene and the window alone (its
clipped CDS, its span to the cut end, which of its ends is missing, the phase of every CDS
part) and checked by translation: the spliced CDS read from its 5' phase translates to the
planted ORF's peptide there, with no stop inside. The lean Viterbi gives the same genes, and
random scores show what the states of a cut run tell (``phase_crf.CutRun``).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from crf.test_phase_head import SCHEME, _plant_gene, _revcomp, _zero_head
from crf.test_phase_viterbi import gene_rich_sequence, random_head
from genoseg.crf import backend as crf
from genoseg.crf import phase_viterbi
from genoseg.crf.phase_head import PhaseGeneHead, encode_sequences
from genoseg.io.features import Transcript
from genoseg.io.gff3 import cds_phases, read_gene_models, write_gff3
from genoseg.labels import codons
from genoseg.labels.gene import transcripts_to_labels
from genoseg.labels.phase import BY_NAME
from genoseg.labels.phase_crf import CutRun, PhaseGrammar, gene_transcripts

_AMINO = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"  # TCAG order


def _translate(cds: str) -> str:
    """The standard genetic code over the complete codons of ``cds``."""
    index = {"T": 0, "C": 1, "A": 2, "G": 3}
    return "".join(_AMINO[16 * index[cds[i]] + 4 * index[cds[i + 1]] + index[cds[i + 2]]]
                   for i in range(0, len(cds) - 2, 3))


def _spliced(seq: str, tx: Transcript) -> str:
    """The transcript's CDS bases, 5' -> 3' on its strand."""
    cds = "".join(seq[s:e] for s, e in tx.cds)
    return cds if tx.strand == "+" else _revcomp(cds)


def _bases_5prime_of(tx: Transcript, lo: int, hi: int) -> int:
    """CDS bases of ``tx`` 5' of the window [lo, hi) on its strand (left of lo on +, right of
    hi on -)."""
    if tx.strand == "+":
        return sum(max(0, min(e, lo) - s) for s, e in tx.cds)
    return sum(max(0, e - max(s, hi)) for s, e in tx.cds)


def _expected(tx: Transcript, seq_len: int, lo: int, hi: int) -> tuple[Transcript, int]:
    """(the partial gene that the window [lo, hi) of a sequence with planted gene ``tx``
    holds, CDS bases of ``tx`` 5' of it). Genome-left / -right ends are missing where the gene
    reaches the window's edge, except a 3' end whose stop codon ends there (it is in the
    window); a 5' end at the edge is missing even when its start codon is at the edge."""
    g0, g1 = tx.cds[0][0], tx.cds[-1][1]
    cds = tuple((max(s, lo) - lo, min(e, hi) - lo) for s, e in tx.cds if e > lo and s < hi)
    if tx.strand == "+":
        partial5, partial3 = g0 <= lo, g1 > hi
    else:
        partial5, partial3 = g1 >= hi, g0 < lo
    done = _bases_5prime_of(tx, lo, hi)
    span = (max(g0, lo) - lo, min(g1, hi) - lo)
    want = Transcript("s", tx.strand, "g", "t", cds, phase5=(-done) % 3, partial5=partial5,
                      partial3=partial3, span=None if span == (cds[0][0], cds[-1][1]) else span)
    return want, done


def _phase_at(tx: Transcript, point: int) -> int:
    """Phase at a genome point inside the CDS: its CDS bases 5' of the point, mod 3."""
    return _bases_5prime_of(tx, point, point) % 3


def _cut_cases(rng, strand: str) -> list[tuple[str, str, Transcript, int, int]]:
    """(name, uncut sequence, planted gene, window lo, hi) for every cut of one strand: each
    sequence end cuts an intron, the middle exon at each frame, the outer exon at each frame,
    and the gene exactly at its first / last base."""
    cases = []
    for side in ("left", "right"):
        seq, tx = _plant_gene(rng, [40, 62, 33], [25, 30], strand, flank=20)
        parts = tx.cds
        outer = parts[0] if side == "left" else parts[-1]
        gap = (parts[0][1], parts[1][0]) if side == "left" else (parts[1][1], parts[2][0])
        cuts = {"intron": (gap[0] + gap[1]) // 2,
                "edge": parts[0][0] if side == "left" else parts[-1][1]}
        for name, (s, _) in (("middle", parts[1]), ("outer", outer)):
            for frame in range(3):
                cuts[f"{name}{frame}"] = next(c for c in range(s + 8, s + 11)
                                              if _phase_at(tx, c) == frame)
        for name, c in cuts.items():
            lo, hi = (c, len(seq)) if side == "left" else (0, c)
            cases.append((f"{strand}{side}-{name}", seq, tx, lo, hi))
    return cases


def _steered(seqs_txs_windows, head):
    """Emissions steering the decoder to each window's gold classes (one padded batch), codes
    and lengths."""
    T = max(hi - lo for _, _, _, lo, hi in seqs_txs_windows)
    em = torch.zeros(len(seqs_txs_windows), T, head.n_outputs, dtype=torch.float64)
    for b, (_, seq, tx, lo, hi) in enumerate(seqs_txs_windows):
        gold = torch.from_numpy(transcripts_to_labels([tx], "s", len(seq), SCHEME))[lo:hi]
        em[b, :hi - lo, :5] = torch.nn.functional.one_hot(gold, 5).double() * 4.0
    lengths = torch.tensor([hi - lo for *_, lo, hi in seqs_txs_windows])
    codes = encode_sequences([seq[lo:hi] for _, seq, _, lo, hi in seqs_txs_windows], T)
    return em, codes, lengths


def _key(t: Transcript):
    return (t.strand, t.cds, t.phase5, t.partial5, t.partial3, t.span)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_cut_genes_are_partial_genes_with_their_phases(strand, tmp_path):
    rng = np.random.default_rng(21 + (strand == "-"))
    head = _zero_head(K=20)
    cases = _cut_cases(rng, strand)
    em, codes, lengths = _steered(cases, head)
    _, rows, labels = head.decode(em, lengths, codes=codes, with_labels=True)
    written, lengths_by_seqid = [], {}
    n_partial = {"5": 0, "3": 0}
    for b, (name, seq, tx, lo, hi) in enumerate(cases):
        got = gene_transcripts(rows[b].numpy(), labels[b], f"c{b}", partial=True)
        want, done = _expected(tx, len(seq), lo, hi)
        assert [_key(t) for t in got] == [_key(want)], name
        t = got[0]
        n_partial["5"] += t.partial5
        n_partial["3"] += t.partial3
        # Without partial genes every gene touching a sequence end is left out (as before).
        assert gene_transcripts(rows[b].numpy(), labels[b], "s", partial=False) == [], name
        # Translation from the 5' phase: the planted ORF's peptide there, no stop inside.
        window = seq[lo:hi]
        cds = _spliced(window, t)
        peptide = _translate(cds[t.phase5:])
        protein = _translate(_spliced(seq, tx))
        first = (done + t.phase5) // 3
        assert (done + t.phase5) % 3 == 0
        assert peptide == protein[first:first + len(peptide)], name
        assert "*" not in peptide[:-1], name
        assert peptide.endswith("*") == (not t.partial3), name
        assert cds.startswith("ATG") or t.partial5, name
        # Every CDS part's GFF3 phase: bases to its first whole codon of the planted ORF.
        for (s, e), phase in zip(t.cds, cds_phases(t)):
            five = (s + lo, s + lo) if strand == "+" else (e + lo, e + lo)
            assert phase == (-_bases_5prime_of(tx, *five)) % 3, name
        written.append(t)
        lengths_by_seqid[f"c{b}"] = hi - lo
        # The lean Viterbi decodes the same genes.
        _, lean_rows, lean_labels = phase_viterbi.decode(head, em[b, :hi - lo],
                                                         codes[b, :hi - lo].numpy())
        lean = gene_transcripts(lean_rows, lean_labels, f"c{b}", partial=True)
        assert [_key(x) for x in lean] == [_key(t)], name
    assert n_partial["5"] >= 8 and n_partial["3"] >= 7, n_partial

    # The GFF3: NCBI's markers where an end is missing, valid for gt, read back the same.
    out = tmp_path / "partial.gff3"
    write_gff3(out, written, lengths_by_seqid)
    gt = shutil.which("gt")
    if gt is not None:
        proc = subprocess.run([gt, "gff3validator", str(out)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
    genes = {}
    for line in out.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) == 9 and cols[2] == "gene":
            genes[cols[0]] = (int(cols[3]), int(cols[4]), dict(
                kv.split("=", 1) for kv in cols[8].split(";")))
    for t in written:
        start, end, attrs = genes[t.seqid]
        left = t.partial5 if strand == "+" else t.partial3
        right = t.partial3 if strand == "+" else t.partial5
        assert (start, end) == (t.start + 1, t.end)
        assert attrs.get("partial") == ("true" if t.partial else None)
        assert attrs.get("start_range") == (f".,{start}" if left else None)
        assert attrs.get("end_range") == (f"{end},." if right else None)
    back = {t.seqid: t for t in read_gene_models(out)}
    for t in written:
        r = back[t.seqid]
        assert (r.cds, r.phase5, r.partial5, r.partial3) == (t.cds, t.phase5, t.partial5,
                                                             t.partial3)


def test_piece_families_fix_the_frame_of_their_labels():
    """Why a run cut by the right end keeps its frame: the path must end in a last piece
    (``final`` is -inf elsewhere), and a family's full pieces, like its codon head, lead only
    to last pieces of its target labels, whose phase at the run's left end (entry on +, exit
    on -) is the family's frame."""
    g = PhaseGrammar(K=30, min_intron=10)
    allowed = g.transitions_allowed()
    for i, st in enumerate(g.states):
        if st.cls not in (1, 3) or st.role == "last":
            continue
        ends = {g.states[j].name for j in np.flatnonzero(allowed[i])
                if g.states[j].role == "last" and g.states[j].cls == st.cls}
        assert ends <= set(st.targets), st.name
        for name in st.targets:
            lab = BY_NAME[name]
            assert (lab.entry if lab.strand == "+" else lab.exit) == st.frame, (st.name, name)
    head = PhaseGeneHead(SCHEME, K=30, min_intron=10)
    final = head.crf_inputs(complete_genes=False)["final"]
    assert torch.isfinite(final).numpy().tolist() == g.is_last().tolist()


def _stop_codons_inside(seq: str, s: int, e: int, lab) -> list[int]:
    """Left ends of the in-frame stop codons wholly inside an exon run [s, e) read in the
    label's frame (entry phase at its 5' end), but the stop that a terminal/single label ends
    with."""
    a = codons.lead(lab.entry)
    out = []
    if lab.strand == "+":
        for q in range(s + a, e - 2, 3):
            if seq[q:q + 3] in codons.STOPS and not (lab.ends_cds and q + 3 == e):
                out.append(q)
    else:
        for q in range(e - a - 3, s - 1, -3):
            if seq[q:q + 3] in codons.STOPS_MINUS and not (lab.ends_cds and q == s):
                out.append(q)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cut_runs_tell_their_frame_in_both_decoders(seed):
    """Random scores with free ends: every run touching a sequence end is a ``CutRun`` whose
    label's phases are the run's frame (its length has the label's residue, its exon pieces
    and codon head are of the frame the label has at the run's left end, and reading codons in
    that frame finds no stop inside); ``stop_at_cut`` is whether the stop codon is really at
    the cut. The lean Viterbi gives the same runs and labels, and the partial genes translate
    from their 5' phase without a stop inside."""
    head = random_head(seed)
    rng = np.random.default_rng(seed)
    seqs = [gene_rich_sequence(rng, 200, 400) for _ in range(6)]
    T = max(map(len, seqs))
    lengths = torch.tensor([len(x) for x in seqs])
    codes = encode_sequences(seqs, T)
    em = torch.randn(len(seqs), T, head.n_outputs, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(seed)) * 2.0
    em[..., 1] += 1.5
    em[..., 3] += 1.5
    g = head.grammar
    with crf.use("torch"):
        cons = head.constraints(em, codes, lengths)
        _, paths = crf.semicrf_viterbi(head.expand(em), lengths=lengths,
                                       **head.crf_inputs(False), **cons)
    seen = {"left": 0, "right": 0, "stop": 0, "partial": 0}
    for b, seq in enumerate(seqs):
        L = len(seq)
        path = paths[b].numpy()
        assert g.states[int(path[-1, 2])].role == "last"
        rows, labels = head._runs(paths[b], L, codes[b, :L].numpy())
        for (s, e, c), label in zip(rows.tolist(), labels):
            assert isinstance(label, CutRun) == (s == 0 or e == L)
            name = label.label if isinstance(label, CutRun) else label
            lab = BY_NAME[name]
            if c not in (1, 3):
                continue
            assert (e - s) % 3 == lab.length_residue and lab.strand == "+-"[c == 3]
            left_phase = lab.entry if lab.strand == "+" else lab.exit
            for _, _, state in (r for r in path.tolist() if s <= r[0] and r[1] <= e):
                st = g.states[state]
                if st.role != "last":
                    assert st.frame == left_phase, (st.name, name)
            assert _stop_codons_inside(seq, s, e, lab) == [], (s, e, name)
            if isinstance(label, CutRun):
                seen["left"] += label.left
                seen["right"] += label.right
                stop = lab.ends_cds and e - s >= 3 and (
                    (lab.strand == "+" and e == L and seq[e - 3:e] in codons.STOPS)
                    or (lab.strand == "-" and s == 0 and seq[:3] in codons.STOPS_MINUS))
                assert label.stop_at_cut == stop
                seen["stop"] += stop
        # The lean decoder: the same runs, labels and genes.
        _, lean_rows, lean_labels = phase_viterbi.decode(head, em[b, :L], codes[b, :L].numpy())
        np.testing.assert_array_equal(lean_rows, rows.numpy())
        assert lean_labels == labels
        for t in gene_transcripts(rows.numpy(), labels, "s", partial=True):
            seen["partial"] += t.partial
            peptide = _translate(_spliced(seq, t)[t.phase5:])
            assert "*" not in peptide[:-1], t
            assert peptide.endswith("*") == (not t.partial3), t
    assert seen["left"] >= 3 and seen["right"] >= 3 and seen["partial"] >= 3, seen
