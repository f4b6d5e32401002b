"""How many threads the host-side per-sequence work gets (``genoseg.crf.threads``)."""

from __future__ import annotations

import threading

import pytest

from genoseg.crf import threads


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)


def test_thread_count_caps_by_items_cores_and_work(eight_cores):
    assert threads.thread_count(3) == 3  # one per item
    assert threads.thread_count(100) == 8  # one per core
    # one per min_size of total work: 100 sequences of 6 kb are 600 kb, one thread per 500 kb
    assert threads.thread_count(100, [6_000] * 100, 500_000) == 1
    assert threads.thread_count(4, [1_500_000] * 4, 500_000) == 4
    assert threads.thread_count(40, [1_000_000] * 40, 500_000) == 8
    assert threads.thread_count(0) == 1 and threads.thread_count(5, [0] * 5, 500_000) == 1


def test_map_sequences_keeps_order_and_uses_the_count(eight_cores):
    seen = set()

    def fn(i):
        seen.add(threading.get_ident())
        return i * i

    assert threads.map_sequences(fn, 50, sizes=[10] * 50, min_size=500_000) == [
        i * i for i in range(50)]
    assert seen == {threading.get_ident()}  # too little work: the calling thread alone
    assert threads.map_sequences(fn, 6) == [i * i for i in range(6)]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _cgroups(base, limit_name, usage_name, levels):
    """Fake cgroup folders under ``base``: {relative path: (limit text, usage bytes)}."""
    for path, (limit, usage) in levels.items():
        _write(base / path / limit_name, f"{limit}\n")
        _write(base / path / usage_name, str(usage))


def test_available_memory_takes_the_tightest_cgroup_limit(tmp_path):
    """MemAvailable, lowered by the limit minus usage of this process's memory cgroup or of one
    above it (a SLURM job's limit sits on the job, the process in a step below it)."""
    gib = 1 << 30
    _write(tmp_path / "proc/meminfo", "MemTotal: 100 kB\nMemAvailable: 67108864 kB\n")  # 64 GiB
    assert threads.available_memory(str(tmp_path)) == 64 * gib  # no cgroup file: MemAvailable
    # cgroup v2: the job has 16 GiB, 10 GiB used; the step below it has no limit of its own
    _write(tmp_path / "proc/self/cgroup", "0::/job_7/step_0\n")
    _cgroups(tmp_path / "sys/fs/cgroup", "memory.max", "memory.current",
             {".": ("max", 40 * gib), "job_7": (16 * gib, 10 * gib),
              "job_7/step_0": ("max", 9 * gib)})
    assert threads.available_memory(str(tmp_path)) == 6 * gib
    # cgroup v1's memory controller, "no limit" written as a huge number at the top
    _write(tmp_path / "proc/self/cgroup", "4:memory:/box\n3:cpuset:/\n")
    v1 = tmp_path / "sys/fs/cgroup/memory"
    _cgroups(v1, "memory.limit_in_bytes", "memory.usage_in_bytes",
             {".": (9223372036854771712, 50 * gib), "box": (24 * gib, 3 * gib)})
    assert threads.available_memory(str(tmp_path)) == 21 * gib
    # over its limit: nothing available, never negative
    _write(v1 / "box/memory.usage_in_bytes", str(30 * gib))
    assert threads.available_memory(str(tmp_path)) == 0


def test_available_memory_unknown_is_none(tmp_path):
    assert threads.available_memory(str(tmp_path)) is None


def test_available_cores_takes_the_tightest_cpu_quota(tmp_path, monkeypatch):
    """The CPU affinity, lowered to the CPU quota (rounded up) of this process's cgroup or of
    one above it: a container started with ``--cpus 2.5`` on a 64-core host gets 3 threads, not
    64."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert threads.available_cores(str(tmp_path)) == 64  # no cgroup file: the affinity
    # cgroup v2: a quota of 2.5 CPUs on the container, none below it
    _write(tmp_path / "proc/self/cgroup", "0::/box/inner\n")
    quotas = {".": "max 100000", "box": "250000 100000", "box/inner": "max 100000"}
    for path, text in quotas.items():
        _write(tmp_path / "sys/fs/cgroup" / path / "cpu.max", text + "\n")
    assert threads.available_cores(str(tmp_path)) == 3
    # cgroup v1, cpu and cpuacct mounted together; -1 is no quota; under one CPU still gets one
    _write(tmp_path / "proc/self/cgroup", "3:cpuset:/\n2:cpu,cpuacct:/job\n1:memory:/\n")
    v1 = tmp_path / "sys/fs/cgroup/cpu,cpuacct"
    for path, quota in {".": -1, "job": 50000}.items():
        _write(v1 / path / "cpu.cfs_quota_us", f"{quota}\n")
        _write(v1 / path / "cpu.cfs_period_us", "100000\n")
    assert threads.available_cores(str(tmp_path)) == 1
    _write(v1 / "job/cpu.cfs_quota_us", "-1\n")
    assert threads.available_cores(str(tmp_path)) == 64
    # an affinity narrower than the quota wins
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    _write(v1 / "job/cpu.cfs_quota_us", "800000\n")
    assert threads.available_cores(str(tmp_path)) == 2


def test_torch_threads_are_lowered_to_the_available_cores(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        monkeypatch.setattr(threads, "available_cores", lambda: 3)
        threads.limit_torch_threads()
        assert torch.get_num_threads() == 3
        monkeypatch.setattr(threads, "available_cores", lambda: 16)
        threads.limit_torch_threads()  # never raised
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
