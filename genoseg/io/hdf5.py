"""Signal tracks from HDF5: ``/{seqid}/{track}`` 1-D float datasets, one value per base.

Example layout::

    /chr1/rnaseq_plus    float32 (248956422,)
    /chr1/rnaseq_minus   float32 (248956422,)
    /chr2/...

Index ``i`` of a dataset is base ``i`` of the contig (0-based). Values are returned as stored
(NaN included: the caller decides what missing signal means).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from genoseg.errors import InputError


class TrackFile:
    """Read-only access to an HDF5 track file; checks its layout at open.

    Every seqid group must hold the same set of track datasets, each 1-D with a numeric dtype.
    Picklable (for DataLoader workers): each process reopens the file lazily, since HDF5 handles
    must not cross fork().
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: track file not found")
        if not h5py.is_hdf5(self.path):
            raise InputError(f"{self.path}: not an HDF5 file")
        self._handle: h5py.File | None = None
        self._pid = -1
        tracks_by_seqid: dict[str, dict[str, int]] = {}
        h5 = self._file
        for seqid, group in h5.items():
            if not isinstance(group, h5py.Group):
                raise InputError(f"{self.path}: '/{seqid}' is a dataset; expected groups /{{seqid}}/{{track}}")
            datasets: dict[str, int] = {}
            for name, dataset in group.items():
                if not isinstance(dataset, h5py.Dataset):
                    raise InputError(f"{self.path}: '/{seqid}/{name}' is a group; expected a 1-D dataset")
                if dataset.ndim != 1:
                    raise InputError(f"{self.path}: '/{seqid}/{name}' has shape {dataset.shape}; expected 1-D (length,)")
                if dataset.dtype.kind not in "fiub":
                    raise InputError(f"{self.path}: '/{seqid}/{name}' has non-numeric dtype {dataset.dtype}")
                datasets[name] = dataset.shape[0]
            tracks_by_seqid[seqid] = datasets
        if not tracks_by_seqid:
            raise InputError(f"{self.path}: no /{{seqid}}/{{track}} datasets")
        all_tracks = set().union(*(d.keys() for d in tracks_by_seqid.values()))
        if not all_tracks:
            raise InputError(f"{self.path}: seqid groups hold no track datasets")
        for seqid, datasets in tracks_by_seqid.items():
            missing = sorted(all_tracks - datasets.keys())
            if missing:
                raise InputError(f"{self.path}: sequence '{seqid}' lacks track(s) {', '.join(missing)} that others have")
        self._track_names = sorted(all_tracks)
        # Contig length as the file has it; all tracks of a seqid must agree
        self._lengths: dict[str, int] = {}
        for seqid, datasets in tracks_by_seqid.items():
            sizes = set(datasets.values())
            if len(sizes) > 1:
                raise InputError(f"{self.path}: tracks of '{seqid}' have different lengths {sorted(sizes)}")
            self._lengths[seqid] = sizes.pop()

    @property
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as err:
                raise InputError(f"{self.path}: cannot open HDF5 file ({err})") from None
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    @property
    def track_names(self) -> list[str]:
        """Track names, sorted; every seqid has all of them. Column order of :meth:`read`."""
        return list(self._track_names)

    @property
    def seqids(self) -> list[str]:
        return list(self._lengths)

    @property
    def lengths(self) -> dict[str, int]:
        """Dataset length per seqid (should equal the contig length; see :meth:`check_lengths`)."""
        return dict(self._lengths)

    def read(
        self, seqid: str, start: int = 0, end: int | None = None, tracks: Sequence[str] | None = None
    ) -> np.ndarray:
        """Values over ``[start, end)`` (0-based, half-open): float32 ``(end - start, n_tracks)``.

        Columns follow ``tracks`` (default: :attr:`track_names`).
        """
        if seqid not in self._lengths:
            raise InputError(f"{self.path}: no tracks for sequence '{seqid}'")
        names = self._track_names if tracks is None else list(tracks)
        unknown = [t for t in names if t not in self._track_names]
        if unknown:
            raise InputError(f"{self.path}: unknown track(s) {', '.join(unknown)} (have: {', '.join(self._track_names)})")
        length = self._lengths[seqid]
        end = length if end is None else end
        if not 0 <= start <= end <= length:
            raise InputError(f"{self.path}: region {seqid}:{start}-{end} is outside the track (length {length})")
        out = np.empty((end - start, len(names)), np.float32)
        group = self._file[seqid]
        for column, name in enumerate(names):
            out[:, column] = group[name][start:end]
        return out

    def check_lengths(self, lengths: dict[str, int]) -> None:
        """Raise InputError unless every seqid of ``lengths`` has tracks of exactly that length.

        Seqids in the file but not in ``lengths`` are allowed (unused contigs).
        """
        missing = [s for s in lengths if s not in self._lengths]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise InputError(f"{self.path}: no tracks for {len(missing)} sequence(s): {shown}")
        for seqid, length in lengths.items():
            if self._lengths[seqid] != length:
                raise InputError(
                    f"{self.path}: tracks of '{seqid}' have length {self._lengths[seqid]}, "
                    f"but the sequence has length {length}"
                )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> TrackFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
