"""Run-length helpers shared by the gene and generic label converters.

A *run* is a maximal stretch of one label. The model head returns tiled labels' runs whole (one
row per run); segments of an untiled label with a self transition are finer than runs and may
come back as several abutting rows, which the helpers here merge.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def label_runs(labels: np.ndarray) -> np.ndarray:
    """Runs of a per-position label vector.

    labels: (T,) integer array. Returns (n, 3) int64 rows [start, end_exclusive, label], covering
    [0, T) in order; (0, 3) for T == 0.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [labels.size]))
    return np.stack([starts, ends, labels[starts]], axis=1).astype(np.int64)


def as_segment_array(segments: Any) -> np.ndarray:
    """(n, 3) int64 array from a numpy array, torch tensor or list of [start, end, label] rows.

    Rows must be in genome order and must not overlap (Viterbi output is); ValueError otherwise.
    """
    if hasattr(segments, "detach"):  # torch tensor, without importing torch here
        segments = segments.detach().cpu().numpy()
    arr = np.asarray(segments, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"segments must have shape (n, 3), got {arr.shape}")
    if np.any(arr[:, 1] <= arr[:, 0]):
        raise ValueError("segments must have end > start")
    if np.any(arr[1:, 0] < arr[:-1, 1]):
        raise ValueError("segments must be sorted by start and must not overlap")
    return arr


def merge_segments(segments: Any) -> tuple[np.ndarray, list[list[int]]]:
    """Merge abutting segments with the same label into runs.

    Returns (runs (m, 3) int64, members) where ``members[i]`` lists the indices of the segments
    forming run i, so callers can pool their own per-segment scores.
    """
    seg = as_segment_array(segments)
    runs: list[list[int]] = []
    members: list[list[int]] = []
    for i, (s, e, c) in enumerate(seg.tolist()):
        if runs and runs[-1][2] == c and runs[-1][1] == s:
            runs[-1][1] = e
            members[-1].append(i)
        else:
            runs.append([s, e, c])
            members.append([i])
    return np.asarray(runs, dtype=np.int64).reshape(-1, 3), members
