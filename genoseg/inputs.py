"""Network inputs for a genome region: one-hot sequence + soft-mask + optional signal tracks.

Channels, in order: A, C, G, T, N (IUPAC codes count as N), soft-mask (1 for lowercase), then
the HDF5 feature tracks in sorted name order, then per BAM file log1p(coverage) (two channels,
+ then - strand reads, when the BAM coverage is stranded). Training and
annotation build their inputs here, so a model always sees the same channels in the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genoseg.errors import InputError
from genoseg.io.fasta import Genome


@dataclass(frozen=True)
class TrackSpec:
    """Which signal tracks feed the network (saved in the model metadata)."""

    hdf5_tracks: tuple[str, ...] = ()
    n_bam: int = 0
    bam_stranded: bool = False

    @property
    def n_tracks(self) -> int:
        return len(self.hdf5_tracks) + self.n_bam * (2 if self.bam_stranded else 1)


class InputSource:
    """Reads network inputs (L, 6 + n_tracks) float32 for any region of a genome."""

    def __init__(self, genome: str | os.PathLike, tracks: str | os.PathLike | None = None,
                 bams: tuple[str | os.PathLike, ...] = (), min_mapq: int = 0,
                 bam_stranded: bool = False):
        self.genome = Genome(genome)
        self.track_file = None
        hdf5_names: tuple[str, ...] = ()
        if tracks is not None:
            from genoseg.io.hdf5 import TrackFile

            self.track_file = TrackFile(tracks)
            self.track_file.check_lengths(self.genome.lengths)
            hdf5_names = tuple(self.track_file.track_names)
        for bam in bams:
            if not Path(bam).is_file():
                raise InputError(f"{bam}: BAM file not found")
        self.bams = tuple(str(b) for b in bams)
        self.min_mapq = min_mapq
        self.spec = TrackSpec(hdf5_tracks=hdf5_names, n_bam=len(self.bams),
                              bam_stranded=bam_stranded and bool(self.bams))

    @property
    def names(self) -> list[str]:
        return self.genome.names

    @property
    def lengths(self) -> dict[str, int]:
        return self.genome.lengths

    def read(self, seqid: str, start: int = 0, end: int | None = None) -> np.ndarray:
        """(end - start, 6 + n_tracks) float32 for [start, end) of seqid (0-based)."""
        parts = [self.genome.encode(seqid, start, end)]
        if self.track_file is not None:
            parts.append(self.track_file.read(seqid, start, end))
        if self.bams:
            from genoseg.io.bam import coverage

            strands = ("+", "-") if self.spec.bam_stranded else (None,)
            for bam in self.bams:
                for strand in strands:
                    cov = coverage(bam, seqid, start, end, min_mapq=self.min_mapq, strand=strand)
                    parts.append(np.log1p(cov)[:, None])
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def check_matches(self, spec: TrackSpec, what: str) -> None:
        """InputError unless these inputs give the channels ``spec`` describes (e.g. a model's)."""
        if spec != self.spec:
            raise InputError(
                f"{what} expects tracks {list(spec.hdf5_tracks)} and {spec.n_bam} BAM file(s)"
                f"{' (stranded)' if spec.bam_stranded else ''}, but the inputs give "
                f"{list(self.spec.hdf5_tracks)} and {self.spec.n_bam}")

    def close(self) -> None:
        self.genome.close()
        if self.track_file is not None:
            self.track_file.close()
