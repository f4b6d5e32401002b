"""FASTA genomes: validated random access and one-hot encoding.

Supported inputs
----------------
- plain FASTA: random access through a samtools-style ``.fai`` index;
- bgzip FASTA (``bgzip genome.fa``): random access through ``.fai`` + ``.gzi``;
- plain-gzip FASTA (``gzip genome.fa``): NOT random-accessible. It is decompressed once, at open,
  into a normalised plain FASTA in a private temporary directory (``$TMPDIR``), indexed there and
  deleted by :meth:`Genome.close`. This costs disk space equal to the uncompressed genome; use
  ``bgzip`` for large genomes.
- plain or bgzip FASTA whose line lengths vary within a record (which faidx cannot index) is
  handled the same way as plain gzip, with a warning.

Indexes are created beside the FASTA when they are missing or older than it and the directory is
writable; otherwise in ``$GENOSEG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/genoseg`` or
``~/.cache/genoseg``), keyed by the file's path, size and mtime; failing that, in a temporary
directory.

Validation
----------
Whenever an index is built (first use) the whole file is scanned once and these raise
:class:`~genoseg.errors.InputError` with one line: missing file, not FASTA at all, no records,
a record without a name, a zero-length record, duplicate sequence IDs, and characters other than
``ACGTN``, the IUPAC ambiguity codes ``RYKMSWBDHV`` (either case; ``U`` is not DNA). A file whose
up-to-date index already exists is not re-scanned at open (so that opening a large genome is
instant); invalid characters are then still reported by :meth:`Genome.fetch` /
:meth:`Genome.encode`, but duplicate IDs or empty records hidden by an index that another tool
built are not detected.

Coordinates are 0-based, half-open; sequence names are the first word of the header line.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
import weakref
import zlib
from pathlib import Path

import numpy as np
import pysam

from genoseg.errors import InputError
from genoseg.io.atomic import atomic_path

logger = logging.getLogger(__name__)

#: Channel order of :func:`encode_sequence` / :meth:`Genome.encode`.
CHANNELS = ("A", "C", "G", "T", "N", "softmask")

_IUPAC_AMBIGUOUS = "NRYKMSWBDHV"


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    table = np.zeros((256, len(CHANNELS)), np.float32)
    valid = np.zeros(256, bool)
    for channel, letters in enumerate(["A", "C", "G", "T", _IUPAC_AMBIGUOUS]):
        for letter in letters:
            for char, masked in ((letter, 0.0), (letter.lower(), 1.0)):
                table[ord(char), channel] = 1.0
                table[ord(char), 5] = masked
                valid[ord(char)] = True
    return table, valid


_TABLE, _VALID = _build_tables()
# One 24-byte row per byte value as a single void item: gathering whole rows with intp indices is
# ~3x faster than ``_TABLE[codes]`` (row-wise fancy indexing copies 6 floats one by one).
_TABLE_ROWS = np.ascontiguousarray(_TABLE).view(f"V{_TABLE.itemsize * _TABLE.shape[1]}").ravel()

_ALLOWED = "ACGTN and IUPAC codes RYKMSWBDHV, upper or lower case"
_CHUNK = 8 << 20  # bytes read per step while scanning; bounds memory for any genome size
_HEADER_RE = re.compile(rb"^>([^\n]*)\n", re.M)


def _first_invalid(codes: np.ndarray) -> int:
    """Index of the first byte that is not a legal residue, or -1."""
    ok = _VALID[codes]
    if ok.all():
        return -1
    return int(np.argmin(ok))


def _char_repr(code: int) -> str:
    return repr(chr(code)) if 32 <= code < 127 else f"byte 0x{code:02x}"


def encode_sequence(seq: str | bytes) -> np.ndarray:
    """One-hot encode a DNA sequence.

    Returns float32 ``(L, 6)``: channels A, C, G, T, N (any IUPAC ambiguity code RYKMSWBDHV
    maps to N) and a soft-mask channel that is 1.0 for lowercase bases. Raises
    :class:`InputError` on any other character (``U`` included), naming it and its 1-based position.
    """
    if isinstance(seq, str):
        try:
            seq = seq.encode("ascii")
        except UnicodeEncodeError as err:
            raise InputError(
                f"invalid sequence character {seq[err.start]!r} at position {err.start + 1} "
                f"(allowed: {_ALLOWED})"
            ) from None
    codes = np.frombuffer(seq, np.uint8)
    bad = _first_invalid(codes)
    if bad >= 0:
        raise InputError(
            f"invalid sequence character {_char_repr(codes[bad])} at position {bad + 1} "
            f"(allowed: {_ALLOWED})"
        )
    return _encode_codes(codes)


def _encode_codes(codes: np.ndarray) -> np.ndarray:
    rows = _TABLE_ROWS[codes.astype(np.intp)]
    return rows.view(np.float32).reshape(len(codes), len(CHANNELS))


# --------------------------------------------------------------------------------------------
# File sniffing and scanning


def _compression(path: Path) -> str:
    """'plain', 'bgzf' or 'gzip' from the magic bytes (never from the extension)."""
    with open(path, "rb") as handle:
        head = handle.read(18)
    if head[:2] != b"\x1f\x8b":
        for magic, name in ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd")):
            if head.startswith(magic):
                raise InputError(f"{path}: {name}-compressed files are not supported; use bgzip")
        return "plain"
    # BGZF = gzip members with an extra field whose subfield id is 'BC' (SAM/BAM spec, 4.1)
    if len(head) >= 18 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzf"
    return "gzip"


def _open_binary(path: Path, compression: str):
    return open(path, "rb") if compression == "plain" else gzip.open(path, "rb")


def _sniff(path: Path, compression: str) -> None:
    """Reject files that are obviously not FASTA before reading them in full."""
    try:
        with _open_binary(path, compression) as handle:
            head = handle.read(1 << 16)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot read compressed FASTA ({err})") from None
    if not head.strip():
        raise InputError(f"{path}: empty FASTA (no records)")
    if b"\x00" in head:
        raise InputError(f"{path}: not a FASTA file (binary data)")
    first = head.lstrip().split(b"\n", 1)[0].rstrip(b"\r")
    if not first.startswith(b">"):
        text = first[:40].decode("ascii", "replace")
        hint = ""
        if first.startswith(b"##gff-version") or first.count(b"\t") >= 8:
            hint = " (looks like GFF3/GTF)"
        elif first.startswith(b"@"):
            hint = " (looks like FASTQ or SAM)"
        raise InputError(f"{path}: not a FASTA file{hint}: first line {text!r} does not start with '>'")


def _read_complete_lines(handle):
    """Yield blocks of whole lines (each ending with ``\\n``) of bounded size."""
    pending: list[bytes] = []
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            rest = b"".join(pending)
            if rest:
                yield rest if rest.endswith(b"\n") else rest + b"\n"
            return
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:  # a line longer than one chunk (e.g. unwrapped chromosome): keep reading
            pending.append(chunk)
            continue
        pending.append(chunk[:cut])
        yield b"".join(pending)
        pending = [chunk[cut:]] if cut < len(chunk) else []


def _scan(path: Path, compression: str, copy=None) -> tuple[list[str], list[int]]:
    """Validate the whole file; return names and lengths in file order.

    With ``copy`` (a binary handle), also write a normalised FASTA (one line per sequence) that
    faidx can index whatever the input's line layout.
    """
    names: list[str] = []
    lengths: list[int] = []
    header_line: dict[str, int] = {}
    name: str | None = None
    reclen = 0
    lines_done = 0  # newlines in all previous blocks, for 1-based line numbers in messages

    def finish() -> None:
        if name is None:
            return
        if reclen == 0:
            raise InputError(f"{path}: record '{name}' (line {header_line[name]}) has zero length")
        names.append(name)
        lengths.append(reclen)
        if copy is not None:
            copy.write(b"\n")

    def residues(data: bytes, lo: int, hi: int) -> None:
        nonlocal reclen
        if lo >= hi:
            return
        clean = data[lo:hi].translate(None, b"\r\n")
        if not clean:
            return
        codes = np.frombuffer(clean, np.uint8)
        bad = _first_invalid(codes)
        if bad >= 0:
            # the first invalid byte value cannot occur earlier in the segment, so find() locates it
            offset = data.find(bytes([codes[bad]]), lo, hi)
            line = lines_done + data.count(b"\n", 0, offset) + 1
            if name is None:
                raise InputError(f"{path}: not a FASTA file: sequence data before the first '>' header (line {line})")
            raise InputError(
                f"{path}: record '{name}' has invalid character {_char_repr(codes[bad])} at position "
                f"{reclen + bad + 1} (line {line}; allowed: {_ALLOWED})"
            )
        if name is None:
            line = lines_done + data.count(b"\n", 0, lo) + 1
            raise InputError(f"{path}: not a FASTA file: sequence data before the first '>' header (line {line})")
        if copy is not None:
            copy.write(clean)
        reclen += len(clean)

    try:
        with _open_binary(path, compression) as handle:
            for data in _read_complete_lines(handle):
                pos = 0
                for match in _HEADER_RE.finditer(data):
                    residues(data, pos, match.start())
                    finish()
                    line = lines_done + data.count(b"\n", 0, match.start()) + 1
                    words = match.group(1).decode("utf-8", "replace").split()
                    if not words:
                        raise InputError(f"{path}: record header without a name at line {line}")
                    name, reclen = words[0], 0
                    if name in header_line:
                        raise InputError(
                            f"{path}: duplicate sequence ID '{name}' (lines {header_line[name]} and {line})"
                        )
                    header_line[name] = line
                    if copy is not None:
                        copy.write(b">" + name.encode() + b"\n")
                    pos = match.end()
                residues(data, pos, len(data))
                lines_done += data.count(b"\n")
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot read FASTA, corrupt or truncated compressed file? ({err})") from None
    finish()
    if not names:
        raise InputError(f"{path}: empty FASTA (no records)")
    return names, lengths


# --------------------------------------------------------------------------------------------
# Index location


def _cache_root() -> Path:
    if os.environ.get("GENOSEG_CACHE_DIR"):
        return Path(os.environ["GENOSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genoseg"


def _dir_writable(directory: Path) -> bool:
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    # root passes os.access everywhere; still leave directories marked read-only (shared data) alone
    try:
        return os.geteuid() != 0 or bool(directory.stat().st_mode & 0o222)
    except OSError:
        return False


def _fresh(paths: list[Path], source: Path) -> bool:
    """True when every index file exists and is not older than the FASTA it indexes."""
    mtime = source.stat().st_mtime
    return all(p.exists() and p.stat().st_mtime >= mtime for p in paths)


def _cache_dir(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    return _cache_root() / "faidx" / hashlib.sha1(key).hexdigest()[:20]


def _remove_tree(directory: str, owner_pid: int) -> None:
    # forked DataLoader workers inherit this finalizer; only the creating process cleans up
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


class Genome:
    """A FASTA genome with random access. See the module docstring for formats and validation.

    >>> with Genome("genome.fa.gz") as genome:
    ...     x = genome.encode("chr1", 1000, 2000)   # float32 (1000, 6)

    Picklable (for DataLoader workers): each process reopens the file lazily. A copy made from a
    plain-gzip genome reads the original's temporary file, so it works only while the original
    is open.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: FASTA file not found")
        if not self.path.is_file():
            raise InputError(f"{self.path}: not a file")
        self._handle: pysam.FastaFile | None = None
        self._pid = -1
        self._tmpdir: str | None = None
        self._finalizer = None
        compression = _compression(self.path)
        _sniff(self.path, compression)
        self._compression = compression
        if compression == "gzip":
            logger.info("%s is plain gzip (not bgzip): decompressing to a temporary file", self.path)
            self._fasta, self._fai, self._gzi = self._normalised_copy()
        else:
            self._fasta = self.path
            self._fai, self._gzi = self._ensure_index()
        self._open()
        handle = self._handle
        self._names: list[str] = list(handle.references)
        self._lengths: dict[str, int] = dict(zip(handle.references, handle.lengths))
        if not self._names:
            raise InputError(f"{self.path}: empty FASTA (no records)")
        for name, length in self._lengths.items():
            if length == 0:
                raise InputError(f"{self.path}: record '{name}' has zero length")

    # -- index management ------------------------------------------------------------------

    def _index_names(self, directory: Path, stem: str) -> tuple[Path, Path | None]:
        fai = directory / f"{stem}.fai"
        gzi = directory / f"{stem}.gzi" if self._compression == "bgzf" else None
        return fai, gzi

    def _ensure_index(self) -> tuple[Path, Path | None]:
        beside = self._index_names(self.path.parent, self.path.name)
        if _fresh([p for p in beside if p], self.path):
            return beside
        cache = None
        try:
            cache = self._index_names(_cache_dir(self.path), self.path.name)
            if _fresh([p for p in cache if p], self.path):
                return cache
        except OSError:
            cache = None
        _scan(self.path, self._compression)
        locations = [beside] if _dir_writable(self.path.parent) else []
        if cache is not None:
            locations.append(cache)
        for fai, gzi in locations:
            try:
                fai.parent.mkdir(parents=True, exist_ok=True)
                built = _dir_writable(fai.parent) and self._build_index(self.path, fai, gzi)
            except OSError:
                continue  # this location is not usable; try the next one
            if built:
                return fai, gzi
            if _dir_writable(fai.parent):
                break  # faidx rejected the file's layout, not the location
        else:
            fai, gzi = self._index_names(Path(self._private_tmpdir()), self.path.name)
            if self._build_index(self.path, fai, gzi):
                return fai, gzi
        logger.warning(
            "%s: line lengths vary within a record, so faidx cannot index it; "
            "using a normalised temporary copy", self.path
        )
        fasta, fai, gzi = self._normalised_copy()
        self._fasta = fasta
        return fai, gzi

    @staticmethod
    def _build_index(fasta: Path, fai: Path, gzi: Path | None) -> bool:
        """Build faidx index files atomically; False if htslib rejects the file's layout."""
        previous = pysam.set_verbosity(0)  # htslib's own messages would duplicate ours
        try:
            with atomic_path(fai) as tmp_fai:
                args = [str(fasta), "--fai-idx", str(tmp_fai)]
                if gzi is None:
                    pysam.faidx(*args)
                else:
                    with atomic_path(gzi) as tmp_gzi:
                        pysam.faidx(*args, "--gzi-idx", str(tmp_gzi))
            return True
        except pysam.SamtoolsError:
            return False
        finally:
            pysam.set_verbosity(previous)

    def _private_tmpdir(self) -> str:
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="genoseg-fasta-")
            self._finalizer = weakref.finalize(self, _remove_tree, self._tmpdir, os.getpid())
        return self._tmpdir

    def _normalised_copy(self) -> tuple[Path, Path, None]:
        tmp = Path(self._private_tmpdir())
        fasta = tmp / "genome.fa"
        with open(fasta, "wb") as out:
            _scan(self.path, self._compression, copy=out)
        fai = tmp / "genome.fa.fai"
        if not self._build_index(fasta, fai, None):  # one line per record: always indexable
            raise InputError(f"{self.path}: could not index the decompressed FASTA")
        self._compression = "plain"
        return fasta, fai, None

    # -- handle ------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._handle = pysam.FastaFile(
                str(self._fasta),
                filepath_index=str(self._fai),
                filepath_index_compressed=str(self._gzi) if self._gzi else None,
            )
        except (OSError, ValueError) as err:
            raise InputError(
                f"{self.path}: cannot open FASTA with index {self._fai} ({err}); delete the index to rebuild it"
            ) from None
        self._pid = os.getpid()

    @property
    def _fa(self) -> pysam.FastaFile:
        if self._handle is None or self._pid != os.getpid():
            self._open()  # htslib handles must not be shared across fork()
        return self._handle

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_finalizer"] = None  # only the creating object deletes the temporary copy
        return state

    def close(self) -> None:
        """Close the file and delete any temporary copy. Idempotent."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries -------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Sequence names in file order."""
        return list(self._names)

    @property
    def lengths(self) -> dict[str, int]:
        """Sequence lengths by name, in file order."""
        return dict(self._lengths)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._lengths

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, {len(self)} sequences)"

    def _region(self, name: str, start: int, end: int | None) -> tuple[int, int]:
        if name not in self._lengths:
            shown = ", ".join(self._names[:5]) + (", ..." if len(self._names) > 5 else "")
            raise InputError(f"{self.path}: no sequence named '{name}' (have: {shown})")
        length = self._lengths[name]
        end = length if end is None else end
        if not 0 <= start <= end <= length:
            raise InputError(
                f"{self.path}: region {name}:{start}-{end} (0-based, half-open) is outside "
                f"the sequence (length {length})"
            )
        return start, end

    def _fetch_codes(self, name: str, start: int, end: int) -> tuple[str, np.ndarray]:
        seq = self._fa.fetch(name, start, end)
        if len(seq) != end - start:
            raise InputError(f"{self.path}: index does not match the file at {name}:{start}-{end}; delete the .fai/.gzi")
        raw = seq.encode("latin-1", "replace")
        codes = np.frombuffer(raw, np.uint8)
        bad = _first_invalid(codes)
        if bad >= 0:
            raise InputError(
                f"{self.path}: record '{name}' has invalid character {_char_repr(codes[bad])} at "
                f"position {start + bad + 1} (allowed: {_ALLOWED})"
            )
        return seq, codes

    def fetch(self, name: str, start: int = 0, end: int | None = None) -> str:
        """Sequence of ``name`` over ``[start, end)`` (0-based, half-open), original case."""
        start, end = self._region(name, start, end)
        return self._fetch_codes(name, start, end)[0]

    def encode(self, name: str, start: int = 0, end: int | None = None) -> np.ndarray:
        """One-hot ``[start, end)`` of ``name``: float32 ``(end - start, 6)``; see :func:`encode_sequence`."""
        start, end = self._region(name, start, end)
        return _encode_codes(self._fetch_codes(name, start, end)[1])
