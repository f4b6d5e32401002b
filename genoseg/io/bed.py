"""BED: labelled intervals in, labelled segments out. 0-based half-open, as BED itself."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from genoseg.errors import InputError
from genoseg.io.atomic import atomic_open
from genoseg.io.features import Segment

logger = logging.getLogger(__name__)

# Distinct, colour-blind-friendly defaults (Okabe-Ito) for labels without a given colour
_PALETTE = [
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
    (0, 114, 178), (213, 94, 0), (204, 121, 167), (153, 153, 153),
]


def read_bed_labels(path: str | os.PathLike) -> list[Segment]:
    """Read a BED file whose name column (4th) is a label; returns segments in file order.

    Needs at least 4 columns (chrom, start, end, name); a 5th (score, 0..1000 or '.') becomes
    ``Segment.score`` = score / 1000, a 6th (strand: +, - or .) ``Segment.strand``. Columns are
    tab-separated (whitespace if a line has no tab). Skips blank, ``track``, ``browser`` and ``#``
    lines; skips zero-length intervals (legal in BED, meaningless as labels) with one warning.
    Plain or gzip.

    Raises InputError (file and line) for: missing file, fewer than 4 columns, non-integer,
    negative or inverted coordinates, invalid score or strand.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: BED file not found")
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    segments: list[Segment] = []
    empty = 0
    try:
        with (gzip.open(path, "rt") if gzipped else open(path)) as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                where = f"{path}:{number}"
                columns = line.split("\t") if "\t" in line else line.split()
                if len(columns) < 4:
                    raise InputError(
                        f"{where}: expected at least 4 columns (chrom, start, end, name), found {len(columns)}"
                    )
                chrom, start, end, name = columns[:4]
                try:
                    start_0, end_0 = int(start), int(end)
                except ValueError:
                    raise InputError(f"{where}: non-integer coordinates {start!r}, {end!r}") from None
                if start_0 < 0:
                    raise InputError(f"{where}: negative start {start_0}")
                if start_0 > end_0:
                    raise InputError(f"{where}: start {start_0} > end {end_0}")
                if not name:
                    raise InputError(f"{where}: empty name (label) column")
                score = None
                if len(columns) >= 5 and columns[4] not in ("", "."):
                    try:
                        score = float(columns[4]) / 1000.0
                    except ValueError:
                        raise InputError(f"{where}: invalid score {columns[4]!r}") from None
                strand = "."
                if len(columns) >= 6:
                    strand = columns[5] or "."
                    if strand not in ("+", "-", "."):
                        raise InputError(f"{where}: invalid strand {strand!r} (expected +, - or .)")
                if start_0 == end_0:
                    empty += 1
                    continue
                segments.append(Segment(chrom, start_0, end_0, name, strand, score))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a BED text file (binary or non-UTF-8 data)") from None
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None
    if empty:
        logger.warning("%s: skipped %d zero-length interval(s)", path, empty)
    return segments


def _bed_score(score: float | None) -> int:
    if score is None or score != score:  # None or NaN
        return 0
    return min(1000, max(0, round(1000 * score)))


def write_bed(
    path: str | os.PathLike,
    segments: Iterable[Segment],
    colors: dict[str, tuple[int, int, int]] | None = None,
    bed9: bool = False,
    seqids: Sequence[str] | None = None,
) -> None:
    """Write segments as BED6, or BED9 with ``bed9=True`` (atomically).

    Columns: chrom, start, end (0-based half-open), name = label, score =
    ``round(1000 * segment.score)`` clipped to 0..1000 (0 if None), strand. BED9 adds
    thickStart = start, thickEnd = end and itemRgb from ``colors[label]``; labels missing from
    ``colors`` get colours from a fixed default palette, in the order they first appear in the
    output.

    Order: by seqid (``seqids`` order if given, which must list every seqid; else order of first
    appearance), then start, then end. An empty ``segments`` writes an empty file.
    """
    segments = list(segments)
    rank: dict[str, int] = {s: i for i, s in enumerate(seqids)} if seqids is not None else {}
    for seg in segments:
        if seqids is None:
            rank.setdefault(seg.seqid, len(rank))
        elif seg.seqid not in rank:
            raise ValueError(f"segment on '{seg.seqid}', which is not in seqids")
        if not 0 <= seg.start <= seg.end:
            raise ValueError(f"segment {seg.seqid}:{seg.start}-{seg.end} has invalid coordinates")
        if any(c in seg.label for c in "\t\n\r") or not seg.label:
            raise ValueError(f"segment label {seg.label!r} is empty or has tabs/newlines")
    order = sorted(range(len(segments)), key=lambda i: (rank[segments[i].seqid], segments[i].start, segments[i].end, i))
    palette: dict[str, tuple[int, int, int]] = dict(colors or {})
    with atomic_open(path, "w") as out:
        for i in order:
            seg = segments[i]
            strand = seg.strand if seg.strand in ("+", "-") else "."
            line = f"{seg.seqid}\t{seg.start}\t{seg.end}\t{seg.label}\t{_bed_score(seg.score)}\t{strand}"
            if bed9:
                if seg.label not in palette:
                    palette[seg.label] = _PALETTE[len(palette) % len(_PALETTE)]
                r, g, b = (int(c) for c in palette[seg.label])
                line += f"\t{seg.start}\t{seg.end}\t{r},{g},{b}"
            out.write(line + "\n")
