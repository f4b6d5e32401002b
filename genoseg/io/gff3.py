"""Gene models: read GFF3/GTF into :class:`Transcript` records, write GFF3.

Files use 1-based closed coordinates; :class:`Transcript` uses 0-based half-open. The conversion
happens here and nowhere else.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote, unquote

from genoseg.errors import InputError
from genoseg.io.atomic import atomic_open
from genoseg.io.features import Segment, Transcript

logger = logging.getLogger(__name__)

# GFF3 spec: column 1 may hold these unescaped; everything else is %-escaped
_SEQID_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:^*$@!+_?-|"
# GFF3 spec: in column 9, ; = & , have meaning and must be escaped, as must % itself, tabs,
# newlines and other control characters; other printable ASCII may stay as is
_ATTR_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) not in ";=&,%")
_STRANDS = frozenset("+-.?")


def _escape_attr(value: object) -> str:
    return quote(str(value), safe=_ATTR_SAFE)


def _escape_seqid(value: str) -> str:
    return quote(value, safe=_SEQID_SAFE)


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Feature:
    ftype: str
    seqid: str
    strand: str
    line: int
    score: float | None
    parents: list[str]
    attributes: dict


@dataclass
class _Parts:
    """CDS parts of one transcript as read, with their line numbers."""

    seqid: str
    strand: str
    first_line: int
    parts: list[tuple[int, int, int]] = field(default_factory=list)  # (start0, end, line)


def _open_text(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def numbered_lines(path: Path, what: str = "GFF3/GTF") -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a plain or gzipped text file; unreadable or
    non-UTF-8 input is an InputError naming ``what`` the file should have been."""
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, 1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a {what} text file (binary or non-UTF-8 data)") from None
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None


def _parse_gff3_attributes(text: str, where: str) -> dict:
    attributes: dict = {}
    if text in ("", "."):
        return attributes
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise InputError(f"{where}: malformed attribute {item!r} (expected tag=value)")
        key, value = item.split("=", 1)
        values = [unquote(v) for v in value.split(",")]
        attributes[unquote(key)] = values[0] if len(values) == 1 else values
    return attributes


_GTF_ATTR = re.compile(r'\s*([^\s;"]+)\s+(?:"([^"]*)"|([^\s;"]+))\s*(?:;|$)')


def _parse_gtf_attributes(text: str, where: str) -> dict:
    attributes: dict = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _GTF_ATTR.match(text, pos)
        if match is None:
            raise InputError(f"{where}: malformed GTF attributes near {text[pos:pos + 30]!r}")
        key = match.group(1)
        value = match.group(2) if match.group(2) is not None else match.group(3)
        attributes.setdefault(key, value)  # repeated tags (e.g. tag "basic") keep the first
        pos = match.end()
    return attributes


def _looks_like_gtf(attribute_text: str) -> bool:
    first = attribute_text.strip().split(";", 1)[0].strip()
    if not first or first == ".":
        return False
    # GFF3: tag=value; GTF: tag "value" (or tag value), with a space before any '='
    equals, space = first.find("="), first.find(" ")
    return equals < 0 or 0 <= space < equals


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".gtf", ".gtf.gz")):
        return "gtf"
    if name.endswith((".gff3", ".gff3.gz")):
        return "gff3"
    for _, line in numbered_lines(path):
        if line.startswith("##gff-version"):
            return "gtf" if line.split()[1:2] == ["2"] else "gff3"
        if line.startswith("##FASTA"):
            break
        if not line.strip() or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) == 9 and columns[8].strip() not in ("", "."):
            return "gtf" if _looks_like_gtf(columns[8]) else "gff3"
    return "gff3"


