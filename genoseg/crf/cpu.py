"""Compiled CPU twin of the reference semi-CRF (numba), for annotating on a machine without a GPU.

Same functions, signatures and semantics as ``genoseg.crf.reference``; float64 throughout. The
reference is a Python loop of small tensor operations (~150-350 us a position); here each
sequence is one compiled loop over positions with the factorized recursion of ../DESIGN.md:

    start[t, c]   = lse_c' (alpha[t, c'] + trans[c', c])     (init at t = 0)
    alpha[t+1, c] = S[t+1, c] + eb[t, c] + lse_d (W[t+1-d, c] + dur[d-1, c])
    W[s, c]       = start[s, c] + sb[s, c] - S[s, c]          (a ring of the K latest starts)

Inputs come from the reference's own preparation (``reference._prepare``: validation, zero-centred
emissions, durations with the mean folded in, -inf emissions turned into max_end limits), one
sequence at a time, so the two cannot drift apart on semantics. The forward keeps the state normalised (a float64 offset per
position). Gradients and posteriors come from an outside pass that moves probability mass from the
sequence end to its start (each step a softmax over the segments that could end there, then over
the labels before each start), so they are sums of probabilities, exact to float64 rounding.

Sparse grammars: a large state space is mostly forbidden (the phase gene grammar: C = 80 states,
~230 finite transitions of 6400, durations in whole codons, start/end biases and max_end limits
that rule out most starts), so every loop visits only what can carry mass: the finite
transitions into each state and its finite durations (CSR lists, built once per call), and of
those only the starts whose W is finite and whose max_end reaches the end, tested before any
exp/log; a position whose start or end bias is -inf skips its log-sum-exp altogether. The terms
left out are exactly the exp(-inf) = 0 ones and the rest are summed in the dense loop's order, so
results are unchanged to float64 rounding; the max semiring breaks ties as a dense loop does
(first best c', shortest d), so Viterbi paths are the same.

Memory: the forward stores W and alpha for the outside pass, 2 T C float64 per sequence (the
reference keeps sqrt(T) checkpoints instead): 4 GB for a 25 Mb contig with C = 10. Viterbi
stores only its back-pointers, 2 T C int32.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genoseg.crf import reference
from genoseg.crf.threads import map_sequences

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
def _finite_columns(M):
    """CSR of the finite entries of each column of M (R, C), rows ascending: (ptr (C + 1,),
    rows). The grammar forbids by -inf, and a large model forbids most pairs (the gene model:
    ~230 of 6400 transitions, durations only in whole codons), so the loops below visit only
    these entries; ascending order keeps the max semiring's ties as a dense loop breaks them."""
    R, C = M.shape
    ptr = np.zeros(C + 1, dtype=np.int64)
    for c in range(C):
        n = 0
        for r in range(R):
            if M[r, c] > NEG:
                n += 1
        ptr[c + 1] = ptr[c] + n
    rows = np.empty(ptr[C], dtype=np.int64)
    for c in range(C):
        k = ptr[c]
        for r in range(R):
            if M[r, c] > NEG:
                rows[k] = r
                k += 1
    return ptr, rows


@_jit
def _lse_terms(xs, n, best):
    """log-sum-exp of the n finite terms xs[:n] whose maximum is ``best``; -inf when n = 0."""
    if n == 0:
        return NEG
    acc = 0.0
    for i in range(n):
        acc += math.exp(xs[i] - best)
    return best + math.log(acc)


@_jit
def _exp_terms(x, n, m):
    """x[:n] <- exp(x[:n] - m) in place (m their maximum); returns their sum, the softmax's
    normaliser."""
    z = 0.0
    for i in range(n):
        x[i] = math.exp(x[i] - m)
        z += x[i]
    return z


