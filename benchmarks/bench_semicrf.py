"""Time semi-CRF implementations side by side on one GPU; append rows to a CSV, print a table.

Run it on the device machine from the repository root, with the two comparison libraries
carried as wheels in .whl/ (flash_semicrf-0.2.0 and torch_struct-0.5, both pure Python):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \\
        .whl/flash_semicrf-0.2.0-py3-none-any.whl .whl/torch_struct-0.5-py3-none-any.whl \\
        || exit 1; \\
    cp benchmarks/results/semicrf.csv $OUT/ 2>/dev/null; \\
    GENOSEG_COMMIT=<short sha> PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 \\
        python3 benchmarks/bench_semicrf.py --csv $OUT/semicrf.csv

(carry `.whl` with the call; then copy the fetched semicrf.csv over
benchmarks/results/semicrf.csv). On an H200 the reference and flash-semicrf rows take about
3 minutes each for the default shapes (flash's fwdbwd at K=1000 alone ~50 s): split the run with
--impls / --shapes to stay inside a 10-minute call. `--quick` is a tiny smoke run (2 shapes,
every implementation, ~1 minute). `genoseg_kernels` is imported from an installed genoseg or,
failing that, straight from ./kernels.

Implementations (each in its own try/except: a failure writes a row with its status and the run
goes on; a lost CUDA context ends the run with the remaining rows marked):

- genoseg:     genoseg_kernels.semicrf_logz / semicrf_viterbi at the full T (the kernels the
               model picks: sparse-window ones for a sparse -inf pattern, e.g. --pattern gene).
- genoseg_dense: the same with the sparse window switched off (GENOSEG_SPARSE=0), for A/B.
- reference:   genoseg.crf.reference on the GPU (a Python loop over positions, ~0.2 ms each):
               timed at T = --ref-T and scaled linearly to T (column scaled_from_T).
- flash:       flash-semicrf 0.2.0 `semi_crf_streaming_forward` through its Triton kernels
               (float64 inside, one program per sequence, T a compile-time constant, so exactly
               linear in T and recompiled per length): timed at T = --flash-T and scaled.
               Our inputs are mapped to its prefix-sum API so that it computes the same logZ
               (see `flash_inputs`); the mapping's own cost is inside the timing. Its Viterbi
               row is the max-semiring score only: its Triton backpointer kernel is disabled
               upstream, so there is no GPU traceback to time.
- torchstruct: torch-struct 0.5 `SemiMarkov` (parallel binary-tree scan) on edges built by
               `torchstruct_edges`, at the full T, only where its estimated memory fits in half
               the card; otherwise a row "skipped: needs N GB". Viterbi = max-semiring score only.

Phases: forward (logZ under no_grad), fwdbwd (logZ then logz.sum().backward() with emissions,
transitions and durations requiring grad), viterbi (best score and, for genoseg and reference,
the segments). Inputs: emissions ~ N(0, 1) (B, T, C) float32, transitions and durations ~
N(0, 0.5^2), seeded, drawn once per shape at the full T (scaled implementations get the first
T' positions).

Timing (/work/.library/device/METHOD.md): warm-up calls first (compilation stays out), then
CUDA events around each call, median of --repeats (fewer if a slow call would blow
--budget-s). Peak memory: torch.cuda.max_memory_allocated after reset_peak_memory_stats, so it
includes the inputs already on the card; for scaled rows it is the peak at scaled_from_T.

The floor (a time no implementation can beat, at the full T):
- forward: the log-space scan needs at least B*T*(K*C + C*C) exponentials (with the factorised
  recursion: a log-sum-exp over K durations for each of C labels, and one over C previous labels
  for each of C labels, per position). Each is about one MUFU ex2; the rate is
  SMs * 16 ex2/clock * SM clock (H100 SXM: 132 * 16 * ~1.755 GHz = 3.7e12/s), with SMs and clock
  read from the device where possible (torch properties, then Triton's driver, else 1.755 GHz).
  It must also read the emissions once: B*T*C*4 bytes at HBM bandwidth (from the memory clock and
  bus width where Triton reports them; else 3.35 TB/s H100 SXM, 4.8 TB/s H200).
  floor = max(exp time, byte time).
- fwdbwd: assumed 3x the forward's exponentials (forward, recomputed forward and the outside
  scan, each ~ one forward's worth), and the emissions read once and their gradient written once.
- viterbi: no exponentials; assumed 2 FP32-pipe operations (add, max) per candidate,
  B*T*(K*C + C*C) candidates at SMs * 128 lanes * clock, and the emissions read once.
frac_of_floor = floor_ms / median_ms (1.0 would be at the floor).

Peak memory at the full T for the scaled implementations (column peak_mem_mb_at_T): their
allocations are affine in T (flash: the (B, T+1, C) float64 prefix sums, the input, (B, T/I, K, C)
ring checkpoints with interval I = max(K, 64) at these sizes, its gradients; the reference:
per-position outputs), so one extra untimed call at 2 T' gives the slope and the peak is
extrapolated affinely to T (skipped when that call would take over --mem-probe-s). genoseg's is
its measured peak at T. The probe leaves out the bytes of the sliced copy of the emissions (at T
the implementation would read the full input, which is on the card in every measurement). This is
the like-for-like memory comparison; peak_mem_mb is each row's peak at the T it ran.

CSV columns: date, gpu_name, commit (git rev-parse --short HEAD, "+dirty" if the tree has
changes; else $GENOSEG_COMMIT; else "unknown"), B, T, K, C, phase, impl, median_ms (at the full
T), positions_per_s (B*T / seconds), peak_mem_mb, floor_ms, frac_of_floor, scaled_from_T (empty
if timed at T), passes (genoseg_kernels.last_stats()["passes"] if it exists), status ("ok",
"ok; <note>", "OOM", "error: ...", "skipped: ..."). Forward rows carry a logZ check against the
reference at its T in the status.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SHAPES = "8x1e5x256x16,1x1e7x64x16,1x1e8x64x16,64x1e4x128x16,1x1e5x1000x24,4x5e4x500x11"
QUICK_SHAPES = "2x300x8x4,1x700x12x5"
IMPLS = ("genoseg", "genoseg_dense", "reference", "flash", "torchstruct")
PHASES = ("forward", "fwdbwd", "viterbi")
COLUMNS = ["date", "gpu_name", "commit", "B", "T", "K", "C", "phase", "impl", "median_ms",
           "positions_per_s", "peak_mem_mb", "floor_ms", "frac_of_floor", "scaled_from_T",
           "passes", "status", "peak_mem_mb_at_T"]
# A relative logZ difference above this against the float32 reference is flagged.
CHECK_RTOL = 1e-4
NEG = -1e9  # torch-struct's own "log zero"; finite, so its -1e5 masks and sums stay NaN-free


# ----------------------------------------------------------------------------------------------
# Input mappings (also imported by the CPU check of the mappings)
# ----------------------------------------------------------------------------------------------


def flash_inputs(emissions, transitions, durations, semiring="log"):
    """Our (emissions (B,T,C), transitions (C,C), durations (K,C)) -> flash-semicrf's
    (cum_scores (B,T+1,C) float64, transition (C,C) float64, duration_bias (K,C) float64,
    lengths (B,) int64, K) such that semi_crf_streaming_forward returns our logZ (semiring="log")
    or our best score (semiring="max"). Differentiable (autograd) in all three inputs.

    - Its segment [s, e) of label c scores cum[e,c] - cum[s,c] + duration_bias[e-s-1, c] and adds
      transition[c_prev, c] ([source, destination], as ours).
    - Zero-centring (which it asks for): subtract mu[c], the mean over batch and positions, before
      the float64 cumsum, and add d * mu[c] to duration_bias[d-1, c]: exact, since a segment of
      length d then loses exactly d * mu[c] from its content.
    - Its first segment is not free: alpha[0, c'] = 0 for every c' and the transition is still
      added, so the first segment of label c gets lse_{c'} transition[c', c] (max_{c'} in the max
      semiring) where ours gets 0. Row 0 of cum_scores is read only as the start of segments
      starting at 0, so setting cum_scores[:, 0, c] = lse_{c'} transition[c', c] cancels it
      exactly.
    """
    import torch

    B, T, C = emissions.shape
    K = durations.shape[0]
    f64 = torch.float64
    em = emissions.to(f64)
    mu = em.detach().mean(dim=(0, 1))  # (C,)
    d = torch.arange(1, K + 1, dtype=f64, device=em.device)
    duration_bias = durations.to(f64) + d[:, None] * mu[None, :]
    transition = transitions.to(f64)
    if semiring == "log":
        first = torch.logsumexp(transition, dim=0)
    else:
        first = transition.max(dim=0).values
    cum = torch.cumsum(em - mu, dim=1)
    cum_scores = torch.cat([first.expand(B, 1, C), cum], dim=1)
    lengths = torch.full((B,), T, dtype=torch.int64, device=em.device)
    return cum_scores, transition, duration_bias, lengths, K


def torchstruct_edges(emissions, transitions, durations):
    """Our inputs -> torch-struct 0.5 SemiMarkov edge potentials (B, T, K+1, C, C), dtype of
    emissions.

    torch-struct's chain has N = T+1 boundary points, each with a label; edge[b, n, k, y, x]
    scores a step from point n (label x) to point n+k (label y), k in 1..K_ts-1 (slot k=0 is
    unused, so K_ts = K+1). We give the segment [n, n+k) the label y of its end point:
    edge = sum(em[n:n+k, y]) + durations[k-1, y] + transitions[x, y]; at n = 0 the start point's
    label is a dummy pinned to 0 (no transition score; NEG for x != 0) so it adds nothing to logZ.
    Spans past T are NEG.
    """
    import torch

    B, T, C = emissions.shape
    K = durations.shape[0]
    dev, dtype = emissions.device, emissions.dtype
    S = torch.cat([emissions.new_zeros(B, 1, C), torch.cumsum(emissions, dim=1)], dim=1)
    end = torch.arange(T, device=dev)[:, None] + torch.arange(1, K + 1, device=dev)[None, :]
    valid = (end <= T)[None, :, :, None]  # (1, T, K, 1)
    seg = S[:, end.clamp(max=T)] - S[:, :T, None, :] + durations.to(dtype)[None, None]
    seg = torch.where(valid, seg, torch.full((), NEG, dtype=dtype, device=dev))  # (B, T, K, C)
    trans_yx = transitions.to(dtype).t()  # [y, x] = transitions[x, y]
    pinned = torch.full((C, C), NEG, dtype=dtype, device=dev)
    pinned[:, 0] = 0.0
    first = seg[:, :1, :, :, None] + pinned
    rest = seg[:, 1:, :, :, None] + trans_yx
    edge = torch.cat([first, rest], dim=1)  # (B, T, K, C, C)
    k0 = torch.full((B, T, 1, C, C), NEG, dtype=dtype, device=dev)
    return torch.cat([k0, edge], dim=2)


def torchstruct_bytes(B, T, K, C, phase, itemsize=4):
    """Rough peak bytes of torch-struct 0.5 SemiMarkov.logpartition (no genbmm) on our edges.

    Edges B*T*(K+1)*C*C; its chart and padded copy B*bin_N*(K^2 + K+1)*C^2 (bin_N = T rounded up
    to a power of two); and above all the first merge of its binary tree, a semiring matmul of
    (K*C) x (K*C) blocks that broadcasts to B*(bin_N/2)*(K*C)^3 before the log-sum-exp (counted
    twice for the exp temporaries). fwdbwd keeps every level for autograd: counted as 2x.
    """
    bin_n = 1 << max(1, math.ceil(math.log2(max(T, 2))))
    M = K * C
    edge = B * T * (K + 1) * C * C
    chart = B * bin_n * (K * K + K + 1) * C * C
    merge = B * (bin_n // 2) * M ** 3
    total = (edge + chart + 2 * merge) * itemsize
    return total * (2 if phase == "fwdbwd" else 1)


# ----------------------------------------------------------------------------------------------
# Device description and the floor
# ----------------------------------------------------------------------------------------------


def device_info(device):
    """dict: name, sms, clock_hz, hbm_bps, total_bytes, and where clock/bandwidth came from."""
    import torch

    info = {"name": "cpu", "sms": 0, "clock_hz": 1.755e9, "hbm_bps": 3.35e12, "total_bytes": 0,
            "clock_src": "default 1.755 GHz", "bw_src": "default 3.35 TB/s"}
    if device.type != "cuda":
        return info
    props = torch.cuda.get_device_properties(device)
    info.update(name=torch.cuda.get_device_name(device), sms=props.multi_processor_count,
                total_bytes=props.total_memory)
    if "H200" in info["name"]:
        info.update(hbm_bps=4.8e12, bw_src="datasheet H200 4.8 TB/s")
    else:
        info.update(bw_src="datasheet H100 SXM 3.35 TB/s")
    clock_khz = getattr(props, "clock_rate", None)
    src = "torch properties"
    tprops = {}
    try:
        import triton

        tprops = triton.runtime.driver.active.utils.get_device_properties(device.index or 0)
    except Exception:  # noqa: BLE001 - any failure just means "not reported"
        pass
    if not clock_khz and tprops.get("sm_clock_rate"):
        clock_khz, src = tprops["sm_clock_rate"], "triton driver"
    if clock_khz:
        info.update(clock_hz=clock_khz * 1e3, clock_src=f"{src}: {clock_khz / 1e6:.3f} GHz")
    if tprops.get("mem_clock_rate") and tprops.get("mem_bus_width"):
        bw = 2 * tprops["mem_clock_rate"] * 1e3 * tprops["mem_bus_width"] / 8
        info.update(hbm_bps=bw, bw_src=f"triton driver: {bw / 1e12:.2f} TB/s")
    return info


def floor_ms(B, T, K, C, phase, dev, allowed=None):
    """``allowed``: (cells, transitions) a sparse pattern leaves (default: all K * C, C * C)."""
    cells, transitions = allowed or (K * C, C * C)
    cands = B * T * (cells + transitions)
    em_bytes = B * T * C * 4
    sms = dev["sms"] or 132
    if phase == "viterbi":
        t_ops = 2 * cands / (sms * 128 * dev["clock_hz"])
        t_bytes = em_bytes / dev["hbm_bps"]
    else:
        mufu = sms * 16 * dev["clock_hz"]
        n_exp = cands * (3 if phase == "fwdbwd" else 1)
        t_ops = n_exp / mufu
        t_bytes = em_bytes * (2 if phase == "fwdbwd" else 1) / dev["hbm_bps"]
    return 1e3 * max(t_ops, t_bytes)


# ----------------------------------------------------------------------------------------------
# Implementations: each returns fn(em, trans, dur) -> logZ / score tensor (B,) for one phase
# ----------------------------------------------------------------------------------------------


def import_genoseg_kernels():
    try:
        import genoseg_kernels
    except ImportError:
        # A source checkout: the package lives in ./kernels (pyproject's package-dir).
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "genoseg_kernels", ROOT / "kernels" / "__init__.py",
            submodule_search_locations=[str(ROOT / "kernels")])
        genoseg_kernels = importlib.util.module_from_spec(spec)
        sys.modules["genoseg_kernels"] = genoseg_kernels
        spec.loader.exec_module(genoseg_kernels)
    return genoseg_kernels


def gene_pattern(K, C):
    """(K, C) and (C, C) bool: the codon-phase gene grammar's allowed durations and transitions
    (``--pattern gene``; needs C = 80, the grammar's state count)."""
    import torch

    from genoseg.labels.phase_crf import PhaseGrammar

    g = PhaseGrammar(K, 40)
    if g.C != C:
        raise SystemExit(f"bench_semicrf: --pattern gene needs C = {g.C}, got {C}")
    return (torch.from_numpy(g.durations_allowed()), torch.from_numpy(g.transitions_allowed()))


def dense_kernels(mod):
    """genoseg_kernels with the sparse window switched off (GENOSEG_SPARSE=0) for each call."""
    class Dense:
        @staticmethod
        def _forced(fn, *a, **kw):
            old = os.environ.get("GENOSEG_SPARSE")
            os.environ["GENOSEG_SPARSE"] = "0"
            try:
                return fn(*a, **kw)
            finally:
                if old is None:
                    os.environ.pop("GENOSEG_SPARSE", None)
                else:
                    os.environ["GENOSEG_SPARSE"] = old

        def semicrf_logz(self, *a, **kw):
            return self._forced(mod.semicrf_logz, *a, **kw)

        def semicrf_viterbi(self, *a, **kw):
            return self._forced(mod.semicrf_viterbi, *a, **kw)

        def last_stats(self):
            return mod.last_stats()

    return Dense()


def _clear_grads(*xs):
    for x in xs:
        x.grad = None


def semicrf_module_fn(mod, phase):
    """genoseg_kernels and genoseg.crf.reference share one API."""
    import torch

    if phase == "forward":
        def fn(em, tr, du):
            with torch.no_grad():
                return mod.semicrf_logz(em, tr, du)
    elif phase == "fwdbwd":
        def fn(em, tr, du):
            _clear_grads(em, tr, du)
            logz = mod.semicrf_logz(em, tr, du)
            logz.sum().backward()
            return logz.detach()
    else:
        def fn(em, tr, du):
            scores, _segments = mod.semicrf_viterbi(em, tr, du)
            return scores
    return fn


def flash_fn(phase):
    import torch
    from flash_semicrf.streaming import HAS_TRITON, semi_crf_streaming_forward

    if not HAS_TRITON:
        raise RuntimeError("flash_semicrf.streaming.HAS_TRITON is False (no Triton path)")
    semiring = "max" if phase == "viterbi" else "log"

    def call(em, tr, du):
        cum, trans, dbias, lengths, K = flash_inputs(em, tr, du, semiring)
        return semi_crf_streaming_forward(cum, trans, dbias, lengths, K, semiring=semiring,
                                          use_triton=True)

    if phase == "fwdbwd":
        def fn(em, tr, du):
            _clear_grads(em, tr, du)
            logz = call(em, tr, du)
            logz.sum().backward()
            return logz.detach()
    else:
        def fn(em, tr, du):
            with torch.no_grad():
                return call(em, tr, du)
    return fn


def torchstruct_fn(phase):
    import torch
    from torch_struct import LogSemiring, MaxSemiring, SemiMarkov

    model = SemiMarkov(MaxSemiring if phase == "viterbi" else LogSemiring)

    if phase == "fwdbwd":
        def fn(em, tr, du):
            _clear_grads(em, tr, du)
            logz = model.sum(torchstruct_edges(em, tr, du))
            logz.sum().backward()
            return logz.detach()
    else:
        def fn(em, tr, du):
            with torch.no_grad():
                return model.sum(torchstruct_edges(em, tr, du))
    return fn


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, args, device, repeats, warmup, budget_s):
    """Median ms over the timed calls, peak bytes, last output, number of timed calls."""
    import torch

    cuda = device.type == "cuda"
    for i in range(max(1, warmup)):
        t0 = time.perf_counter()
        out = fn(*args)
        sync(device)
        last = time.perf_counter() - t0
        # The first call compiles; the second shows the steady time that sizes the repeats.
        # Stop early only where one more call would be long: a first call over 20 s (slow
        # whatever the compile took) or a later one over 2 s.
        if (i == 0 and last > 20.0) or (i >= 1 and last > 2.0):
            break
    n = max(1, min(repeats, int(budget_s / max(last, 1e-9))))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(n):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            out = fn(*args)
            times.append(1e3 * (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    return statistics.median(times), peak, out, n


# ----------------------------------------------------------------------------------------------
# Rows, CSV, table
# ----------------------------------------------------------------------------------------------


def commit() -> str:
    """GENOSEG_COMMIT when set (the device tool's copy of the tree may carry a stale .git),
    else git's HEAD, marked +dirty when tracked files differ from it."""
    if os.environ.get("GENOSEG_COMMIT"):
        return os.environ["GENOSEG_COMMIT"]
    try:
        sha = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                      stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"],
                                        cwd=ROOT, text=True, stderr=subprocess.DEVNULL).strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def append_rows(path: Path, rows):
    """Append to the CSV (header if new) by writing a temporary copy and renaming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        if old:
            handle.write(old if old.endswith("\n") else old + "\n")
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        if not old:
            writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def fmt_table(rows):
    head = ["shape BxTxKxC", "phase", "impl", "ms", "Mpos/s", "peakMB", "floor_ms", "frac",
            "fromT", "pass", "status"]
    lines = []
    for r in rows:
        lines.append([f"{r['B']}x{r['T']}x{r['K']}x{r['C']}", r["phase"], r["impl"],
                      r["median_ms"], (f"{float(r['positions_per_s']) / 1e6:.3g}"
                                       if r["positions_per_s"] else ""),
                      r["peak_mem_mb"], r["floor_ms"], r["frac_of_floor"], str(r["scaled_from_T"]),
                      str(r["passes"]), r["status"][:90]])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def g(x, digits=4):
    return "" if x is None else f"{x:.{digits}g}"


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 4:
            raise argparse.ArgumentTypeError(f"shape {item!r} is not BxTxKxC")
        try:
            vals = [int(float(p)) for p in parts]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"shape {item!r}: {err}") from None
        if min(vals) < 1:
            raise argparse.ArgumentTypeError(f"shape {item!r}: every size must be >= 1")
        shapes.append(tuple(vals))
    return shapes


def parse_list(allowed):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return items
    return parse


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", type=parse_shapes, default=None,
                   help=f"comma-separated BxTxKxC (1e5 notation allowed); default {DEFAULT_SHAPES}")
    p.add_argument("--impls", type=parse_list(IMPLS), default=",".join(IMPLS),
                   help=f"comma-separated subset of {','.join(IMPLS)}")
    p.add_argument("--phases", type=parse_list(PHASES), default=",".join(PHASES),
                   help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per (impl, phase)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (compilation)")
    p.add_argument("--budget-s", type=float, default=5.0,
                   help="cut the timed repeats of a slow call to about this many seconds")
    p.add_argument("--csv", type=Path, default=ROOT / "benchmarks/results/semicrf.csv",
                   help="CSV to append to (created with a header if missing)")
    p.add_argument("--flash-T", type=int, default=2048,
                   help="T at which flash-semicrf is timed and scaled linearly to T")
    p.add_argument("--ref-T", type=int, default=2048,
                   help="T at which the reference is timed and scaled linearly to T")
    p.add_argument("--mem-fraction", type=float, default=0.5,
                   help="skip torch-struct where its estimated memory exceeds this x card memory")
    p.add_argument("--mem-probe-s", type=float, default=30.0,
                   help="longest call allowed for the memory probe of a scaled row at 2 T'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pattern", choices=("dense", "gene"), default="dense",
                   help="gene: -inf durations and transitions of the codon-phase gene grammar "
                        "(C must be 80), the model the sparse kernels are for; noted in status")
    p.add_argument("--device", default="cuda", help="cuda (cpu only to debug this script)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny smoke run: shapes {QUICK_SHAPES}, 2 repeats, 1 warm-up")
    p.add_argument("--no-csv", action="store_true", help="print the table only")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    import torch

    if args.shapes is None:
        args.shapes = parse_shapes(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    if args.quick:
        args.repeats, args.warmup = min(args.repeats, 2), 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_semicrf: no CUDA device here (use --device cpu only to debug the script)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dev = device_info(device)
    date, sha = dt.date.today().isoformat(), commit()
    print(f"# {dev['name']}: {dev['sms']} SMs, clock {dev['clock_src']}, HBM {dev['bw_src']}; "
          f"torch {torch.__version__}; commit {sha}", file=sys.stderr, flush=True)

    # Lazy imports: a missing library only fails its own rows.
    modules, import_errors = {}, {}
    loaders = {
        "genoseg": import_genoseg_kernels,
        "genoseg_dense": lambda: dense_kernels(import_genoseg_kernels()),
        "reference": lambda: __import__("genoseg.crf.reference", fromlist=["semicrf_logz"]),
        "flash": lambda: __import__("flash_semicrf"),
        "torchstruct": lambda: __import__("torch_struct"),
    }
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # a source checkout works without `pip install -e .`
    for name in args.impls:
        try:
            modules[name] = loaders[name]()
            version = getattr(modules[name], "__version__", "")
            print(f"# {name}: {getattr(modules[name], '__file__', '?')} {version}",
                  file=sys.stderr, flush=True)
        except Exception as err:  # noqa: BLE001 - reported in the rows
            import_errors[name] = f"error: import: {type(err).__name__}: {err}"

    all_rows, context_lost = [], None
    for (B, T, K, C) in args.shapes:
        gen = torch.Generator(device=device).manual_seed(args.seed)
        try:
            trans = 0.5 * torch.randn(C, C, generator=gen, device=device)
            dur = 0.5 * torch.randn(K, C, generator=gen, device=device)
            em_full = torch.randn(B, T, C, generator=gen, device=device)
        except torch.OutOfMemoryError:
            em_full = None
        allowed, note = None, ""
        if args.pattern == "gene":
            dur_ok, trans_ok = (x.to(device) for x in gene_pattern(K, C))
            dur = dur.masked_fill(~dur_ok, float("-inf"))
            trans = trans.masked_fill(~trans_ok, float("-inf"))
            allowed = (int(dur_ok.sum()), int(trans_ok.sum()))
            note = f"; gene-grammar pattern ({allowed[0]} cells, {allowed[1]} transitions)"
        ref_logz = {}  # T used -> reference logZ (B,) float64 on CPU, for the checks
        rows_this_shape = []
        # The reference first: the other forward rows are checked against its logZ.
        for impl in sorted(args.impls, key=lambda name: name != "reference"):
            for phase in args.phases:
                row = {"date": date, "gpu_name": dev["name"], "commit": sha, "B": B, "T": T,
                       "K": K, "C": C, "phase": phase, "impl": impl, "median_ms": "",
                       "positions_per_s": "", "peak_mem_mb": "", "scaled_from_T": "",
                       "passes": "", "status": "", "peak_mem_mb_at_T": ""}
                fl = floor_ms(B, T, K, C, phase, dev, allowed)
                row["floor_ms"] = g(fl)
                row["frac_of_floor"] = ""
                status = run_one(row, impl, phase, modules, import_errors, em_full, trans, dur,
                                 args, device, dev, ref_logz, context_lost)
                row["status"] = status + (note if status.startswith("ok") else "")
                if status.startswith("error") and device.type == "cuda" and context_lost is None:
                    try:
                        torch.cuda.synchronize(device)
                    except Exception as err:  # noqa: BLE001 - sticky CUDA error
                        context_lost = f"skipped: CUDA context lost after {impl} {phase} ({err})"
                if row["median_ms"]:
                    ms = float(row["median_ms"])
                    row["positions_per_s"] = g(B * T / (ms / 1e3))
                    row["frac_of_floor"] = g(fl / ms, 3)
                print(" ".join(f"{k}={row[k]}" for k in COLUMNS[3:]), file=sys.stderr, flush=True)
                rows_this_shape.append(row)
                if device.type == "cuda" and context_lost is None:
                    torch.cuda.empty_cache()
        del em_full
        if not args.no_csv:
            append_rows(args.csv, rows_this_shape)
        all_rows += rows_this_shape
    print(fmt_table(all_rows))
    if not args.no_csv:
        print(f"appended {len(all_rows)} rows to {args.csv}")
    return 1 if context_lost else 0


def run_one(row, impl, phase, modules, import_errors, em_full, trans, dur, args, device, dev,
            ref_logz, context_lost):
    """Fill row's timing fields; return its status."""
    import torch

    B, T, K, C = row["B"], row["T"], row["K"], row["C"]
    if context_lost:
        return context_lost
    if impl in import_errors:
        return import_errors[impl]
    if em_full is None:
        return f"OOM: inputs ({B * T * C * 4 / 1e9:.1f} GB of emissions) do not fit"
    mod = modules[impl]
    notes = []
    T_run = T
    if impl == "reference":
        T_run = min(T, args.ref_T)
    elif impl == "flash":
        T_run = min(T, args.flash_T)
    elif impl == "torchstruct":
        need = torchstruct_bytes(B, T, K, C, phase)
        limit = args.mem_fraction * (dev["total_bytes"] or float("inf"))
        if need > limit:
            return f"skipped: needs {need / 1e9:.3g} GB"
    if impl == "flash" and K < 3:
        notes.append("K<3 uses its PyTorch path, not Triton")
    if impl == "flash" and device.type != "cuda":
        notes.append("CPU: its PyTorch path, not Triton")
    if impl in ("flash", "torchstruct") and phase == "viterbi":
        notes.append("score only, no traceback")
    try:
        if impl in ("genoseg", "genoseg_dense", "reference"):
            fn = semicrf_module_fn(mod, phase)
        elif impl == "flash":
            fn = flash_fn(phase) if device.type == "cuda" else flash_fn_cpu(phase)
        else:
            fn = torchstruct_fn(phase)
        em = em_full[:, :T_run].contiguous() if T_run < T else em_full
        tr, du = trans, dur
        if phase == "fwdbwd":
            em = em.detach().clone().requires_grad_(True)
            tr = trans.detach().clone().requires_grad_(True)
            du = dur.detach().clone().requires_grad_(True)
        warmup = 1 if impl == "reference" else args.warmup
        ms, peak, out, n = time_fn(fn, (em, tr, du), device, args.repeats, warmup, args.budget_s)
    except torch.OutOfMemoryError as err:
        return f"OOM: {str(err).splitlines()[0][:120]}"
    except Exception as err:  # noqa: BLE001 - one failure must not end the run
        traceback.print_exc(file=sys.stderr)
        return f"error: {type(err).__name__}: {short_message(err)}"
    row["median_ms"] = g(ms * T / T_run)
    if T_run < T:
        row["scaled_from_T"] = T_run
    peak2 = None
    if peak is not None:
        row["peak_mem_mb"] = f"{peak / 2**20:.4g}"
        if T_run == T:
            row["peak_mem_mb_at_T"] = row["peak_mem_mb"]
        elif 2 * T_run <= T and 2 * ms / 1e3 <= args.mem_probe_s:
            em2 = em_full[:, :2 * T_run].contiguous()
            try:
                peak2 = probe_peak(fn, em2, tr, du, phase, device)
            except Exception as err:  # noqa: BLE001 - the timing row stands without it
                peak2 = None
                notes.append(f"memory probe failed: {type(err).__name__}")
        if T_run < T and peak2 is not None:
            # The slices of em_full are copies that exist only because the row is scaled: at T
            # the implementation would read em_full itself, already in both peaks.
            # (fwdbwd times a clone of the slice, and the slice itself is gone by then.)
            p1 = peak - (0 if phase == "fwdbwd" else em.numel() * em.element_size())
            p2 = peak2 - em2.numel() * em2.element_size()
            del em2
            at_T = p1 + (p2 - p1) * (T - T_run) / T_run
            row["peak_mem_mb_at_T"] = f"{at_T / 2**20:.4g}"
            notes.append(f"peak at T extrapolated from {peak / 2**20:.4g} MB at T={T_run} and "
                         f"{peak2 / 2**20:.4g} MB at T={2 * T_run}")
    if impl in ("genoseg", "genoseg_dense"):
        stats = getattr(mod, "last_stats", None)
        if callable(stats):
            try:
                row["passes"] = (stats() or {}).get("passes", "")
            except Exception:  # noqa: BLE001 - optional diagnostics
                pass
    if n < args.repeats:
        notes.append(f"{n} timed calls (budget)")
    if phase == "forward":
        check = check_logz(impl, out, T_run, em_full, trans, dur, modules, ref_logz, args, device)
        if check:
            notes.append(check)
    del out
    return "ok" + ("; " + "; ".join(notes) if notes else "")


def probe_peak(fn, em, tr, du, phase, device):
    """Peak bytes of one untimed call on these inputs (the memory probe of scaled rows)."""
    import torch

    if phase == "fwdbwd":
        em = em.detach().clone().requires_grad_(True)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    out = fn(em, tr, du)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del out
    return peak


def short_message(err, limit=200):
    """One line: a Triton CompilationError's first line (the location) and last (the reason)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return ""
    msg = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return msg[:limit]


def flash_fn_cpu(phase):
    """Debug path on a CPU (its PyTorch implementation; Triton needs a GPU)."""
    import torch
    from flash_semicrf.streaming import semi_crf_streaming_forward

    semiring = "max" if phase == "viterbi" else "log"

    def fn(em, tr, du):
        _clear_grads(em, tr, du)
        with torch.set_grad_enabled(phase == "fwdbwd"):
            out = semi_crf_streaming_forward(*flash_inputs(em, tr, du, semiring),
                                             semiring=semiring, use_triton=False)
            if phase == "fwdbwd":
                out.sum().backward()
        return out.detach()
    return fn


def check_logz(impl, out, T_run, em_full, trans, dur, modules, ref_logz, args, device):
    """Relative logZ difference against the reference at one T (reference row: record it)."""
    import torch

    T = em_full.shape[1]
    T_chk = min(T, args.ref_T)
    if impl == "reference":
        ref_logz[T_run] = out.detach().double().cpu()
        return ""
    if T_chk not in ref_logz:
        return ""
    if T_run != T_chk:
        if impl not in ("genoseg", "genoseg_dense"):
            return ""
        with torch.no_grad():  # one extra call at the reference's T
            out = modules[impl].semicrf_logz(em_full[:, :T_chk].contiguous(), trans, dur)
    got, want = out.detach().double().cpu(), ref_logz[T_chk]
    rel = ((got - want).abs().max() / want.abs().max().clamp(min=1e-30)).item()
    flag = "" if rel <= CHECK_RTOL else " MISMATCH"
    return f"logZ rel diff {rel:.1e} vs reference@T={T_chk}{flag}"


if __name__ == "__main__":
    sys.exit(main())
