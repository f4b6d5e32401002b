"""Wall time per stage of `genoseg annotate` with the phase grammar, three runs in one process:
the first pays CUDA, Triton and numba start-up, the later ones show the steady state. Prints;
writes no rows.

    python benchmarks/profile_annotate_stages.py GENOME [cuda|cpu] [gpu-viterbi]

``gpu-viterbi`` keeps every batch's Viterbi on the card (``viterbi_on_host_alongside`` off).
Stages on the main thread are timed after ``torch.cuda.synchronize()``; those on worker threads
(host Viterbi, constraint columns) are summed over threads, so they may exceed the wall time.
Session 13 on an H100 host, fly test set, runs 2-3: 3.9-4.1 s inside annotate, posteriors
2.2 s, encoder 0.45 s (benchmarks/NOTES_semicrf.md, entry 13).
"""

import collections
import functools
import sys
import threading
import time

import torch

from genoseg.annotate import pipeline
from genoseg.cli import main
from genoseg.crf import phase_head, phase_viterbi

TIMES: dict[str, float] = collections.defaultdict(float)
LOCK = threading.Lock()


def timed(owner, name: str, key: str, sync: bool = True) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        with LOCK:
            TIMES[key] += time.perf_counter() - start
        return out

    setattr(owner, name, wrapper)


def run() -> None:
    genome = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda"
    if "gpu-viterbi" in sys.argv[3:]:
        pipeline.viterbi_on_host_alongside = lambda *args: False
    timed(pipeline, "group_scores", "encoder (group_scores)")
    timed(pipeline, "decode_batch", "decode_batch")
    timed(pipeline, "_write_outputs", "write outputs")
    timed(phase_head.PhaseGeneHead, "sequence_columns_of", "  constraint columns (threads)",
          sync=False)
    timed(phase_head.PhaseGeneHead, "constraints", "  constraints")
    timed(phase_head.PhaseGeneHead, "posteriors", "  posteriors")
    timed(phase_viterbi, "decode", "  host Viterbi (threads)", sync=False)
    for i in range(3):
        TIMES.clear()
        start = time.perf_counter()
        try:
            main(["annotate", genome, "--device", device, "-q", "-o", f"/tmp/stages{i}.gff3"])
        except SystemExit as exc:
            if exc.code:
                raise
        print(f"run {i + 1}: {time.perf_counter() - start:.2f} s")
        for key, seconds in TIMES.items():
            print(f"   {key:36s} {seconds:6.2f}")


if __name__ == "__main__":
    run()
