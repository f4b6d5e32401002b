"""genoseg.io.gff3: reading GFF3/GTF gene models, writing valid GFF3."""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genoseg.errors import InputError
from genoseg.io.features import Segment, Transcript
from genoseg.io.gff3 import cds_phases, read_gene_models, write_gff3

HEADER = "##gff-version 3\n"


def _gff(tmp_path, body: str, name: str = "in.gff3"):
    path = tmp_path / name
    path.write_text(body)
    return path


def _features(path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in open(path) if line.strip() and not line.startswith("#")]


def _attrs(column: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in column.split(";"))


def _codon_walk_phases(parts_1based: list[tuple[int, int]], strand: str) -> dict[tuple[int, int], int]:
    """Independent phases: enumerate CDS bases 5'->3' and find, for each part, how many of its
    leading bases complete the previous codon."""
    return _walk_phases_from(parts_1based, strand, 0)


def _gt_validate(gt: str, path) -> None:
    result = subprocess.run([gt, "gff3validator", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + open(path).read()


def _assert_sorted(path, lengths: dict) -> None:
    """Top-level features (genes, segments) by seqid in ``lengths`` order, then start; within a
    gene (up to ``###``) lines ascend by start (mRNA before its parts)."""
    rank = {s: i for i, s in enumerate(lengths)}
    tops, block = [], []
    for line in open(path):
        if line.startswith("###"):
            assert [int(f[3]) for f in block] == sorted(int(f[3]) for f in block)
            block = []
        elif not line.startswith("#"):
            f = line.rstrip("\n").split("\t")
            block.append(f)
            if "Parent=" not in f[8]:
                tops.append((rank[f[0]], int(f[3])))
    assert tops == sorted(tops)


def _t(seqid, strand, cds, tid="t", gid="g", score=None, attributes=None):
    return Transcript(seqid, strand, gid, tid, tuple(cds), score, attributes or {})


# --------------------------------------------------------------------------------- reading


def test_read_fixture(data_dir):
    transcripts = read_gene_models(data_dir / "mini.gff3")
    assert [t.gene_id for t in transcripts] == ["g4741", "g175", "g3896"]
    first, second, third = transcripts
    assert (first.seqid, first.strand, first.transcript_id, first.cds) == (
        "chr2R_1562770-1564620", "-", "g4741.t1", ((173, 971),)
    )
    assert second.strand == "+" and second.cds == ((335, 342), (393, 1081), (1137, 1530), (1584, 2131), (2192, 2246))
    assert third.cds == ((120, 260), (327, 415), (473, 602))
    assert all(t.cds_length % 3 == 0 for t in transcripts)  # the stop codon is included


def test_read_gzip_and_seqid_filter(tmp_path, data_dir):
    gz = tmp_path / "mini.gff3.gz"
    with open(data_dir / "mini.gff3", "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    assert read_gene_models(gz) == read_gene_models(data_dir / "mini.gff3")
    kept = read_gene_models(gz, seqids=["chr2R_696602-697401", "nope"])
    assert [t.gene_id for t in kept] == ["g3896"]


def test_longest_cds_wins_ties_first_in_file(tmp_path):
    body = HEADER + "".join(
        [
            "s\t.\tgene\t1\t300\t.\t+\t.\tID=g1\n",
            "s\t.\tmRNA\t1\t300\t0.5\t+\t.\tID=a;Parent=g1;Name=short\n",
            "s\t.\tCDS\t1\t30\t.\t+\t0\tParent=a\n",
            "s\t.\tmRNA\t1\t300\t.\t+\t.\tID=b;Parent=g1\n",
            "s\t.\tCDS\t1\t30\t.\t+\t0\tParent=b\n",
            "s\t.\tCDS\t101\t130\t.\t+\t0\tParent=b\n",
            "s\t.\tmRNA\t1\t300\t.\t+\t.\tID=c;Parent=g1\n",
            "s\t.\tCDS\t201\t260\t.\t+\t0\tParent=c\n",
            # d has the same CDS length as b and c but comes later; shares a CDS line with a
            "s\t.\tmRNA\t1\t300\t.\t+\t.\tID=d;Parent=g1\n",
            "s\t.\tCDS\t241\t300\t.\t+\t0\tParent=d\n",
        ]
    )
    (t,) = read_gene_models(_gff(tmp_path, body))
    assert (t.gene_id, t.transcript_id, t.cds) == ("g1", "b", ((0, 30), (100, 130)))


def test_hierarchy_variants(tmp_path, caplog):
    body = HEADER + "".join(
        [
            # children before parents (forward references are legal), CDS with two parents
            "s\t.\tCDS\t11\t40\t.\t-\t0\tID=cds1;Parent=m1,m2\n",
            "s\t.\tCDS\t61\t90\t.\t-\t0\tID=cds1;Parent=m1\n",
            "s\t.\tmRNA\t11\t90\t7\t-\t.\tID=m1;Parent=g1;Note=a%3Bb,c\n",
            "s\t.\tmRNA\t11\t40\t.\t-\t.\tID=m2;Parent=g1\n",
            "s\t.\tgene\t11\t90\t.\t-\t.\tID=g1\n",
            # gene -> CDS without an mRNA
            "s\t.\tgene\t101\t130\t.\t+\t.\tID=g2\n",
            "s\t.\tCDS\t101\t130\t.\t+\t0\tParent=g2\n",
            # abutting parts are merged
            "s\t.\tgene\t201\t260\t.\t+\t.\tID=g3\n",
            "s\t.\tmRNA\t201\t260\t.\t+\t.\tID=m3;Parent=g3\n",
            "s\t.\tCDS\t231\t260\t.\t+\t0\tParent=m3\n",
            "s\t.\tCDS\t201\t230\t.\t+\t0\tParent=m3\n",
            # genes without CDS are skipped and counted
            "s\t.\tgene\t301\t400\t.\t+\t.\tID=nc1\n",
            "s\t.\tncRNA\t301\t400\t.\t+\t.\tID=r1;Parent=nc1\n",
            "s\t.\texon\t301\t400\t.\t+\t.\tParent=r1\n",
            "s\t.\tgene\t501\t600\t.\t+\t.\tID=nc2\n",
            "##FASTA\n>s\nACGT\n",
        ]
    )
    with caplog.at_level(logging.WARNING, logger="genoseg.io.gff3"):
        transcripts = read_gene_models(_gff(tmp_path, body))
    assert "skipped 2 gene(s) without CDS" in caplog.text
    assert [(t.gene_id, t.transcript_id, t.cds) for t in transcripts] == [
        ("g1", "m1", ((10, 40), (60, 90))),
        ("g2", "g2", ((100, 130),)),
        ("g3", "m3", ((200, 260),)),
    ]
    assert transcripts[0].score == 7.0
    assert transcripts[0].attributes == {"Note": ["a;b", "c"]}


def test_read_sorts_by_seqid_appearance_then_start(tmp_path):
    body = HEADER + "".join(
        [
            "b\t.\tCDS\t50\t61\t.\t+\t0\tParent=x\n",
            "b\t.\tmRNA\t50\t61\t.\t+\t.\tID=x\n",
            "a\t.\tmRNA\t1\t12\t.\t-\t.\tID=y\n",
            "a\t.\tCDS\t1\t12\t.\t-\t0\tParent=y\n",
            "b\t.\tmRNA\t5\t16\t.\t-\t.\tID=z\n",
            "b\t.\tCDS\t5\t16\t.\t-\t0\tParent=z\n",
        ]
    )
    assert [t.transcript_id for t in read_gene_models(_gff(tmp_path, body))] == ["z", "x", "y"]


GTF = "".join(
    [
        '#!genome-build test\n',
        'chr1\tsrc\tgene\t1\t500\t.\t+\t.\tgene_id "G1"; gene_name "one";\n',
        'chr1\tsrc\ttranscript\t1\t500\t0.9\t+\t.\tgene_id "G1"; transcript_id "T1"; tag "basic";\n',
        'chr1\tsrc\texon\t1\t100\t.\t+\t.\tgene_id "G1"; transcript_id "T1"; exon_number 1;\n',
        'chr1\tsrc\tCDS\t51\t100\t.\t+\t0\tgene_id "G1"; transcript_id "T1"; exon_number 1;\n',
        'chr1\tsrc\tCDS\t201\t240\t.\t+\t1\tgene_id "G1"; transcript_id "T1";\n',
        'chr1\tsrc\tstop_codon\t241\t243\t.\t+\t0\tgene_id "G1"; transcript_id "T1";\n',
        'chr1\tsrc\tCDS\t51\t100\t.\t+\t0\tgene_id "G1"; transcript_id "T2";\n',
        'chr1\tsrc\tCDS\t301\t330\t.\t-\t0\tgene_id "G2"; transcript_id "T3";\n',
        'chr1\tsrc\texon\t401\t450\t.\t-\t.\tgene_id "G3"; transcript_id "T4";\n',
    ]
)


@pytest.mark.parametrize("name", ["genes.gtf", "genes.gff", "genes.gtf.gz"])
def test_read_gtf(tmp_path, name, caplog):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(GTF)
    else:
        path.write_text(GTF)  # .gff: detected from the attribute syntax
    with caplog.at_level(logging.WARNING, logger="genoseg.io.gff3"):
        transcripts = read_gene_models(path)
    assert "skipped 1 gene(s) without CDS" in caplog.text
    assert [(t.gene_id, t.transcript_id, t.strand, t.cds) for t in transcripts] == [
        ("G1", "T1", "+", ((50, 100), (200, 240))),  # as the file has it: no stop codon added
        ("G2", "T3", "-", ((300, 330),)),
    ]
    assert transcripts[0].score == 0.9 and transcripts[0].attributes == {"tag": "basic"}


def test_empty_annotation_is_empty_list(tmp_path):
    assert read_gene_models(_gff(tmp_path, HEADER + "# nothing\n\n")) == []


MALFORMED = [
    ("s\t.\tgene\t1\t10\t.\t+\t.\n", r":2: expected 9 tab-separated columns, found 8"),
    ("s\t.\tgene\tone\t10\t.\t+\t.\tID=g\n", r":2: non-integer coordinates 'one', '10'"),
    ("s\t.\tgene\t20\t10\t.\t+\t.\tID=g\n", r":2: start 20 > end 10"),
    ("s\t.\tgene\t0\t10\t.\t+\t.\tID=g\n", r":2: start 0 < 1"),
    ("s\t.\tgene\t1\t10\t.\tx\t.\tID=g\n", r":2: invalid strand 'x'"),
    ("s\t.\tmRNA\t1\t10\t.\t+\t.\tID=m\ns\t.\tCDS\t1\t10\t.\t.\t0\tParent=m\n", r":3: CDS with strand '.'"),
    ("s\t.\tCDS\t1\t10\t.\t+\t0\tParent=ghost\n", r":2: Parent 'ghost' refers to no feature"),
    ("s\t.\tmRNA\t1\t10\t.\t+\t.\tID=m;Parent=nogene\n", r":2: Parent 'nogene' refers to no feature"),
    ("s\t.\tCDS\t1\t10\t.\t+\t0\tID=c\n", r":2: CDS without a Parent"),
    ("s\t.\tgene\t1\t10\t.\t+\t.\tID=g;broken\n", r":2: malformed attribute 'broken'"),
    ("s\t.\tgene\t1\t10\thigh\t+\t.\tID=g\n", r":2: invalid score 'high'"),
    ("s\t.\tCDS\t1\t10\t.\t+\t5\tParent=g\ns\t.\tgene\t1\t10\t.\t+\t.\tID=g\n", r":2: invalid phase '5'"),
    (
        "s\t.\tmRNA\t1\t90\t.\t+\t.\tID=m\ns\t.\tCDS\t1\t30\t.\t+\t0\tParent=m\ns\t.\tCDS\t21\t50\t.\t+\t0\tParent=m\n",
        r":4: CDS part overlaps another CDS part of transcript 'm' \(line 3\)",
    ),
    (
        "s\t.\tmRNA\t1\t90\t.\t+\t.\tID=m\ns\t.\tCDS\t1\t30\t.\t+\t0\tParent=m\ns\t.\tCDS\t61\t90\t.\t-\t0\tParent=m\n",
        r":4: CDS of transcript 'm' on s -, but line 3 puts it on s \+",
    ),
]


@pytest.mark.parametrize("body, message", MALFORMED)
def test_malformed_gff3(tmp_path, body, message):
    path = _gff(tmp_path, HEADER + body)
    with pytest.raises(InputError, match=message) as info:
        read_gene_models(path)
    assert str(info.value).startswith(f"{path}:") and "\n" not in str(info.value)


def test_malformed_gtf(tmp_path):
    path = _gff(tmp_path, 'c\ts\tCDS\t1\t9\t.\t+\t0\tgene_id "G";\n', "x.gtf")
    with pytest.raises(InputError, match=r"x.gtf:1: GTF CDS line without gene_id and transcript_id"):
        read_gene_models(path)
    path = _gff(tmp_path, 'c\ts\tCDS\t1\t9\t.\t+\t0\tgene_id "G; transcript_id\n', "y.gtf")
    with pytest.raises(InputError, match=r"y.gtf:1: malformed GTF attributes"):
        read_gene_models(path)


def test_not_an_annotation(tmp_path, data_dir):
    with pytest.raises(InputError, match="annotation file not found"):
        read_gene_models(tmp_path / "missing.gff3")
    with pytest.raises(InputError, match=r"mini.fa:1: expected 9 tab-separated columns, found 1 \(is this a GFF3/GTF file\?\)"):
        read_gene_models(data_dir / "mini.fa")
    binary = tmp_path / "b.gff3"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(InputError, match="not a GFF3/GTF text file"):
        read_gene_models(binary)


# --------------------------------------------------------------------------------- writing


def test_round_trip_fixture_matches_source_phases(tmp_path, data_dir, gt):
    source = data_dir / "mini.gff3"
    transcripts = read_gene_models(source)
    lengths = {line.split()[1]: int(line.split()[3]) for line in open(source) if line.startswith("##sequence-region")}
    out = tmp_path / "out.gff3"
    write_gff3(out, transcripts, lengths)
    _gt_validate(gt, out)
    again = read_gene_models(out)
    assert [(t.seqid, t.strand, t.cds) for t in again] == [(t.seqid, t.strand, t.cds) for t in transcripts]
    # the fixture's phase column was computed by other code: ours must agree line by line
    source_phases = {(f[0], int(f[3]), int(f[4])): f[7] for f in _features(source) if f[2] == "CDS"}
    written_phases = {(f[0], int(f[3]), int(f[4])): f[7] for f in _features(out) if f[2] == "CDS"}
    assert written_phases == source_phases


def test_written_layout(tmp_path, gt):
    lengths = {"chrB": 1000, "chrA": 500, "empty": 10}
    transcripts = [
        _t("chrA", "+", [(10, 40)], score=0.123456, attributes={"Note": "x;y=z,&%", "Alias": ["p", "q,r"]}),
        _t("chrB", "-", [(500, 530), (600, 612), (700, 731)]),
        _t("chrB", "+", [(100, 150)], score=1.0),
        _t("chrB", "+", [(520, 560)]),  # overlaps the - strand gene: strands interleave
    ]
    segments = [Segment("chrA", 100, 200, "repeat", ".", 0.5)]
    out = tmp_path / "out.gff3"
    write_gff3(out, transcripts, lengths, source="my tool", segments=segments)
    _gt_validate(gt, out)
    text = open(out).read().splitlines()
    assert text[:4] == ["##gff-version 3", "##sequence-region chrB 1 1000", "##sequence-region chrA 1 500", "##sequence-region empty 1 10"]
    features = _features(out)
    genes = [(f[0], int(f[3]), f[6], _attrs(f[8])["ID"]) for f in features if f[2] == "gene"]
    assert genes == [
        ("chrB", 101, "+", "chrB.g1"),
        ("chrB", 501, "-", "chrB.g2"),
        ("chrB", 521, "+", "chrB.g3"),
        ("chrA", 11, "+", "chrA.g1"),
    ]
    _assert_sorted(out, lengths)
    ids = [_attrs(f[8])["ID"] for f in features if f[2] in ("gene", "mRNA", "exon")]
    assert len(ids) == len(set(ids))
    assert all(f[1] == "my tool" for f in features)
    # minus strand: exons numbered 5'->3', i.e. from the highest coordinate; CDS share one ID
    minus = [f for f in features if f[6] == "-"]
    exons = [(int(f[3]), _attrs(f[8])["ID"]) for f in minus if f[2] == "exon"]
    assert exons == [(501, "chrB.g2.t1.exon3"), (601, "chrB.g2.t1.exon2"), (701, "chrB.g2.t1.exon1")]
    assert {_attrs(f[8])["ID"] for f in minus if f[2] == "CDS"} == {"chrB.g2.t1.cds"}
    # 5'->3': 700-731 (31 bases) phase 0; 600-612 after 31 bases: 2; 500-530 after 43: 2
    assert [f[7] for f in minus if f[2] == "CDS"] == ["2", "2", "0"]
    # scores on gene and mRNA lines only; attributes escaped on the mRNA line
    chr_a = [f for f in features if f[0] == "chrA"]
    assert [(f[2], f[5]) for f in chr_a] == [("gene", "0.1235"), ("mRNA", "0.1235"), ("exon", "."), ("CDS", "."), ("repeat", "0.5000")]
    assert chr_a[1][8] == "ID=chrA.g1.t1;Parent=chrA.g1;Note=x%3By%3Dz%2C%26%25;Alias=p,q%2Cr"
    assert _attrs(chr_a[4][8]) == {"ID": "chrA.s1"}
    back = {t.transcript_id: t for t in read_gene_models(out)}
    assert back["chrA.g1.t1"].attributes == {"Note": "x;y=z,&%", "Alias": ["p", "q,r"]}
    assert back["chrA.g1.t1"].score == pytest.approx(0.1235)


def test_escaped_seqid_round_trip(tmp_path, gt):
    lengths = {"chr 1;x": 100}
    out = tmp_path / "out.gff3"
    write_gff3(out, [_t("chr 1;x", "+", [(0, 30)])], lengths)
    _gt_validate(gt, out)
    assert "##sequence-region chr%201%3Bx 1 100" in open(out).read()
    assert read_gene_models(out)[0].seqid == "chr 1;x"


def test_empty_result_is_valid_gff3(tmp_path, gt):
    out = tmp_path / "empty.gff3"
    write_gff3(out, [], {"chr1": 100, "chr2": 5})
    _gt_validate(gt, out)
    assert open(out).read() == "##gff-version 3\n##sequence-region chr1 1 100\n##sequence-region chr2 1 5\n"
    assert read_gene_models(out) == []


def test_write_rejects_inconsistent_input(tmp_path):
    out = tmp_path / "out.gff3"
    out.write_text("keep me\n")
    with pytest.raises(InputError, match="'chrX', which is not among the sequences"):
        write_gff3(out, [_t("chr1", "+", [(0, 30)]), _t("chrX", "+", [(0, 30)])], {"chr1": 100})
    with pytest.raises(InputError, match="past the end of 'chr1' \\(length 100\\)"):
        write_gff3(out, [_t("chr1", "+", [(90, 120)])], {"chr1": 100})
    with pytest.raises(ValueError, match="strand"):
        write_gff3(out, [_t("chr1", ".", [(0, 30)])], {"chr1": 100})
    with pytest.raises(ValueError, match="not sorted, disjoint"):
        write_gff3(out, [_t("chr1", "+", [(50, 60), (0, 30)])], {"chr1": 100})
    with pytest.raises(ValueError, match="reserved"):
        write_gff3(out, [_t("chr1", "+", [(0, 30)], attributes={"Parent": "x"})], {"chr1": 100})
    assert out.read_text() == "keep me\n"  # a failed write leaves the old file alone
    assert [p.name for p in tmp_path.iterdir()] == ["out.gff3"]  # and no temporary file


@st.composite
def transcripts_strategy(draw):
    """Random valid transcripts on two sequences, each CDS part 1..40 bases, gaps >= 1."""
    items = []
    for _ in range(draw(st.integers(0, 6))):
        seqid = draw(st.sampled_from(["s1", "s2"]))
        strand = draw(st.sampled_from("+-"))
        pos = draw(st.integers(0, 300))
        parts = []
        for _ in range(draw(st.integers(1, 5))):
            length = draw(st.integers(1, 40))
            parts.append((pos, pos + length))
            pos += length + draw(st.integers(1, 30))
        score = draw(st.one_of(st.none(), st.floats(0, 1)))
        items.append(_t(seqid, strand, parts, tid=f"t{len(items)}", score=score))
    return items


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(transcripts=transcripts_strategy())
def test_random_round_trip_and_phases(tmp_path, transcripts):
    lengths = {"s2": 1000, "s1": 1000}
    out = tmp_path / "random.gff3"
    write_gff3(out, transcripts, lengths)
    back = read_gene_models(out)
    key = lambda t: (t.seqid, t.start, t.end, t.strand, t.cds)  # noqa: E731
    assert sorted(map(key, back)) == sorted(map(key, transcripts))
    # CDS phases against an independent, base-by-base computation, on both strands
    by_mrna: dict[str, list[list[str]]] = {}
    for f in _features(out):
        if f[2] == "CDS":
            by_mrna.setdefault(_attrs(f[8])["Parent"], []).append(f)
    for parts in by_mrna.values():
        expected = _codon_walk_phases([(int(f[3]), int(f[4])) for f in parts], parts[0][6])
        assert {(int(f[3]), int(f[4])): int(f[7]) for f in parts} == expected
    for t in transcripts:
        expected = _codon_walk_phases([(s + 1, e) for s, e in t.cds], t.strand)
        assert cds_phases(t) == [expected[(s + 1, e)] for s, e in t.cds]
    _assert_sorted(out, lengths)


def test_random_outputs_validate_with_gt(tmp_path, gt):
    # gt is slow to start: validate a few deterministic random files rather than every example
    import random

    rng = random.Random(7)
    for n in range(5):
        transcripts = []
        for i in range(rng.randint(1, 8)):
            pos, parts = rng.randint(0, 200), []
            for _ in range(rng.randint(1, 4)):
                length = rng.randint(1, 50)
                parts.append((pos, pos + length))
                pos += length + rng.randint(1, 40)
            transcripts.append(_t(rng.choice(["x", "y"]), rng.choice("+-"), parts, tid=f"t{i}", score=rng.random()))
        out = tmp_path / f"r{n}.gff3"
        write_gff3(out, transcripts, {"y": 600, "x": 600})
        _gt_validate(gt, out)


def test_gt_eval_against_itself(tmp_path, data_dir, gt):
    """The written file scores 1.0 against the fixture under gt eval (sorted seqids, as gt wants)."""
    transcripts = read_gene_models(data_dir / "mini.gff3")
    lengths = {t.seqid: 5000 for t in sorted(transcripts, key=lambda t: t.seqid)}
    out = tmp_path / "out.gff3"
    write_gff3(out, transcripts, lengths)
    ref = tmp_path / "ref.gff3"
    shutil.copy(data_dir / "mini.gff3", ref)
    result = subprocess.run([gt, "eval", str(ref), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "100.00%" in result.stdout and "0.00%" not in result.stdout.replace("100.00%", "")


# --------------------------------------------------------------------------------- partial genes


def _partial(seqid, strand, cds, phase5=0, partial5=False, partial3=False, span=None, tid="t"):
    return Transcript(seqid, strand, "g", tid, tuple(cds), None, {}, phase5=phase5,
                      partial5=partial5, partial3=partial3, span=span)


def _walk_phases_from(parts_1based, strand, phase5):
    """_codon_walk_phases for a CDS whose first complete codon starts ``phase5`` bases into
    its 5'-most part: the bases before it are the tail of a codon begun upstream."""
    positions = []
    for a, b in parts_1based:
        positions.extend((p, (a, b)) for p in range(a, b + 1))
    positions.sort(reverse=(strand == "-"))
    phases = {}
    for index, (_, part) in enumerate(positions):
        if part not in phases:
            phases[part] = (phase5 - index) % 3
    return phases


def test_partial_genes_carry_ncbi_markers_and_phases(tmp_path, gt):
    """Partial genes as NCBI writes them: partial=true on gene, mRNA and every CDS row;
    start_range=.,START on the features whose genome-left end is missing (a + gene's 5' end, a
    - gene's 3' end), end_range=END,. on those whose genome-right end is missing; gene and
    mRNA span the cut intron to the contig end; an exon carries the markers only where the
    contig end cuts it. The 5'-most CDS part's phase is phase5, the others follow from it."""
    lengths = {"c": 300}
    cases = {
        "plus5": _partial("c", "+", [(20, 50), (80, 121)], phase5=2, partial5=True, span=(0, 121)),
        "minus3": _partial("c", "-", [(0, 40), (70, 100)], partial3=True),
        "plus3": _partial("c", "+", [(150, 181), (220, 300)], partial3=True),
        "minus5": _partial("c", "-", [(110, 140), (160, 300)], phase5=1, partial5=True),
        "both": _partial("c", "+", [(0, 10), (60, 71)], phase5=1, partial5=True, partial3=True,
                         span=(0, 300)),
    }
    for name, t in cases.items():
        out = tmp_path / f"{name}.gff3"
        write_gff3(out, [t], lengths)
        _gt_validate(gt, out)
        rows = _features(out)
        left = t.partial5 if t.strand == "+" else t.partial3
        right = t.partial3 if t.strand == "+" else t.partial5
        for f in rows:
            attrs = _attrs(f[8])
            start, end = int(f[3]), int(f[4])
            if f[2] in ("gene", "mRNA"):
                assert (start, end) == (t.start + 1, t.end)
                cut_left, cut_right = left, right
            elif f[2] == "exon":
                cut_left = left and start == t.start + 1
                cut_right = right and end == t.end
            else:  # CDS rows: the ends of the CDS
                cut_left = left and start == t.cds[0][0] + 1
                cut_right = right and end == t.cds[-1][1]
                assert attrs.get("partial") == "true", (name, f)
            assert attrs.get("start_range") == (f".,{start}" if cut_left else None), (name, f)
            assert attrs.get("end_range") == (f"{end},." if cut_right else None), (name, f)
            if f[2] != "CDS":
                assert attrs.get("partial") == ("true" if cut_left or cut_right else None), (name, f)
        parts = [(int(f[3]), int(f[4])) for f in rows if f[2] == "CDS"]
        expected = _walk_phases_from(parts, t.strand, t.phase5)
        assert {(int(f[3]), int(f[4])): int(f[7]) for f in rows if f[2] == "CDS"} == expected
        assert cds_phases(t) == [expected[(s + 1, e)] for s, e in t.cds]
        back, = read_gene_models(out)
        assert (back.strand, back.cds, back.phase5, back.partial5, back.partial3) == (
            t.strand, t.cds, t.phase5, t.partial5, t.partial3)
        assert back.attributes == {}
    # The 5' phases by hand: + 20-50 (phase 2) then 80-121 after 30 bases: (2 - 30) % 3 = 2;
    # - 160-300 (phase 1) then 110-140 after 140 bases: (1 - 140) % 3 = 2.
    assert cds_phases(cases["plus5"]) == [2, 2] and cds_phases(cases["minus5"]) == [2, 1]


def test_complete_genes_are_written_as_before(tmp_path):
    """A complete transcript (the default: phase5 0, no partial end, no span) is written with
    no marker, and its phases start at 0."""
    out = tmp_path / "out.gff3"
    write_gff3(out, [_t("c", "-", [(10, 40), (60, 73)])], {"c": 100})
    assert "partial" not in out.read_text() and "_range" not in out.read_text()
    assert [f[7] for f in _features(out) if f[2] == "CDS"] == ["2", "0"]


def test_write_rejects_inconsistent_partial_genes(tmp_path):
    out = tmp_path / "out.gff3"
    with pytest.raises(ValueError, match="phase5"):  # off a codon boundary with a start codon
        write_gff3(out, [_partial("c", "+", [(0, 30)], phase5=1)], {"c": 100})
    with pytest.raises(ValueError, match="phase5"):
        write_gff3(out, [_partial("c", "+", [(0, 30)], phase5=3, partial5=True)], {"c": 100})
    with pytest.raises(ValueError, match="span"):
        write_gff3(out, [_partial("c", "+", [(10, 30)], partial5=True, span=(12, 30))], {"c": 100})
    with pytest.raises(InputError, match="past the end"):
        write_gff3(out, [_partial("c", "+", [(10, 30)], partial3=True, span=(10, 120))], {"c": 100})
    for key in ("partial", "start_range", "end_range"):
        with pytest.raises(ValueError, match="reserved"):
            write_gff3(out, [_t("c", "+", [(0, 30)], attributes={key: "x"})], {"c": 100})
    assert not out.exists()


def test_read_ncbi_partial_cds(tmp_path):
    """NCBI's files mark a partial CDS on its rows (and often on gene and mRNA): a - CDS with
    end_range on its genome-right row lacks its 5' end, and its phase there is phase5; one with
    start_range on its genome-left row lacks its 3' end. The markers do not stay in
    attributes; other attributes do."""
    body = HEADER + "".join("\t".join(row) + "\n" for row in [
        ["c", "RefSeq", "gene", "1", "200", ".", "-", ".", "ID=g1;partial=true;end_range=200,."],
        ["c", "RefSeq", "mRNA", "1", "200", ".", "-", ".", "ID=m1;Parent=g1;product=x"],
        ["c", "RefSeq", "CDS", "101", "200", ".", "-", "2",
         "ID=cds1;Parent=m1;partial=true;end_range=200,."],
        ["c", "RefSeq", "CDS", "11", "60", ".", "-", "1", "ID=cds1;Parent=m1;partial=true"],
        ["c", "RefSeq", "gene", "301", "420", ".", "-", ".", "ID=g2"],
        ["c", "RefSeq", "mRNA", "301", "420", ".", "-", ".", "ID=m2;Parent=g2"],
        ["c", "RefSeq", "CDS", "301", "420", ".", "-", "0",
         "ID=cds2;Parent=m2;partial=true;start_range=.,301"],
    ])
    first, second = read_gene_models(_gff(tmp_path, body))
    assert first.cds == ((10, 60), (100, 200)) and first.strand == "-"
    assert (first.phase5, first.partial5, first.partial3) == (2, True, False)
    assert first.attributes == {"product": "x"}
    assert (second.phase5, second.partial5, second.partial3) == (0, False, True)
    assert cds_phases(first) == [1, 2]  # (2 - 100) % 3 after the 100 bases of 101-200
