"""Gene-structure labels: transcripts <-> per-position labels <-> transcripts.

Labels (scheme kind "gene"): ``intergenic``, ``exon+``, ``intron+``, ``exon-``, ``intron-``.
"exon" here means a CDS part (the model annotates coding sequence); "intron" is the gap between two
CDS parts of one transcript. Coordinates are 0-based half-open throughout.

Supported: both strands, single-exon genes, genes cut by the sequence ends. Not represented:
UTRs, overlapping or nested genes (the first transcript claiming a position keeps it; a later
transcript that disagrees anywhere is skipped and counted in a warning), two same-strand genes
that abut with no intergenic base between them (they decode as one gene).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import numpy as np

from genoseg.errors import ConfigError, InputError
from genoseg.io.features import Transcript
from genoseg.labels.runs import merge_segments
from genoseg.labels.scheme import GENE_LABELS, LabelScheme

log = logging.getLogger(__name__)


def _gene_indices(scheme: LabelScheme) -> dict[str, int]:
    if scheme.kind != "gene":
        raise ConfigError(f"label scheme {scheme.name!r} is {scheme.kind!r}, not a gene scheme")
    return {n: scheme.index(n) for n in GENE_LABELS}


def transcripts_to_labels(transcripts: Iterable[Transcript], seqid: str, length: int,
                          scheme: LabelScheme) -> np.ndarray:
    """Per-position labels of one sequence from its transcripts.

    Transcripts on other seqids are ignored. CDS parts -> ``exon±`` by the transcript's strand,
    gaps between consecutive CDS parts -> ``intron±``, everything else ``intergenic``.

    Returns (length,) int64 label indices of ``scheme``. Raises InputError for a transcript that
    reaches past ``length``, has no CDS, overlapping CDS parts or a strand other than '+'/'-'.
    """
    idx = _gene_indices(scheme)
    labels = np.full(length, idx["intergenic"], dtype=np.int64)
    claimed = np.zeros(length, dtype=bool)
    skipped, skipped_bp = 0, 0
    for tx in transcripts:
        if tx.seqid != seqid:
            continue
        own = _transcript_labels(tx, length, idx)
        if own is None:
            continue
        start, values = own
        sl = slice(start, start + values.size)
        clash = claimed[sl] & (labels[sl] != values)
        if clash.any():
            skipped += 1
            skipped_bp += int(clash.sum())
            continue
        labels[sl] = values
        claimed[sl] = True
    if skipped:
        log.warning("%s: %d transcript(s) overlap earlier ones with different labels (%d bp); "
                    "they were left out of the labels", seqid, skipped, skipped_bp)
    return labels


def _transcript_labels(tx: Transcript, length: int, idx: dict[str, int]
                       ) -> tuple[int, np.ndarray] | None:
    """(span start, labels over the transcript's span) or None for an empty transcript."""
    if tx.strand not in ("+", "-"):
        raise InputError(f"transcript {tx.transcript_id}: strand must be '+' or '-', "
                         f"got {tx.strand!r}")
    if not tx.cds:
        raise InputError(f"transcript {tx.transcript_id}: has no CDS")
    parts = sorted(tx.cds)
    for (s, e), nxt in zip(parts, parts[1:] + [None]):
        if not 0 <= s < e:
            raise InputError(f"transcript {tx.transcript_id}: bad CDS part [{s}, {e})")
        if nxt is not None and nxt[0] < e:
            raise InputError(f"transcript {tx.transcript_id}: CDS parts overlap at {nxt[0]}")
    start, end = parts[0][0], parts[-1][1]
    if end > length:
        raise InputError(f"transcript {tx.transcript_id} on {tx.seqid}: CDS ends at {end}, past "
                         f"the sequence length {length}")
    exon, intron = (idx["exon+"], idx["intron+"]) if tx.strand == "+" else (idx["exon-"],
                                                                               idx["intron-"])
    values = np.full(end - start, intron, dtype=np.int64)
    for s, e in parts:
        values[s - start:e - start] = exon
    return start, values


def segments_to_transcripts(segments: Any, seqid: str, scheme: LabelScheme,
                            segment_scores: Sequence[float] | np.ndarray | None = None,
                            ) -> list[Transcript]:
    """Gene models from decoded segments of one sequence.

    segments: (n, 3) int rows [start, end_exclusive, label] in genome order (numpy or torch), e.g.
    one Viterbi path. Abutting same-label segments merge into runs; a '+' gene is a maximal chain
    ``exon+ (intron+ exon+)*`` of runs, and likewise for '-'. An intron run with no exon on one
    side (a gene cut by the sequence end, or a grammar-free decode) is dropped, and the gene ends
    at its last exon.

    segment_scores: optional (n,) per-segment scores (e.g. segment posteriors); a transcript's
    score is the mean over its exon segments, else None.

    Returns transcripts in genome order with placeholder ids ``{seqid}.{n}`` (gene) and
    ``{seqid}.{n}.t1`` (transcript), n from 1; writers assign the final IDs.
    """
    idx = _gene_indices(scheme)
    runs, members = merge_segments(segments)
    if segment_scores is not None:
        if hasattr(segment_scores, "detach"):
            segment_scores = segment_scores.detach().cpu().numpy()
        segment_scores = np.asarray(segment_scores, dtype=np.float64).reshape(-1)
        if segment_scores.size != sum(len(m) for m in members):
            raise ValueError(f"segment_scores has {segment_scores.size} entries for "
                             f"{sum(len(m) for m in members)} segments")
    strand_of = {idx["exon+"]: ("+", idx["intron+"]), idx["exon-"]: ("-", idx["intron-"])}

    out: list[Transcript] = []
    i, n = 0, len(runs)
    while i < n:
        label = int(runs[i, 2])
        if label not in strand_of:
            i += 1  # intergenic, or an intron without a preceding exon
            continue
        strand, intron = strand_of[label]
        chain = [i]
        j = i + 1
        while j + 1 < n and runs[j, 2] == intron and runs[j + 1, 2] == label:
            chain.append(j + 1)
            j += 2
        cds = tuple((int(runs[k, 0]), int(runs[k, 1])) for k in chain)
        score = None
        if segment_scores is not None:
            score = float(np.mean(np.concatenate([segment_scores[members[k]] for k in chain])))
        number = len(out) + 1
        out.append(Transcript(seqid=seqid, strand=strand, gene_id=f"{seqid}.{number}",
                              transcript_id=f"{seqid}.{number}.t1", cds=cds, score=score))
        i = chain[-1] + 1
    return out
