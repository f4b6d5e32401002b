"""Reverse-complement augmentation of training windows: the labels of a reverse-complemented
window are the labels of the reverse-complemented gene, and doing it twice is the identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genoseg.io.features import Transcript
from genoseg.labels.gene import transcripts_to_labels
from genoseg.labels.scheme import load_scheme
from genoseg.training.data import rc_label_map, rc_window

SCHEME = load_scheme(Path(__file__).resolve().parents[2] / "configs/schemes/gene_basic.toml")


def _onehot(seq: str) -> np.ndarray:
    x = np.zeros((len(seq), 7), dtype=np.float32)
    for i, ch in enumerate(seq):
        x[i, "ACGTN".index(ch.upper())] = 1.0
        x[i, 5] = float(ch.islower())
        x[i, 6] = i  # an unstranded track: only reversed
    return x


def test_rc_window_matches_the_reverse_complemented_gene():
    seq = "ccATGAAAGGTAAGTTTAGCTTAAnGGA"
    n, W = len(seq), len(seq) + 4  # padding past the window's length stays untouched
    tx = Transcript("c", "+", "g", "t", ((2, 9), (19, 24)))
    x = np.full((W, 7), 9.0, dtype=np.float32)
    x[:n] = _onehot(seq)
    y = np.full(W, -1, dtype=np.int64)
    y[:n] = transcripts_to_labels([tx], "c", n, SCHEME)
    y[0] = -1  # unknown stays unknown
    label_map = rc_label_map(SCHEME)
    assert [SCHEME.labels[i] for i in label_map] == ["intergenic", "exon-", "intron-", "exon+",
                                                     "intron+"]
    x2, y2 = x.copy(), y.copy()
    rc_window(x2, y2, n, label_map)

    rc_seq = seq[::-1].translate(str.maketrans("ACGTacgt", "TGCAtgca"))
    expect_x = _onehot(rc_seq)
    expect_x[:, 6] = np.arange(n)[::-1]
    np.testing.assert_array_equal(x2[:n], expect_x)
    np.testing.assert_array_equal(x2[n:], x[n:])
    rc_tx = Transcript("c", "-", "g", "t", tuple(sorted((n - e, n - s) for s, e in tx.cds)))
    expect_y = transcripts_to_labels([rc_tx], "c", n, SCHEME)
    expect_y[n - 1] = -1
    np.testing.assert_array_equal(y2[:n], expect_y)
    rc_window(x2, y2, n, label_map)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
