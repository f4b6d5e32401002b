"""Posterior track writers: bigWig, bedGraph and HDF5. All write atomically.

Arrays are per-base values along a contig: index ``i`` is base ``i`` (0-based); bigWig and
bedGraph intervals are 0-based half-open, as in the formats themselves.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np
import pyBigWig

from genoseg.io.atomic import atomic_open, atomic_path

_BIGWIG_BATCH = 1 << 20  # entries per addEntries call: bounds pyBigWig's temporary lists


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of runs of equal, non-NaN values (NaN positions are dropped)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nan = np.isnan(values)
    change = np.empty(n, bool)
    change[0] = True
    # a run breaks where the value changes or NaN-ness changes (NaN != NaN would split every NaN)
    change[1:] = (values[1:] != values[:-1]) & ~(nan[1:] & nan[:-1])
    change[1:] |= nan[1:] != nan[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n))
    keep = ~nan[starts]
    return starts[keep], lengths[keep]


def write_bigwig(
    path: str | os.PathLike,
    chrom_sizes: Mapping[str, int],
    values: Mapping[str, np.ndarray],
    decimals: int | None = None,
) -> None:
    """Write one bigWig track.

    ``chrom_sizes``: the header, in this order (e.g. the FASTA's lengths). ``values[seqid]``:
    float array ``(chrom_sizes[seqid],)``, stored as float32; NaN positions are left out
    (no data). Seqids without values have no data. Runs of equal values are written as one
    interval each, so flat stretches cost nothing; where values change at nearly every base,
    fixed-step span-1 entries are used (smaller than one interval per base).

    ``decimals``: round values first (e.g. 3 for posteriors). Posteriors far from any feature
    differ in the 6th decimal at every base; rounding turns them into long runs, which makes the
    file several times smaller and faster to write (libBigWig needs ~1 s per million distinct
    per-base values, mostly for zoom levels and compression).
    """
    sizes = {str(k): int(v) for k, v in chrom_sizes.items()}
    for seqid, array in values.items():
        if seqid not in sizes:
            raise ValueError(f"values for '{seqid}', which is not in chrom_sizes")
        if np.shape(array) != (sizes[seqid],):
            raise ValueError(f"values for '{seqid}' have shape {np.shape(array)}, expected ({sizes[seqid]},)")
    with atomic_path(path) as tmp:
        bw = pyBigWig.open(str(tmp), "w")
        if bw is None:
            raise OSError(f"pyBigWig could not create {tmp}")
        try:
            bw.addHeader(list(sizes.items()))
            for seqid in sizes:  # entries must follow header order
                if seqid in values:
                    array = np.asarray(values[seqid], np.float32)
                    if decimals is not None:
                        array = np.round(array, decimals) + np.float32(0.0)  # -0.0 -> 0.0
                    _add_contig(bw, seqid, array)
        finally:
            bw.close()


def _add_contig(bw, seqid: str, array: np.ndarray) -> None:
    starts, lengths = _runs(array)
    if len(starts) == 0:
        return
    if len(starts) * 2 <= len(array):
        # mostly flat: bedGraph-style entries, one per run
        for i in range(0, len(starts), _BIGWIG_BATCH):
            s = starts[i : i + _BIGWIG_BATCH]
            e = s + lengths[i : i + _BIGWIG_BATCH]
            bw.addEntries([seqid] * len(s), s.tolist(), ends=e.tolist(), values=array[s].astype(np.float64).tolist())
        return
    # mostly changing: fixed-step entries over each NaN-free stretch
    valid = ~np.isnan(array)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], valid, [False])).astype(np.int8)))
    for lo, hi in zip(edges[::2], edges[1::2]):
        for i in range(lo, hi, _BIGWIG_BATCH):
            j = min(hi, i + _BIGWIG_BATCH)
            bw.addEntries(seqid, int(i), values=array[i:j].astype(np.float64), span=1, step=1)


def write_bedgraph(path: str | os.PathLike, values: Mapping[str, np.ndarray]) -> None:
    """Write a bedGraph: ``seqid start end value`` (0-based half-open), seqids in ``values`` order.

    Values are rounded to 4 decimals and runs of equal rounded values merged into one line; NaN
    positions are left out. Meant for small or scripted use; prefer bigWig for whole genomes.
    """
    with atomic_open(path, "w") as out:
        for seqid, array in values.items():
            # + 0.0 turns -0.0 into 0.0, so it neither prints as "-0" nor splits a run
            rounded = np.round(np.asarray(array, np.float64), 4) + 0.0
            if rounded.ndim != 1:
                raise ValueError(f"values for '{seqid}' must be 1-D, got shape {rounded.shape}")
            starts, lengths = _runs(rounded)
            ends = starts + lengths
            for i in range(0, len(starts), 1 << 16):
                chunk = slice(i, i + (1 << 16))
                out.write(
                    "".join(
                        f"{seqid}\t{s}\t{e}\t{v:.4f}\n"
                        for s, e, v in zip(starts[chunk].tolist(), ends[chunk].tolist(), rounded[starts[chunk]].tolist())
                    )
                )


def _attr_value(value):
    """h5py cannot store numpy unicode arrays: lists of str become variable-length UTF-8."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    return value


class HDF5TrackWriter:
    """Write posterior tracks to HDF5 as ``/{seqid}/{name}`` datasets.

    Datasets are float16 ``(T,)`` or ``(T, C)`` (T = contig length, C = channels, e.g. labels),
    chunked along T and gzip-compressed. Each dataset carries the given ``attrs`` (e.g. label
    names, model hash) plus ``coordinates='0-based'`` unless given. The file is written under a
    temporary name and renamed on a clean :meth:`close` / ``with`` exit; on an exception inside
    ``with`` (or :meth:`abort`) it is deleted, so a partial file never appears at ``path``.

    float16 keeps about 3 significant digits and saturates at 65504: fine for probabilities,
    not for raw scores.

    >>> with HDF5TrackWriter("posteriors.h5", attrs={"model_hash": h}) as writer:
    ...     writer.add("chr1", "label_posterior", post, {"labels": ["intergenic", "exon"]})
    """

    CHUNK_ROWS = 1 << 16  # positions per chunk: ~128 KB per channel in float16, cheap region reads

    def __init__(self, path: str | os.PathLike, attrs: Mapping | None = None, compression_level: int = 4):
        self.path = Path(path)
        self._level = compression_level
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._h5 = h5py.File(tmp, "w")
        except BaseException:
            self._stack.close()
            raise
        for key, value in (attrs or {}).items():
            self._h5.attrs[key] = _attr_value(value)
        self._open = True

    def add(self, seqid: str, name: str, array: np.ndarray, attrs: Mapping | None = None) -> None:
        """Store ``array`` (T,) or (T, C) as float16 at ``/{seqid}/{name}`` with ``attrs``."""
        if not self._open:
            raise ValueError("HDF5TrackWriter is closed")
        array = np.asarray(array)
        if array.ndim not in (1, 2):
            raise ValueError(f"track {seqid}/{name}: expected (T,) or (T, C), got shape {array.shape}")
        if "/" in seqid or "/" in name:
            raise ValueError(f"track {seqid!r}/{name!r}: '/' is not allowed in HDF5 names here")
        group = self._h5.require_group(seqid)
        if name in group:
            raise ValueError(f"track /{seqid}/{name} was already added")
        chunks = (min(len(array), self.CHUNK_ROWS),) + array.shape[1:]
        if array.size == 0:
            chunks = None  # HDF5 cannot chunk an empty fixed-size dataset (nor need to)
        dataset = group.create_dataset(
            name,
            data=array.astype(np.float16),
            chunks=chunks,
            compression="gzip" if chunks else None,
            compression_opts=self._level if chunks else None,
            shuffle=bool(chunks),  # byte shuffling roughly halves float16 posteriors under gzip
        )
        attrs = dict(attrs or {})
        attrs.setdefault("coordinates", "0-based")
        for key, value in attrs.items():
            dataset.attrs[key] = _attr_value(value)

    def close(self) -> None:
        """Finish the file and move it to ``path``."""
        if self._open:
            self._open = False
            self._h5.close()
            self._stack.close()

    def abort(self) -> None:
        """Discard everything written; ``path`` is left untouched."""
        if self._open:
            self._open = False
            self._h5.close()
            # hand an exception to atomic_path so that it deletes instead of renaming
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> HDF5TrackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
