"""Reference semi-Markov CRF in pure PyTorch: THE specification the Triton kernels are tested against.

A segmentation of a sequence of length L is a list of consecutive segments covering [0, L). A
segment [s, e) of label c (duration d = e - s, 1 <= d <= K) scores

    sum(emissions[s:e, c]) + durations[d-1, c] + start_bias[s, c] + end_bias[e-1, c]

(and is allowed only if e <= max_end[s, c]); consecutive segments c' -> c add transitions[c', c];
the first segment adds init[c], the last final[c]. ``-inf`` anywhere means forbidden.

Algorithm (../DESIGN.md, "The factorization"). With prefix sums S[t] = sum_{u<t} e[u]:

    start[s, c] = lse_{c'} (alpha[s, c'] + transitions[c', c])        (init[c] at s = 0)   O(C^2)
    alpha[t, c] = S[t, c] + end_bias[t-1, c]
                  + lse_d (start[t-d, c] + start_bias[t-d, c] - S[t-d, c] + durations[d-1, c])  O(K C)

so a position costs O(C^2 + K C) and the working state is the K most recent "segment-start
messages" (K, C). The same scan in the max-plus semiring gives the Viterbi path.

Numerics. The scan walks T in blocks of ``_BLOCK`` positions. Inside a block the prefix sums are
local (zero at the block start: the sums are re-based, never accumulated over the whole
sequence), and at each block end the carried state is shifted by its maximum, which is added to a
float64 log-normaliser. float32 therefore stays accurate however long the sequence and however
large |logZ| is: an absolute rounding error is bounded by what one block can accumulate.

Memory. The forward keeps only checkpoints of the (K, C) state every few blocks (about
sqrt(T K) positions apart); gradients, posteriors and the Viterbi traceback recompute one
checkpoint interval at a time. No (T, K, C) or (T, K, C, C) tensor ever exists; beyond the inputs
and outputs, memory grows like sqrt(T).

Gradients are exact and computed by an explicit outside (reverse) scan rather than by autograd
through the loop: the adjoints are marginal probabilities, so they never overflow, and
``semicrf_logz`` is differentiable with respect to emissions, transitions, durations, init, final,
start_bias and end_bias. Label posteriors are d logZ / d emissions, boundary posteriors
d logZ / d end_bias summed over labels.

Supported: float64 and float32 (bf16/fp16 inputs are computed in float32), CPU and CUDA, any
B, T, C >= 1, K >= 1 (K > T is fine), ragged ``lengths`` (anything at or past a sequence's length is
ignored, NaN and inf included). Unsupported: double backward. Hazards: this is a Python loop over
positions (tens of microseconds a position on a CPU); long sequences on a GPU belong to the
Triton kernels.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

__all__ = ["semicrf_logz", "semicrf_viterbi", "semicrf_posteriors"]

NEG_INF = float("-inf")
# Positions per block: the prefix sums are re-based and the state re-normalised at every block
# boundary, so this bounds the magnitude float32 has to carry inside a block.
_BLOCK = 32


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device):
    """The scan issues many tiny ops; on a CPU, intra-op threads only add synchronisation (two
    threads on a busy machine were measured 50x slower than one). Restored on exit."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# Input checking and layout
# ----------------------------------------------------------------------------------------------


@dataclass
class _Inputs:
    """Validated inputs in the layout the scans use: time-major (T, B, C), compute dtype."""

    B: int
    T: int
    C: int
    K: int
    dtype: torch.dtype
    device: torch.device
    lengths: torch.Tensor  # (B,) int64
    em: torch.Tensor  # (T, B, C); zero at or past each sequence's length
    sb: torch.Tensor | None  # (T, B, C) start_bias
    eb: torch.Tensor | None  # (T, B, C) end_bias
    me: torch.Tensor | None  # (T + K, B, C) int64; row s + K holds max_end of a start at s
    trans: torch.Tensor  # (C, C)
    dur_rev: torch.Tensor  # (K, B, C); row i: durations[K-1-i] + mu * (K-i) (window row i <-> d = K-i)
    init: torch.Tensor  # (C,)
    final: torch.Tensor  # (C,)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # float32 accumulation whatever the input precision; float64 stays float64 (the truth).
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_finite_or_neg_inf(name: str, x: torch.Tensor) -> None:
    if torch.isnan(x).any() or torch.isposinf(x).any():
        raise ValueError(f"{name} holds NaN or +inf (use -inf for forbidden)")


