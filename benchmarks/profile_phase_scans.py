"""The gene grammar's kernel scans on real annotate batches, on a GPU: time, passes and chunk of
each batch, per warp count and chunking. Prints; writes no rows. Reads a genome (by default the
fly test records in ../shared/data, which the test suite never needs).

    python benchmarks/profile_phase_scans.py [--genome ../shared/data/dmel_augustus/test.fa.gz]
        [--model default] [--warps 2,4] [--chunks auto,seq] [--windows dense,sparse]
        [--what viterbi,posteriors,logz_grad]

``--windows``: the dense kernels or the sparse-window ones (``GENOSEG_SPARSE`` = 0 / 1), side by
side in one run; ``sparse:N`` sets the sparse row tiles' elements (``GENOSEG_SPARSE_TILE``). ``logz_grad`` is a training step's CRF part: log Z and its backward.

Batches are packed as `genoseg annotate` packed them before it sized batches by GPU memory
(PACK_CELLS per batch), so that the per-batch rows stay comparable with NOTES_semicrf.md entry 8
(session 5, H200: passes = number of chunks in every batch; ~19 us a step for Viterbi and ~63 us
for forward + outside at 4 warps). `seq` runs each contig as one chunk.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))
from genoseg.annotate.pipeline import (  # noqa: E402
    PACK_CELLS, biased_emissions, contig_emissions, pack_contigs)
from genoseg.crf.backend import _import_kernels  # noqa: E402
from genoseg.crf.phase_head import encode_sequences  # noqa: E402
from genoseg.inputs import InputSource  # noqa: E402
from genoseg.labels import codons  # noqa: E402
from genoseg.models import load_model  # noqa: E402

gk = _import_kernels()


def batches(model, genome, dev):
    head, cfg = model.head, model.config
    src = InputSource(genome, None, (), 0, False)
    lengths = src.lengths
    for grp in pack_contigs(lengths, PACK_CELLS // head.C_expanded):
        ems = [biased_emissions(model, contig_emissions(
            model, src, s, lengths[s], dev, cfg.annotate.window, cfg.annotate.batch_size),
            codons.encode(src.genome.fetch(s))) for s in grp]
        L = torch.tensor([e.shape[0] for e in ems])
        T = int(L.max())
        em = torch.zeros((len(ems), T, ems[0].shape[1]))
        for b, e in enumerate(ems):
            em[b, :e.shape[0]] = e
        em, L = em.to(dev), L.to(dev)
        codes = encode_sequences([src.genome.fetch(s) for s in grp], T).to(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            cons = head.constraints(em, codes, L)
        torch.cuda.synchronize()
        print(f"batch B={len(grp)} T={T}: constraints {time.perf_counter() - t0:.3f} s", flush=True)
        yield em, L, cons


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genome", default=str(ROOT.parent / "shared/data/dmel_augustus/test.fa.gz"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--warps", default="2,4")
    ap.add_argument("--chunks", default="auto,seq")
    ap.add_argument("--windows", default="dense,sparse")
    ap.add_argument("--what", default="viterbi,posteriors")
    args = ap.parse_args()
    dev = torch.device("cuda")
    model, _ = load_model(args.model, device="cuda")
    head = model.head
    data = list(batches(model, args.genome, dev))

    def run(em, L, cons, what, chunk):
        x, inputs = head.expand(em), head.crf_inputs()
        if what == "logz_grad":
            x = x.detach().requires_grad_(True)
            gk.semicrf_logz(x, lengths=L, **inputs, **cons, chunk=chunk).sum().backward()
            torch.cuda.synchronize()
            return None
        fn = gk.semicrf_viterbi if what == "viterbi" else gk.posteriors_and_logz
        out = fn(x, lengths=L, **inputs, **cons, chunk=chunk)
        torch.cuda.synchronize()
        return out

    for window in args.windows.split(","):
        kind, _, tile = window.partition(":")  # sparse:8192 = row tiles of 8192 elements
        os.environ["GENOSEG_SPARSE"] = {"dense": "0", "sparse": "1"}[kind]
        os.environ["GENOSEG_SPARSE_TILE"] = tile or "0"
        for warps in args.warps.split(","):
            if warps == "auto":
                os.environ.pop("GENOSEG_NUM_WARPS", None)
            else:
                os.environ["GENOSEG_NUM_WARPS"] = warps
            for mode in args.chunks.split(","):
                total = 0.0
                for em, L, cons in data:
                    T = em.shape[1]
                    chunk = None if mode == "auto" else -(-T // 32) * 32
                    for what in args.what.split(","):
                        run(em, L, cons, what, chunk)  # compiles
                        t0 = time.perf_counter()
                        run(em, L, cons, what, chunk)
                        dt = time.perf_counter() - t0
                        total += dt
                        stats = gk.last_stats()
                        key = "viterbi" if what == "viterbi" else "forward"
                        print(f"{window} warps={warps} chunks={mode} B={em.shape[0]} T={T} "
                              f"{what}: {dt:.3f} s, passes {stats[key]['passes']} of chunk "
                              f"{stats[key]['chunk']}", flush=True)
                print(f"== {window} warps={warps} chunks={mode}: total {total:.2f} s", flush=True)


if __name__ == "__main__":
    main()
