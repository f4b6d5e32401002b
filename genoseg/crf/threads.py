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


def map_sequences(fn, n: int) -> list:
    """[fn(0), ..., fn(n - 1)] in order, on up to one thread per available core."""
    workers = min(n, available_cores())
    if workers <= 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(n)))
