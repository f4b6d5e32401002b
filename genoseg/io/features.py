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

    A partial transcript (a gene cut by a contig end) lacks its 5' end (``partial5``: no start
    codon) or its 3' end (``partial3``: no stop codon), on the transcript's strand. ``phase5`` is
    the GFF3 phase of its 5'-most CDS part: bases to skip from that part's 5' end to the first
    complete codon (0 for a CDS that begins with its start codon). ``span``: the gene's extent
    where it reaches past the CDS (a gene cut inside an intron runs to the contig end); None:
    the CDS span. ``start`` and ``end`` are the gene's extent.
    """

    seqid: str
    strand: str
    gene_id: str
    transcript_id: str
    cds: tuple[tuple[int, int], ...]
    score: float | None = None  # e.g. a posterior probability; written to the GFF3 score column
    attributes: dict = field(default_factory=dict, compare=False)
    phase5: int = 0
    partial5: bool = False
    partial3: bool = False
    span: tuple[int, int] | None = None

    @property
    def start(self) -> int:
        return self.cds[0][0] if self.span is None else self.span[0]

    @property
    def end(self) -> int:
        return self.cds[-1][1] if self.span is None else self.span[1]

    @property
    def partial(self) -> bool:
        return self.partial5 or self.partial3

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