@_jit
def _forward(em, sb, eb, me, trans, dur, init, final, L, K, is_max, store):
    """One sequence. em, sb, eb (T, C); me (T, C) int64 max_end per start (or (0, 0));
    dur (K, C). Returns score, W (T, C), alpha (T, C) (row t: alpha[t + 1]), both absolute, and
    the back-pointers (T, C) of the max semiring. The max semiring stores no W and only alpha's
    last row (all the traceback reads)."""
    T, C = em.shape
    has_sb = sb.shape[0] > 0
    has_eb = eb.shape[0] > 0
    has_me = me.shape[0] > 0
    pred_ptr, pred = _finite_columns(trans)
    dur_ptr, dur_row = _finite_columns(dur)
    dur_val = np.empty(dur_row.shape[0])  # dur[d - 1, c] in CSR order (contiguous per state)
    for c in range(C):
        for k in range(dur_ptr[c], dur_ptr[c + 1]):
            dur_val[k] = dur[dur_row[k], c]
    # The window of the K latest starts, per state and doubled (start s at s % K and s % K + K)
    # so that start t + 1 - d is at t % K + K + 1 - d with no modulo in the inner loop. reach:
    # the longest duration a start allows (me[s] - s, at most K), 0 where W is -inf, so one
    # integer compare drops a start that cannot reach t + 1 or carries no mass, before any
    # exp/log; slots of starts before 0 keep reach 0.
    ring = np.full((C, 2 * K), NEG)
    reach = np.zeros((C, 2 * K), dtype=np.int64)
    alpha = np.full(C, NEG)
    S = np.zeros(C)
    start = np.empty(C)
    xs = np.empty(max(K, C))  # the finite terms of one log-sum-exp
    offset = 0.0  # everything below is stored minus this running normaliser
    n_store = T if store else 0
    W_all = np.empty((0 if is_max else n_store, C))
    alpha_all = np.empty((min(n_store, 1) if is_max else n_store, C))
    bp_prev = np.zeros((n_store if is_max else 0, C), dtype=np.int32)
    bp_dur = np.zeros((n_store if is_max else 0, C), dtype=np.int32)
    for t in range(L):
        for c in range(C):
            if t == 0:
                start[c] = init[c] - offset
                continue
            if has_sb and sb[t, c] == NEG:
                # W[t, c] is -inf whatever the start. (The max semiring's back-pointer stays 0:
                # a traceback follows finite scores only, so it never reads one of these.)
                start[c] = NEG
                continue
            # Only the finite transitions into c; the rest add exp(-inf) = 0 and never win.
            best = NEG
            arg = 0
            if is_max:
                for k in range(pred_ptr[c], pred_ptr[c + 1]):
                    cp = pred[k]
                    v = alpha[cp] + trans[cp, c]
                    if v > best:
                        best = v
                        arg = cp
                start[c] = best
                if store:
                    bp_prev[t, c] = arg
                continue
            n = 0
            for k in range(pred_ptr[c], pred_ptr[c + 1]):
                cp = pred[k]
                v = alpha[cp] + trans[cp, c]
                if v > NEG:
                    xs[n] = v
                    n += 1
                    if v > best:
                        best = v
            start[c] = _lse_terms(xs, n, best)
        slot = t % K
        for c in range(C):
            w = start[c] - S[c]
            if has_sb:
                w += sb[t, c]
            ring[c, slot] = w
            ring[c, slot + K] = w
            r = 0
            if w > NEG:
                r = K
                if has_me:
                    r = min(K, max(0, me[t, c] - t))
            reach[c, slot] = r
            reach[c, slot + K] = r
            if store and not is_max:
                W_all[t, c] = w + offset
            S[c] += em[t, c]
        base = slot + K + 1  # start t + 1 - d sits at base - d
        dmax = min(K, t + 1)
        top = NEG
        for c in range(C):
            best = NEG
            arg = 1
            if has_eb and eb[t, c] == NEG:
                lse = NEG  # alpha is -inf whatever the window holds (back-pointer: as sb above)
            elif is_max:
                for k in range(dur_ptr[c], dur_ptr[c + 1]):
                    d = dur_row[k] + 1
                    if d > dmax:
                        break
                    j = base - d
                    if reach[c, j] < d:
                        continue
                    v = ring[c, j] + dur_val[k]
                    if v > best:
                        best = v
                        arg = d
                lse = best
            else:
                n = 0
                for k in range(dur_ptr[c], dur_ptr[c + 1]):
                    d = dur_row[k] + 1
                    if d > dmax:
                        break
                    j = base - d
                    if reach[c, j] < d:
                        continue
                    v = ring[c, j] + dur_val[k]
                    xs[n] = v
                    n += 1
                    if v > best:
                        best = v
                lse = _lse_terms(xs, n, best)
            a = S[c] + lse
            if has_eb:
                a += eb[t, c]
            alpha[c] = a
            if a > top:
                top = a
            if store:
                if is_max:
                    bp_dur[t, c] = arg
                    if t == L - 1:
                        alpha_all[0, c] = a + offset
                else:
                    alpha_all[t, c] = a + offset
        # Keep the state near 0: shift everything by the best alpha (exact; the offset adds up).
        if top > NEG and (t % 32 == 31):
            for c in range(C):
                alpha[c] -= top
                for k in range(2 * K):
                    ring[c, k] -= top
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
    pred_ptr, pred = _finite_columns(trans)
    dur_ptr, dur_row = _finite_columns(dur)
    g_em = np.zeros((T, C))
    g_sb = np.zeros((T, C))
    g_eb = np.zeros((T, C))
    g_trans = np.zeros((C, C))
    g_dur = np.zeros((K, C))
    g_init = np.zeros(C)
    g_final = np.zeros(C)
    gacc = np.zeros((C, K))  # P(segment starts at s and ends after t + 1), column s % K
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
    n_x = max(K, C)
    x = np.empty(n_x)  # the finite terms of one softmax, then their exp
    xi = np.empty(n_x, dtype=np.int64)  # what each term is: a CSR index (d) or a label (c')
    flow = np.empty(C)
    for t in range(L - 1, -1, -1):
        dmax = min(K, t + 1)
        slot = t % K
        for c in range(C):
            if g_end[c] == 0.0:
                continue
            # As the forward: finite durations only, and only starts that reach t + 1 with a
            # finite W; the rest would get probability exp(-inf) = 0.
            m = NEG
            n = 0
            for k in range(dur_ptr[c], dur_ptr[c + 1]):
                d = dur_row[k] + 1
                if d > dmax:
                    break
                s = t + 1 - d
                if has_me and me[s, c] <= t:
                    continue
                w = W[s, c]
                if w == NEG:
                    continue
                v = w + dur[d - 1, c]
                x[n] = v
                xi[n] = d
                n += 1
                if v > m:
                    m = v
            if n == 0:
                continue
            z = _exp_terms(x, n, m)
            for i in range(n):
                d = xi[i]
                p = x[i] / z * g_end[c]
                j = slot + 1 - d  # (t + 1 - d) % K for 1 <= d <= K
                if j < 0:
                    j += K
                gacc[c, j] += p
                g_dur[d - 1, c] += p
        for c in range(C):
            g_start = gacc[c, slot]
            gacc[c, slot] = 0.0  # the slot holds start t - K next
            g_eb[t, c] = g_end[c]
            g_sb[t, c] = g_start
            g_em[t, c] = acc[c] + g_end[c]
            acc[c] += g_end[c] - g_start
        if t == 0:
            for c in range(C):
                g_init[c] = g_sb[0, c]
            break
        # The starts at t are complete: their mass flows to the labels before them (through the
        # finite transitions only).
        for cp in range(C):
            flow[cp] = 0.0
        for c in range(C):
            g_start = g_sb[t, c]
            if g_start == 0.0:
                continue
            m = NEG
            n = 0
            for k in range(pred_ptr[c], pred_ptr[c + 1]):
                cp = pred[k]
                v = alpha[t - 1, cp] + trans[cp, c]
                if v > NEG:
                    x[n] = v
                    xi[n] = cp
                    n += 1
                    if v > m:
                        m = v
            if n == 0:
                continue
            z = _exp_terms(x, n, m)
            for i in range(n):
                cp = xi[i]
                q = x[i] / z * g_start
                g_trans[cp, c] += q
                flow[cp] += q
        for cp in range(C):
            g_end[cp] = flow[cp]
    return g_em, g_sb, g_eb, g_trans, g_dur, g_init, g_final


