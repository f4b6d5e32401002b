"""Compiled CPU twin of the reference semi-CRF (numba), for annotating on a machine without a GPU.

Same functions, signatures and semantics as ``genoseg.crf.reference``; float64 throughout. The
reference is a Python loop of small tensor operations (~150-350 us a position); here each
sequence is one compiled loop over positions with the factorized recursion of ../DESIGN.md:

    start[t, c]   = lse_c' (alpha[t, c'] + trans[c', c])     (init at t = 0)
    alpha[t+1, c] = S[t+1, c] + eb[t, c] + lse_d (W[t+1-d, c] + dur[d-1, c])
    W[s, c]       = start[s, c] + sb[s, c] - S[s, c]          (a ring of the K latest starts)

Inputs come from the reference's own preparation (``reference._prepare``: validation, zero-centred
emissions, durations with the mean folded in, -inf emissions turned into max_end limits), so the
two cannot drift apart on semantics. The forward keeps the state normalised (a float64 offset per
position). Gradients and posteriors come from an outside pass that moves probability mass from the
sequence end to its start (each step a softmax over the segments that could end there, then over
the labels before each start), so they are sums of probabilities, exact to float64 rounding.

Memory: the forward stores W and alpha for the outside pass, 2 T C float64 per sequence (the
reference keeps sqrt(T) checkpoints instead): 4 GB for a 25 Mb contig with C = 10.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genoseg.crf import reference

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; keep the import error readable
    numba = None

__all__ = ["available", "semicrf_logz", "semicrf_viterbi", "semicrf_posteriors",
           "posteriors_and_logz"]

NEG = -math.inf


def available() -> bool:
    return numba is not None


# Fast-math without "nnan"/"ninf": -inf is how the grammar forbids things, so it must survive.
_FASTMATH = {"afn", "arcp", "contract", "nsz", "reassoc"}


def _jit(fn):
    return numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)(fn) if numba is not None else fn


@_jit
def _forward(em, sb, eb, me, trans, dur, init, final, L, K, is_max, store):
    """One sequence. em, sb, eb (T, C); me (T, C) int64 max_end per start (or (0, 0));
    dur (K, C). Returns score, W (T, C), alpha (T, C) (row t: alpha[t + 1]) and the
    back-pointers (T, C) of the max semiring."""
    T, C = em.shape
    has_sb = sb.shape[0] > 0
    has_eb = eb.shape[0] > 0
    has_me = me.shape[0] > 0
    ring = np.full((K, C), NEG)
    alpha = np.full(C, NEG)
    S = np.zeros(C)
    start = np.empty(C)
    offset = 0.0  # everything below is stored minus this running normaliser
    n_store = T if store else 0
    W_all = np.empty((n_store, C))
    alpha_all = np.empty((n_store, C))
    bp_prev = np.zeros((n_store if is_max else 0, C), dtype=np.int64)
    bp_dur = np.zeros((n_store if is_max else 0, C), dtype=np.int64)
    for t in range(L):
        for c in range(C):
            if t == 0:
                start[c] = init[c] - offset
                continue
            best = NEG
            arg = 0
            for cp in range(C):
                v = alpha[cp] + trans[cp, c]
                if v > best:
                    best = v
                    arg = cp
            if is_max or best == NEG:
                start[c] = best
                if is_max and store:
                    bp_prev[t, c] = arg
            else:
                acc = 0.0
                for cp in range(C):
                    acc += math.exp(alpha[cp] + trans[cp, c] - best)
                start[c] = best + math.log(acc)
        slot = t % K
        for c in range(C):
            w = start[c] - S[c]
            if has_sb:
                w += sb[t, c]
            ring[slot, c] = w
            if store:
                W_all[t, c] = w + offset
            S[c] += em[t, c]
        top = NEG
        for c in range(C):
            best = NEG
            arg = 1
            dmax = min(K, t + 1)
            for d in range(1, dmax + 1):
                s = t + 1 - d
                if has_me and me[s, c] <= t:
                    continue
                v = ring[s % K, c] + dur[d - 1, c]
                if v > best:
                    best = v
                    arg = d
            if is_max or best == NEG:
                lse = best
            else:
                acc = 0.0
                for d in range(1, dmax + 1):
                    s = t + 1 - d
                    if has_me and me[s, c] <= t:
                        continue
                    acc += math.exp(ring[s % K, c] + dur[d - 1, c] - best)
                lse = best + math.log(acc)
            a = S[c] + lse
            if has_eb:
                a += eb[t, c]
            alpha[c] = a
            if a > top:
                top = a
            if store:
                alpha_all[t, c] = a + offset
                if is_max:
                    bp_dur[t, c] = arg
        # Keep the state near 0: shift everything by the best alpha (exact; the offset adds up).
        if top > NEG and (t % 32 == 31):
            for c in range(C):
                alpha[c] -= top
                for k in range(K):
                    ring[k, c] -= top
            offset += top
    best = NEG
    for c in range(C):
        if alpha[c] + final[c] > best:
            best = alpha[c] + final[c]
    if is_max or best == NEG:
        score = best
    else:
        acc = 0.0
        for c in range(C):
            acc += math.exp(alpha[c] + final[c] - best)
        score = best + math.log(acc)
    return score + offset, W_all, alpha_all, bp_prev, bp_dur


@_jit
def _outside(W, alpha, me, trans, dur, final, L, K):
    """One sequence's marginals from the forward's stored W and alpha (absolute values)."""
    T, C = W.shape
    has_me = me.shape[0] > 0
    g_em = np.zeros((T, C))
    g_sb = np.zeros((T, C))
    g_eb = np.zeros((T, C))
    g_trans = np.zeros((C, C))
    g_dur = np.zeros((K, C))
    g_init = np.zeros(C)
    g_final = np.zeros(C)
    gacc = np.zeros((K, C))  # P(segment starts at s and ends after t + 1), slot s % K
    g_end = np.zeros(C)
    best = NEG
    for c in range(C):
        best = max(best, alpha[L - 1, c] + final[c])
    if best == NEG:
        return g_em, g_sb, g_eb, g_trans, g_dur, g_init, g_final
    tot = 0.0
    for c in range(C):
        g_end[c] = math.exp(alpha[L - 1, c] + final[c] - best)
        tot += g_end[c]
    for c in range(C):
        g_end[c] /= tot
        g_final[c] = g_end[c]
    acc = np.zeros(C)  # P(a segment of c crosses the cut right of t)
    x = np.empty(K)
    flow = np.empty(C)
    for t in range(L - 1, -1, -1):
        dmax = min(K, t + 1)
        for c in range(C):
            if g_end[c] == 0.0:
                continue
            m = NEG
            for d in range(1, dmax + 1):
                s = t + 1 - d
                v = NEG
                if not (has_me and me[s, c] <= t):
                    v = W[s, c] + dur[d - 1, c]
                x[d - 1] = v
                if v > m:
                    m = v
            if m == NEG:
                continue
            z = 0.0
            for d in range(dmax):
                if x[d] > NEG:
                    x[d] = math.exp(x[d] - m)
                    z += x[d]
                else:
                    x[d] = 0.0
            for d in range(1, dmax + 1):
                p = x[d - 1] / z * g_end[c]
                gacc[(t + 1 - d) % K, c] += p
                g_dur[d - 1, c] += p
        slot = t % K
        for c in range(C):
            g_start = gacc[slot, c]
            gacc[slot, c] = 0.0  # the slot holds start t - K next
            g_eb[t, c] = g_end[c]
            g_sb[t, c] = g_start
            g_em[t, c] = acc[c] + g_end[c]
            acc[c] += g_end[c] - g_start
        if t == 0:
            for c in range(C):
                g_init[c] = g_sb[0, c]
            break
        # The starts at t are complete: their mass flows to the labels before them.
        for cp in range(C):
            flow[cp] = 0.0
        for c in range(C):
            g_start = g_sb[t, c]
            if g_start == 0.0:
                continue
            m = NEG
            for cp in range(C):
                m = max(m, alpha[t - 1, cp] + trans[cp, c])
            if m == NEG:
                continue
            z = 0.0
            for cp in range(C):
                z += math.exp(alpha[t - 1, cp] + trans[cp, c] - m)
            for cp in range(C):
                q = math.exp(alpha[t - 1, cp] + trans[cp, c] - m) / z * g_start
                g_trans[cp, c] += q
                flow[cp] += q
        for cp in range(C):
            g_end[cp] = flow[cp]
    return g_em, g_sb, g_eb, g_trans, g_dur, g_init, g_final


@_jit
def _traceback(bp_prev, bp_dur, alpha, final, L):
    """(n, 3) int64 segments [start, end, label] of the best path, in genome order."""
    C = alpha.shape[1]
    best = NEG
    lab = 0
    for c in range(C):
        if alpha[L - 1, c] + final[c] > best:
            best = alpha[L - 1, c] + final[c]
            lab = c
    out = np.empty((L, 3), dtype=np.int64)
    n = 0
    pos = L
    while pos > 0:
        d = bp_dur[pos - 1, lab]
        s = pos - d
        out[n, 0] = s
        out[n, 1] = pos
        out[n, 2] = lab
        n += 1
        if s > 0:
            lab = bp_prev[s, lab]
        pos = s
    return out[:n][::-1].copy()


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


class _Sequences:
    """The reference's prepared inputs, per sequence, as float64 numpy arrays."""

    def __init__(self, args):
        if numba is None:
            raise RuntimeError("genoseg.crf.cpu needs numba (pip install numba)")
        emissions = args[0]
        if emissions.device.type != "cpu":
            raise ValueError("genoseg.crf.cpu runs on CPU tensors only")
        inp = reference._prepare(*args)
        self.inp = inp
        self.in_dtype = emissions.dtype
        K = inp.K
        f64 = lambda x: x.detach().to(torch.float64).numpy()  # noqa: E731
        self.em = f64(inp.em.transpose(0, 1))  # (B, T, C)
        self.sb = None if inp.sb is None else f64(inp.sb.transpose(0, 1))
        self.eb = None if inp.eb is None else f64(inp.eb.transpose(0, 1))
        self.me = None if inp.me is None else inp.me[K:].transpose(0, 1).numpy().astype(np.int64)
        self.dur = f64(inp.dur_rev.flip(0).permute(1, 0, 2))  # (B, K, C), row d - 1
        self.trans = f64(inp.trans)
        self.init = f64(inp.init)
        self.final = f64(inp.final)
        self.lengths = inp.lengths.tolist()
        self.empty = np.zeros((0, 0))
        self.empty_i = np.zeros((0, 0), dtype=np.int64)

    def forward(self, b, is_max, store):
        return _forward(self.em[b], self.empty if self.sb is None else self.sb[b],
                        self.empty if self.eb is None else self.eb[b],
                        self.empty_i if self.me is None else self.me[b], self.trans,
                        np.ascontiguousarray(self.dur[b]), self.init, self.final,
                        self.lengths[b], self.inp.K, is_max, store)

    def outside(self, b, W, alpha):
        return _outside(W, alpha, self.empty_i if self.me is None else self.me[b], self.trans,
                        np.ascontiguousarray(self.dur[b]), self.final, self.lengths[b],
                        self.inp.K)


