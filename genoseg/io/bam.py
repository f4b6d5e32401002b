"""Per-base read coverage from a coordinate-sorted, indexed BAM (or CRAM/SAM.gz with an index)."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pysam

from genoseg.errors import InputError

logger = logging.getLogger(__name__)

# Reads never counted: unmapped (0x4), secondary (0x100), QC fail (0x200), duplicate (0x400).
# The same default as mosdepth / samtools depth. Supplementary parts are counted: they cover
# bases that no other record of the read covers.
EXCLUDE_FLAGS = 0x4 | 0x100 | 0x200 | 0x400

# Indexes we had to build outside a read-only BAM directory, per BAM path, for this process.
_PRIVATE_INDEX: dict[str, str] = {}


def _index_exists(path: Path) -> bool:
    candidates = [f"{path}.bai", f"{path}.csi", f"{path}.crai", str(path.with_suffix(".bai"))]
    return any(os.path.exists(c) for c in candidates)


def _open(path: Path) -> pysam.AlignmentFile:
    if not path.is_file():
        raise InputError(f"{path}: BAM file not found")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic[:2] != b"\x1f\x8b" and not magic.startswith(b"CRAM"):
        raise InputError(f"{path}: not a BAM file (not BGZF-compressed)")
    previous = pysam.set_verbosity(0)  # htslib warnings (e.g. index older than BAM) -> our messages
    try:
        try:
            with pysam.AlignmentFile(str(path), "rb", check_sq=False) as probe:
                if not (probe.is_bam or probe.is_cram):
                    raise InputError(f"{path}: not a BAM or CRAM file")
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: not a BAM file ({err})") from None
        index = _PRIVATE_INDEX.get(str(path))
        if index is None and not _index_exists(path):
            index = _build_index(path)
        try:
            return pysam.AlignmentFile(str(path), "rb", index_filename=index)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot open as BAM ({err})") from None
    finally:
        pysam.set_verbosity(previous)


def _first_unsorted(path: Path) -> str | None:
    """'seqid:position' of the first out-of-order read, or None if the BAM is coordinate-sorted."""
    with pysam.AlignmentFile(str(path), "rb", check_sq=False) as handle:
        last = (-1, -1)
        for read in handle.fetch(until_eof=True):
            key = (read.reference_id if read.reference_id >= 0 else 1 << 62, read.reference_start)
            if key < last:
                return f"{read.reference_name}:{read.reference_start + 1}"
            last = key
    return None


def _samtools_message(err: pysam.SamtoolsError) -> str:
    text = str(err.args[0]) if err.args else str(err)
    text = text.split("stderr=", 1)[-1].strip()
    return text.splitlines()[-1] if text else "unknown error"


def _build_index(path: Path) -> str | None:
    """Index the BAM beside itself, or in a temp dir if that fails; returns the index path or None."""
    try:
        pysam.index(str(path))
        logger.info("%s: created missing index %s.bai", path, path)
        return None
    except pysam.SamtoolsError as err:
        first_error = err
    unsorted_at = _first_unsorted(path)
    if unsorted_at is not None:
        raise InputError(f"{path}: BAM is not coordinate-sorted (at {unsorted_at}); run samtools sort, then samtools index")
    # e.g. a read-only directory: keep a private index for this process, deleted at exit
    directory = tempfile.mkdtemp(prefix="genoseg-bai-")
    index = os.path.join(directory, path.name + ".bai")
    try:
        pysam.index(str(path), index)
    except pysam.SamtoolsError:
        shutil.rmtree(directory, ignore_errors=True)
        raise InputError(f"{path}: BAM has no index and indexing failed: {_samtools_message(first_error)}") from None
    atexit.register(shutil.rmtree, directory, True)
    logger.info("%s: created missing index in %s", path, index)
    _PRIVATE_INDEX[str(path)] = index
    return index


def coverage(
    bam_path: str | os.PathLike,
    seqid: str,
    start: int = 0,
    end: int | None = None,
    min_mapq: int = 0,
    strand: str | None = None,
) -> np.ndarray:
    """Per-base read coverage over ``[start, end)`` of ``seqid`` (0-based, half-open).

    Returns float32 ``(end - start,)``: the number of reads with an aligned base (CIGAR M, =, X)
    at each position; deletions, skipped regions (N, e.g. introns) and clipped bases do not count.
    Reads that are unmapped, secondary, QC-failed or duplicates are excluded, as are reads with
    mapping quality < ``min_mapq``. ``strand='+'``/``'-'`` keeps only reads aligned to that strand
    (read orientation as in the BAM; for stranded paired-end libraries the caller decides which
    mate/orientation means which transcript strand). ``end=None`` means the contig's end.

    A missing index is created beside the BAM (or, if that fails, in a temporary directory).
    A ``seqid`` absent from the BAM header gives zeros and a warning (no reads there), which needs
    an explicit ``end``. Raises InputError for a missing file, a non-BAM, an unsorted BAM without
    index, or a region past the contig's end in the header (a different assembly?).
    """
    if strand not in (None, "+", "-"):
        raise ValueError(f"strand must be None, '+' or '-', got {strand!r}")
    path = Path(bam_path)
    with _open(path) as bam:
        if seqid not in bam.references:
            if end is None:
                raise InputError(f"{path}: sequence '{seqid}' is not in the BAM header and no end was given")
            if not 0 <= start <= end:
                raise ValueError(f"invalid region {seqid}:{start}-{end}")
            logger.warning("%s: sequence '%s' is not in the BAM header; coverage is zero", path, seqid)
            return np.zeros(end - start, np.float32)
        length = bam.get_reference_length(seqid)
        end = length if end is None else end
        if not 0 <= start <= end:
            raise ValueError(f"invalid region {seqid}:{start}-{end}")
        if end > length:
            raise InputError(
                f"{path}: region {seqid}:{start}-{end} runs past the end of '{seqid}' "
                f"(length {length} in the BAM header; a different assembly?)"
            )
        if start == end:
            return np.zeros(0, np.float32)
        want_reverse = None if strand is None else strand == "-"
        # Block boundaries go into a difference array; one cumsum at the end gives the depth.
        starts: list[int] = []
        ends: list[int] = []
        try:
            for read in bam.fetch(seqid, start, end):
                if read.flag & EXCLUDE_FLAGS or read.mapping_quality < min_mapq:
                    continue
                if want_reverse is not None and read.is_reverse != want_reverse:
                    continue
                for block_start, block_end in read.get_blocks():
                    starts.append(block_start)
                    ends.append(block_end)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read alignments on {seqid} ({err})") from None
    width = end - start
    lo = np.clip(np.asarray(starts, np.int64) - start, 0, width)
    hi = np.clip(np.asarray(ends, np.int64) - start, 0, width)
    diff = np.bincount(lo, minlength=width + 1)[: width + 1] - np.bincount(hi, minlength=width + 1)[: width + 1]
    return np.cumsum(diff[:width]).astype(np.float32)
