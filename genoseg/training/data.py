"""Training data: per-position gold labels from an annotation, a split by sequence, and windows.

Gene-structure schemes read GFF3/GTF gene models (one transcript per gene: the longest CDS);
generic schemes read BED intervals whose name column is the label. Validation holds out whole
sequences (or, for a single-sequence genome, the last part of it), so no validation base is seen
in training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from genoseg.errors import InputError
from genoseg.inputs import InputSource
from genoseg.labels.scheme import GENE_LABELS, LabelScheme

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Region:
    """A labelled stretch of one sequence: [start, end), 0-based."""

    seqid: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def gold_labels(annotation: str | os.PathLike, scheme: LabelScheme,
                lengths: dict[str, int]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per-position label indices (int8 arrays) for every annotated sequence in the genome.

    Returns (labels by seqid, counts) where counts holds the number of features used and of
    sequences annotated. Sequences without any feature are left out (nothing to learn from in a
    gene-scheme genome whose annotation does not cover them).
    """
    path = str(annotation)
    if not os.path.exists(path):
        raise InputError(f"{path}: annotation file not found")
    if scheme.kind == "gene":
        from genoseg.io.gff3 import read_gene_models
        from genoseg.labels.gene import transcripts_to_labels as to_labels

        features = read_gene_models(path)
    else:
        from genoseg.io.bed import read_bed_labels
        from genoseg.labels.generic import segments_to_labels as to_labels

        features = read_bed_labels(path)
        unknown = sorted({s.label for s in features} - set(scheme.labels))
        if unknown:
            raise InputError(f"{path}: labels {unknown[:5]} are not in the scheme "
                             f"{scheme.name!r} ({', '.join(scheme.labels)})")
    by_seq: dict[str, list] = {}
    for feature in features:
        by_seq.setdefault(feature.seqid, []).append(feature)
    labels: dict[str, np.ndarray] = {
        seqid: to_labels(group, seqid, lengths[seqid], scheme).astype(np.int8)
        for seqid, group in by_seq.items() if seqid in lengths}
    missing = sorted(set(by_seq) - set(lengths))
    if not labels:
        raise InputError(f"{path}: no annotated sequence is in the genome (annotation seqids "
                         f"such as {missing[:3]} do not match the FASTA names)")
    if missing:
        log.warning("%d annotated sequence(s) are not in the genome and are ignored, e.g. %s",
                    len(missing), missing[0])
    return labels, {"features": len(features), "sequences": len(labels)}


def split_regions(lengths: dict[str, int], seqids: list[str], val_fraction: float,
                  seed: int) -> tuple[list[Region], list[Region]]:
    """Train and validation regions: whole sequences held out, in a seeded random order, until
    ``val_fraction`` of the bases is reached; a single sequence is split at 1 - val_fraction."""
    if val_fraction <= 0:
        return [Region(s, 0, lengths[s]) for s in seqids], []
    if len(seqids) == 1:
        s = seqids[0]
        cut = int(lengths[s] * (1 - val_fraction))
        if cut < 1 or cut >= lengths[s]:
            return [Region(s, 0, lengths[s])], []
        return [Region(s, 0, cut)], [Region(s, cut, lengths[s])]
    order = np.random.default_rng(seed).permutation(len(seqids))
    total = sum(lengths[s] for s in seqids)
    val, held = [], 0
    for k in order:
        if held >= val_fraction * total or len(val) == len(seqids) - 1:
            break
        val.append(seqids[k])
        held += lengths[seqids[k]]
    val_set = set(val)
    train = [Region(s, 0, lengths[s]) for s in seqids if s not in val_set]
    return train, [Region(s, 0, lengths[s]) for s in seqids if s in val_set]


def training_split(names: list[str], lengths: dict[str, int], labels: dict, sequences,
                   val_fraction: float, seed: int, val_sequences=()
                   ) -> tuple[list[Region], list[Region]]:
    """The split ``genoseg train`` makes: the annotated sequences in genome order, restricted to
    ``sequences`` (its --sequences) when given, then ``split_regions``; or, when
    ``val_sequences`` (its --val-sequences) are given, the annotated ones of them validate and
    the other annotated ones train (``val_fraction`` is not used). Benchmarks that score a
    run's validation records call this too, so they hold out exactly what the run held out."""
    seqids = [s for s in names if s in labels]
    if sequences:
        wanted = set(sequences)
        seqids = [s for s in seqids if s in wanted]
    if val_sequences:
        held = set(val_sequences)
        return ([Region(s, 0, lengths[s]) for s in seqids if s not in held],
                [Region(s, 0, lengths[s]) for s in seqids if s in held])
    return split_regions(lengths, seqids, val_fraction, seed)


