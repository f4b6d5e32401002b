"""genoseg.io.tracks: bigWig, bedGraph and HDF5 posterior writers, checked by reading back."""

from __future__ import annotations

import h5py
import numpy as np
import pyBigWig
import pytest

from genoseg.io.tracks import HDF5TrackWriter, write_bedgraph, write_bigwig


def _only(tmp_path, *names):
    """No temporary files left behind next to the outputs."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


# ------------------------------------------------------------------------------------ bigWig


def test_bigwig_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {"chr2": 5000, "chr1": 3000, "chrM": 16}
    flat = np.zeros(5000)
    flat[1000:1200] = 0.75
    flat[4000:] = 1.0
    flat[2000:2010] = np.nan
    noisy = rng.random(3000).astype(np.float32)
    noisy[100:150] = np.nan
    noisy[-1] = np.nan
    out = tmp_path / "post.bw"
    write_bigwig(out, sizes, {"chr1": noisy, "chr2": flat})  # chrM: no data
    _only(tmp_path, "post.bw")
    bw = pyBigWig.open(str(out))
    try:
        assert bw.chroms() == sizes
        assert list(bw.chroms()) == ["chr2", "chr1", "chrM"]  # header order kept
        np.testing.assert_array_equal(np.array(bw.values("chr2", 0, 5000)), flat.astype(np.float32))
        np.testing.assert_array_equal(np.array(bw.values("chr1", 0, 3000), np.float32), noisy)
        assert bw.intervals("chrM") is None
        # the flat track is stored as runs, not one interval per base
        assert len(bw.intervals("chr2")) == 5
    finally:
        bw.close()


def test_bigwig_rounding_merges_runs(tmp_path):
    values = np.r_[np.full(500, 1e-7), np.full(500, 0.99996), np.full(24, -1e-9)].astype(np.float32)
    values += np.random.default_rng(2).normal(scale=1e-8, size=values.size).astype(np.float32)
    out = tmp_path / "rounded.bw"
    write_bigwig(out, {"c": values.size}, {"c": values}, decimals=3)
    bw = pyBigWig.open(str(out))
    assert bw.intervals("c") == ((0, 500, 0.0), (500, 1000, 1.0), (1000, 1024, 0.0))
    bw.close()


def test_bigwig_all_nan_and_errors(tmp_path):
    out = tmp_path / "nan.bw"
    write_bigwig(out, {"c": 10}, {"c": np.full(10, np.nan)})
    bw = pyBigWig.open(str(out))
    assert bw.intervals("c") is None
    bw.close()
    with pytest.raises(ValueError, match=r"have shape \(9,\), expected \(10,\)"):
        write_bigwig(tmp_path / "bad.bw", {"c": 10}, {"c": np.zeros(9)})
    with pytest.raises(ValueError, match="not in chrom_sizes"):
        write_bigwig(tmp_path / "bad.bw", {"c": 10}, {"d": np.zeros(10)})
    _only(tmp_path, "nan.bw")


# ---------------------------------------------------------------------------------- bedGraph


def test_bedgraph(tmp_path):
    values = {
        "chr2": np.array([0.1, 0.10001, 0.100049, 0.2, np.nan, np.nan, 0.2, -0.00001, 0.0, 1.0]),
        "chr1": np.array([0.5, 0.5]),
        "empty": np.zeros(0),
    }
    out = tmp_path / "post.bedgraph"
    write_bedgraph(out, values)
    assert out.read_text().splitlines() == [
        "chr2\t0\t3\t0.1000",  # equal after rounding to 4 decimals
        "chr2\t3\t4\t0.2000",
        "chr2\t6\t7\t0.2000",  # NaN breaks the run and is left out
        "chr2\t7\t9\t0.0000",  # -0.00001 rounds to 0 (not "-0.0000") and joins the zero
        "chr2\t9\t10\t1.0000",
        "chr1\t0\t2\t0.5000",
    ]
    _only(tmp_path, "post.bedgraph")


# -------------------------------------------------------------------------------------- HDF5


def test_hdf5_writer(tmp_path):
    rng = np.random.default_rng(1)
    post = rng.random((70_000, 5)).astype(np.float32)
    boundary = rng.random(70_000)
    out = tmp_path / "post.h5"
    labels = ["intergenic", "exon0", "exon1", "exon2", "intron"]
    with HDF5TrackWriter(out, attrs={"model_hash": "abc123", "genoseg_version": "0.1.0"}) as writer:
        writer.add("chr1", "label_posterior", post, {"labels": labels, "model_hash": "abc123"})
        writer.add("chr1", "boundary", boundary, {"coordinates": "0-based, position t = boundary before base t"})
        writer.add("chrM", "boundary", np.zeros(0), {})
        assert not out.exists()  # nothing at the final path until close
    _only(tmp_path, "post.h5")
    with h5py.File(out, "r") as h5:
        assert h5.attrs["model_hash"] == "abc123"
        ds = h5["chr1/label_posterior"]
        assert ds.dtype == np.float16 and ds.shape == (70_000, 5)
        assert ds.compression == "gzip" and ds.chunks is not None and ds.chunks[1] == 5 and ds.chunks[0] < 70_000
        np.testing.assert_array_equal(ds[:], post.astype(np.float16))
        assert np.abs(ds[:].astype(np.float32) - post).max() < 1e-3  # float16 keeps ~3 digits
        assert [v.decode() if isinstance(v, bytes) else v for v in ds.attrs["labels"]] == labels
        assert ds.attrs["coordinates"] == "0-based"  # default added
        b = h5["chr1/boundary"]
        assert b.shape == (70_000,) and b.attrs["coordinates"].startswith("0-based, position")
        assert h5["chrM/boundary"].shape == (0,)


def test_hdf5_writer_discards_on_error(tmp_path):
    out = tmp_path / "post.h5"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"):
        with HDF5TrackWriter(out) as writer:
            writer.add("chr1", "p", np.zeros(10), {})
            raise RuntimeError("boom")
    assert out.read_bytes() == b"previous"
    _only(tmp_path, "post.h5")
    writer = HDF5TrackWriter(tmp_path / "aborted.h5")
    writer.add("chr1", "p", np.zeros(10), {})
    writer.abort()
    writer.close()  # no-op after abort
    _only(tmp_path, "post.h5")


def test_hdf5_writer_rejects_bad_adds(tmp_path):
    with HDF5TrackWriter(tmp_path / "x.h5") as writer:
        writer.add("chr1", "p", np.zeros(4), {})
        with pytest.raises(ValueError, match="already added"):
            writer.add("chr1", "p", np.zeros(4), {})
        with pytest.raises(ValueError, match=r"expected \(T,\) or \(T, C\)"):
            writer.add("chr1", "q", np.zeros((2, 2, 2)), {})
        with pytest.raises(ValueError, match="'/' is not allowed"):
            writer.add("chr1", "a/b", np.zeros(4), {})
    with pytest.raises(ValueError, match="closed"):
        writer.add("chr1", "r", np.zeros(4), {})
    with h5py.File(tmp_path / "x.h5", "r") as h5:
        assert list(h5["chr1"]) == ["p"]