def _feature_lines(path: Path, fmt: str) -> Iterator[tuple[int, list, dict]]:
    """Yield (line number, columns with 0-based start / int end, attributes) for each feature."""
    parse_attributes = _parse_gtf_attributes if fmt == "gtf" else _parse_gff3_attributes
    for number, line in numbered_lines(path):
        if line.startswith("##FASTA"):
            return  # embedded sequences follow; they are not features
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        columns = line.split("\t")
        if len(columns) != 9:
            raise InputError(
                f"{where}: expected 9 tab-separated columns, found {len(columns)}"
                + (" (is this a GFF3/GTF file?)" if number == 1 else "")
            )
        seqid, _source, ftype, start, end, score, strand, phase, attributes = columns
        try:
            start_1, end_1 = int(start), int(end)
        except ValueError:
            raise InputError(f"{where}: non-integer coordinates {start!r}, {end!r}") from None
        if start_1 < 1:
            raise InputError(f"{where}: start {start_1} < 1 (GFF coordinates are 1-based)")
        if start_1 > end_1:
            raise InputError(f"{where}: start {start_1} > end {end_1}")
        if strand not in _STRANDS:
            raise InputError(f"{where}: invalid strand {strand!r} (expected +, -, . or ?)")
        if ftype == "CDS" and strand not in ("+", "-"):
            raise InputError(f"{where}: CDS with strand {strand!r} (must be + or -)")
        if score == ".":
            value = None
        else:
            try:
                value = float(score)
            except ValueError:
                raise InputError(f"{where}: invalid score {score!r}") from None
        if phase not in (".", "0", "1", "2"):
            raise InputError(f"{where}: invalid phase {phase!r} (expected ., 0, 1 or 2)")
        seqid = unquote(seqid) if fmt == "gff3" else seqid
        yield (number, [seqid, ftype, start_1 - 1, end_1, value, strand, phase],
               parse_attributes(attributes, where))


def _merge_parts(path: Path, tid: str, rec: _Parts) -> tuple[tuple[int, int], ...]:
    """Sort parts; merge abutting ones (a zero-length intron is no intron); reject overlaps."""
    parts = sorted(rec.parts)
    merged: list[list[int]] = []
    previous_line = 0
    for start, end, line in parts:
        if merged and start < merged[-1][1]:
            raise InputError(
                f"{path}:{line}: CDS part overlaps another CDS part of transcript '{tid}' (line {previous_line})"
            )
        if merged and start == merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end])
        previous_line = line
    return tuple((s, e) for s, e in merged)


def _add_part(path: Path, store: dict, tid: str, seqid: str, strand: str, start: int, end: int, line: int) -> None:
    rec = store.get(tid)
    if rec is None:
        rec = store[tid] = _Parts(seqid, strand, line)
    elif rec.seqid != seqid or rec.strand != strand:
        raise InputError(
            f"{path}:{line}: CDS of transcript '{tid}' on {seqid} {strand}, but line {rec.first_line} "
            f"puts it on {rec.seqid} {rec.strand}"
        )
    rec.parts.append((start, end, line))


# NCBI's markers of a partial feature (GFF3 column 9): start_range=.,X says the feature's true
# genome-left end lies at or before X (unknown), end_range=X,. its genome-right end at or after X.
_PARTIAL_KEYS = ("partial", "start_range", "end_range")


def _range_ends(attributes: dict) -> set[str]:
    """{"left", "right"}: the genome ends a feature's start_range / end_range mark as missing."""
    return {side for key, side in (("start_range", "left"), ("end_range", "right")) if key in attributes}


def _select_longest(candidates: list[tuple[int, Transcript]]) -> Transcript:
    # max() returns the first maximal item, so sorting by file order breaks ties by "first in file"
    candidates.sort(key=lambda item: item[0])
    return max(candidates, key=lambda item: item[1].cds_length)[1]


