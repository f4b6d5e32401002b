"""The chunk program's bookkeeping that the dense and the sparse-window kernels share.

Every scan and outside kernel runs one program per (chunk, sequence) over a ring of K + 1 slots
of CB floats (the open-segment messages) plus one row for the chunk's end state, and re-bases
that ring at every block end. How a step combines the window differs between the dense kernels
(``scan.py``, ``outside.py``) and the sparse-window ones (``scan_sparse.py``,
``outside_sparse.py``); the ring's set-up, re-basing and hand-over do not, and live here once.
Triton inlines these functions, so the compiled kernels are what they were.
"""

from __future__ import annotations

import triton
import triton.language as tl

NEG = tl.constexpr(float("-inf"))


@triton.jit
def program_span(len_ptr, active_ptr, NC, CHUNK):
    """This program's sequence and chunk: (b64, prog, L, active, c_lo, c_hi); an inactive
    program gets the empty span [c_lo, c_lo), so it runs no step and writes nothing."""
    j = tl.program_id(0)
    b = tl.program_id(1)
    b64 = b.to(tl.int64)
    prog = b64 * NC + j
    L = tl.load(len_ptr + b).to(tl.int64)
    active = tl.load(active_ptr + prog) != 0
    c_lo = j.to(tl.int64) * CHUNK
    c_hi = tl.minimum(c_lo + CHUNK, L)
    c_hi = tl.where(active, c_hi, c_lo)
    return b64, prog, L, active, c_lo, c_hi


# ---------------------------------------------------------------------------------------------
# Forward scans (log-sum or max): the ring holds start messages minus prefix sums
# ---------------------------------------------------------------------------------------------


@triton.jit
def scan_start_state(st_in_ptr, ring, active, K: tl.constexpr, KT: tl.constexpr,
                     NKT: tl.constexpr, CB: tl.constexpr, cmask, SS: tl.constexpr,
                     LS: tl.constexpr):
    """Copy the chunk's start state into this program's ring; returns alpha at the chunk's
    start."""
    R1: tl.constexpr = K + 1
    rr = tl.arange(0, KT)
    cc = tl.arange(0, CB)
    n_copy = tl.where(active, R1, 0)  # (a mask of the scalar flag itself upsets the interpreter)
    for kt in range(NKT):
        rows = kt * KT + rr
        m2 = (rows[:, None] < n_copy) & cmask[None, :]
        offs = rows[:, None] * SS + cc[None, :] * LS
        v = tl.load(st_in_ptr + offs, mask=m2, other=NEG)
        tl.store(ring + offs, v, mask=m2)
    alpha = tl.load(st_in_ptr + R1 * CB + cc, mask=cmask, other=NEG)
    tl.debug_barrier()
    return alpha


@triton.jit
def log_total(alpha, final, IS_MAX: tl.constexpr):
    """log Z (or the best score) of a sequence ending here: log-sum (max) of alpha + final."""
    fin = alpha + final
    if IS_MAX:
        z = tl.max(fin, axis=0)
    else:
        fm = tl.max(fin, axis=0)
        fms = tl.where(fm == NEG, 0.0, fm)
        z = fms + tl.log(tl.sum(tl.exp(fin - fms), axis=0))
    return z


@triton.jit
def scan_block_rebase(ring, alpha, S, t, K: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
                      CB: tl.constexpr, cmask, SS: tl.constexpr, LS: tl.constexpr):
    """Block end after step t: the live ring slots (starts in (t + 1 - K, t]; the other two
    are stale) move to the next block's prefix sums (S becomes 0) and are normalised by their
    maximum together with alpha. Returns (alpha - shift, shift); the caller adds the shift to
    its log normaliser."""
    R1: tl.constexpr = K + 1
    rr = tl.arange(0, KT)
    cc = tl.arange(0, CB)
    shift = tl.max(alpha, axis=0)
    for kt in range(NKT):
        rows = kt * KT + rr
        dm1 = (t % R1 - rows + R1) % R1
        live = (rows < R1) & (dm1 < K - 1)
        m2 = live[:, None] & cmask[None, :]
        v = tl.load(ring + rows[:, None] * SS + cc[None, :] * LS, mask=m2, other=NEG)
        shift = tl.maximum(shift, tl.max(tl.max(v + S[None, :], axis=1), axis=0))
    shift = tl.where(shift == NEG, 0.0, shift)
    for kt in range(NKT):
        rows = kt * KT + rr
        dm1 = (t % R1 - rows + R1) % R1
        live = (rows < R1) & (dm1 < K - 1)
        m2 = live[:, None] & cmask[None, :]
        offs = rows[:, None] * SS + cc[None, :] * LS
        v = tl.load(ring + offs, mask=m2, other=NEG)
        tl.store(ring + offs, v + S[None, :] - shift, mask=m2)
    return alpha - shift, shift


@triton.jit
def scan_hand_over(st_out, growth_ptr, prog, ring, alpha, lognorm, c_hi, K: tl.constexpr,
                   CB: tl.constexpr, cmask, SS: tl.constexpr, LS: tl.constexpr):
    """The chunk's end state: alpha after the ring, the log growth of this chunk, and the two
    stale ring slots cleared."""
    R1: tl.constexpr = K + 1
    cc = tl.arange(0, CB)
    tl.store(st_out + R1 * CB + cc, alpha, mask=cmask)
    tl.store(growth_ptr + prog, lognorm)
    tl.store(ring + (c_hi % R1) * SS + cc * LS, tl.full([CB], NEG, tl.float32), mask=cmask)
    tl.store(ring + ((c_hi + 1) % R1) * SS + cc * LS, tl.full([CB], NEG, tl.float32), mask=cmask)