def _out_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _marginals(seqs: _Sequences):
    B = len(seqs.lengths)
    logz = np.empty(B)
    parts = []
    for b in range(B):
        score, W, alpha, _, _ = seqs.forward(b, False, True)
        logz[b] = score
        parts.append(seqs.outside(b, W, alpha) if math.isfinite(score) else None)
    return logz, parts


class _LogPartition(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emissions, transitions, durations, init, final, start_bias, end_bias,
                lengths, max_end):
        seqs = _Sequences((emissions.detach(), transitions.detach(), durations.detach(), lengths,
                           None if init is None else init.detach(),
                           None if final is None else final.detach(),
                           None if start_bias is None else start_bias.detach(),
                           None if end_bias is None else end_bias.detach(), max_end))
        ctx.seqs = seqs
        ctx.in_dtypes = [x.dtype if x is not None else None
                         for x in (emissions, transitions, durations, init, final, start_bias,
                                   end_bias)]
        # Store the forward's messages only when a backward will read them.
        store = any(ctx.needs_input_grad)
        runs = [seqs.forward(b, False, store) for b in range(len(seqs.lengths))]
        ctx.runs = runs if store else None
        logz = np.array([r[0] for r in runs])
        return torch.from_numpy(logz).to(_out_dtype(emissions.dtype))

    @staticmethod
    def backward(ctx, grad_logz):
        seqs, runs = ctx.seqs, ctx.runs
        B, T, C = seqs.em.shape
        K = seqs.inp.K
        w = grad_logz.detach().to(torch.float64).numpy()
        g = dict(em=np.zeros((B, T, C)), sb=np.zeros((B, T, C)), eb=np.zeros((B, T, C)),
                 trans=np.zeros((C, C)), dur=np.zeros((K, C)), init=np.zeros(C),
                 final=np.zeros(C))
        for b, (score, W, alpha, _, _) in enumerate(runs):
            if not math.isfinite(score):
                continue  # no valid segmentation: contributes nothing
            em, sb, eb, tr, du, ini, fin = seqs.outside(b, W, alpha)
            g["em"][b], g["sb"][b], g["eb"][b] = w[b] * em, w[b] * sb, w[b] * eb
            g["trans"] += w[b] * tr
            g["dur"] += w[b] * du
            g["init"] += w[b] * ini
            g["final"] += w[b] * fin
        ctx.runs = None
        order = ("em", "trans", "dur", "init", "final", "sb", "eb")
        out = []
        for name, dt, need in zip(order, ctx.in_dtypes, ctx.needs_input_grad):
            out.append(torch.from_numpy(g[name]).to(dt) if need and dt is not None else None)
        return (*out, None, None)


