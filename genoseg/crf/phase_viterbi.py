"""Memory-lean Viterbi of the phase gene grammar on a CPU, for whole chromosomes.

The general CPU twin (``genoseg.crf.cpu``) takes the CRF's dense inputs over all 80 states:
emissions, start/end biases and max_end, each (T, 80), float64. For a 25 Mb chromosome that is
about 64 GB before any working state. Here the same Viterbi runs on the *compact* inputs the
phase grammar is made of, gathered per state inside the loop:

- prefix sums of the 5 class emissions (T + 1, 5) and the 8 site scores (T, 8 + 1);
- the grammar's distinct constraint columns (``PhaseGrammar.sequence_columns``: about 34 bool
  and 22 int32 columns) with each state's column number;
- back-pointers as uint8 (best duration at each end, best predecessor at each start).

About 10 GB for 25 Mb. The recursion is the factorized max-plus one of the reference
(``start[s, c] = max_c' alpha[s, c'] + trans[c', c]``, then one max over durations), with the
duration window of each state kept as a ring of its *live* starts: a start whose ``max_end`` has
passed (an exon start beyond its open reading frame) is skipped, and a state with no finite
start in the window costs nothing, so the work follows the grammar's sparsity. The predecessor
step loops over the finite transitions only. Float64 throughout; the path equals the
reference's wherever the best path is unique (tests/crf/test_phase_viterbi.py).

A chromosome is scanned in chunks on several threads (``chunked_scan``): each chunk but the
first starts from a flat state WARMUP bases early and is kept only where its state at its first
base equals its predecessor's end state up to a constant (then every later decision is the
same); chunks that fail the check are scanned again, at once, from those end states, until
every check passes. On fly chr2R a flat start met the true state within 100-280 kb (two 3-Mb
pieces, a start every 150 kb).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genoseg.crf.cpu import _finite_columns

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None

NEG = -math.inf


def available() -> bool:
    return numba is not None


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


@_jit
def _scan(t0, t1, write_from, S, sites, ok_s, ok_e, gc_s, gc_e, me, cls, c_ok_s, c_ok_e, c_gc_s,
          c_gc_e, c_me, site_s, site_e, content, cont_s, cont_e, pred_ptr, pred_idx, pred_w, dur,
          init, gc_score, K, bp_d, bp_prev, alpha, ring_pos, ring_val, ring_front, ring_n,
          ring_me):
    """Advance the recursion over positions t0 <= t < t1, from the state (alpha: best score of
    a segment ending at t0 per state; the rings: each state's live starts) held in the last six
    arrays (``ScanState.arrays``), which are updated in place. Back-pointers are written for
    t >= write_from only: a chunk's warm-up leaves its predecessor's rows alone.

    dur (C, K): the duration scores, state-major (a ring's window reads one row).
    bp_d (T + 1, C): best duration of a segment ending at u; bp_prev (T, C): best predecessor
    of a segment starting at s (both zero-filled, uint8/uint16, from the caller). ``content``
    (T, n) with cont_s / cont_e (C,): the coding-content bias columns (a single zero column and
    zero indices without a content model)."""
    C = cls.shape[0]
    R = K + 1
    nxt = np.full(C, NEG)
    for t in range(t0, t1):
        write = t >= write_from
        # Segment starts at t: best predecessor (or init at t = 0), then the start's constraints.
        for c in range(C):
            if t == 0:
                best = init[c]
                arg = 0
            else:
                best = NEG
                arg = 0
                for k in range(pred_ptr[c], pred_ptr[c + 1]):
                    v = alpha[pred_idx[k]] + pred_w[k]
                    if v > best:
                        best = v
                        arg = pred_idx[k]
            if best == NEG or not ok_s[t, c_ok_s[c]]:
                continue
            w = best + sites[t, site_s[c]] + content[t, cont_s[c]] - S[t, cls[c]]
            if gc_s[t, c_gc_s[c]]:
                w += gc_score
            if write:
                bp_prev[t, c] = arg
            if ring_n[c] == R:  # the oldest entry is too old by now anyway
                ring_front[c] = ring_front[c] + 1 if ring_front[c] + 1 < R else 0
                ring_n[c] -= 1
            j = ring_front[c] + ring_n[c]
            if j >= R:
                j -= R
            ring_pos[c, j] = t
            ring_val[c, j] = w
            ring_me[c, j] = me[t, c_me[c]]
            ring_n[c] += 1
        # Segments ending at u = t + 1 (last base t).
        u = t + 1
        for c in range(C):
            # Drop starts from the front that can no longer end anywhere.
            while ring_n[c] > 0:
                f = ring_front[c]
                if u - ring_pos[c, f] > K or ring_me[c, f] < u:
                    ring_front[c] = f + 1 if f + 1 < R else 0
                    ring_n[c] -= 1
                else:
                    break
            best = NEG
            bd = 0
            if ring_n[c] > 0 and ok_e[t, c_ok_e[c]]:
                j = ring_front[c] - 1
                for i in range(ring_n[c]):
                    j += 1
                    if j == R:  # the ring wraps (a compare: cheaper than % R in this loop)
                        j = 0
                    if ring_me[c, j] < u:
                        continue
                    s = ring_pos[c, j]
                    v = ring_val[c, j] + dur[c, u - s - 1]
                    if v > best:
                        best = v
                        bd = u - s
            if best > NEG:
                v = best + S[u, cls[c]] + sites[t, site_e[c]] + content[t, cont_e[c]]
                if gc_e[t, c_gc_e[c]]:
                    v += gc_score
                nxt[c] = v
                if write:
                    bp_d[u, c] = bd
            else:
                nxt[c] = NEG
        for c in range(C):
            alpha[c] = nxt[c]


@_jit
def _traceback(alpha, final, bp_d, bp_prev):
    """The best path's (score, rows (n, 3) [start, end, state]) from the state at the end."""
    C = alpha.shape[0]
    T = bp_d.shape[0] - 1
    best = NEG
    last = -1
    for c in range(C):
        v = alpha[c] + final[c]
        if v > best:
            best = v
            last = c
    if last < 0:
        return best, np.zeros((0, 3), dtype=np.int64)
    rows = []
    u = T
    c = last
    while u > 0:
        d = int(bp_d[u, c])
        s = u - d
        rows.append((s, u, c))
        if s == 0:
            break
        c = int(bp_prev[s, c])
        u = s
    out = np.zeros((len(rows), 3), dtype=np.int64)
    for i in range(len(rows)):
        s, e, cc = rows[len(rows) - 1 - i]
        out[i, 0] = s
        out[i, 1] = e
        out[i, 2] = cc
    return best, out


@_jit
def _live(t, K, c, ring_pos, ring_val, ring_front, ring_n, ring_me, pos_out, val_out):
    """State c's ring entries that a segment ending at t + 1 or later can still use (the
    state after scanning up to t), oldest first, into pos_out / val_out; returns how many."""
    R = K + 1
    n = 0
    for i in range(ring_n[c]):
        j = (ring_front[c] + i) % R
        s = ring_pos[c, j]
        if t + 1 - s <= K and ring_me[c, j] >= t + 1:
            pos_out[n] = s
            val_out[n] = ring_val[c, j]
            n += 1
    return n


@_jit
def _same_state(t, K, a, a_pos, a_val, a_front, a_n, a_me, b, b_pos, b_val, b_front, b_n, b_me,
                atol, rtol):
    """Whether two recursion states after scanning up to t (t excluded) are equal up to one
    additive constant: the same finite alphas and the same live ring starts (positions), every
    score differing by the same amount within atol + rtol * |score|. Returns (equal, b - a)."""
    C = a.shape[0]
    shift = np.nan
    for c in range(C):
        fa = a[c] > NEG
        if fa != (b[c] > NEG):
            return False, 0.0
        if fa:
            d = b[c] - a[c]
            if shift != shift:
                shift = d
            elif abs(d - shift) > atol + rtol * abs(b[c]):
                return False, 0.0
    R = K + 1
    pa = np.empty(R, dtype=np.int64)
    va = np.empty(R)
    pb = np.empty(R, dtype=np.int64)
    vb = np.empty(R)
    for c in range(C):
        na = _live(t, K, c, a_pos, a_val, a_front, a_n, a_me, pa, va)
        nb = _live(t, K, c, b_pos, b_val, b_front, b_n, b_me, pb, vb)
        if na != nb:
            return False, 0.0
        for i in range(na):
            if pa[i] != pb[i]:
                return False, 0.0
            d = vb[i] - va[i]
            if shift != shift:
                shift = d
            elif abs(d - shift) > atol + rtol * abs(vb[i]):
                return False, 0.0
    if shift != shift:
        shift = 0.0
    return True, shift


class ScanState:
    """The recursion's state at one position: alpha (C,), the best score of a segment ending
    there per state, and each state's ring of live starts (positions, scores, front, count)."""

    def __init__(self, C: int, K: int, alpha: float = NEG):
        self.alpha = np.full(C, alpha)
        self.ring_pos = np.zeros((C, K + 1), dtype=np.int64)
        self.ring_val = np.zeros((C, K + 1))
        self.ring_front = np.zeros(C, dtype=np.int64)
        self.ring_n = np.zeros(C, dtype=np.int64)
        # each ring entry's max_end, copied at its start: the duration loop reads it beside
        # the entry instead of from the (T, n) columns
        self.ring_me = np.zeros((C, K + 1), dtype=np.int32)

    def arrays(self) -> tuple:
        return (self.alpha, self.ring_pos, self.ring_val, self.ring_front, self.ring_n,
                self.ring_me)

    def copy(self) -> "ScanState":
        out = ScanState.__new__(ScanState)
        (out.alpha, out.ring_pos, out.ring_val, out.ring_front, out.ring_n,
         out.ring_me) = (a.copy() for a in self.arrays())
        return out


# A chromosome is scanned in chunks of at least MIN_CHUNK bases, one per thread. Every chunk but
# the first starts WARMUP bases early from a flat state (alpha 0 everywhere) and is kept only if
# its state at its first base equals its predecessor's end state up to one constant: from equal
# states (up to a constant) the max-plus recursion takes the same decisions. In a genome the best
# paths from all states meet in the first confident intergenic stretch, so that is the rule;
# chunks that fail the check are scanned again from their predecessors' end states.
MIN_CHUNK = 1_000_000
WARMUP = 400_000
# Scores are float64 sums of float32 network outputs, in absolute units (up to ~1e7 on a
# chromosome); two runs from different starts round differently in the last bits. A state
# matching within this is taken as equal: a decision could then differ from the sequential
# scan's only between paths whose scores differ by less than this, far below the float32
# resolution of the scores themselves.
STATE_ATOL = 1e-6
STATE_RTOL = 1e-13


def chunk_bounds(T: int, threads: int) -> list[int]:
    n = max(1, min(threads, T // MIN_CHUNK))
    return [round(j * T / n) for j in range(n + 1)]


def chunked_scan(scan, T: int, C: int, K: int, threads: int) -> tuple[ScanState, float, int]:
    """The recursion over 0 <= t < T in chunks on ``threads`` threads (``scan(t0, t1,
    write_from, state)`` advances a state; numba releases the GIL). Returns the end state, the
    constant by which its scores exceed the sequential scan's, and how many chunk scans were
    repeated because a chunk's start did not match its predecessor's end.

    Passes: the first scans every chunk, each from its warm-up; every later pass scans again,
    at once, each chunk whose start state does not match its predecessor's current end state,
    from that end state. Chunk 0 is exact, so pass k leaves at least chunks 0..k exact."""
    bounds = chunk_bounds(T, threads)
    n = len(bounds) - 1
    if n == 1:
        state = ScanState(C, K)
        scan(0, T, 0, state)
        return state, 0.0, 0

    def check(j):  # (equal, chunk j's scores minus chunk j - 1's) at chunk j's first base
        return _same_state(bounds[j], K, *ends[j - 1].arrays(), *starts[j].arrays(), STATE_ATOL,
                           STATE_RTOL)

    def first_pass(j):
        if j == 0:
            state = ScanState(C, K)
            scan(0, bounds[1], 0, state)
            return state, state
        b = bounds[j]
        state = ScanState(C, K, alpha=0.0)
        scan(max(0, b - WARMUP), b, b, state)  # write_from = b: warm-up writes no pointers
        start = state.copy()
        scan(b, bounds[j + 1], b, state)
        return start, state

    def again(j):
        state = ends[j - 1].copy()
        starts[j] = state.copy()
        scan(bounds[j], bounds[j + 1], bounds[j], state)
        return state

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n) as pool:
        starts, ends = map(list, zip(*pool.map(first_pass, range(n))))
        repeated = 0
        while True:
            redo = [j for j in range(1, n) if not check(j)[0]]
            if not redo:
                break
            repeated += len(redo)
            # every scan of the pass starts from the end states of the pass before
            for j, state in zip(redo, list(pool.map(again, redo))):
                ends[j] = state
    return ends[-1], sum(check(j)[1] for j in range(1, n)), repeated


def decode(head, emissions: torch.Tensor, codes: np.ndarray, complete_genes: bool = False,
           columns: dict | None = None, threads: int = 1,
           stats: dict | None = None) -> tuple[float, np.ndarray, list]:
    """Viterbi of ONE sequence under a ``PhaseGeneHead``: (score, class rows (n, 3) [start,
    end, class], run labels), as ``head.decode(..., with_labels=True,
    complete_genes=complete_genes)`` gives for it (runs touching a sequence end: a
    ``phase_crf.CutRun`` each, built by the same ``head._runs``).

    emissions: (T, n_outputs) CPU float tensor (the network's output); codes: (T,) uint8;
    ``columns``: ``head.grammar.sequence_columns(codes)``, when the caller has them;
    ``threads``: chunks of at least MIN_CHUNK bases scanned at once (``chunked_scan``);
    ``stats``: filled with the number of chunks and of chunk scans repeated.
    """
    if numba is None:
        raise RuntimeError("the lean phase Viterbi needs numba")
    g = head.grammar
    T = emissions.shape[0]
    if head.content is not None:
        # Its mean score goes into the exon emissions, its frame contrast into bias columns
        # (float32, as on the dense paths: 52 bytes a base).
        x = torch.from_numpy(np.asarray(codes, dtype=np.uint8))[None]
        with torch.no_grad():
            emissions = head.with_content(emissions.detach().cpu()[None], x)[0]
            content = head.content.columns(x)[0].numpy()
        cont_s, cont_e = head.content_start.cpu().numpy(), head.content_end.cpu().numpy()
    else:
        content = np.zeros((max(T, 1), 1), dtype=np.float32)
        cont_s = cont_e = np.zeros(g.C, dtype=np.int64)
    em = emissions.detach().to(torch.float64).cpu().numpy()
    S = np.zeros((T + 1, 5))
    np.cumsum(em[:, :5], axis=0, out=S[1:])
    sites = np.zeros((T, em.shape[1] - 5 + 1))
    sites[:, :-1] = em[:, 5:]
    del em
    cols = g.sequence_columns(codes, lean=True) if columns is None else columns
    ok_s, ok_e = cols["start_ok"], cols["end_ok"]
    gc_s, gc_e = cols["start_gc"], cols["end_gc"]
    me = cols["max_end"]
    if me.dtype != np.int32:  # the caller's columns (int64, values past T)
        me = np.minimum(me, T).astype(np.int32)
    del cols
    index = g.column_index()
    with torch.no_grad():
        inputs = {k: v.detach().double().cpu().numpy() for k, v in head.crf_inputs(complete_genes).items()}
    trans = inputs["transitions"]
    pred_ptr, pred_idx = _finite_columns(trans)  # the finite transitions into each state
    pred_w = trans[pred_idx, np.repeat(np.arange(g.C), np.diff(pred_ptr))]
    C = g.C
    bp_d = np.zeros((T + 1, C), dtype=np.uint8 if head.K < 256 else np.uint16)
    bp_prev = np.zeros((T, C), dtype=np.uint8 if C <= 256 else np.uint16)
    c_me = index["max_end"]
    inputs_of_scan = (
        S, sites, ok_s, ok_e, gc_s, gc_e, me, g.class_of(),
        index["start_ok"], index["end_ok"], index["start_gc"], index["end_gc"], c_me,
        head.start_site.cpu().numpy(), head.end_site.cpu().numpy(), content, cont_s, cont_e,
        pred_ptr, pred_idx, pred_w, np.ascontiguousarray(inputs["durations"].T), inputs["init"],
        float(head.gc_donor.detach()), head.K, bp_d, bp_prev)

    def scan(t0, t1, write_from, state):
        _scan(t0, t1, write_from, *inputs_of_scan, *state.arrays())

    end, shift, reruns = chunked_scan(scan, T, C, head.K, threads)
    if stats is not None:
        stats.update(chunks=len(chunk_bounds(T, threads)) - 1, reruns=reruns)
    score, rows = _traceback(end.alpha, inputs["final"], bp_d, bp_prev)
    score -= shift
    runs, labels = head._runs(torch.from_numpy(rows), T, codes)
    return float(score), runs.numpy(), labels