@_jit
def _traceback(bp_prev, bp_dur, alpha_last, final, L):
    """(n, 3) int64 segments [start, end, label] of the best path, in genome order; alpha_last
    (C,) is alpha[L] (absolute)."""
    C = alpha_last.shape[0]
    best = NEG
    lab = 0
    for c in range(C):
        if alpha_last[c] + final[c] > best:
            best = alpha_last[c] + final[c]
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
    """The reference's prepared inputs, per sequence, as float64 numpy arrays.

    Each sequence is prepared on its own (``reference._prepare`` of its slice, cut at its
    length), on the worker thread that scans it, the first time it is asked for: a padded
    batch prepared whole cost as much as its forward pass (the fly test set's (B, T, 80)
    batches: 3.9 of 15.4 s on two cores), mostly copies of padding into the reference's
    (T, B, C) layout; one sequence's slice needs none, and the sequences go in parallel. The
    values are the same: the reference zero-centres, limits and checks each sequence over its
    own length. Shapes and lengths are checked for the whole batch first, as the reference
    does."""

    def __init__(self, args, sequence_inputs=None):
        if numba is None:
            raise RuntimeError("genoseg.crf.cpu needs numba (pip install numba)")
        (emissions, transitions, durations, lengths, init, final, start_bias, end_bias,
         max_end) = args
        if emissions.device.type != "cpu":
            raise ValueError("genoseg.crf.cpu runs on CPU tensors only")
        # The batch's shapes and lengths, and its transitions, durations, init and final, are
        # checked as the reference checks them (the model inputs by the reference itself, on a
        # one-position slice); the per-position values are checked per sequence, over its own
        # length, as each is prepared.
        probe = reference._prepare(emissions[:, :1] if emissions.dim() == 3 else emissions,
                                   transitions, durations, None, init, final, None, None, None)
        B, T, C = emissions.shape
        for name, x in (("start_bias", start_bias), ("end_bias", end_bias),
                        ("max_end", max_end)):
            reference.check_per_position(name, x, B, T, C)
        self.lengths = reference.checked_lengths(lengths, B, T, "cpu").tolist()
        self.args = args
        self.sequence_inputs = sequence_inputs
        self.B, self.T, self.C, self.K = B, T, C, probe.K
        self.in_dtype = emissions.dtype
        self.trans = probe.trans.detach().to(torch.float64).numpy()
        self.init = probe.init.detach().to(torch.float64).numpy()
        self.final = probe.final.detach().to(torch.float64).numpy()
        self.prepared = [None] * B  # (em, sb, eb, me, dur) of sequence b, once prepared
        self.empty = np.zeros((0, 0))
        self.empty_i = np.zeros((0, 0), dtype=np.int64)

    def _inputs(self, b):
        """Sequence b's (em, sb, eb, me, dur): (L, C) float64, (L, C) int64 max_end (or empty
        placeholders), (K, C) float64 durations with its mean folded in."""
        if self.prepared[b] is None:
            (emissions, transitions, durations, _, init, final, start_bias, end_bias,
             max_end) = self.args
            L = self.lengths[b]
            if self.sequence_inputs is not None:
                x = self.sequence_inputs(b)
                emissions, start_bias, end_bias, max_end = (
                    x["emissions"], x.get("start_bias"), x.get("end_bias"), x.get("max_end"))
                for name, v in (("emissions", emissions), ("start_bias", start_bias),
                                ("end_bias", end_bias), ("max_end", max_end)):
                    if v is not None and v.shape != (1, L, self.C):
                        raise ValueError(f"sequence_inputs({b})['{name}'] must be (1, {L}, "
                                         f"{self.C}), got {tuple(v.shape)}")
                cut = lambda v: v  # noqa: E731
            else:
                cut = lambda v: None if v is None else v[b:b + 1, :L]  # noqa: E731
            inp = reference._prepare(cut(emissions), transitions, durations, None, init, final,
                                     cut(start_bias), cut(end_bias), cut(max_end))
            f64 = lambda x: x.detach()[:, 0].to(torch.float64).numpy()  # noqa: E731
            self.prepared[b] = (
                f64(inp.em), self.empty if inp.sb is None else f64(inp.sb),
                self.empty if inp.eb is None else f64(inp.eb),
                self.empty_i if inp.me is None
                else inp.me[self.K:, 0].numpy().astype(np.int64, copy=False),
                np.ascontiguousarray(f64(inp.dur_rev.flip(0))))
        return self.prepared[b]

    def forward(self, b, is_max, store):
        em, sb, eb, me, dur = self._inputs(b)
        return _forward(em, sb, eb, me, self.trans, dur, self.init, self.final,
                        self.lengths[b], self.K, is_max, store)

    def outside(self, b, W, alpha):
        _, _, _, me, dur = self._inputs(b)
        return _outside(W, alpha, me, self.trans, dur, self.final, self.lengths[b], self.K)


