"""Where the kernels' Viterbi time goes, on a GPU: max scan with back-pointers, traceback, and
copying the segments to the host (pageable against pinned memory). Prints; writes no rows.

    python benchmarks/profile_viterbi.py [B T K C]      (default 1 1e7 64 16)

Random scores as in bench_semicrf.py (which holds the comparison rows). Session 5 on an H200 at
(1, 1e7, 64, 16): scan 42 ms, traceback 6.8 ms, the copy of 9.2e6 segments 190 ms pageable and
5 ms pinned (benchmarks/NOTES_semicrf.md, entries 5 and 6).
"""

import statistics
import sys
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))
from genoseg.crf.backend import _import_kernels  # noqa: E402

gk = _import_kernels()  # installed, or a source checkout's kernels/
from genoseg_kernels.chunked import prepare, scan  # noqa: E402
from genoseg_kernels.traceback import traceback  # noqa: E402


def timeit(fn, n=5):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    B, T, K, C = [int(float(x)) for x in (sys.argv[1:5] if len(sys.argv) > 4 else (1, 1e7, 64, 16))]
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    tr = 0.5 * torch.randn(C, C, generator=g, device=dev)
    du = 0.5 * torch.randn(K, C, generator=g, device=dev)
    em = torch.randn(B, T, C, generator=g, device=dev)
    p = prepare(em, tr, du)
    print(f"prepare {timeit(lambda: prepare(em, tr, du)):.2f} ms")
    print(f"max scan, no stores {timeit(lambda: scan(p, is_max=True)):.2f} ms")
    print(f"max scan, back-pointers {timeit(lambda: scan(p, is_max=True, store_bp=True)):.2f} ms")
    res = scan(p, is_max=True, store_bp=True)
    print(f"passes {res.passes}, chunk {res.chunk}")
    walk = lambda: traceback(res.bp_prev, res.bp_dur, res.ends, p.final, p.lengths,  # noqa: E731
                             res.chunk, K)
    print(f"traceback {timeit(walk):.2f} ms")
    seg = walk()[0]

    def rows():
        starts = torch.nonzero(seg >= 0).flatten()
        ends = torch.cat([starts[1:], starts.new_tensor([T])])
        return torch.stack([starts, ends, seg[starts].to(torch.int64)], dim=1)

    def pinned():
        r = rows()
        return torch.empty(r.shape, dtype=r.dtype, pin_memory=True).copy_(r)

    print(f"segments {int((seg >= 0).sum())}: to the host pageable {timeit(lambda: rows().cpu()):.2f}"
          f" ms, pinned {timeit(pinned):.2f} ms")
    torch.cuda.reset_peak_memory_stats()
    print(f"semicrf_viterbi {timeit(lambda: gk.semicrf_viterbi(em, tr, du)):.2f} ms, peak "
          f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
