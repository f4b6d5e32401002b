"""genoseg.io.bam: per-base coverage with flag, MAPQ and strand filters."""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import pysam
import pytest

from genoseg.errors import InputError
from genoseg.io import bam as bam_module
from genoseg.io.bam import coverage

HEADER = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": 100}, {"SN": "chr2", "LN": 50}]}

# (name, chrom, start, cigar, flag, mapq); expected coverage below is written out by hand
READS = [
    ("plain", "chr1", 10, "5M", 0, 60),  # 10..14
    ("deletion", "chr1", 12, "3M2D2M", 16, 10),  # 12..14, 17..18 (deletion 15..16 not counted)
    ("spliced", "chr1", 20, "2M5N3M", 0, 30),  # 20..21, 27..29
    ("clipped", "chr1", 40, "3S4M2I1M", 16, 60),  # 40..44 (clips/insertions add nothing)
    ("secondary", "chr1", 10, "5M", 256, 60),
    ("duplicate", "chr1", 10, "5M", 1024, 60),
    ("qcfail", "chr1", 10, "5M", 512, 60),
    ("supplementary", "chr1", 60, "4M", 2048, 60),  # 60..63, counted
    ("unmapped", "chr1", 70, "5M", 4, 0),  # placed but unmapped
    ("edge", "chr1", 97, "3M", 0, 5),  # 97..99
    ("other", "chr2", 0, "10M", 0, 60),
]


def _expected(min_mapq: int = 0, strand: str | None = None) -> np.ndarray:
    cov = np.zeros(100, np.float32)
    spans = {
        "plain": [(10, 15)],
        "deletion": [(12, 15), (17, 19)],
        "spliced": [(20, 22), (27, 30)],
        "clipped": [(40, 45)],
        "supplementary": [(60, 64)],
        "edge": [(97, 100)],
    }
    for name, chrom, _, _, flag, mapq in READS:
        if name not in spans or mapq < min_mapq:
            continue
        if strand is not None and (flag & 16 != 0) != (strand == "-"):
            continue
        for a, b in spans[name]:
            cov[a:b] += 1
    return cov


def _write_bam(path, reads, header=HEADER, index=True, sort=True):
    unsorted = str(path) + ".unsorted.bam"
    with pysam.AlignmentFile(unsorted, "wb", header=header) as out:
        for name, chrom, start, cigar, flag, mapq in reads:
            seg = pysam.AlignedSegment(out.header)
            length = sum(int(n) for n, op in re.findall(r"(\d+)([MIDNSHP=X])", cigar) if op in "MIS=X")
            seg.query_name = name
            seg.query_sequence = "A" * length
            seg.flag = flag
            seg.reference_id = out.get_tid(chrom)
            seg.reference_start = start
            seg.mapping_quality = mapq
            seg.cigarstring = cigar
            seg.query_qualities = pysam.qualitystring_to_array("I" * length)
            out.write(seg)
    if sort:
        pysam.sort("-o", str(path), unsorted)
        os.remove(unsorted)
    else:
        os.replace(unsorted, path)
    if index:
        pysam.index(str(path))
    return path


@pytest.fixture
def bam_path(tmp_path):
    return _write_bam(tmp_path / "reads.bam", READS)


def test_coverage_whole_contig(bam_path):
    cov = coverage(bam_path, "chr1")
    assert cov.dtype == np.float32 and cov.shape == (100,)
    np.testing.assert_array_equal(cov, _expected())
    np.testing.assert_array_equal(coverage(bam_path, "chr2"), np.r_[np.ones(10), np.zeros(40)].astype(np.float32))


def test_coverage_region(bam_path):
    np.testing.assert_array_equal(coverage(bam_path, "chr1", 11, 28), _expected()[11:28])
    np.testing.assert_array_equal(coverage(bam_path, "chr1", 95), _expected()[95:])
    assert coverage(bam_path, "chr1", 30, 30).shape == (0,)


@pytest.mark.parametrize("min_mapq", [0, 10, 11, 60, 61])
@pytest.mark.parametrize("strand", [None, "+", "-"])
def test_coverage_filters(bam_path, min_mapq, strand):
    np.testing.assert_array_equal(coverage(bam_path, "chr1", min_mapq=min_mapq, strand=strand), _expected(min_mapq, strand))


