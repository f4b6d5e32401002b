"""Host-side work per sequence of a batch, spread over the cores this process may use.

numpy and the numba loops (``nogil=True``) release the GIL, so threads run them in parallel.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def available_cores() -> int:
    """Cores this process may use (``taskset`` and cgroup-pinned runs included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def available_memory(root: str = "/") -> int | None:
    """Bytes of memory available to new work, or None where unknown: the system's
    ``MemAvailable``, and less where this process's memory cgroup (v2, or v1's memory
    controller; a SLURM job's, a container's) or one above it has a limit: that limit minus its
    usage. ``root``: where /proc and /sys are (tests)."""
    found = []
    try:
        with open(os.path.join(root, "proc/meminfo")) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    found += _cgroup_headroom(root)
    return min(found) if found else None


def _cgroup_headroom(root: str) -> list[int]:
    """Limit minus usage of each memory cgroup from this process's up to its hierarchy's root
    that has a limit."""
    try:
        with open(os.path.join(root, "proc/self/cgroup")) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    headroom = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":  # v2: unified hierarchy
            base, limit_file, usage_file = "sys/fs/cgroup", "memory.max", "memory.current"
        elif "memory" in parts[1].split(","):  # v1: the memory controller's hierarchy
            base = "sys/fs/cgroup/memory"
            limit_file, usage_file = "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        path = parts[2].strip("/")
        while True:
            folder = os.path.join(root, base, path)
            try:
                with open(os.path.join(folder, limit_file)) as fh:
                    limit = fh.read().strip()
                with open(os.path.join(folder, usage_file)) as fh:
                    usage = int(fh.read().strip())
                # v1 writes "no limit" as a huge number (2^63 rounded to pages)
                if limit != "max" and int(limit) < 1 << 60:
                    headroom.append(max(0, int(limit) - usage))
            except (OSError, ValueError):
                pass
            if not path:
                break
            path = os.path.dirname(path)
    return headroom


def thread_count(n: int, sizes=None, min_size: int = 0) -> int:
    """Threads for n items: at most one per available core, and with ``sizes`` (the items'
    work, e.g. sequence lengths) at most one per ``min_size`` of their total."""
    workers = min(n, available_cores())
    if sizes is not None and min_size > 0:
        workers = min(workers, max(1, int(sum(sizes)) // min_size))
    return max(1, workers)


def map_sequences(fn, n: int, sizes=None, min_size: int = 0) -> list:
    """[fn(0), ..., fn(n - 1)] in order, on up to one thread per available core
    (``thread_count``). Work made of many small numpy calls holds the GIL most of the time:
    more threads than its size warrants only fight over it (``min_size``)."""
    workers = thread_count(n, sizes, min_size)
    if workers <= 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(n)))
