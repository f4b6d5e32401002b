"""genoseg.labels.phase: the codon-phase state set admits real genes and reproduces their phases."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pysam
import pytest

from genoseg.io.features import Transcript
from genoseg.io.gff3 import read_gene_models
from genoseg.labels import codons
from genoseg.labels.phase import BY_NAME, LABELS, transcript_segments, violations

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_state_set():
    assert len(LABELS) == 45 and len(BY_NAME) == 45
    assert sum(lab.is_exon for lab in LABELS) == 2 * 16
    assert sum(lab.kind == "intron" for lab in LABELS) == 2 * 6
    assert BY_NAME["internal+:12"].length_residue == 1
    assert BY_NAME["terminal-:2"].length_residue == 1  # 2 + L = 0 (mod 3)
    assert BY_NAME["single+"].length_residue == 0


def _raw_cds_phases(path: Path) -> dict[str, dict[int, int]]:
    """transcript id -> {0-based CDS start: GFF3 phase column}."""
    out = defaultdict(dict)
    for line in path.read_text().splitlines():
        f = line.split("\t")
        if len(f) == 9 and f[2] == "CDS":
            parent = dict(kv.split("=", 1) for kv in f[8].split(";") if "=" in kv)["Parent"]
            out[parent][int(f[3]) - 1] = int(f[7])
    return out


def test_example_genes_are_valid_and_phases_match_the_annotation():
    fasta = pysam.FastaFile(str(EXAMPLES / "dmel_tiny.fa"))
    transcripts = read_gene_models(EXAMPLES / "dmel_tiny.gff3")
    phases = _raw_cds_phases(EXAMPLES / "dmel_tiny.gff3")
    assert len(transcripts) >= 15
    strands = set()
    for tx in transcripts:
        codes = codons.encode(fasta.fetch(tx.seqid))
        segs = transcript_segments(tx, codes)
        assert violations(codes, segs) == [], tx.transcript_id
        strands.add(tx.strand)
        for s, e, name in segs:
            lab = BY_NAME[name]
            if lab.is_exon:
                assert codons.lead(lab.entry) == phases[tx.transcript_id][s], (tx.transcript_id, s)
    assert strands == {"+", "-"}


@pytest.mark.parametrize("strand", ["+", "-"])
def test_violations_name_each_broken_rule(strand):
    # ATG AAA G | GT..AG intron | CT TAA on the + strand (CDS ATG AAA GCT TAA); its reverse
    # complement on the - strand.
    plus = "ATGAAAG" + "GTAAGTTTTTTTTTTTTAG" + "CTTAA"
    bad = "ATGTAAG" + "GAAAGTTTTTTTTTTTTAG" + "CTTGG"  # in-frame TAA, no donor, no stop
    flip = str.maketrans("ACGT", "TGCA")
    if strand == "-":
        plus, bad = plus.translate(flip)[::-1], bad.translate(flip)[::-1]
    cds = ((0, 7), (26, 31)) if strand == "+" else ((0, 5), (24, 31))
    tx = Transcript(seqid="x", strand=strand, gene_id="g", transcript_id="t", cds=cds)
    segs = transcript_segments(tx, codons.encode(plus))
    assert [BY_NAME[n].kind for _, _, n in segs] == (
        ["initial", "intron", "terminal"] if strand == "+" else ["terminal", "intron", "initial"])
    assert violations(codons.encode(plus), segs) == []
    problems = violations(codons.encode(bad), segs)
    text = " ".join(problems)
    assert "in-frame stop" in text and "donor" in text and "no stop codon" in text, problems
    assert "acceptor" not in text and "start codon" not in text, problems


STOP_CODONS = {"TAA", "TAG", "TGA"}


def _cds_sequence(seq: str, tx) -> str:
    x = "".join(seq[s:e] for s, e in tx.cds)
    return x if tx.strand == "+" else x.translate(str.maketrans("ACGT", "TGCA"))[::-1]


def test_decoding_random_emissions_gives_only_valid_gene_models():
    """Viterbi under the grammar's constraints, with random emissions on random DNA: every gene
    it predicts translates (ATG .. stop, no internal stop), splices at GT/GC..AG, and gets the
    right GFF3 phases from the writer."""
    import numpy as np
    import torch

    from genoseg.crf.reference import semicrf_viterbi
    from genoseg.io.gff3 import cds_phases
    from genoseg.labels.phase import crf_constraints, segments_to_transcripts

    genes = spliced = 0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        seq = "".join(rng.choice(list("ACGT"), size=600))
        codes = codons.encode(seq)
        cons = crf_constraints(codes, max_duration=90, min_intron=20)
        C = len(LABELS)
        em = rng.normal(size=(1, len(seq), C)) * 2.0
        em[..., [lab.kind != "intergenic" for lab in LABELS]] += 1.5  # make genes worth calling
        t = {k: torch.as_tensor(v) for k, v in cons.items()}
        ends = torch.full((C,), float("-inf"), dtype=torch.float64)
        ends[0] = 0.0  # start and end in intergenic sequence: every gene is complete
        _, segs = semicrf_viterbi(torch.as_tensor(em), t["transitions"], t["durations"],
                                  init=ends, final=ends, start_bias=t["start_bias"][None],
                                  end_bias=t["end_bias"][None], max_end=t["max_end"][None])
        for tx in segments_to_transcripts(segs[0], "chr"):
            genes += 1
            spliced += len(tx.cds) > 1
            cds = _cds_sequence(seq, tx)
            codons_ = [cds[i:i + 3] for i in range(0, len(cds), 3)]
            assert len(cds) % 3 == 0 and cds.startswith("ATG"), (seed, tx)
            assert codons_[-1] in STOP_CODONS and not STOP_CODONS & set(codons_[:-1]), (seed, tx)
            for (s1, e1), (s2, e2) in zip(tx.cds, tx.cds[1:]):
                intron = seq[e1:s2]
                if tx.strand == "-":
                    intron = intron.translate(str.maketrans("ACGT", "TGCA"))[::-1]
                assert intron[:2] in ("GT", "GC") and intron[-2:] == "AG", (seed, tx, intron)
            segs_tx = transcript_segments(tx, codes)
            assert violations(codes, segs_tx) == []
            want = {s: codons.lead(BY_NAME[n].entry) for s, e, n in segs_tx if BY_NAME[n].is_exon}
            assert dict(zip([s for s, _ in tx.cds], cds_phases(tx))) == want
    assert genes >= 3 and spliced >= 3, (genes, spliced)  # it must see spliced gene models