def semicrf_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                 start_bias=None, end_bias=None, max_end=None):
    """log Z (B,), differentiable: as ``reference.semicrf_logz``, CPU tensors."""
    return _LogPartition.apply(emissions, transitions, durations, init, final, start_bias,
                               end_bias, lengths, max_end)


@torch.no_grad()
def semicrf_viterbi(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                    start_bias=None, end_bias=None, max_end=None):
    """(scores (B,), list of B (n, 3) int64 segments): as ``reference.semicrf_viterbi``."""
    seqs = _Sequences((emissions, transitions, durations, lengths, init, final, start_bias,
                       end_bias, max_end))
    scores, segments = [], []
    for b in range(len(seqs.lengths)):
        score, _, alpha, bp_prev, bp_dur = seqs.forward(b, True, True)
        scores.append(score)
        if math.isfinite(score):
            segments.append(torch.from_numpy(
                _traceback(bp_prev, bp_dur, alpha, seqs.final, seqs.lengths[b])))
        else:
            segments.append(torch.zeros((0, 3), dtype=torch.int64))
    return torch.tensor(scores, dtype=_out_dtype(emissions.dtype)), segments


@torch.no_grad()
def posteriors_and_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                        start_bias=None, end_bias=None, max_end=None):
    """(label_post, boundary_post, logZ): as ``reference.posteriors_and_logz``."""
    seqs = _Sequences((emissions, transitions, durations, lengths, init, final, start_bias,
                       end_bias, max_end))
    logz, parts = _marginals(seqs)
    B, T, C = seqs.em.shape
    label_post = np.zeros((B, T, C))
    boundary_post = np.zeros((B, T))
    for b, part in enumerate(parts):
        if part is not None:
            label_post[b] = part[0]
            boundary_post[b] = part[2].sum(axis=1)
    dt = _out_dtype(emissions.dtype)
    return (torch.from_numpy(label_post).to(dt), torch.from_numpy(boundary_post).to(dt),
            torch.from_numpy(logz).to(dt))


def semicrf_posteriors(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                       start_bias=None, end_bias=None, max_end=None):
    """(label_post, boundary_post): as ``reference.semicrf_posteriors``."""
    label_post, boundary_post, _ = posteriors_and_logz(
        emissions, transitions, durations, lengths, init=init, final=final,
        start_bias=start_bias, end_bias=end_bias, max_end=max_end)
    return label_post, boundary_post
