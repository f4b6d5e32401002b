"""The fused semi-CRF scan: one Triton program walks one chunk of one sequence.

A program owns sequence ``b`` and chunk ``j`` (positions [j * CHUNK, (j + 1) * CHUNK)) and runs the
factorized recursion of ../DESIGN.md step by step:

    start[t, c]   = lse_c' (alpha[t, c'] + trans[c', c])          (init[c] at t = 0)     O(C^2)
    alpha[t+1, c] = S[t+1, c] + eb[t, c]
                    + lse_{s in (t-K, t]} (start[s, c] + sb[s, c] - S[s, c] + dur[t-s, c])  O(K C)

(max instead of lse for Viterbi). The K most recent "open segment" scores
``start[s] + sb[s] - S[s]`` live in a ring of K + 1 slots (slot = s mod (K + 1)) in the program's
row of ``st_out``: K + 1 rather than K so that the slot written at step t + 1 is never one that
step t's window still reads, which leaves one barrier per step. The ring is global memory but
only this program touches it, so it stays in L1/L2. Segment scores come from prefix sums S that
are local to a BLOCK of positions: at every block end the ring is re-based (S added back, so the
next block's prefix sums start at zero) and the whole state is shifted by its maximum, which a
float64 log-normaliser collects. float32 therefore never carries a number larger than one block
can accumulate, however long the sequence.

A chunk starts from the state in ``st_in`` (the ring and alpha at its first position, normalised
to maximum 0). Chunk 0's is exact; the others are guesses until the driver (``chunked.py``) has
checked them against their predecessor's end state, which each program leaves in ``st_out``.

Options are compile-time flags, so an unused input costs nothing:
  IS_MAX    max-plus semiring (Viterbi).
  HAS_SB / HAS_EB   start_bias / end_bias (B, T, C).
  HAS_ME    max_end per segment START (B, T, C) int32: a segment from s ends at or before me[s].
  HAS_MS    min_start per segment LAST BASE (B, T, C) int32 (the same limit seen from the end).
  STORE     write start messages and alphas (frame values) and per-block log-normalisers, which
            the outside scan (``outside.py``) reads.
  STORE_BP  (with IS_MAX) write the back-pointers the traceback reads: the best previous
            label per start and the best duration per end. The Viterbi needs nothing else per
            position.
"""

from __future__ import annotations

import triton
import triton.language as tl

from genoseg_kernels.ring import (log_total, program_span, scan_block_rebase, scan_hand_over,
                   scan_start_state)

NEG = tl.constexpr(float("-inf"))


@triton.jit
def _lse_combine(m, s, x, axis: tl.constexpr):
    """Online log-sum-exp: fold tile x (reduced along axis) into the running (max m, sum s)."""
    tile_max = tl.max(x, axis=axis)
    new_m = tl.maximum(m, tile_max)
    safe = tl.where(new_m == NEG, 0.0, new_m)
    s = s * tl.exp(m - safe) + tl.sum(tl.exp(x - tl.expand_dims(safe, axis)), axis=axis)
    return new_m, s


