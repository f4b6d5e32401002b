"""Gene labels: transcripts -> per-position labels -> (Viterbi-like) segments -> transcripts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from genoseg.errors import InputError
from genoseg.io.features import Transcript
from genoseg.labels import load_scheme
from genoseg.labels.gene import segments_to_transcripts, transcripts_to_labels
from genoseg.labels.runs import label_runs

SCHEMES = Path(__file__).resolve().parents[2] / "configs" / "schemes"


@pytest.fixture(scope="module")
def gene():
    return load_scheme(SCHEMES / "gene_basic.toml")


def tx(strand, cds, name="t", seqid="chr1"):
    return Transcript(seqid=seqid, strand=strand, gene_id=f"g{name}", transcript_id=name,
                      cds=tuple(cds))


LENGTH = 400
TRANSCRIPTS = [
    tx("+", [(0, 30), (60, 90), (120, 131)], "a"),  # starts at the sequence start
    tx("-", [(150, 170)], "b"),  # single exon
    tx("-", [(200, 210), (240, 250), (280, 300)], "c"),
    tx("+", [(320, 330)], "d"),  # single exon
    tx("+", [(350, 370), (390, 400)], "e"),  # ends at the sequence end
]


def tile(runs: np.ndarray, piece: int) -> np.ndarray:
    """Split every run into segments of at most ``piece`` bp, as Viterbi does for runs > K."""
    rows = []
    for s, e, c in runs.tolist():
        for a in range(s, e, piece):
            rows.append([a, min(a + piece, e), c])
    return np.asarray(rows, dtype=np.int64)


def test_labels_of_each_kind(gene):
    labels = transcripts_to_labels(TRANSCRIPTS, "chr1", LENGTH, gene)
    assert labels.dtype == np.int64 and labels.shape == (LENGTH,)
    at = lambda i: gene.labels[labels[i]]  # noqa: E731
    assert at(0) == "exon+" and at(29) == "exon+" and at(30) == "intron+" and at(59) == "intron+"
    assert at(131) == "intergenic" and at(150) == "exon-" and at(169) == "exon-"
    assert at(215) == "intron-" and at(399) == "exon+" and at(375) == "intron+"


@pytest.mark.parametrize("piece", [1000, 7])
def test_round_trip(gene, piece):
    labels = transcripts_to_labels(TRANSCRIPTS, "chr1", LENGTH, gene)
    segments = tile(label_runs(labels), piece)
    out = segments_to_transcripts(segments, "chr1", gene)
    assert [(t.strand, t.cds) for t in out] == [(t.strand, t.cds) for t in TRANSCRIPTS]
    assert [t.gene_id for t in out] == [f"chr1.{i}" for i in range(1, 6)]
    assert out[0].transcript_id == "chr1.1.t1"
    assert all(t.score is None for t in out)


def test_round_trip_through_torch_segments(gene):
    torch = pytest.importorskip("torch")
    labels = transcripts_to_labels(TRANSCRIPTS[:2], "chr1", 200, gene)
    segments = torch.from_numpy(label_runs(labels))
    out = segments_to_transcripts(segments, "chr1", gene)
    assert [t.cds for t in out] == [t.cds for t in TRANSCRIPTS[:2]]


def test_dangling_introns_are_dropped(gene):
    idx = gene.index
    runs = np.array([
        [0, 30, idx("intron+")],  # gene cut by the sequence start: no exon before
        [30, 50, idx("exon+")],
        [50, 80, idx("intergenic")],
        [80, 90, idx("exon-")],
        [90, 120, idx("intron-")],
        [120, 130, idx("exon-")],
        [130, 160, idx("intron-")],  # cut by the sequence end
    ])
    out = segments_to_transcripts(runs, "s", gene)
    assert [(t.strand, t.cds) for t in out] == [("+", ((30, 50),)),
                                               ("-", ((80, 90), (120, 130)))]
    only_intron = np.array([[0, 50, idx("intron-")]])
    assert segments_to_transcripts(only_intron, "s", gene) == []
    assert segments_to_transcripts(np.zeros((0, 3), dtype=np.int64), "s", gene) == []


def test_scores_are_means_over_exon_segments(gene):
    idx = gene.index
    segments = np.array([
        [0, 10, idx("intergenic")],
        [10, 20, idx("exon+")],
        [20, 25, idx("exon+")],  # same run, second segment
        [25, 60, idx("intron+")],
        [60, 70, idx("exon+")],
        [70, 80, idx("intergenic")],
    ])
    scores = np.array([0.0, 0.9, 0.6, 0.1, 0.3, 0.0])
    (t,) = segments_to_transcripts(segments, "s", gene, segment_scores=scores)
    assert t.cds == ((10, 25), (60, 70))
    assert t.score == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    with pytest.raises(ValueError, match="segment_scores"):
        segments_to_transcripts(segments, "s", gene, segment_scores=scores[:3])


def test_overlapping_transcripts_first_claim_wins(gene, caplog):
    first = tx("+", [(10, 40), (80, 100)], "first")
    isoform = tx("+", [(10, 40), (80, 120)], "isoform")  # agrees on the overlap: extends it
    clash = tx("-", [(90, 130)], "clash")  # other strand over first's exon: skipped whole
    with caplog.at_level(logging.WARNING, logger="genoseg.labels.gene"):
        labels = transcripts_to_labels([first, isoform, clash], "chr1", 200, gene)
    assert "1 transcript(s)" in caplog.text
    out = segments_to_transcripts(label_runs(labels), "chr1", gene)
    assert [(t.strand, t.cds) for t in out] == [("+", ((10, 40), (80, 120)))]
    assert gene.labels[labels[125]] == "intergenic"  # nothing of the skipped transcript leaks


def test_other_seqids_ignored_and_bad_input(gene):
    labels = transcripts_to_labels([tx("+", [(5, 10)], seqid="chr2")], "chr1", 20, gene)
    assert (labels == gene.index("intergenic")).all()
    with pytest.raises(InputError, match="past the sequence length"):
        transcripts_to_labels([tx("+", [(5, 30)])], "chr1", 20, gene)
    with pytest.raises(InputError, match="strand"):
        transcripts_to_labels([tx(".", [(5, 10)])], "chr1", 20, gene)
    with pytest.raises(InputError, match="overlap"):
        transcripts_to_labels([tx("+", [(5, 10), (8, 12)])], "chr1", 20, gene)


def test_needs_a_gene_scheme():
    from genoseg.errors import ConfigError
    from genoseg.labels import scheme_from_bed_labels

    with pytest.raises(ConfigError, match="not a gene scheme"):
        transcripts_to_labels([], "chr1", 10, scheme_from_bed_labels(["x"]))
