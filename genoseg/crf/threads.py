"""Host-side work per sequence of a batch, spread over the cores this process may use.

numpy and the numba loops (``nogil=True``) release the GIL, so threads run them in parallel.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor


def available_cores(root: str = "/") -> int:
    """Cores this process may use: its CPU affinity (``taskset``, cpusets: SLURM), lowered to
    the CPU quota of its cgroup or any above it (a container's ``--cpus``, v2's ``cpu.max`` or
    v1's CFS quota), rounded up. ``root``: where /proc and /sys are (tests)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    for quota in _cgroup_cpu_quotas(root):
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


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


def _cgroup_folders(root: str, controller: str):
    """(is v2, folder) for each cgroup folder from this process's up to its hierarchy's root:
    in the unified (v2) hierarchy, and in v1's hierarchy of ``controller``."""
    try:
        with open(os.path.join(root, "proc/self/cgroup")) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":  # v2: unified hierarchy
            v2, base = True, "sys/fs/cgroup"
        elif controller in parts[1].split(","):  # v1: the controller's own hierarchy
            v2, base = False, f"sys/fs/cgroup/{parts[1]}"
            if not os.path.isdir(os.path.join(root, base)):  # mounted by its first name
                base = f"sys/fs/cgroup/{controller}"
        else:
            continue
        path = parts[2].strip("/")
        while True:
            yield v2, os.path.join(root, base, path)
            if not path:
                break
            path = os.path.dirname(path)


def _read(folder: str, name: str) -> str:
    with open(os.path.join(folder, name)) as fh:
        return fh.read().strip()


def _cgroup_headroom(root: str) -> list[int]:
    """Limit minus usage of each memory cgroup from this process's up to its hierarchy's root
    that has a limit."""
    headroom = []
    for v2, folder in _cgroup_folders(root, "memory"):
        limit_file, usage_file = (("memory.max", "memory.current") if v2 else
                                  ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        try:
            limit, usage = _read(folder, limit_file), int(_read(folder, usage_file))
            # v1 writes "no limit" as a huge number (2^63 rounded to pages)
            if limit != "max" and int(limit) < 1 << 60:
                headroom.append(max(0, int(limit) - usage))
        except (OSError, ValueError):
            pass
    return headroom


def _cgroup_cpu_quotas(root: str) -> list[float]:
    """CPUs' worth of time (quota / period) of each CPU cgroup from this process's up to its
    hierarchy's root that has a quota."""
    quotas = []
    for v2, folder in _cgroup_folders(root, "cpu"):
        try:
            if v2:
                quota, period = _read(folder, "cpu.max").split()
            else:
                quota = _read(folder, "cpu.cfs_quota_us")
                period = _read(folder, "cpu.cfs_period_us")
            if quota not in ("max", "-1") and int(period) > 0:
                quotas.append(int(quota) / int(period))
        except (OSError, ValueError):
            pass
    return quotas


def limit_torch_threads() -> None:
    """Lower torch's intra-op threads to ``available_cores()``: torch counts the cores it may
    run on, not a container's CPU quota, and 64 threads sharing 2.5 CPUs' time slow each
    other down."""
    import torch

    cores = available_cores()
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


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