# ---------------------------------------------------------------------------------------------
# Outside passes: gacc holds start adjoints (probabilities), wring open-segment scores
# ---------------------------------------------------------------------------------------------


@triton.jit
def _pin_mass(gacc, g_end, t, K: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
              CB: tl.constexpr, cmask, SS: tl.constexpr, LS: tl.constexpr):
    """Scale g_end and the start adjoints in gacc (all slots but t's) to total mass 1; returns
    (g_end, acc), acc[c] = the scaled adjoints of label c summed over the ring."""
    R1: tl.constexpr = K + 1
    rr = tl.arange(0, KT)
    cc = tl.arange(0, CB)
    total = tl.sum(g_end, axis=0)
    for kt in range(NKT):
        rows = kt * KT + rr
        m2 = ((rows < R1) & (rows != t % R1))[:, None] & cmask[None, :]
        v = tl.load(gacc + rows[:, None] * SS + cc[None, :] * LS, mask=m2, other=0.0)
        total += tl.sum(tl.sum(v, axis=1), axis=0)
    inv = tl.where(total > 0, 1.0 / total, 1.0)
    g_end = g_end * inv
    acc = tl.zeros([CB], dtype=tl.float64)
    for kt in range(NKT):
        rows = kt * KT + rr
        m2 = ((rows < R1) & (rows != t % R1))[:, None] & cmask[None, :]
        offs = rows[:, None] * SS + cc[None, :] * LS
        v = tl.load(gacc + offs, mask=m2, other=0.0) * inv
        tl.store(gacc + offs, v, mask=m2)
        acc += tl.sum(v, axis=0).to(tl.float64)
    return g_end, acc


@triton.jit
def outside_start_state(st_in, gacc, active, holds_end, K: tl.constexpr, KT: tl.constexpr,
                        NKT: tl.constexpr, CB: tl.constexpr, cmask, SS: tl.constexpr,
                        LS: tl.constexpr):
    """The chunk's start state, scaled to mass 1, into gacc (zeros where this chunk holds the
    sequence's end, whose caller sets g_end itself). Returns (g_end, acc) as ``_pin_mass``.

    Exactly one segment covers every cut, so the true state always has mass 1. Rounding drifts
    the mass by ~1e-7 a step and mass is the one direction the recursion never contracts, so it
    is pinned here and at every block end; otherwise chunk states would never agree with their
    neighbours' to float32 rounding."""
    R1: tl.constexpr = K + 1
    rr = tl.arange(0, KT)
    cc = tl.arange(0, CB)
    n_copy = tl.where(active & (holds_end == 0), R1, 0)
    g_end = tl.load(st_in + R1 * CB + cc, mask=cmask, other=0.0)
    total = tl.sum(g_end, axis=0)
    for kt in range(NKT):
        rows = kt * KT + rr
        m2 = (rows[:, None] < n_copy) & cmask[None, :]
        v = tl.load(st_in + rows[:, None] * SS + cc[None, :] * LS, mask=m2, other=0.0)
        total += tl.sum(tl.sum(v, axis=1), axis=0)
    inv = tl.where(total > 0, 1.0 / total, 1.0)
    g_end = g_end * inv
    acc = tl.zeros([CB], dtype=tl.float64)  # P(segment of c crosses the cut right of t)
    n_all = tl.where(active, R1, 0)
    for kt in range(NKT):
        rows = kt * KT + rr
        m2 = (rows[:, None] < n_all) & cmask[None, :]
        offs = rows[:, None] * SS + cc[None, :] * LS
        v = tl.load(st_in + offs, mask=m2, other=0.0) * inv
        v = tl.where(holds_end, 0.0, v)
        tl.store(gacc + offs, v, mask=m2)
        acc += tl.sum(v, axis=0).to(tl.float64)
    return g_end, acc


@triton.jit
def outside_block_rebase(wring, gacc, em_seq, norm_b, t, mu, n_cur, s_back, g_end,
                         C: tl.constexpr, K: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
                         CB: tl.constexpr, BLOCK: tl.constexpr, cmask, SS: tl.constexpr,
                         LS: tl.constexpr):
    """Block start t (going backwards): into the previous block's frame, where every open score
    moves by the normaliser step and by that block's emission sum (its prefix sums now start
    BLOCK earlier); then the mass pinned to 1 (slot t was consumed into g_end). ``em_seq``:
    this sequence's emissions, ``norm_b``: its forward block normalisers. Returns (n_cur,
    s_back, g_end, acc)."""
    R1: tl.constexpr = K + 1
    rr = tl.arange(0, KT)
    cc = tl.arange(0, CB)
    n_prev = tl.load(norm_b + (t // BLOCK) - 1)
    bsum = tl.zeros([CB], dtype=tl.float32)
    for q2 in range(t - BLOCK, t):
        bsum += tl.load(em_seq + q2 * C + cc, mask=cmask, other=0.0) - mu
    delta = (n_cur - n_prev).to(tl.float32) - bsum
    for kt in range(NKT):
        rows = kt * KT + rr
        m2 = (rows[:, None] < R1) & cmask[None, :]
        offs = rows[:, None] * SS + cc[None, :] * LS
        v = tl.load(wring + offs, mask=m2, other=NEG)
        tl.store(wring + offs, v + delta[None, :], mask=m2)
    g_end, acc = _pin_mass(gacc, g_end, t, K, KT, NKT, CB, cmask, SS, LS)
    return n_prev, s_back - bsum, g_end, acc
