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
    assert len(LABELS) == 39 and len(BY_NAME) == 39
    assert sum(lab.is_exon for lab in LABELS) == 2 * 16
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
        segs = transcript_segments(tx)
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
    segs = transcript_segments(tx)
    assert [BY_NAME[n].kind for _, _, n in segs] == (
        ["initial", "intron", "terminal"] if strand == "+" else ["terminal", "intron", "initial"])
    assert violations(codons.encode(plus), segs) == []
    problems = violations(codons.encode(bad), segs)
    text = " ".join(problems)
    assert "in-frame stop" in text and "donor" in text and "no stop codon" in text, problems
    assert "acceptor" not in text and "start codon" not in text, problems
