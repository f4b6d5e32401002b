"""genoseg.io.bed: BED label reader and segment writer."""

from __future__ import annotations

import gzip
import logging

import pytest

from genoseg.errors import InputError
from genoseg.io.bed import read_bed_labels, write_bed
from genoseg.io.features import Segment


def _bed(tmp_path, text: str, name: str = "labels.bed"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_labels(tmp_path, caplog):
    text = (
        "track name=labels\n"
        "browser position chr1:1-100\n"
        "# comment\n"
        "\n"
        "chr2\t10\t20\texon\n"
        "chr1\t0\t5\tintron\t500\t-\n"
        "chr1\t5\t9\tintergenic\t.\t.\textra\tcolumns\n"
        "chr1 30 40 exon 1000 +\n"  # whitespace-separated lines are accepted
        "chr1\t50\t50\tempty\n"
    )
    with caplog.at_level(logging.WARNING, logger="genoseg.io.bed"):
        segments = read_bed_labels(_bed(tmp_path, text))
    assert segments == [
        Segment("chr2", 10, 20, "exon", ".", None),
        Segment("chr1", 0, 5, "intron", "-", 0.5),
        Segment("chr1", 5, 9, "intergenic", ".", None),
        Segment("chr1", 30, 40, "exon", "+", 1.0),
    ]
    assert "skipped 1 zero-length interval" in caplog.text


def test_read_gzip(tmp_path):
    path = tmp_path / "labels.bed.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("chr1\t0\t10\tcds\n")
    assert read_bed_labels(path) == [Segment("chr1", 0, 10, "cds")]


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t0\t10\n", r":2: expected at least 4 columns \(chrom, start, end, name\), found 3"),
        ("chr1\t0\tten\texon\n", r":2: non-integer coordinates '0', 'ten'"),
        ("chr1\t-5\t10\texon\n", r":2: negative start -5"),
        ("chr1\t20\t10\texon\n", r":2: start 20 > end 10"),
        ("chr1\t0\t10\t\n", r":2: empty name"),
        ("chr1\t0\t10\texon\thigh\n", r":2: invalid score 'high'"),
        ("chr1\t0\t10\texon\t0\tx\n", r":2: invalid strand 'x'"),
    ],
)
def test_read_malformed(tmp_path, line, message):
    path = _bed(tmp_path, "chr1\t0\t5\tok\n" + line)
    with pytest.raises(InputError, match=message) as info:
        read_bed_labels(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_read_missing_or_binary(tmp_path):
    with pytest.raises(InputError, match="BED file not found"):
        read_bed_labels(tmp_path / "nope.bed")
    path = tmp_path / "x.bed"
    path.write_bytes(b"\xff\xfe\x00" * 5)
    with pytest.raises(InputError, match="not a BED text file"):
        read_bed_labels(path)


SEGMENTS = [
    Segment("chr2", 5, 10, "exon", "+", 0.1234),
    Segment("chr1", 40, 50, "intron", "-", 1.7),
    Segment("chr1", 0, 40, "intergenic", ".", None),
    Segment("chr2", 0, 5, "intergenic", "?", -0.3),
    Segment("chr1", 0, 10, "exon", "+", 0.0016),
]


def test_write_bed6(tmp_path):
    out = tmp_path / "out.bed"
    write_bed(out, SEGMENTS)
    assert out.read_text().splitlines() == [
        "chr2\t0\t5\tintergenic\t0\t.",  # seqids in order of first appearance, then start; score clipped at 0
        "chr2\t5\t10\texon\t123\t+",
        "chr1\t0\t10\texon\t2\t+",
        "chr1\t0\t40\tintergenic\t0\t.",  # no score -> 0
        "chr1\t40\t50\tintron\t1000\t-",  # clipped to 1000
    ]
    back = read_bed_labels(out)
    assert [(s.seqid, s.start, s.end, s.label, s.strand, s.score) for s in back] == [
        ("chr2", 0, 5, "intergenic", ".", 0.0),
        ("chr2", 5, 10, "exon", "+", 0.123),
        ("chr1", 0, 10, "exon", "+", 0.002),
        ("chr1", 0, 40, "intergenic", ".", 0.0),
        ("chr1", 40, 50, "intron", "-", 1.0),
    ]


def test_write_bed9_colors_and_seqid_order(tmp_path):
    out = tmp_path / "out.bed"
    write_bed(out, SEGMENTS, colors={"exon": (255, 0, 0)}, bed9=True, seqids=["chr1", "chr2", "chr3"])
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert [r[0] for r in rows] == ["chr1"] * 3 + ["chr2"] * 2
    assert all(len(r) == 9 and r[6] == r[1] and r[7] == r[2] for r in rows)
    colors = {r[3]: r[8] for r in rows}
    assert colors["exon"] == "255,0,0"
    assert len({colors["intergenic"], colors["intron"], colors["exon"]}) == 3  # palette for the rest
    assert read_bed_labels(out)[0] == Segment("chr1", 0, 10, "exon", "+", 0.002)


def test_write_errors_and_empty(tmp_path):
    out = tmp_path / "out.bed"
    write_bed(out, [])
    assert out.read_text() == ""
    with pytest.raises(ValueError, match="not in seqids"):
        write_bed(out, SEGMENTS, seqids=["chr1"])
    with pytest.raises(ValueError, match="tabs"):
        write_bed(out, [Segment("c", 0, 1, "a\tb")])
    assert out.read_text() == "" and [p.name for p in tmp_path.iterdir()] == ["out.bed"]
