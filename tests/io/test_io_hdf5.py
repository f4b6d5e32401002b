"""genoseg.io.hdf5: TrackFile reader for /{seqid}/{track} signal tracks."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from genoseg.errors import InputError
from genoseg.io.hdf5 import TrackFile

LENGTHS = {"chr1": 120, "chr2": 37}


def _tracks(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        seqid: {
            "rnaseq_plus": rng.random(n).astype(np.float32),
            "conservation": rng.normal(size=n),  # float64 in the file, float32 out
            "mask": rng.integers(0, 2, n).astype(np.uint8),
        }
        for seqid, n in LENGTHS.items()
    }


def _write(path, tracks):
    with h5py.File(path, "w") as h5:
        for seqid, datasets in tracks.items():
            group = h5.create_group(seqid)
            for name, values in datasets.items():
                group.create_dataset(name, data=values)
    return path


@pytest.fixture
def track_path(tmp_path):
    return _write(tmp_path / "tracks.h5", _tracks())


def test_read(track_path):
    tracks = _tracks()
    with TrackFile(track_path) as tf:
        assert tf.track_names == ["conservation", "mask", "rnaseq_plus"]
        assert tf.seqids == ["chr1", "chr2"] and tf.lengths == LENGTHS
        x = tf.read("chr1")
        assert x.dtype == np.float32 and x.shape == (120, 3)
        for column, name in enumerate(tf.track_names):
            np.testing.assert_array_equal(x[:, column], tracks["chr1"][name].astype(np.float32))
        region = tf.read("chr2", 5, 20, tracks=["rnaseq_plus", "mask"])
        assert region.shape == (15, 2)
        np.testing.assert_array_equal(region[:, 0], tracks["chr2"]["rnaseq_plus"][5:20])
        np.testing.assert_array_equal(region[:, 1], tracks["chr2"]["mask"][5:20])
        assert tf.read("chr2", 7, 7).shape == (0, 3)


def test_check_lengths(track_path):
    with TrackFile(track_path) as tf:
        tf.check_lengths(LENGTHS)
        tf.check_lengths({"chr2": 37})  # extra seqids in the file are fine
        with pytest.raises(InputError, match=r"tracks of 'chr1' have length 120, but the sequence has length 121"):
            tf.check_lengths({"chr1": 121, "chr2": 37})
        with pytest.raises(InputError, match=r"no tracks for 1 sequence\(s\): chr3"):
            tf.check_lengths({**LENGTHS, "chr3": 10})


def test_read_errors(track_path):
    with TrackFile(track_path) as tf:
        with pytest.raises(InputError, match="no tracks for sequence 'chrX'"):
            tf.read("chrX")
        with pytest.raises(InputError, match=r"unknown track\(s\) dnase"):
            tf.read("chr1", tracks=["mask", "dnase"])
        with pytest.raises(InputError, match="outside the track"):
            tf.read("chr2", 30, 40)


def test_pickle(track_path):
    tf = TrackFile(track_path)
    tf.read("chr1", 0, 3)
    clone = pickle.loads(pickle.dumps(tf))
    np.testing.assert_array_equal(clone.read("chr2"), tf.read("chr2"))
    clone.close()
    tf.close()


def test_layout_errors(tmp_path):
    tracks = _tracks()
    del tracks["chr2"]["mask"]
    with pytest.raises(InputError, match=r"sequence 'chr2' lacks track\(s\) mask that others have"):
        TrackFile(_write(tmp_path / "a.h5", tracks))
    tracks = _tracks()
    tracks["chr1"]["mask"] = tracks["chr1"]["mask"][:-1]
    with pytest.raises(InputError, match=r"tracks of 'chr1' have different lengths \[119, 120\]"):
        TrackFile(_write(tmp_path / "b.h5", tracks))
    tracks = _tracks()
    tracks["chr1"]["mask"] = np.zeros((120, 2))
    with pytest.raises(InputError, match=r"'/chr1/mask' has shape \(120, 2\); expected 1-D"):
        TrackFile(_write(tmp_path / "c.h5", tracks))
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        h5.create_dataset("chr1", data=np.zeros(5))
    with pytest.raises(InputError, match="'/chr1' is a dataset; expected groups"):
        TrackFile(tmp_path / "d.h5")
    with h5py.File(tmp_path / "e.h5", "w"):
        pass
    with pytest.raises(InputError, match="no /{seqid}/{track} datasets"):
        TrackFile(tmp_path / "e.h5")
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5.create_group("chr1")
    with pytest.raises(InputError, match="hold no track datasets"):
        TrackFile(tmp_path / "f.h5")
    with h5py.File(tmp_path / "g.h5", "w") as h5:
        h5.create_dataset("chr1/names", data=np.array([b"a", b"b"]))
    with pytest.raises(InputError, match="non-numeric dtype"):
        TrackFile(tmp_path / "g.h5")


def test_not_hdf5(tmp_path, data_dir):
    with pytest.raises(InputError, match="track file not found"):
        TrackFile(tmp_path / "nope.h5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        TrackFile(data_dir / "mini.fa")
