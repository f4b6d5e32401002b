"""genoseg.io.fasta: Genome over plain / bgzip / gzip FASTA, validation, one-hot encoding."""

from __future__ import annotations

import bz2
import gzip
import logging
import os
import pickle
import time

import numpy as np
import pysam
import pytest

from genoseg.errors import InputError
from genoseg.io import fasta
from genoseg.io.fasta import CHANNELS, Genome, encode_sequence

RECORDS = [
    ("chr1", "ACGTNacgtnRYKMSWBDHVryk" * 7 + "A"),  # 162 bases, not a multiple of the width
    ("chr2", "GATTACA" * 30),
    ("chrM", "acgt"),
]


def _ref_encode(seq: str) -> np.ndarray:
    """Independent one-hot: a plain Python loop over the documented rules."""
    out = np.zeros((len(seq), 6), np.float32)
    for i, ch in enumerate(seq):
        up = ch.upper()
        out[i, "ACGT".index(up) if up in "ACGT" else 4] = 1.0
        out[i, 5] = float(ch.islower())
    return out


# ---------------------------------------------------------------------------------- encoding


def test_encode_sequence_channels():
    seq = "ACGTNacgtnRYKMSWBDHVrykmswbdhv"
    x = encode_sequence(seq)
    assert x.dtype == np.float32 and x.shape == (len(seq), 6)
    assert CHANNELS == ("A", "C", "G", "T", "N", "softmask")
    np.testing.assert_array_equal(x, _ref_encode(seq))
    np.testing.assert_array_equal(x[:5, :5], np.eye(5, dtype=np.float32))
    assert x[:, :5].sum(1).tolist() == [1.0] * len(seq)  # exactly one base channel each


def test_encode_sequence_bytes_and_empty():
    np.testing.assert_array_equal(encode_sequence(b"ACgt"), encode_sequence("ACgt"))
    assert encode_sequence("").shape == (0, 6)


@pytest.mark.parametrize(
    "seq, char, pos",
    [("ACGU", "'U'", 4), ("acgu", "'u'", 4), ("AC-GT", "'-'", 3), ("AC GT", "' '", 3), ("AC1", "'1'", 3), ("ACGé", "'é'", 4)],
)
def test_encode_sequence_rejects_non_dna(seq, char, pos):
    with pytest.raises(InputError, match=rf"invalid sequence character {char} at position {pos}\b"):
        encode_sequence(seq)


def test_encode_is_vectorised():
    # 20 Mb must encode well under a second; a per-base Python loop would take ~20 s. The bound is
    # loose (shared CI machines) but still catches a loop.
    seq = np.random.default_rng(0).choice(np.frombuffer(b"ACGTacgtN", np.uint8), 20_000_000).tobytes()
    started = time.perf_counter()
    x = encode_sequence(seq)
    elapsed = time.perf_counter() - started
    assert x.shape == (20_000_000, 6)
    assert elapsed < 3.0, f"encoding 20 Mb took {elapsed:.2f} s"


# --------------------------------------------------------------------------------- formats


def _check_genome(genome: Genome, records=RECORDS) -> None:
    assert genome.names == [n for n, _ in records]
    assert genome.lengths == {n: len(s) for n, s in records}
    assert len(genome) == len(records)
    assert "chr2" in genome and "chrX" not in genome
    for name, seq in records:
        assert genome.fetch(name) == seq  # original case
        assert genome.fetch(name, 1, min(11, len(seq))) == seq[1:11]
        assert genome.fetch(name, 2, 2) == ""
        assert genome.fetch(name, len(seq) - 1) == seq[-1]
        np.testing.assert_array_equal(genome.encode(name, 1, min(9, len(seq))), _ref_encode(seq[1:9]))
    assert genome.encode("chr1").shape == (len(RECORDS[0][1]), 6)


def test_plain_fasta_creates_index_beside(tmp_path, write_fasta):
    path = write_fasta(tmp_path / "g.fa", RECORDS)
    with Genome(path) as genome:
        _check_genome(genome)
    assert (tmp_path / "g.fa.fai").exists()
    with Genome(path) as genome:  # second open reuses the index
        _check_genome(genome)


