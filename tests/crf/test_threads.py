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
