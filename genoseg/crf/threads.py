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


def available_memory() -> int | None:
    """Bytes of memory available to new work (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