def checked_lengths(lengths, B: int, T: int, device) -> torch.Tensor:
    """(B,) int64 sequence lengths on ``device``: T each when None, else checked to be (B,)
    and in [1, T]."""
    if lengths is None:
        return torch.full((B,), T, dtype=torch.int64, device=device)
    lengths = torch.as_tensor(lengths, device=device).to(torch.int64)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must be (B,) = ({B},), got {tuple(lengths.shape)}")
    if (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"lengths must lie in [1, T={T}], got {lengths.tolist()}")
    return lengths


def check_per_position(name: str, x: torch.Tensor | None, B: int, T: int, C: int) -> None:
    """A per-position input (emissions, start_bias, end_bias, max_end) must be (B, T, C)."""
    if x is not None and x.shape != (B, T, C):
        raise ValueError(f"{name} must be (B, T, C) = {(B, T, C)}, got {tuple(x.shape)}")


def _prepare(emissions, transitions, durations, lengths, init, final, start_bias, end_bias,
             max_end) -> _Inputs:
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, T, C), got shape {tuple(emissions.shape)}")
    B, T, C = emissions.shape
    if B < 1 or T < 1 or C < 1:
        raise ValueError(f"emissions must have B, T, C >= 1, got {(B, T, C)}")
    if transitions.shape != (C, C):
        raise ValueError(f"transitions must be (C, C) = {(C, C)}, got {tuple(transitions.shape)}")
    if durations.dim() != 2 or durations.shape[1] != C or durations.shape[0] < 1:
        raise ValueError(f"durations must be (K, C) with C = {C}, got {tuple(durations.shape)}")
    K = durations.shape[0]
    dtype = _compute_dtype(emissions.dtype)
    device = emissions.device

    lengths = checked_lengths(lengths, B, T, device)
    valid = (torch.arange(T, device=device)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)

    def per_position(name, x, fill):
        if x is None:
            return None
        check_per_position(name, x, B, T, C)
        x = torch.where(valid, x.to(dtype), torch.full((), fill, dtype=dtype, device=device))
        _check_finite_or_neg_inf(name, x)
        return x.transpose(0, 1).contiguous()

    em = per_position("emissions", emissions, 0.0)
    sb = per_position("start_bias", start_bias, 0.0)
    eb = per_position("end_bias", end_bias, 0.0)
    # Zero-centre the emissions per sequence and label: sum(e[s:t]) = sum(e[s:t] - mu) + mu * d,
    # so moving mu * d into the duration score is exact, and the prefix sums no longer drift
    # linearly (their drift would cancel between S[t] and S[s] only after rounding). logZ does
    # not depend on mu, so mu carries no gradient.
    finite = torch.isfinite(em)
    count = (finite & valid.transpose(0, 1)).sum(dim=0).clamp(min=1)
    em_finite = torch.where(finite, em, torch.zeros_like(em))
    mu = (em_finite.sum(dim=0) / count).detach()  # (B, C)
    # A -inf emission forbids every segment of that label covering the position. Prefix sums
    # cannot carry -inf (S[t] - S[s] would be -inf - -inf), so it becomes a reach limit instead:
    # a segment starting at s ends at or before the first forbidden position at or after s.
    forbidden = torch.isneginf(em)
    em = em_finite - mu
    me_forbid = None
    if forbidden.any():
        pos = torch.arange(T, device=device)[:, None, None].expand(T, B, C)
        first_bad = torch.where(forbidden, pos, torch.full_like(pos, T))
        me_forbid = first_bad.flip(0).cummin(dim=0).values.flip(0)  # (T, B, C)
    me = None
    if max_end is not None:
        check_per_position("max_end", max_end, B, T, C)
        me = torch.where(valid, max_end.to(torch.int64), torch.full((), T, dtype=torch.int64,
                                                                     device=device))
        me = me.transpose(0, 1)
    if me_forbid is not None:
        me = me_forbid if me is None else torch.minimum(me, me_forbid)
    if me is not None:
        # Rows for starts before position 0 never hold a live message; any value will do.
        pad = torch.full((K, B, C), T, dtype=torch.int64, device=device)
        me = torch.cat([pad, me], dim=0).contiguous()

    def vector(name, x):
        if x is None:
            return torch.zeros(C, dtype=dtype, device=device)
        if x.shape != (C,):
            raise ValueError(f"{name} must be (C,) = ({C},), got {tuple(x.shape)}")
        x = x.to(dtype)
        _check_finite_or_neg_inf(name, x)
        return x

    trans = transitions.to(dtype)
    _check_finite_or_neg_inf("transitions", trans)
    dur = durations.to(dtype)
    _check_finite_or_neg_inf("durations", dur)
    d = torch.arange(K, 0, -1, dtype=dtype, device=device)  # duration of window row i: K - i
    dur_rev = (dur.flip(0).unsqueeze(1) + d[:, None, None] * mu[None]).contiguous()  # (K, B, C)
    return _Inputs(B=B, T=T, C=C, K=K, dtype=dtype, device=device, lengths=lengths, em=em, sb=sb,
                   eb=eb, me=me, trans=trans.contiguous(), dur_rev=dur_rev,
                   init=vector("init", init),
                   final=vector("final", final))


