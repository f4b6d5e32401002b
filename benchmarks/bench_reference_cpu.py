"""Time the pure-PyTorch reference semi-CRF on this machine's CPU; append rows to a CSV.

    python benchmarks/bench_reference_cpu.py [--repeats 3] [--out benchmarks/results/reference_cpu.csv]

Each row: host CPU, torch version, commit, shape (B, T, K, C), phase (logz forward,
posteriors = forward + outside scan, viterbi = forward + traceback), median / min / max seconds
over the repeats, microseconds per position (per sequence position, whole batch), and the growth
of the process's peak RSS during the first repeat. Uses no data files.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from common import commit, cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genoseg.crf.reference import posteriors_and_logz, semicrf_logz, semicrf_viterbi  # noqa: E402

SHAPES = [(1, 20_000, 32, 4), (8, 4_000, 128, 10), (1, 5_000, 512, 5)]
PHASES = {
    "logz": lambda a: semicrf_logz(*a),
    "posteriors": lambda a: posteriors_and_logz(*a),
    "viterbi": lambda a: semicrf_viterbi(*a),
}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/reference_cpu.csv"))
    args = parser.parse_args()
    rows = []
    for B, T, K, C in SHAPES:
        g = torch.Generator().manual_seed(0)
        inputs = (torch.randn(B, T, C, generator=g), torch.randn(C, C, generator=g),
                  torch.randn(K, C, generator=g))
        for phase, fn in PHASES.items():
            times, growth = [], None
            for r in range(args.repeats):
                before = peak_rss_bytes()
                t0 = time.perf_counter()
                fn(inputs)
                times.append(time.perf_counter() - t0)
                if r == 0:
                    growth = peak_rss_bytes() - before
            med = statistics.median(times)
            row = {
                "date": dt.date.today().isoformat(), "device": cpu_name(),
                "threads": torch.get_num_threads(), "torch": torch.__version__,
                "commit": commit(), "B": B, "T": T, "K": K, "C": C, "phase": phase,
                "implementation": "genoseg reference (CPU)", "median_s": f"{med:.3f}",
                "min_s": f"{min(times):.3f}", "max_s": f"{max(times):.3f}",
                "us_per_position": f"{med / T * 1e6:.1f}",
                "peak_rss_growth_mb": f"{growth / 2**20:.1f}",
            }
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items() if k not in ("date", "device")),
                  flush=True)
    out = Path(args.out)
    new = not out.exists()
    with open(out, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {out} ({os.cpu_count()} CPUs: {cpu_name()})")


if __name__ == "__main__":
    main()
