"""Shared fixtures for the genome I/O tests: tiny files only, built in tmp_path or under tests/data/io."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "io"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep index caches out of the user's ~/.cache."""
    monkeypatch.setenv("GENOSEG_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def mini(tmp_path) -> dict[str, Path]:
    """Copies of the committed mini FASTA/GFF3 (copied so index files land in tmp_path)."""
    out = {}
    for name in ("mini.fa", "mini.gff3"):
        shutil.copy(DATA / name, tmp_path / name)
        out[name] = tmp_path / name
    return out


def _write_fasta(path: Path, records: list[tuple[str, str]], width: int = 60, newline: str = "\n") -> Path:
    """Write records as FASTA with fixed line width (width=0: one line per sequence)."""
    lines = []
    for name, seq in records:
        lines.append(f">{name}")
        step = width or max(1, len(seq))
        lines.extend(seq[i : i + step] for i in range(0, len(seq), step))
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


@pytest.fixture
def write_fasta():
    """``write_fasta(path, [(name, seq), ...], width=60, newline="\\n") -> path``."""
    return _write_fasta


@pytest.fixture
def gt() -> str:
    """Path of genometools' ``gt``; skips the test if it is not installed."""
    path = shutil.which("gt")
    if path is None:
        pytest.skip("genometools `gt` not installed (apt-get install genometools)")
    return path