# ----------------------------------------------------------------------------------------------
# The scan
# ----------------------------------------------------------------------------------------------


@dataclass
class _State:
    """What one block hands to the next (all in the receiving block's frame)."""

    win: torch.Tensor  # (K, B, C) start messages minus prefix sums, starts s in [c0-K, c0)
    alpha: torch.Tensor  # (B, C) alpha at c0
    lognorm: torch.Tensor  # (B,) float64: what has been subtracted from the state so far

    def clone(self) -> "_State":
        return _State(self.win.clone(), self.alpha.clone(), self.lognorm.clone())


@dataclass
class _Block:
    """A block's intermediate values, kept for the outside scan or the traceback."""

    c0: int
    c1: int
    bins: torch.Tensor  # (K + R, B, C) row K+i: start message of t=c0+i minus S (frame values)
    alphas: torch.Tensor  # (R + 1, B, C)
    starts: torch.Tensor  # (R, B, C)
    lses: torch.Tensor  # (R, B, C) log-sum (or max) over the duration window of each step
    bp_dur: torch.Tensor | None = None  # (R, B, C) Viterbi: window row of the best duration
    bp_prev: torch.Tensor | None = None  # (R, B, C) Viterbi: best previous label


def _initial_state(inp: _Inputs) -> _State:
    neg = torch.full((inp.K, inp.B, inp.C), NEG_INF, dtype=inp.dtype, device=inp.device)
    alpha = torch.full((inp.B, inp.C), NEG_INF, dtype=inp.dtype, device=inp.device)
    return _State(neg, alpha, torch.zeros(inp.B, dtype=torch.float64, device=inp.device))


def _blocks(T: int) -> list[tuple[int, int]]:
    return [(c0, min(c0 + _BLOCK, T)) for c0 in range(0, T, _BLOCK)]


