"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so this
folder is on sys.path and ``import common`` finds this file)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The commit a row belongs to: GENOSEG_COMMIT if set (e.g. on the device machine, whose
    copy of the tree has no git history), else ``git rev-parse --short HEAD``."""
    if os.environ.get("GENOSEG_COMMIT"):
        return os.environ["GENOSEG_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def append_rows(path: Path, fields: list[str], rows: list[dict], delimiter: str = "\t") -> None:
    """Append rows to a results table, writing its header first if the file is new."""
    import csv

    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fields, delimiter=delimiter)
        if new:
            writer.writeheader()
        writer.writerows(rows)
