"""Generic labels: BED-style named intervals <-> per-position labels.

Positions no interval covers take the scheme's background label. Where intervals overlap, the
first one to claim a position keeps it; the number of contested bases is logged as a warning.
Coordinates are 0-based half-open.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import numpy as np

from genoseg.errors import InputError
from genoseg.io.features import Segment
from genoseg.labels.runs import label_runs, merge_segments
from genoseg.labels.scheme import LabelScheme

log = logging.getLogger(__name__)


def segments_to_labels(segments: Iterable[Segment], seqid: str, length: int,
                       scheme: LabelScheme) -> np.ndarray:
    """Per-position labels of one sequence from labelled intervals.

    Segments on other seqids are ignored. Returns (length,) int64 label indices. Raises
    InputError for a label the scheme does not know or an interval outside [0, length).
    """
    labels = np.full(length, scheme.background_index, dtype=np.int64)
    claimed = np.zeros(length, dtype=bool)
    lookup = {n: i for i, n in enumerate(scheme.labels)}
    contested = 0
    for seg in segments:
        if seg.seqid != seqid:
            continue
        if seg.label not in lookup:
            raise InputError(f"{seqid}:{seg.start}-{seg.end}: label {seg.label!r} is not in "
                             f"scheme {scheme.name!r} ({', '.join(scheme.labels)})")
        if not 0 <= seg.start < seg.end <= length:
            raise InputError(f"{seqid}:{seg.start}-{seg.end} ({seg.label}): interval outside the "
                             f"sequence [0, {length})")
        sl = slice(seg.start, seg.end)
        free = ~claimed[sl]
        contested += int(free.size - free.sum())
        labels[sl][free] = lookup[seg.label]
        claimed[sl] = True
    if contested:
        log.warning("%s: %d bp covered by more than one interval; the first interval keeps them",
                    seqid, contested)
    return labels


def labels_to_segments(labels: np.ndarray, seqid: str, scheme: LabelScheme, *,
                       offset: int = 0, include_background: bool = False) -> list[Segment]:
    """Runs of a (T,) label vector as Segments (background runs left out unless asked for).

    ``offset`` is added to every coordinate (for labels of a window starting at ``offset``).
    """
    runs = label_runs(np.asarray(labels))
    return _runs_to_segments(runs, seqid, scheme, offset=offset,
                             include_background=include_background)


def decoded_to_segments(segments: Any, seqid: str, scheme: LabelScheme,
                        segment_scores: Sequence[float] | np.ndarray | None = None, *,
                        offset: int = 0, include_background: bool = False) -> list[Segment]:
    """Viterbi segments (n, 3) [start, end_exclusive, label] -> Segments, one per run.

    Abutting same-label segments (an untiled label chained by self transitions) merge into one
    Segment whose score is the mean of its segments' scores (None without scores).
    """
    runs, members = merge_segments(segments)
    scores = None
    if segment_scores is not None:
        if hasattr(segment_scores, "detach"):
            segment_scores = segment_scores.detach().cpu().numpy()
        flat = np.asarray(segment_scores, dtype=np.float64).reshape(-1)
        scores = [float(flat[m].mean()) for m in members]
    return _runs_to_segments(runs, seqid, scheme, offset=offset,
                             include_background=include_background, scores=scores)


def _runs_to_segments(runs: np.ndarray, seqid: str, scheme: LabelScheme, *, offset: int,
                      include_background: bool, scores: list[float] | None = None
                      ) -> list[Segment]:
    bg = scheme.background_index
    out = []
    for i, (s, e, c) in enumerate(runs.tolist()):
        if c == bg and not include_background:
            continue
        out.append(Segment(seqid=seqid, start=s + offset, end=e + offset, label=scheme.labels[c],
                           score=None if scores is None else scores[i]))
    return out