class WindowSampler:
    """Random training windows over regions (probability proportional to length), as padded
    batches: x (B, W, channels) float32, labels (B, W) int64, lengths (B,) int64."""

    def __init__(self, source: InputSource, labels: dict[str, np.ndarray], regions: list[Region],
                 window: int, seed: int, rc_label_map: np.ndarray | None = None):
        if not regions:
            raise InputError("no training sequences left after the validation split")
        self.source, self.labels, self.regions, self.window = source, labels, regions, window
        self.rc_label_map = rc_label_map  # reverse-complement half the windows (see rc_window)
        weights = np.array([r.length for r in regions], dtype=np.float64)
        self.p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self, batch_size: int):
        picks = []
        for k in self.rng.choice(len(self.regions), size=batch_size, p=self.p):
            r = self.regions[k]
            n = min(self.window, r.length)
            start = r.start + int(self.rng.integers(0, r.length - n + 1))
            picks.append((r.seqid, start, start + n))
        x, y, lengths = make_batch(self.source, self.labels, picks, self.window)
        if self.rc_label_map is not None:
            for b in np.flatnonzero(self.rng.random(batch_size) < 0.5):
                rc_window(x[b], y[b], int(lengths[b]), self.rc_label_map)
        return x, y, lengths


# Input channels A C G T N soft-mask: complementing swaps A<->T and C<->G.
_RC_CHANNELS = np.array([3, 2, 1, 0, 4, 5])


def rc_label_map(scheme: LabelScheme) -> np.ndarray:
    """(C,) int64: the label of each label on the other strand ("exon+" <-> "exon-"; labels
    without a strand suffix map to themselves)."""
    out = np.arange(scheme.C)
    for c, name in enumerate(scheme.labels):
        if name.endswith(("+", "-")):
            other = name[:-1] + ("-" if name.endswith("+") else "+")
            if other in scheme.labels:
                out[c] = scheme.labels.index(other)
    return out


def rc_window(x: np.ndarray, y: np.ndarray, n: int, label_map: np.ndarray) -> None:
    """Reverse-complement one window in place: its first n positions of x (W, channels: the
    6 sequence channels, then unstranded tracks, which are only reversed) and y (W,) labels
    (-1 stays -1)."""
    seq = x[:n, :6][::-1][:, _RC_CHANNELS]
    x[:n, 6:] = x[:n, 6:][::-1].copy()
    x[:n, :6] = seq
    labels = y[:n][::-1].copy()
    y[:n] = np.where(labels >= 0, label_map[np.maximum(labels, 0)], labels)


def tile_regions(regions: list[Region], window: int, limit: int | None = None
                 ) -> list[tuple[str, int, int]]:
    """Deterministic non-overlapping windows covering the regions (validation)."""
    out = []
    for r in regions:
        for s in range(r.start, r.end, window):
            out.append((r.seqid, s, min(s + window, r.end)))
    return out[:limit] if limit else out


def make_batch(source: InputSource, labels: dict[str, np.ndarray],
               picks: list[tuple[str, int, int]], window: int):
    """Stack windows (seqid, start, end) into zero-padded arrays of width ``window``."""
    B = len(picks)
    W = max(e - s for _, s, e in picks)
    W = min(W, window)
    x = np.zeros((B, W, source.read(picks[0][0], picks[0][1], picks[0][1] + 1).shape[1]),
                 dtype=np.float32)
    y = np.zeros((B, W), dtype=np.int64)
    lengths = np.zeros(B, dtype=np.int64)
    for b, (seqid, s, e) in enumerate(picks):
        n = e - s
        x[b, :n] = source.read(seqid, s, e)
        y[b, :n] = labels[seqid][s:e]
        lengths[b] = n
    return x, y, lengths


def content_records(source: InputSource, annotation: str | os.PathLike,
                    labels: dict[str, np.ndarray], regions: list[Region]):
    """What ``genoseg.crf.coding_content.fit`` counts, per training region: (codes, [(strand,
    CDS positions, codon positions)], noncoding positions), positions relative to the region.
    Coding bases come from the annotation's CDS (with their codon positions), noncoding ones
    from the gold labels (intergenic and intron classes of a gene scheme)."""
    from genoseg.crf.coding_content import transcript_codon_positions
    from genoseg.io.gff3 import read_gene_models
    from genoseg.labels import codons

    wanted = {r.seqid for r in regions}
    by_seq: dict[str, list] = {}
    for tx in read_gene_models(annotation, seqids=wanted):
        by_seq.setdefault(tx.seqid, []).append(tx)
    for r in regions:
        codes = codons.encode(source.genome.fetch(r.seqid, r.start, r.end))
        cds = []
        for tx in by_seq.get(r.seqid, []):
            pos, rs = transcript_codon_positions(tx, source.lengths[r.seqid])
            keep = (pos >= r.start) & (pos < r.end)
            cds.append((tx.strand, pos[keep] - r.start, rs[keep]))
        y = labels[r.seqid][r.start:r.end]
        noncoding = np.flatnonzero(np.isin(y, [GENE_LABELS.index(name) for name in (
            "intergenic", "intron+", "intron-")])).astype(np.int64)
        yield codes, cds, noncoding