def _out_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _marginals(seqs: _Sequences):
    def one(b):
        score, W, alpha, _, _ = seqs.forward(b, False, True)
        return score, (seqs.outside(b, W, alpha) if math.isfinite(score) else None)

    results = map_sequences(one, len(seqs.lengths))
    return np.array([r[0] for r in results], dtype=np.float64), [r[1] for r in results]


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
        runs = map_sequences(lambda b: seqs.forward(b, False, store), len(seqs.lengths))
        ctx.runs = runs if store else None
        logz = np.array([r[0] for r in runs])
        return torch.from_numpy(logz).to(_out_dtype(emissions.dtype))

    @staticmethod
    def backward(ctx, grad_logz):
        seqs, runs = ctx.seqs, ctx.runs
        B, T, C, K = seqs.B, seqs.T, seqs.C, seqs.K
        w = grad_logz.detach().to(torch.float64).numpy()
        order = ("em", "trans", "dur", "init", "final", "sb", "eb")
        shapes = dict(em=(B, T, C), sb=(B, T, C), eb=(B, T, C), trans=(C, C), dur=(K, C),
                      init=(C,), final=(C,))
        # Only the gradients asked for (posteriors ask for em and eb alone): each per-position
        # one is T C float64 per sequence, written in place.
        g = {name: np.zeros(shapes[name])
             for name, dt, need in zip(order, ctx.in_dtypes, ctx.needs_input_grad)
             if need and dt is not None}
        def outside(b):
            score, W, alpha, _, _ = runs[b]
            if not math.isfinite(score):
                return None  # no valid segmentation: contributes nothing
            return dict(zip(("em", "sb", "eb", "trans", "dur", "init", "final"),
                            seqs.outside(b, W, alpha)))

        for b, part in enumerate(map_sequences(outside, B)):
            if part is None:
                continue
            for name, x in g.items():
                if x.ndim == 3:  # per position: the part covers the sequence's length
                    np.multiply(w[b], part[name], out=x[b, :len(part[name])])
                else:
                    x += w[b] * part[name]
        ctx.runs = None
        out = []
        for name, dt in zip(order, ctx.in_dtypes):
            out.append(torch.from_numpy(g[name]).to(dt) if name in g else None)
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
    def one(b):
        score, _, alpha, bp_prev, bp_dur = seqs.forward(b, True, True)
        if not math.isfinite(score):
            return score, torch.zeros((0, 3), dtype=torch.int64)
        return score, torch.from_numpy(
            _traceback(bp_prev, bp_dur, alpha[0], seqs.final, seqs.lengths[b]))

    results = map_sequences(one, len(seqs.lengths))
    return (torch.tensor([r[0] for r in results], dtype=_out_dtype(emissions.dtype)),
            [r[1] for r in results])