def _read_gff3(path: Path) -> tuple[list[tuple[int, Transcript]], set[str]]:
    features: dict[str, _Feature] = {}
    references: list[tuple[str, int]] = []  # (parent ID, line) to check once the file is read
    cds: dict[str, _Parts] = {}
    genes: dict[str, int] = {}  # ID of each 'gene' feature -> line
    # Per transcript: which genome ends a start_range / end_range marks as missing (NCBI's
    # partial genes), and the 5'-most CDS row's (start, end, phase).
    cut_ends: dict[str, set[str]] = {}
    five_prime_row: dict[str, tuple[int, int, str]] = {}
    for line, (seqid, ftype, start, end, score, strand, phase), attributes in _feature_lines(path, "gff3"):
        fid = attributes.get("ID")
        parents = attributes.get("Parent", [])
        parents = [parents] if isinstance(parents, str) else list(parents)
        if isinstance(fid, list):
            raise InputError(f"{path}:{line}: ID must have one value, got {','.join(fid)!r}")
        references.extend((p, line) for p in parents)
        if fid is not None and fid not in features:  # a repeated ID continues a multi-line feature
            features[fid] = _Feature(ftype, seqid, strand, line, score, parents, attributes)
            if ftype == "gene":
                genes[fid] = line
        if ftype == "CDS":
            if not parents:
                raise InputError(f"{path}:{line}: CDS without a Parent attribute")
            for tid in parents:
                _add_part(path, cds, tid, seqid, strand, start, end, line)
                cut_ends.setdefault(tid, set()).update(_range_ends(attributes))
                row = five_prime_row.get(tid)
                if row is None or (start < row[0] if strand == "+" else end > row[1]):
                    five_prime_row[tid] = (start, end, phase)
    for parent, line in references:
        if parent not in features:
            raise InputError(f"{path}:{line}: Parent '{parent}' refers to no feature with that ID")

    def root(fid: str) -> str:
        seen = {fid}
        while features[fid].parents:
            fid = features[fid].parents[0]
            if fid in seen:
                raise InputError(f"{path}:{features[fid].line}: Parent cycle through '{fid}'")
            seen.add(fid)
        return fid

    by_gene: dict[str, list[tuple[int, Transcript]]] = {}
    for tid, rec in cds.items():
        feature = features[tid]
        gid = root(tid)
        extra = {k: v for k, v in feature.attributes.items() if k not in ("ID", "Parent", *_PARTIAL_KEYS)}
        ends = cut_ends.get(tid, set()) | _range_ends(feature.attributes)
        left, right = "left" in ends, "right" in ends
        partial5, partial3 = (left, right) if rec.strand == "+" else (right, left)
        phase = five_prime_row[tid][2]
        transcript = Transcript(
            rec.seqid, rec.strand, gid, tid, _merge_parts(path, tid, rec), feature.score, extra,
            phase5=int(phase) if partial5 and phase != "." else 0, partial5=partial5, partial3=partial3,
        )
        by_gene.setdefault(gid, []).append((feature.line, transcript))
    without_cds = {gid for gid in genes if gid not in by_gene}
    return [(genes.get(gid, items[0][0]), _select_longest(items)) for gid, items in by_gene.items()], without_cds


def _read_gtf(path: Path) -> tuple[list[tuple[int, Transcript]], set[str]]:
    cds: dict[str, _Parts] = {}
    gene_of: dict[str, str] = {}
    transcript_line: dict[str, tuple[int, float | None, dict]] = {}
    gene_line: dict[str, int] = {}
    for line, (seqid, ftype, start, end, score, strand, _phase), attributes in _feature_lines(path, "gtf"):
        gid = attributes.get("gene_id")
        tid = attributes.get("transcript_id")
        if gid is not None:
            gene_line.setdefault(gid, line)
        if ftype in ("transcript", "mRNA") and tid is not None:
            extra = {k: v for k, v in attributes.items() if k not in ("gene_id", "transcript_id")}
            transcript_line.setdefault(tid, (line, score, extra))
        if ftype != "CDS":
            continue
        if gid is None or tid is None:
            raise InputError(f"{path}:{line}: GTF CDS line without gene_id and transcript_id")
        if gene_of.setdefault(tid, gid) != gid:
            raise InputError(f"{path}:{line}: transcript '{tid}' assigned to genes '{gene_of[tid]}' and '{gid}'")
        _add_part(path, cds, tid, seqid, strand, start, end, line)
    by_gene: dict[str, list[tuple[int, Transcript]]] = {}
    for tid, rec in cds.items():
        line, score, extra = transcript_line.get(tid, (rec.first_line, None, {}))
        gid = gene_of[tid]
        transcript = Transcript(rec.seqid, rec.strand, gid, tid, _merge_parts(path, tid, rec), score, extra)
        by_gene.setdefault(gid, []).append((min(line, rec.first_line), transcript))
    without_cds = {gid for gid in gene_line if gid not in by_gene}
    return [(gene_line[gid], _select_longest(items)) for gid, items in by_gene.items()], without_cds