def test_bgzip_fasta(tmp_path, write_fasta):
    plain = write_fasta(tmp_path / "g.fa", RECORDS, width=10)
    pysam.tabix_compress(str(plain), str(tmp_path / "g.fa.gz"))
    with Genome(tmp_path / "g.fa.gz") as genome:
        _check_genome(genome)
    assert (tmp_path / "g.fa.gz.fai").exists() and (tmp_path / "g.fa.gz.gzi").exists()


def test_plain_gzip_fasta_uses_temporary_copy(tmp_path, write_fasta):
    plain = write_fasta(tmp_path / "g.fa", RECORDS, width=7)
    with open(plain, "rb") as src, gzip.open(tmp_path / "g.fa.gz", "wb") as dst:
        dst.write(src.read())
    genome = Genome(tmp_path / "g.fa.gz")
    _check_genome(genome)
    tmpdir = genome._tmpdir
    assert tmpdir and os.path.isdir(tmpdir)
    assert not (tmp_path / "g.fa.gz.fai").exists()  # nothing written beside the input
    genome.close()
    assert not os.path.exists(tmpdir)
    genome.close()  # idempotent


def test_irregular_line_lengths_fall_back_to_copy(tmp_path, caplog):
    path = tmp_path / "ragged.fa"
    path.write_text(">chr1\nACGT\nACGTACGT\nAC\n>chr2\nGG\nGGG\n")
    with caplog.at_level(logging.WARNING, logger="genoseg.io.fasta"):
        with Genome(path) as genome:
            assert genome.fetch("chr1") == "ACGTACGTACGTAC"
            assert genome.fetch("chr2", 1, 4) == "GGG"
    assert "line lengths vary" in caplog.text


def test_crlf_and_trailing_blank_lines(tmp_path, write_fasta):
    path = write_fasta(tmp_path / "dos.fa", RECORDS, width=12, newline="\r\n")
    with Genome(path) as genome:
        _check_genome(genome)
    path = tmp_path / "blank.fa"
    path.write_text(">a desc words\nACGT\nAC\n\n>b\nTTTT\n\n")
    with Genome(path) as genome:
        assert genome.names == ["a", "b"]  # name = first word of the header
        assert genome.fetch("a") == "ACGTAC" and genome.fetch("b") == "TTTT"


def test_read_only_directory_uses_cache(tmp_path, write_fasta, monkeypatch):
    # root ignores permission bits, so simulate a read-only directory through the helper
    path = write_fasta(tmp_path / "g.fa", RECORDS)
    monkeypatch.setattr(fasta, "_dir_writable", lambda d: os.path.abspath(d) != str(tmp_path))
    with Genome(path) as genome:
        _check_genome(genome)
        index = genome._fai
    assert not (tmp_path / "g.fa.fai").exists()
    assert str(index).startswith(os.environ["GENOSEG_CACHE_DIR"])
    with Genome(path) as genome:  # found in the cache the second time
        assert genome._fai == index


def test_no_writable_location_uses_temp_dir(tmp_path, write_fasta, monkeypatch):
    path = write_fasta(tmp_path / "g.fa", RECORDS)
    monkeypatch.setattr(fasta, "_dir_writable", lambda d: str(d).startswith(fasta.tempfile.gettempdir() + "/genoseg-fasta-"))
    monkeypatch.setenv("GENOSEG_CACHE_DIR", "/proc/genoseg-cannot-exist")
    genome = Genome(path)
    _check_genome(genome)
    assert genome._tmpdir and str(genome._fai).startswith(genome._tmpdir)
    genome.close()


def test_stale_index_is_rebuilt(tmp_path, write_fasta):
    path = write_fasta(tmp_path / "g.fa", RECORDS)
    Genome(path).close()
    write_fasta(path, [("other", "ACGTACGT")])
    os.utime(tmp_path / "g.fa.fai", (1, 1))  # index older than the FASTA
    with Genome(path) as genome:
        assert genome.names == ["other"] and genome.fetch("other") == "ACGTACGT"


def test_pickle_reopens(tmp_path, write_fasta):
    path = write_fasta(tmp_path / "g.fa", RECORDS)
    with Genome(path) as genome:
        genome.fetch("chr1")
        clone = pickle.loads(pickle.dumps(genome))
        _check_genome(clone)
        clone.close()
        assert genome.fetch("chr2", 0, 7) == "GATTACA"  # the original is unaffected