@torch.no_grad()
def posteriors_and_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                        start_bias=None, end_bias=None, max_end=None):
    """(label_post, boundary_post, logZ): as ``reference.posteriors_and_logz``."""
    seqs = _Sequences((emissions, transitions, durations, lengths, init, final, start_bias,
                       end_bias, max_end))
    logz, parts = _marginals(seqs)
    B, T, C = seqs.B, seqs.T, seqs.C
    label_post = np.zeros((B, T, C))
    boundary_post = np.zeros((B, T))
    for b, part in enumerate(parts):
        if part is not None:
            L = len(part[0])
            label_post[b, :L] = part[0]
            boundary_post[b, :L] = part[2].sum(axis=1)
    dt = _out_dtype(emissions.dtype)
    return (torch.from_numpy(label_post).to(dt), torch.from_numpy(boundary_post).to(dt),
            torch.from_numpy(logz).to(dt))


@torch.no_grad()
def viterbi_and_marginals(emissions, transitions, durations, lengths=None, *, init=None,
                          final=None, start_bias=None, end_bias=None, max_end=None,
                          class_of, boundary_states, boundary_starts=None, sequence_inputs=None):
    """Viterbi and class posteriors of one batch from ONE preparation of the inputs (annotate
    asks for both; preparing a (B, T, 80) batch of the gene grammar costs as much as a forward
    pass), for a head whose C labels expand a smaller class space.

    ``class_of`` (C,): each label's class; ``boundary_states`` (C,) bool: the labels whose
    segment end is a run boundary; ``boundary_starts`` (C,) bool, optional: labels whose
    segment start marks a run boundary right before it (a run end that no label's end tells,
    e.g. the gene grammar's 3-bp exon made of its codon head alone; the two sets must make
    disjoint events). Returns (scores (B,), list of B (n, 3) int64 segments in label space,
    logZ (B,), label_post (B, T, n_classes), boundary_post (B, T)): the first two as
    ``semicrf_viterbi``; a class's posterior sums those of its labels; the boundary posterior
    at t is the end marginals of ``boundary_states`` at t plus the start marginals of
    ``boundary_starts`` at t + 1, and at a sequence's last base the end marginals of all
    labels (a run ends with the sequence). All are gradients of logZ, reduced per sequence on
    its worker thread; 0 past a length and where no segmentation is valid.

    ``sequence_inputs``: optional ``b -> {"emissions": ..., "start_bias": ..., "end_bias": ...,
    "max_end": ...}``, sequence b's inputs (1, L, C) cut at its length (keys may be left out),
    built on the worker thread that scans it, instead of slices of the batch's own (which are
    then not read; ``emissions`` still gives B, T, C). A caller that derives them per sequence
    (the phase head's constraints) so never builds them for the padded batch."""
    seqs = _Sequences((emissions, transitions, durations, lengths, init, final, start_bias,
                       end_bias, max_end), sequence_inputs)
    class_of = np.asarray(class_of)
    boundary_states = np.asarray(boundary_states, dtype=bool)
    if boundary_starts is not None:
        boundary_starts = np.asarray(boundary_starts, dtype=bool)
    n_classes = int(class_of.max()) + 1

    def boundaries(g_sb, g_eb, L):
        out = g_eb[:L, boundary_states].sum(axis=1)
        if boundary_starts is not None:
            out[:L - 1] += g_sb[1:L, boundary_starts].sum(axis=1)
        if L:
            out[L - 1] = g_eb[L - 1].sum()
        return out

    def one(b):
        score, _, alpha, bp_prev, bp_dur = seqs.forward(b, True, True)
        if not math.isfinite(score):
            return score, torch.zeros((0, 3), dtype=torch.int64), NEG, None
        path = torch.from_numpy(_traceback(bp_prev, bp_dur, alpha[0], seqs.final,
                                           seqs.lengths[b]))
        del alpha, bp_prev, bp_dur
        logz, W, alpha, _, _ = seqs.forward(b, False, True)
        if not math.isfinite(logz):
            return score, path, logz, None
        part = seqs.outside(b, W, alpha)
        L = seqs.lengths[b]
        label = np.zeros((L, n_classes))
        for state, cls in enumerate(class_of):
            label[:, cls] += part[0][:L, state]
        return score, path, logz, (label, boundaries(part[1], part[2], L))

    results = map_sequences(one, len(seqs.lengths))
    B, T = seqs.B, seqs.T
    dt = _out_dtype(emissions.dtype)
    label_post = torch.zeros(B, T, n_classes, dtype=emissions.dtype)
    boundary_post = torch.zeros(B, T, dtype=emissions.dtype)
    for b, (_, _, _, marginals) in enumerate(results):
        if marginals is not None:
            L = len(marginals[0])
            label_post[b, :L] = torch.from_numpy(marginals[0])
            boundary_post[b, :L] = torch.from_numpy(marginals[1])
    return (torch.tensor([r[0] for r in results], dtype=dt), [r[1] for r in results],
            torch.tensor([r[2] for r in results], dtype=dt), label_post, boundary_post)


def semicrf_posteriors(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                       start_bias=None, end_bias=None, max_end=None):
    """(label_post, boundary_post): as ``reference.semicrf_posteriors``."""
    label_post, boundary_post, _ = posteriors_and_logz(
        emissions, transitions, durations, lengths, init=init, final=final,
        start_bias=start_bias, end_bias=end_bias, max_end=max_end)
    return label_post, boundary_post
