"""Generic labels: BED-style intervals <-> per-position labels <-> decoded segments."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from genoseg.errors import InputError
from genoseg.io.features import Segment
from genoseg.labels import scheme_from_bed_labels
from genoseg.labels.generic import decoded_to_segments, labels_to_segments, segments_to_labels
from genoseg.labels.runs import label_runs, merge_segments


@pytest.fixture(scope="module")
def scheme():
    return scheme_from_bed_labels(["promoter", "enhancer"], K=16)


def seg(start, end, label, seqid="chr1"):
    return Segment(seqid=seqid, start=start, end=end, label=label)


def test_round_trip(scheme):
    intervals = [seg(0, 5, "promoter"), seg(5, 9, "enhancer"), seg(20, 50, "enhancer")]
    labels = segments_to_labels(intervals + [seg(0, 3, "promoter", "chr2")], "chr1", 60, scheme)
    assert labels.dtype == np.int64 and labels.shape == (60,)
    assert labels_to_segments(labels, "chr1", scheme) == intervals
    with_bg = labels_to_segments(labels, "chr1", scheme, include_background=True, offset=100)
    assert [(s.start, s.end, s.label) for s in with_bg] == [
        (100, 105, "promoter"), (105, 109, "enhancer"), (109, 120, "background"),
        (120, 150, "enhancer"), (150, 160, "background")]


def test_overlaps_keep_the_first_interval(scheme, caplog):
    with caplog.at_level(logging.WARNING, logger="genoseg.labels.generic"):
        labels = segments_to_labels([seg(0, 10, "promoter"), seg(5, 15, "enhancer")], "chr1", 20,
                                    scheme)
    assert "5 bp" in caplog.text
    assert [(s.start, s.end, s.label) for s in labels_to_segments(labels, "chr1", scheme)] == [
        (0, 10, "promoter"), (10, 15, "enhancer")]


def test_bad_intervals(scheme):
    with pytest.raises(InputError, match="'silencer' is not in scheme"):
        segments_to_labels([seg(0, 5, "silencer")], "chr1", 10, scheme)
    with pytest.raises(InputError, match="outside the sequence"):
        segments_to_labels([seg(5, 12, "promoter")], "chr1", 10, scheme)


def test_decoded_segments_merge_tiles(scheme):
    p, e, b = scheme.index("promoter"), scheme.index("enhancer"), scheme.background_index
    decoded = np.array([[0, 16, e], [16, 20, e], [20, 30, b], [30, 32, p], [32, 40, e]])
    out = decoded_to_segments(decoded, "chr1", scheme, segment_scores=[0.2, 0.4, 1.0, 0.5, 0.7])
    assert [(s.start, s.end, s.label) for s in out] == [
        (0, 20, "enhancer"), (30, 32, "promoter"), (32, 40, "enhancer")]
    assert [s.score for s in out] == pytest.approx([0.3, 0.5, 0.7])


def test_runs_helpers():
    assert label_runs(np.array([], dtype=np.int64)).shape == (0, 3)
    assert label_runs(np.array([2, 2, 0, 0, 0, 2])).tolist() == [[0, 2, 2], [2, 5, 0], [5, 6, 2]]
    runs, members = merge_segments([[0, 2, 1], [2, 4, 1], [4, 5, 0]])
    assert runs.tolist() == [[0, 4, 1], [4, 5, 0]] and members == [[0, 1], [2]]
    with pytest.raises(ValueError, match="sorted"):
        merge_segments([[4, 5, 0], [0, 2, 1]])
