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
def _viterbi(S, sites, ok_s, ok_e, gc_s, gc_e, me, cls, c_ok_s, c_ok_e, c_gc_s, c_gc_e, c_me,
             site_s, site_e, content, cont_s, cont_e, pred_ptr, pred_idx, pred_w, dur, init, final,
             gc_score, K, bp_d, bp_prev):
    """bp_d (T + 1, C): best duration of a segment ending at u; bp_prev (T, C): best
    predecessor of a segment starting at s (both zero-filled, uint8/uint16, from the caller).
    ``content`` (T, n) with cont_s / cont_e (C,): the coding-content bias columns (a single
    zero column and zero indices without a content model)."""
    T = S.shape[0] - 1
    C = cls.shape[0]
    R = K + 1
    ring_pos = np.zeros((C, R), dtype=np.int64)
    ring_val = np.zeros((C, R), dtype=np.float64)
    ring_front = np.zeros(C, dtype=np.int64)
    ring_n = np.zeros(C, dtype=np.int64)
    alpha = np.full(C, NEG)
    nxt = np.full(C, NEG)
    for t in range(T):
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
            bp_prev[t, c] = arg
            if ring_n[c] == R:  # the oldest entry is too old by now anyway
                ring_front[c] = (ring_front[c] + 1) % R
                ring_n[c] -= 1
            j = (ring_front[c] + ring_n[c]) % R
            ring_pos[c, j] = t
            ring_val[c, j] = w
            ring_n[c] += 1
        # Segments ending at u = t + 1 (last base t).
        u = t + 1
        for c in range(C):
            # Drop starts from the front that can no longer end anywhere.
            while ring_n[c] > 0:
                s0 = ring_pos[c, ring_front[c]]
                if u - s0 > K or me[s0, c_me[c]] < u:
                    ring_front[c] = (ring_front[c] + 1) % R
                    ring_n[c] -= 1
                else:
                    break
            best = NEG
            bd = 0
            if ring_n[c] > 0 and ok_e[t, c_ok_e[c]]:
                for i in range(ring_n[c]):
                    j = (ring_front[c] + i) % R
                    s = ring_pos[c, j]
                    if me[s, c_me[c]] < u:
                        continue
                    v = ring_val[c, j] + dur[u - s - 1, c]
                    if v > best:
                        best = v
                        bd = u - s
            if best > NEG:
                v = best + S[u, cls[c]] + sites[t, site_e[c]] + content[t, cont_e[c]]
                if gc_e[t, c_gc_e[c]]:
                    v += gc_score
                nxt[c] = v
                bp_d[u, c] = bd
            else:
                nxt[c] = NEG
        for c in range(C):
            alpha[c] = nxt[c]
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


def decode(head, emissions: torch.Tensor, codes: np.ndarray, complete_genes: bool = False,
           columns: dict | None = None) -> tuple[float, np.ndarray, list]:
    """Viterbi of ONE sequence under a ``PhaseGeneHead``: (score, class rows (n, 3) [start,
    end, class], run labels), as ``head.decode(..., with_labels=True,
    complete_genes=complete_genes)`` gives for it (runs touching a sequence end: a
    ``phase_crf.CutRun`` each, built by the same ``head._runs``).

    emissions: (T, n_outputs) CPU float tensor (the network's output); codes: (T,) uint8;
    ``columns``: ``head.grammar.sequence_columns(codes)``, when the caller has them.
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
    cols = g.sequence_columns(codes) if columns is None else columns
    ok_s, ok_e = cols["start_ok"], cols["end_ok"]
    gc_s, gc_e = cols["start_gc"], cols["end_gc"]
    me = np.minimum(cols["max_end"], T).astype(np.int32)
    del cols
    index = g.column_index()
    with torch.no_grad():
        inputs = {k: v.detach().double().cpu().numpy() for k, v in head.crf_inputs(complete_genes).items()}
    trans = inputs["transitions"]
    pred_ptr, pred_idx = _finite_columns(trans)  # the finite transitions into each state
    pred_w = trans[pred_idx, np.repeat(np.arange(g.C), np.diff(pred_ptr))]
    score, rows = _viterbi(
        S, sites, ok_s, ok_e, gc_s, gc_e, me, g.class_of(),
        index["start_ok"], index["end_ok"], index["start_gc"], index["end_gc"], index["max_end"],
        head.start_site.cpu().numpy(), head.end_site.cpu().numpy(), content, cont_s, cont_e,
        pred_ptr, pred_idx, pred_w,
        inputs["durations"], inputs["init"], inputs["final"], float(head.gc_donor.detach()),
        head.K, np.zeros((T + 1, g.C), dtype=np.uint8 if head.K < 256 else np.uint16),
        np.zeros((T, g.C), dtype=np.uint8 if g.C <= 256 else np.uint16))
    runs, labels = head._runs(torch.from_numpy(rows), T, codes)
    return float(score), runs.numpy(), labels