def test_encode_whole_fixture_matches_reference(mini):
    with Genome(mini["mini.fa"]) as genome:
        for name in genome.names:
            np.testing.assert_array_equal(genome.encode(name), _ref_encode(genome.fetch(name)))


# ---------------------------------------------------------------------------------- errors


def test_region_errors(tmp_path, write_fasta):
    path = write_fasta(tmp_path / "g.fa", RECORDS)
    with Genome(path) as genome:
        with pytest.raises(InputError, match="no sequence named 'chrX'"):
            genome.fetch("chrX")
        with pytest.raises(InputError, match="outside the sequence"):
            genome.fetch("chrM", 0, 5)
        with pytest.raises(InputError, match="outside the sequence"):
            genome.encode("chrM", 3, 2)
        with pytest.raises(InputError, match="outside the sequence"):
            genome.fetch("chrM", -1)


def _bad(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"empty FASTA \(no records\)"),
        (b"\n\n  \n", r"empty FASTA \(no records\)"),
        (b">a\n", r"record 'a' \(line 1\) has zero length"),
        (b">a\nACGT\n>b\n>c\nAC\n", r"record 'b' \(line 3\) has zero length"),
        (b">a\nACGT\n>b\nAC\n>a x\nGG\n", r"duplicate sequence ID 'a' \(lines 1 and 5\)"),
        (b">a\nACGT\n>chr2\nACGTACGT\nACGUAC\n", r"record 'chr2' has invalid character 'U' at position 12 \(line 5"),
        (b">a\nAC GT\n", r"record 'a' has invalid character ' ' at position 3"),
        (b">a\nACGT*\n", r"record 'a' has invalid character '\*' at position 5"),
        (b">a\nACGT\n> \nAC\n", r"record header without a name at line 3"),
        (b"ACGT\n>a\nAC\n", r"not a FASTA file: first line 'ACGT'"),
        (b"##gff-version 3\nchr1\tx\tgene\t1\t10\t.\t+\t.\tID=g\n", r"not a FASTA file \(looks like GFF3/GTF\)"),
        (b"@read1\nACGT\n+\nIIII\n", r"not a FASTA file \(looks like FASTQ or SAM\)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"not a FASTA file \(binary data\)"),
    ],
)
def test_invalid_fasta(tmp_path, content, message):
    path = _bad(tmp_path, "bad.fa", content)
    with pytest.raises(InputError, match=message) as info:
        Genome(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_invalid_gzip_fasta(tmp_path):
    path = tmp_path / "bad.fa.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b">a\nACGT\n>b\nACGTRYN\nAC#T\n")
    with pytest.raises(InputError, match=r"record 'b' has invalid character '#' at position 10 \(line 5"):
        Genome(path)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="FASTA file not found"):
        Genome(tmp_path / "nope.fa")
    with pytest.raises(InputError, match="not a file"):
        Genome(tmp_path)
    path = tmp_path / "g.fa.bz2"
    path.write_bytes(bz2.compress(b">a\nACGT\n"))
    with pytest.raises(InputError, match="bzip2-compressed files are not supported"):
        Genome(path)
    truncated = tmp_path / "trunc.fa.gz"
    seq = np.random.default_rng(1).choice(np.frombuffer(b"ACGT", np.uint8), 100_000).tobytes()
    truncated.write_bytes(gzip.compress(b">a\n" + seq)[:5000])
    with pytest.raises(InputError, match="trunc.fa.gz: cannot read"):
        Genome(truncated)


def test_bam_passed_as_genome(tmp_path):
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "chr1", "LN": 100}]}
    path = tmp_path / "reads.bam"
    with pysam.AlignmentFile(str(path), "wb", header=header):
        pass
    with pytest.raises(InputError, match=r"not a FASTA file \(binary data\)"):
        Genome(path)


def test_invalid_character_behind_existing_index(tmp_path):
    # an up-to-date index made by another tool skips the open-time scan; fetch still validates
    path = _bad(tmp_path, "g.fa", b">a\nACGTACGT\nACUU\n")
    pysam.faidx(str(path))
    with Genome(path) as genome:
        assert genome.fetch("a", 0, 8) == "ACGTACGT"
        with pytest.raises(InputError, match=r"record 'a' has invalid character 'U' at position 11"):
            genome.fetch("a")
        with pytest.raises(InputError, match="invalid character 'U'"):
            genome.encode("a", 9)