# T, the chunk length and the counts are runtime values: a new sequence length never recompiles.
@triton.jit(do_not_specialize=["T", "NC", "NBLK", "CHUNK"])
def semicrf_scan_kernel(
    em_ptr, sb_ptr, eb_ptr, me_ptr, ms_ptr,
    trans_ptr, dur_ptr, mu_ptr, init_ptr, final_ptr, len_ptr,
    st_in_ptr, st_out_ptr, growth_ptr, zend_ptr, active_ptr,
    start_out_ptr, alpha_out_ptr, norm_out_ptr, bp_prev_ptr, bp_dur_ptr,
    T, NC, NBLK, CHUNK,
    K: tl.constexpr, C: tl.constexpr, CB: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
    BLOCK: tl.constexpr,
    IS_MAX: tl.constexpr, HAS_SB: tl.constexpr, HAS_EB: tl.constexpr, HAS_ME: tl.constexpr,
    HAS_MS: tl.constexpr, STORE: tl.constexpr, STORE_BP: tl.constexpr,
):
    b64, prog, L, active, c_lo, c_hi = program_span(len_ptr, active_ptr, NC, CHUNK)

    R1: tl.constexpr = K + 1  # ring slots
    ROW: tl.constexpr = CB  # row stride of a state
    cc = tl.arange(0, CB)
    cmask = cc < C
    rr = tl.arange(0, KT)
    st_base = prog * (K + 2) * ROW
    ring = st_out_ptr + st_base

    # The start state becomes this program's ring.
    alpha = scan_start_state(st_in_ptr + st_base, ring, active, K, KT, NKT, CB, cmask,
                             ROW, 1)

    trans = tl.load(trans_ptr + cc[:, None] * C + cc[None, :],
                    mask=cmask[:, None] & cmask[None, :], other=NEG)  # [c', c]
    mu = tl.load(mu_ptr + b64 * C + cc, mask=cmask, other=0.0)
    init = tl.load(init_ptr + cc, mask=cmask, other=NEG)
    final = tl.load(final_ptr + cc, mask=cmask, other=NEG)
    S = tl.zeros([CB], dtype=tl.float32)
    lognorm = tl.zeros([1], dtype=tl.float64)
    lognorm = tl.sum(lognorm, axis=0)
    if STORE:
        if active:
            tl.store(norm_out_ptr + b64 * NBLK + c_lo // BLOCK, lognorm)
    em_b = em_ptr + b64 * T * C
    for t in range(c_lo, c_hi):
        # --- segment-start message at t: O(C^2) -------------------------------------------
        pair = alpha[:, None] + trans
        if IS_MAX:
            start = tl.max(pair, axis=0)
            prev = tl.argmax(pair, axis=0)
        else:
            pm = tl.max(pair, axis=0)
            pms = tl.where(pm == NEG, 0.0, pm)
            start = pms + tl.log(tl.sum(tl.exp(pair - pms[None, :]), axis=0))
        start = tl.where(t == 0, init, start)
        row_t = b64 * T * C + t * C
        open_new = start - S
        if HAS_SB:
            open_new += tl.load(sb_ptr + row_t + cc, mask=cmask, other=0.0)
        tl.store(ring + (t % R1) * ROW + cc, open_new, mask=cmask)
        if STORE:
            tl.store(start_out_ptr + row_t + cc, start, mask=cmask)
        if STORE_BP:
            tl.store(bp_prev_ptr + row_t + cc, prev.to(bp_prev_ptr.dtype.element_ty), mask=cmask)
        e = tl.load(em_b + t * C + cc, mask=cmask, other=0.0) - mu
        S_next = S + e
        tl.debug_barrier()

        # --- segments ending at t + 1: O(K C) -----------------------------------------------
        run_m = tl.full([CB], NEG, tl.float32)
        run_s = tl.zeros([CB], dtype=tl.float32)
        best_d = tl.zeros([CB], dtype=tl.int32)
        if HAS_MS:
            ms = tl.load(ms_ptr + row_t + cc, mask=cmask, other=0)
        for kt in range(NKT):
            rows = kt * KT + rr
            dm1 = (t % R1 - rows + R1) % R1  # duration - 1 of the segment starting in this slot
            ok = (rows < R1) & (dm1 < K) & (dm1 <= t)
            s_pos = t - dm1
            m2 = ok[:, None] & cmask[None, :]
            x = tl.load(ring + rows[:, None] * ROW + cc[None, :], mask=m2, other=NEG)
            dur = tl.load(dur_ptr + dm1[:, None] * C + cc[None, :], mask=m2, other=NEG)
            x = x + dur + mu[None, :] * (dm1 + 1).to(tl.float32)[:, None]
            if HAS_ME:
                me = tl.load(me_ptr + b64 * T * C + s_pos[:, None] * C + cc[None, :], mask=m2,
                             other=0)
                x = tl.where(me > t, x, NEG)
            if HAS_MS:
                x = tl.where(s_pos[:, None] >= ms[None, :], x, NEG)
            x = tl.where(m2, x, NEG)
            if IS_MAX:
                tile_max = tl.max(x, axis=0)
                tile_row = tl.argmax(x, axis=0)
                tile_d = (t % R1 - (kt * KT + tile_row) + R1) % R1 + 1
                better = tile_max > run_m
                best_d = tl.where(better, tile_d.to(tl.int32), best_d)
                run_m = tl.maximum(run_m, tile_max)
            else:
                run_m, run_s = _lse_combine(run_m, run_s, x, 0)
        if IS_MAX:
            window = run_m
        else:
            window = tl.where(run_m == NEG, NEG, run_m + tl.log(run_s))
        alpha = S_next + window
        if HAS_EB:
            alpha += tl.load(eb_ptr + row_t + cc, mask=cmask, other=0.0)
        if STORE:
            tl.store(alpha_out_ptr + row_t + cc, alpha, mask=cmask)
        if STORE_BP:
            tl.store(bp_dur_ptr + row_t + cc, best_d.to(bp_dur_ptr.dtype.element_ty), mask=cmask)
        if t + 1 == L:
            z = log_total(alpha, final, IS_MAX)
            tl.store(zend_ptr + b64, z.to(tl.float64) + lognorm)
        S = S_next

        # --- block end: re-base the ring to the next block's prefix sums and normalise ------
        if (t + 1) % BLOCK == 0:
            tl.debug_barrier()
            alpha, shift = scan_block_rebase(ring, alpha, S, t, K, KT, NKT, CB, cmask,
                                             ROW, 1)
            lognorm += shift.to(tl.float64)
            S = tl.zeros([CB], dtype=tl.float32)
            if STORE:
                if t + 1 < c_hi:
                    tl.store(norm_out_ptr + b64 * NBLK + (t + 1) // BLOCK, lognorm)
            tl.debug_barrier()

    if active:
        scan_hand_over(st_out_ptr + st_base, growth_ptr, prog, ring, alpha, lognorm, c_hi, K,
                       CB, cmask, ROW, 1)