def test_coverage_random_reads_match_aligned_pairs(tmp_path):
    # an independent count: every aligned (query, reference) pair of every kept read
    rng = np.random.default_rng(3)
    cigars = ["20M", "5M3D12M", "8M30N8M", "2S10M1I5M", "15M4S"]
    reads = [
        (f"r{i}", "chr1", int(rng.integers(0, 60)), str(rng.choice(cigars)), int(rng.choice([0, 16, 1024])), int(rng.integers(0, 60)))
        for i in range(300)
    ]
    path = _write_bam(tmp_path / "random.bam", reads)
    truth = np.zeros(100, np.float32)
    with pysam.AlignmentFile(str(path)) as handle:
        for read in handle.fetch("chr1"):
            if read.flag & 1024 or read.mapping_quality < 20 or not read.is_reverse:
                continue
            for _, ref in read.get_aligned_pairs(matches_only=True):
                truth[ref] += 1
    np.testing.assert_array_equal(coverage(path, "chr1", 0, 100, min_mapq=20, strand="-"), truth)


def test_missing_index_is_created(tmp_path):
    path = _write_bam(tmp_path / "noindex.bam", READS, index=False)
    np.testing.assert_array_equal(coverage(path, "chr1"), _expected())
    assert os.path.exists(str(path) + ".bai")


def test_index_in_temp_dir_when_beside_fails(tmp_path, monkeypatch):
    path = _write_bam(tmp_path / "ro.bam", READS, index=False)
    real_index = pysam.index

    def index(*args):
        if len(args) == 1:  # pretend the BAM's directory is read-only
            raise pysam.SamtoolsError("samtools returned with error 1: Permission denied")
        return real_index(*args)

    monkeypatch.setattr(bam_module.pysam, "index", index)
    monkeypatch.setattr(bam_module, "_PRIVATE_INDEX", {})
    np.testing.assert_array_equal(coverage(path, "chr1"), _expected())
    assert not os.path.exists(str(path) + ".bai")
    assert os.path.exists(bam_module._PRIVATE_INDEX[str(path)])


def test_unsorted_without_index(tmp_path):
    reads = [("b", "chr1", 50, "5M", 0, 60), ("a", "chr1", 10, "5M", 0, 60)]
    path = _write_bam(tmp_path / "unsorted.bam", reads, index=False, sort=False)
    with pytest.raises(InputError, match=r"unsorted.bam: BAM is not coordinate-sorted \(at chr1:11\); run samtools sort"):
        coverage(path, "chr1")


def test_unknown_seqid_gives_zeros(bam_path, caplog):
    with caplog.at_level(logging.WARNING, logger="genoseg.io.bam"):
        cov = coverage(bam_path, "chrUn", 0, 30)
    np.testing.assert_array_equal(cov, np.zeros(30, np.float32))
    assert "'chrUn' is not in the BAM header" in caplog.text
    with pytest.raises(InputError, match="not in the BAM header and no end was given"):
        coverage(bam_path, "chrUn")


def test_region_past_contig_end(bam_path):
    with pytest.raises(InputError, match=r"runs past the end of 'chr2' \(length 50 in the BAM header"):
        coverage(bam_path, "chr2", 0, 51)
    with pytest.raises(ValueError):
        coverage(bam_path, "chr2", 10, 5)
    with pytest.raises(ValueError):
        coverage(bam_path, "chr2", strand="+-")


def test_not_a_bam(tmp_path, data_dir):
    with pytest.raises(InputError, match="BAM file not found"):
        coverage(tmp_path / "nope.bam", "chr1")
    with pytest.raises(InputError, match=r"not a BAM file"):
        coverage(data_dir / "mini.fa", "chr1")
    gz = tmp_path / "x.fa.gz"
    pysam.tabix_compress(str(data_dir / "mini.fa"), str(gz))  # BGZF, but not BAM
    with pytest.raises(InputError, match=r"x.fa.gz: not a BAM"):
        coverage(gz, "chr1")