def _checkpoint_stride(T: int, K: int) -> int:
    """Blocks between checkpoints: balances checkpoint memory (T/stride * K) against the
    recomputed interval (stride * (K + block)), so both grow like sqrt(T)."""
    n_blocks = -(-T // _BLOCK)
    return max(1, min(n_blocks, round(math.sqrt(n_blocks * K / (K + _BLOCK)))))


def _scan_block(inp: _Inputs, state: _State, c0: int, c1: int, is_max: bool, keep: bool):
    """Advance the scan over positions [c0, c1). Returns the next state and, if keep, a _Block."""
    K, R = inp.K, c1 - c0
    B, C, dtype, dev = inp.B, inp.C, inp.dtype, inp.device
    # Prefix sums local to this block: zero at c0.
    S = torch.zeros((R + 1, B, C), dtype=dtype, device=dev)
    torch.cumsum(inp.em[c0:c1], dim=0, out=S[1:])
    sbS = -S[:R] if inp.sb is None else inp.sb[c0:c1] - S[:R]
    eS = S[1:] if inp.eb is None else S[1:] + inp.eb[c0:c1]
    bins = torch.empty((K + R, B, C), dtype=dtype, device=dev)
    bins[:K] = state.win
    alphas = torch.empty((R + 1, B, C), dtype=dtype, device=dev)
    alphas[0] = state.alpha
    starts = torch.empty((R, B, C), dtype=dtype, device=dev)
    lses = torch.empty((R, B, C), dtype=dtype, device=dev)
    me = inp.me[c0:c1 + K] if inp.me is not None else None
    bp_dur = torch.empty((R, B, C), dtype=torch.int64, device=dev) if (is_max and keep) else None
    bp_prev = torch.zeros((R, B, C), dtype=torch.int64, device=dev) if (is_max and keep) else None
    trans, dur_rev, init = inp.trans, inp.dur_rev, inp.init
    # Scratch buffers reused by every step: the loop is bound by per-op overhead, not flops.
    pair = torch.empty((B, C, C), dtype=dtype, device=dev)
    X = torch.empty((K, B, C), dtype=dtype, device=dev)
    dead = torch.empty((K, B, C), dtype=torch.bool, device=dev) if me is not None else None

    for i in range(R):
        t = c0 + i
        # Segment-start message at t: O(C^2).
        if t == 0:
            starts[i] = init
        else:
            torch.add(alphas[i].unsqueeze(2), trans, out=pair)
            if is_max:
                best = pair.max(dim=1)
                starts[i] = best.values
                if bp_prev is not None:
                    bp_prev[i] = best.indices
            else:
                torch.logsumexp(pair, dim=1, out=starts[i])
        torch.add(starts[i], sbS[i], out=bins[K + i])
        # Segments ending at t+1 started at t+1-K .. t: window rows i+1 .. i+K. O(K C).
        torch.add(bins[i + 1:i + 1 + K], dur_rev, out=X)
        if dead is not None:
            X.masked_fill_(torch.le(me[i + 1:i + 1 + K], t, out=dead), NEG_INF)
        if is_max:
            best = X.max(dim=0)
            lses[i] = best.values
            if bp_dur is not None:
                bp_dur[i] = best.indices
        else:
            torch.logsumexp(X, dim=0, out=lses[i])
        torch.add(lses[i], eS[i], out=alphas[i + 1])

    block = _Block(c0, c1, bins, alphas, starts, lses, bp_dur, bp_prev) if keep else None
    # Hand over: re-base the carried messages to the next block's prefix-sum origin, then shift
    # everything by its maximum so the next block starts near zero.
    win = bins[R:R + K] + S[R]
    alpha = alphas[R].clone()
    shift = torch.maximum(win.amax(dim=(0, 2)), alpha.amax(dim=1))
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    win -= shift[None, :, None]
    alpha -= shift[:, None]
    return _State(win, alpha, state.lognorm + shift.to(torch.float64)), alphas, block


def _ending_in(inp: _Inputs, c0: int, c1: int) -> torch.Tensor:
    """(B,) bool: sequences whose length falls in (c0, c1], i.e. whose last alpha is in this block."""
    return (inp.lengths > c0) & (inp.lengths <= c1)


def _final_scores(inp: _Inputs, alphas: torch.Tensor, c0: int) -> torch.Tensor:
    """(B, C) alpha at each sequence's end plus final (meaningful where _ending_in holds)."""
    rows = (inp.lengths - c0).clamp(0, alphas.shape[0] - 1)
    return alphas[rows, torch.arange(inp.B, device=inp.device)] + inp.final


def _forward(inp: _Inputs, is_max: bool):
    """Full scan. Returns (score (B,) float64, checkpoints [(block index, state)])."""
    blocks = _blocks(inp.T)
    stride = _checkpoint_stride(inp.T, inp.K)
    state = _initial_state(inp)
    score = torch.full((inp.B,), NEG_INF, dtype=torch.float64, device=inp.device)
    checkpoints = []
    for j, (c0, c1) in enumerate(blocks):
        if j % stride == 0:
            checkpoints.append((j, state.clone()))
        lognorm = state.lognorm
        state, alphas, _ = _scan_block(inp, state, c0, c1, is_max, keep=False)
        ending = _ending_in(inp, c0, c1)
        if ending.any():
            fin = _final_scores(inp, alphas, c0)
            best = fin.amax(dim=1) if is_max else torch.logsumexp(fin, dim=1)
            score = torch.where(ending, best.to(torch.float64) + lognorm, score)
    return score, checkpoints


def _replay(inp: _Inputs, checkpoints, is_max: bool):
    """Yield the blocks of the scan from last to first, recomputing one checkpoint interval at a
    time from its saved state."""
    blocks = _blocks(inp.T)
    bounds = [j for j, _ in checkpoints] + [len(blocks)]
    for k in range(len(checkpoints) - 1, -1, -1):
        state = checkpoints[k][1]
        kept = []
        for j in range(bounds[k], bounds[k + 1]):
            c0, c1 = blocks[j]
            state, _, block = _scan_block(inp, state, c0, c1, is_max, keep=True)
            kept.append(block)
        yield from reversed(kept)


# ----------------------------------------------------------------------------------------------
# The outside scan: exact gradients of logZ
# ----------------------------------------------------------------------------------------------


def _safe(x: torch.Tensor) -> torch.Tensor:
    """-inf -> 0, so that exp(-inf - safe(-inf)) is 0 rather than NaN."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


@dataclass
class _Grads:
    em: torch.Tensor  # (T, B, C)  d logZ / d emissions (label posteriors for unit weights)
    sb: torch.Tensor  # (T, B, C)  d logZ / d start_bias
    eb: torch.Tensor  # (T, B, C)  d logZ / d end_bias
    trans: torch.Tensor  # (C, C)
    dur: torch.Tensor  # (K, C)
    init: torch.Tensor  # (C,)
    final: torch.Tensor  # (C,)


def _outside(inp: _Inputs, logz: torch.Tensor, checkpoints, weight: torch.Tensor) -> _Grads:
    """Reverse-mode scan: d (sum_b weight[b] * logZ[b]) / d every score input.

    The adjoint of alpha[t, c] is weight * P(a segment of label c ends at t); of a start message,
    weight * P(a segment of label c starts there). Positions at or past a length get zero.
    """
    T, B, C, K, dtype, dev = inp.T, inp.B, inp.C, inp.K, inp.dtype, inp.device
    g_em = torch.zeros((T, B, C), dtype=dtype, device=dev)
    g_sb = torch.zeros((T, B, C), dtype=dtype, device=dev)
    g_eb = torch.zeros((T, B, C), dtype=dtype, device=dev)
    g_trans = torch.zeros((C, C), dtype=dtype, device=dev)
    g_dur_rev = torch.zeros((K, B, C), dtype=dtype, device=dev)
    g_init = torch.zeros((B, C), dtype=dtype, device=dev)
    g_final = torch.zeros((B, C), dtype=dtype, device=dev)
    # Sequences with no valid segmentation have logZ = -inf and contribute nothing.
    weight = torch.where(torch.isfinite(logz), weight.to(torch.float64), torch.zeros_like(logz))
    g_alpha_next = torch.zeros((B, C), dtype=dtype, device=dev)  # adjoint of alpha at a block end
    g_win_next = torch.zeros((K, B, C), dtype=dtype, device=dev)  # adjoint of the carried window
    g_start_next = torch.zeros((B, C), dtype=dtype, device=dev)  # adjoint of the start message there
    # sum over t' > c1 of dlogZ/dS[t'], carried leftwards in float64; emission gradients are its
    # partial sums (S[t] = sum_{u<t} e[u]).
    tail = torch.zeros((B, C), dtype=torch.float64, device=dev)
    trans, dur_rev = inp.trans, inp.dur_rev

    for blk in _replay(inp, checkpoints, is_max=False):
        c0, c1, R = blk.c0, blk.c1, blk.c1 - blk.c0
        g_alpha = torch.zeros((R + 1, B, C), dtype=dtype, device=dev)
        g_alpha[R] = g_alpha_next
        g_bin = torch.zeros((K + R, B, C), dtype=dtype, device=dev)
        g_bin[R:] += g_win_next
        ending = _ending_in(inp, c0, c1)
        if ending.any():
            fin = _final_scores(inp, blk.alphas, c0)
            p_final = torch.softmax(fin, dim=1).nan_to_num(0.0)
            w = torch.where(ending, weight, torch.zeros_like(weight)).to(dtype)
            contrib = p_final * w[:, None]
            rows = (inp.lengths - c0).clamp(0, R)
            g_alpha[rows, torch.arange(B, device=dev)] += contrib
            g_final += contrib
        lse = _safe(blk.lses)
        starts = _safe(blk.starts)
        me = inp.me[c0:c1 + K] if inp.me is not None else None
        # P[i]: adjoint of every segment ending at t+1 (K rows); summed into g_dur after the loop.
        P = torch.empty((R, K, B, C), dtype=dtype, device=dev)
        Q = torch.empty((B, C, C), dtype=dtype, device=dev)
        dead = torch.empty((K, B, C), dtype=torch.bool, device=dev) if me is not None else None
        for i in range(R - 1, -1, -1):
            t = c0 + i
            # Spread the adjoint of alpha[t+1] over the K segments that could end there.
            Pi = P[i]
            torch.add(blk.bins[i + 1:i + 1 + K], dur_rev, out=Pi)
            if dead is not None:
                Pi.masked_fill_(torch.le(me[i + 1:i + 1 + K], t, out=dead), NEG_INF)
            Pi.sub_(lse[i]).exp_().mul_(g_alpha[i + 1])
            g_bin[i + 1:i + 1 + K] += Pi
            # g_bin[K+i] is complete now: the adjoint of the start message at t.
            if t > 0:
                torch.add(blk.alphas[i].unsqueeze(2), trans, out=Q)
                Q.sub_(starts[i].unsqueeze(1)).exp_().mul_(g_bin[K + i].unsqueeze(1))
                g_alpha[i] += Q.sum(dim=2)
        g_dur_rev += P.sum(dim=0)
        # Transition adjoints of the whole block at once: the same products as Q above.
        first = 1 if c0 == 0 else 0
        if c0 == 0:
            g_init += g_bin[K]
        if R > first:
            Qall = torch.exp(blk.alphas[first:R].unsqueeze(3) + trans
                             - starts[first:R].unsqueeze(2)) * g_bin[K + first:K + R].unsqueeze(2)
            g_trans += Qall.sum(dim=(0, 1))
        g_eb[c0:c1] = g_alpha[1:]
        g_sb[c0:c1] = g_bin[K:]
        # dlogZ/dS[t] for t = c0+1 .. c1: adjoint of alpha[t] minus that of the start message at t.
        dS = g_alpha[1:].to(torch.float64)
        dS[:-1] -= g_bin[K + 1:].to(torch.float64)
        dS[-1] -= g_start_next.to(torch.float64)
        # d/de[u] = sum_{t > u} dlogZ/dS[t]: a reversed cumulative sum plus what lies right of c1.
        g_em[c0:c1] = (dS.flip(0).cumsum(0).flip(0) + tail).to(dtype)
        tail = tail + dS.sum(dim=0)
        g_alpha_next = g_alpha[0]
        g_win_next = g_bin[:K]
        g_start_next = g_bin[K]
    return _Grads(em=g_em, sb=g_sb, eb=g_eb, trans=g_trans,
                  dur=g_dur_rev.sum(dim=1).flip(0), init=g_init.sum(dim=0),
                  final=g_final.sum(dim=0))


# ----------------------------------------------------------------------------------------------
# Viterbi traceback
# ----------------------------------------------------------------------------------------------


def _traceback(inp: _Inputs, score: torch.Tensor, checkpoints) -> list[torch.Tensor]:
    """Walk the back-pointers from each sequence's end to position 0, recomputing one checkpoint
    interval at a time (right to left), so back-pointers never exist for the whole sequence."""
    K, B = inp.K, inp.B
    lengths = inp.lengths.tolist()
    done = [not math.isfinite(s) for s in score.tolist()]
    segments: list[list[tuple[int, int, int]]] = [[] for _ in range(B)]
    # Per sequence, what the walk needs next: ("end", e, c) the best duration of the segment of
    # label c ending at e (scored at step e-1), or ("start", s, c) the best label before a segment
    # of label c starting at s (scored at step s). The steps needed only ever move left.
    cursor: list[tuple[str, int, int] | None] = [None] * B
    for blk in _replay(inp, checkpoints, is_max=True):
        c0, c1 = blk.c0, blk.c1
        bp_dur = blk.bp_dur.cpu().numpy()
        bp_prev = blk.bp_prev.cpu().numpy()
        final = _final_scores(inp, blk.alphas, c0).cpu()
        for b in range(B):
            if done[b]:
                continue
            if cursor[b] is None:
                if not c0 < lengths[b] <= c1:
                    continue
                cursor[b] = ("end", lengths[b], int(final[b].argmax()))
            while not done[b]:
                kind, pos, label = cursor[b]
                step = pos - 1 if kind == "end" else pos
                if step < c0:
                    break  # in an earlier block
                if kind == "end":
                    start = pos - (K - int(bp_dur[step - c0, b, label]))
                    segments[b].append((start, pos, label))
                    done[b] = start == 0
                    cursor[b] = ("start", start, label)
                else:
                    cursor[b] = ("end", pos, int(bp_prev[step - c0, b, label]))
    return [torch.tensor(sorted(rows), dtype=torch.int64).reshape(-1, 3) for rows in segments]


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


class _LogPartition(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emissions, transitions, durations, init, final, start_bias, end_bias,
                lengths, max_end):
        inp = _prepare(emissions, transitions, durations, lengths, init, final, start_bias,
                       end_bias, max_end)
        with _one_thread_on_cpu(inp.device):
            logz, checkpoints = _forward(inp, is_max=False)
        ctx.inp, ctx.checkpoints = inp, checkpoints
        ctx.in_dtypes = [x.dtype if x is not None else None
                         for x in (emissions, transitions, durations, init, final, start_bias,
                                   end_bias)]
        ctx.save_for_backward(logz)
        return logz.to(inp.dtype)

    @staticmethod
    def backward(ctx, grad_logz):
        (logz,) = ctx.saved_tensors
        with _one_thread_on_cpu(ctx.inp.device):
            g = _outside(ctx.inp, logz, ctx.checkpoints, grad_logz.to(torch.float64))
        needs = ctx.needs_input_grad
        # Back to the callers' layout (B, T, C) and dtypes, in forward's argument order.
        grads = [g.em.transpose(0, 1), g.trans, g.dur, g.init, g.final,
                 g.sb.transpose(0, 1), g.eb.transpose(0, 1)]
        out = [x.to(dt) if (need and dt is not None) else None
               for x, dt, need in zip(grads, ctx.in_dtypes, needs)]
        return (*out, None, None)


def semicrf_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                 start_bias=None, end_bias=None, max_end=None):
    """Log-partition function of the semi-CRF.

    Args:
        emissions: (B, T, C) float. Per-position label scores.
        transitions: (C, C). transitions[i, j] scores label j directly after label i.
        durations: (K, C). durations[d-1, c] scores a segment of label c and length d.
        lengths: (B,) int64 in [1, T], default T. Later positions are ignored.
        init, final: (C,) scores of the first / last segment's label (default 0).
        start_bias, end_bias: (B, T, C) added when a segment of label c starts at t / has its last
            base at t.
        max_end: (B, T, C) int64. A segment of label c starting at t must end (exclusive) at or
            before max_end[b, t, c].

    Returns:
        logZ (B,) in float32 (float64 for float64 emissions); -inf where no segmentation is valid.
        Differentiable with respect to every float input.
    """
    return _LogPartition.apply(emissions, transitions, durations, init, final, start_bias,
                               end_bias, lengths, max_end)


@torch.no_grad()
def semicrf_viterbi(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                    start_bias=None, end_bias=None, max_end=None):
    """Best segmentation (max-plus semiring). Arguments as :func:`semicrf_logz`.

    Returns:
        scores: (B,) best total score (-inf where no segmentation is valid).
        segments: list of B int64 CPU tensors (n_seg, 3), rows [start, end, label], end exclusive,
            sorted by start; empty (0, 3) where no segmentation is valid.
    """
    inp = _prepare(emissions, transitions, durations, lengths, init, final, start_bias, end_bias,
                   max_end)
    with _one_thread_on_cpu(inp.device):
        score, checkpoints = _forward(inp, is_max=True)
        segments = _traceback(inp, score, checkpoints)
    return score.to(inp.dtype), segments


@torch.no_grad()
def semicrf_posteriors(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                       start_bias=None, end_bias=None, max_end=None):
    """Posterior marginals. Arguments as :func:`semicrf_logz`.

    Returns:
        label_post: (B, T, C) P(position t lies in a segment labelled c); rows sum to 1 for t < L.
        boundary_post: (B, T) P(a segment has its last base at t).
        Both are 0 at or past a sequence's length and for sequences with no valid segmentation.
    """
    label_post, boundary_post, _ = posteriors_and_logz(
        emissions, transitions, durations, lengths, init=init, final=final,
        start_bias=start_bias, end_bias=end_bias, max_end=max_end)
    return label_post, boundary_post


@torch.no_grad()
def posteriors_and_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                        start_bias=None, end_bias=None, max_end=None):
    """:func:`semicrf_posteriors` plus logZ (B,) from the same forward scan."""
    inp = _prepare(emissions, transitions, durations, lengths, init, final, start_bias, end_bias,
                   max_end)
    with _one_thread_on_cpu(inp.device):
        logz, checkpoints = _forward(inp, is_max=False)
        g = _outside(inp, logz, checkpoints, torch.ones_like(logz))
    label_post = g.em.transpose(0, 1).contiguous()
    boundary_post = g.eb.sum(dim=2).transpose(0, 1).contiguous()
    return label_post, boundary_post, logz.to(inp.dtype)