def read_gene_models(path: str | os.PathLike, seqids: Iterable[str] | None = None) -> list[Transcript]:
    """Read protein-coding gene models from GFF3 or GTF (plain or gzip), one transcript per gene.

    Format: GTF if the name ends in ``.gtf``/``.gtf.gz``, GFF3 for ``.gff3``/``.gff3.gz``, else
    from ``##gff-version`` or the attribute syntax (``tag=value`` vs ``tag "value"``).

    Hierarchy: a CDS line belongs to each transcript named in its ``Parent`` (GFF3; whatever the
    transcript's type: mRNA, transcript, ...) or its ``transcript_id`` (GTF); a transcript belongs to
    the gene at the top of its ``Parent`` chain (GFF3) or to its ``gene_id`` (GTF). A CDS whose
    Parent is the gene itself (gene -> CDS) makes the gene its own transcript. Exon, UTR, codon and
    other features are checked for syntax but not otherwise used.

    Selection: for each gene the transcript with the longest total CDS is kept; ties go to the
    transcript that comes first in the file. Genes without any CDS are skipped and their number
    is logged as one warning.

    Returns transcripts ordered by seqid (order of first appearance in the file), then start, end.
    ``Transcript.cds`` holds the CDS parts as 0-based half-open pairs sorted by start, exactly as
    the file has them (so the stop codon is included only if the file's CDS includes it, as
    GFF3 usually does and GTF usually does not); abutting parts are merged. ``score`` is the
    mRNA/transcript line's score (or None); ``attributes`` holds that line's other attributes
    (GFF3 multi-value attributes as lists). Reading stops at ``##FASTA``.

    Partial gene models (GFF3, NCBI's convention as ``write_gff3`` writes it): a
    ``start_range`` / ``end_range`` on the transcript or one of its CDS rows marks its
    genome-left / genome-right end as missing, which sets ``partial5`` / ``partial3`` per strand
    (they and ``partial`` are not kept in ``attributes``); a 5'-partial transcript's ``phase5``
    is its 5'-most CDS row's phase. ``span`` stays None (the CDS span).

    ``seqids``: keep only transcripts on these sequences (the whole file is still validated).

    Raises InputError (naming file and line) for: missing file, wrong column count, non-integer
    or inverted coordinates, invalid strand (a CDS must be + or -), score or phase, malformed
    attributes, a Parent ID that no feature defines, a transcript whose CDS parts disagree on
    seqid/strand or overlap.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    fmt = _detect_format(path)
    selected, without_cds = (_read_gtf if fmt == "gtf" else _read_gff3)(path)
    keep = None if seqids is None else set(seqids)
    if keep is not None:
        selected = [item for item in selected if item[1].seqid in keep]
    if without_cds:
        logger.warning("%s: skipped %d gene(s) without CDS", path, len(without_cds))
    seqid_rank: dict[str, int] = {}
    for line, transcript in sorted(selected, key=lambda item: item[0]):
        seqid_rank.setdefault(transcript.seqid, len(seqid_rank))
    selected.sort(key=lambda item: (seqid_rank[item[1].seqid], item[1].start, item[1].end, item[0]))
    return [transcript for _, transcript in selected]


# --------------------------------------------------------------------------------------------
# Writing


def cds_phases(transcript: Transcript) -> list[int]:
    """GFF3 phase of each CDS part, in genome order (the order of ``transcript.cds``).

    Phase = number of bases to skip at the part's 5' end (transcript orientation) to reach the
    first base of the next codon. The 5'-most part's is ``transcript.phase5`` (0 unless the
    transcript lacks its 5' end), so codons start phase5 + 3m bases into the spliced CDS;
    walking the parts 5'->3' (descending start on the - strand),
    ``phase_k = (phase5 - (bases in earlier parts)) % 3``.
    """
    order = range(len(transcript.cds))
    if transcript.strand == "-":
        order = reversed(order)
    phases = [0] * len(transcript.cds)
    done = 0
    for k in order:
        start, end = transcript.cds[k]
        phases[k] = (transcript.phase5 - done) % 3
        done += end - start
    return phases


def missing_ends(transcript: Transcript) -> tuple[bool, bool]:
    """(genome-left end missing, genome-right end missing): the 5' end is the left one on +,
    the right one on -. GFF3's start_range / end_range mark these."""
    if transcript.strand == "+":
        return transcript.partial5, transcript.partial3
    return transcript.partial3, transcript.partial5


def _partial_attributes(left: bool, right: bool, start1: int, end1: int) -> str:
    """``;partial=true;start_range=.,S;end_range=E,.`` as far as the ends are missing ('' if
    neither): NCBI's markers, 1-based coordinates of the feature's own ends."""
    if not (left or right):
        return ""
    pairs = [("partial", "true")]
    if left:
        pairs.append(("start_range", [".", start1]))
    if right:
        pairs.append(("end_range", [end1, "."]))
    return ";" + _format_attributes(pairs)


def _format_score(score: float | None) -> str:
    if score is None or math.isnan(float(score)):
        return "."
    return f"{score:.4f}"


def _format_attributes(pairs: Iterable[tuple[str, object]]) -> str:
    out = []
    for key, value in pairs:
        if isinstance(value, (list, tuple)):
            text = ",".join(_escape_attr(v) for v in value)  # a list is a GFF3 multi-value attribute
        else:
            text = _escape_attr(value)
        out.append(f"{_escape_attr(key)}={text}")
    return ";".join(out)


def _check_transcript(t: Transcript, lengths: dict[str, int]) -> None:
    if t.seqid not in lengths:
        raise InputError(f"transcript '{t.transcript_id}' is on '{t.seqid}', which is not among the sequences")
    if t.strand not in ("+", "-"):
        raise ValueError(f"transcript '{t.transcript_id}': strand {t.strand!r} (must be + or -)")
    if not t.cds:
        raise ValueError(f"transcript '{t.transcript_id}' has no CDS parts")
    previous_end = 0
    for start, end in t.cds:
        if not previous_end <= start < end:
            raise ValueError(f"transcript '{t.transcript_id}': CDS parts {t.cds} are not sorted, disjoint and non-empty")
        previous_end = end
    if t.end > lengths[t.seqid]:
        raise InputError(
            f"transcript '{t.transcript_id}' ends at {t.end}, past the end of '{t.seqid}' (length {lengths[t.seqid]})"
        )
    for key in t.attributes:
        if key in ("ID", "Parent", *_PARTIAL_KEYS):
            raise ValueError(f"transcript '{t.transcript_id}': attribute {key!r} is reserved for the writer")
    if t.phase5 not in (0, 1, 2) or (t.phase5 and not t.partial5):
        raise ValueError(
            f"transcript '{t.transcript_id}': phase5 {t.phase5!r} (0, 1 or 2; only a transcript "
            "without its 5' end may start off a codon boundary)"
        )
    if t.span is not None and not 0 <= t.span[0] <= t.cds[0][0] < t.cds[-1][1] <= t.span[1]:
        raise ValueError(f"transcript '{t.transcript_id}': span {t.span} does not contain its CDS {t.cds}")


def write_gff3(
    path: str | os.PathLike,
    transcripts: Iterable[Transcript],
    sequence_lengths: dict[str, int],
    source: str = "genoseg",
    segments: Iterable[Segment] | None = None,
) -> None:
    """Write gene models as GFF3 (atomically).

    Layout: ``##gff-version 3``; one ``##sequence-region seqid 1 length`` per entry of
    ``sequence_lengths`` in its order; then features sorted by seqid (``sequence_lengths`` order;
    pass it sorted by name for tools such as ``gt eval`` that want byte order), then start, with
    both strands interleaved; ``###`` after each gene. Per transcript: ``gene`` (ID
    ``{seqid}.g{n}``, n counting genes of that seqid in output order), ``mRNA`` (ID ``{gene}.t1``),
    then for each CDS part, in genome order, an ``exon`` (ID ``{mrna}.exon{k}``, k counted 5'->3')
    and a ``CDS`` line (all parts share ID ``{mrna}.cds``; phase as in :func:`cds_phases`). Exons
    equal CDS parts: no UTRs are predicted. A partial transcript (``partial5`` / ``partial3``)
    gets NCBI's markers: ``partial=true`` on gene, mRNA and every CDS row, and on the features
    whose genome-left / genome-right end is missing (:func:`missing_ends`; the 5' end is the left
    one on +) ``start_range=.,START`` / ``end_range=END,.`` with their own coordinates: gene and
    mRNA (which span ``Transcript.span``), the CDS row at that end, and the exon the contig end
    cuts. ``Transcript.score`` goes to the gene and mRNA score
    column (4 decimals, '.' if None); ``Transcript.attributes`` are appended to the mRNA line,
    %-escaped as the spec requires (list values become multi-value attributes).

    ``segments``: optional extra labelled intervals, written as one feature each with type =
    label (ID ``{seqid}.s{n}``), sorted in with the genes.

    An empty ``transcripts`` gives a valid file with only the header. Raises InputError if a
    transcript lies on an unknown sequence or past its end.
    """
    lengths = dict(sequence_lengths)
    rank = {seqid: i for i, seqid in enumerate(lengths)}
    items: list[tuple[tuple, int, object]] = []
    for i, t in enumerate(transcripts):
        _check_transcript(t, lengths)
        items.append(((rank[t.seqid], t.start, t.end), i, t))
    offset = len(items)
    for i, seg in enumerate(segments or ()):
        if seg.seqid not in lengths:
            raise InputError(f"segment on '{seg.seqid}', which is not among the sequences")
        if seg.strand not in _STRANDS:
            raise ValueError(f"segment {seg.seqid}:{seg.start}-{seg.end}: strand {seg.strand!r}")
        if not 0 <= seg.start < seg.end <= lengths[seg.seqid]:
            raise InputError(f"segment {seg.seqid}:{seg.start}-{seg.end} is empty or outside the sequence")
        items.append(((rank[seg.seqid], seg.start, seg.end), offset + i, seg))
    items.sort(key=lambda item: (item[0], item[1]))

    source = _escape_attr(source)
    counters: dict[str, list[int]] = {}
    with atomic_open(path, "w") as out:
        out.write("##gff-version 3\n")
        for seqid, length in lengths.items():
            out.write(f"##sequence-region {_escape_seqid(seqid)} 1 {int(length)}\n")
        for _, _, item in items:
            counter = counters.setdefault(item.seqid, [0, 0])
            seqid = _escape_seqid(item.seqid)
            if isinstance(item, Segment):
                counter[1] += 1
                sid = _escape_attr(f"{item.seqid}.s{counter[1]}")
                out.write(
                    f"{seqid}\t{source}\t{_escape_attr(item.label)}\t{item.start + 1}\t{item.end}\t"
                    f"{_format_score(item.score)}\t{item.strand}\t.\tID={sid}\n"
                )
                continue
            counter[0] += 1
            t = item
            gene = _escape_attr(f"{t.seqid}.g{counter[0]}")
            mrna = f"{gene}.t1"
            score = _format_score(t.score)
            common = f"{seqid}\t{source}"
            left, right = missing_ends(t)
            marks = _partial_attributes(left, right, t.start + 1, t.end)
            out.write(f"{common}\tgene\t{t.start + 1}\t{t.end}\t{score}\t{t.strand}\t.\tID={gene}{marks}\n")
            extra = _format_attributes(t.attributes.items())
            out.write(
                f"{common}\tmRNA\t{t.start + 1}\t{t.end}\t{score}\t{t.strand}\t.\tID={mrna};Parent={gene}{marks}"
                + (f";{extra}" if extra else "")
                + "\n"
            )
            phases = cds_phases(t)
            n = len(t.cds)
            for k, (start, end) in enumerate(t.cds):
                exon_number = k + 1 if t.strand == "+" else n - k  # numbered 5' -> 3'
                # An exon is partial where the contig end cuts it; every CDS row of a partial
                # CDS says so, and its end rows carry the ranges (NCBI's layout).
                first, last = k == 0 and left, k == n - 1 and right
                exon_marks = _partial_attributes(first and start == t.start, last and end == t.end, start + 1, end)
                cds_marks = _partial_attributes(first, last, start + 1, end)
                if t.partial and not cds_marks:
                    cds_marks = ";partial=true"
                out.write(
                    f"{common}\texon\t{start + 1}\t{end}\t.\t{t.strand}\t.\t"
                    f"ID={mrna}.exon{exon_number};Parent={mrna}{exon_marks}\n"
                )
                out.write(
                    f"{common}\tCDS\t{start + 1}\t{end}\t.\t{t.strand}\t{phases[k]}\t"
                    f"ID={mrna}.cds;Parent={mrna}{cds_marks}\n"
                )
            out.write("###\n")
