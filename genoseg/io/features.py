"""Plain records shared by readers, label schemes and writers.

Coordinates here are always 0-based, half-open (BED convention); GFF3 readers and writers convert
at the file boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Transcript:
    """One protein-coding transcript: its CDS parts in genome order (ascending start).

    ``cds`` holds (start, end) pairs, 0-based half-open, sorted by start, non-overlapping; the CDS
    includes the stop codon. ``strand`` is '+' or '-'.
    """

    seqid: str
    strand: str
    gene_id: str
    transcript_id: str
    cds: tuple[tuple[int, int], ...]
    score: float | None = None  # e.g. a posterior probability; written to the GFF3 score column
    attributes: dict = field(default_factory=dict, compare=False)

    @property
    def start(self) -> int:
        return self.cds[0][0]

    @property
    def end(self) -> int:
        return self.cds[-1][1]

    @property
    def cds_length(self) -> int:
        return sum(e - s for s, e in self.cds)


@dataclass(frozen=True)
class Segment:
    """A labelled interval, 0-based half-open, e.g. one Viterbi segment or one BED label."""

    seqid: str
    start: int
    end: int
    label: str
    strand: str = "."
    score: float | None = None
