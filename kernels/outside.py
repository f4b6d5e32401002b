"""The outside (reverse) scan: exact marginals and gradients from the forward's stored messages.

A program owns sequence ``b`` and chunk ``j`` and walks t from the chunk's last position down to
its first. Its state is probability mass, not log weight:

    g_end[c]       P(a segment of label c has its last base at t)     (adjoint of alpha[t + 1])
    gacc[s, c]     P(a segment of label c starts at s and ends after t + 1), s in (t - K, t]

Step t spreads g_end over the K segments that could end there, in proportion to their share of
the forward's window sum (recomputed here from the forward's start messages, so each share is a
softmax and the step conserves mass exactly up to rounding); the starts at t are then complete,
and their mass flows to the labels before them, again by a softmax over the transition step.
Because every step is a local, mass-preserving redistribution, nothing drifts with the sequence
length: the posteriors stay accurate to float32 rounding at any T, unlike alpha + beta - log Z,
whose two float32 normalisers drift apart by ~1e-7 per position.

The forward's start messages are stored in block frames (value minus the block's float64
normaliser, prefix sums local to the block). The ring ``wring`` holds the K most recent open
segment scores re-based to the current block, exactly as the forward held them.

Chunks start (at their right end) from the state in ``st_in``: exact for the chunk holding the
sequence end, a guess elsewhere (the driver checks each guess against the right neighbour's end
state and reruns until all match, as for the forward). Outputs per position: label posteriors
(d logZ / d emissions), start and end posteriors (d logZ / d start_bias, end_bias); per program:
transition counts, duration counts, and the initial-label posterior.
"""

from __future__ import annotations

import triton
import triton.language as tl

from genoseg_kernels.ring import outside_block_rebase, outside_start_state, program_span

NEG = tl.constexpr(float("-inf"))


@triton.jit(do_not_specialize=["T", "NC", "NBLK", "CHUNK"])
def semicrf_outside_kernel(
    em_ptr, sb_ptr, me_ptr, ms_ptr,
    trans_ptr, dur_ptr, mu_ptr, final_ptr, len_ptr,
    fstart_ptr, falpha_ptr, fnorm_ptr,
    st_in_ptr, st_out_ptr, wring_ptr, active_ptr,
    g_em_ptr, g_sb_ptr, g_eb_ptr, g_trans_ptr, g_dur_ptr, g_init_ptr,
    T, NC, NBLK, CHUNK,
    K: tl.constexpr, C: tl.constexpr, CB: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_SB: tl.constexpr, HAS_ME: tl.constexpr, HAS_MS: tl.constexpr,
    OUT_SB: tl.constexpr, OUT_EB: tl.constexpr,
):
    # OUT_SB / OUT_EB: write the start / end marginals (B, T, C); a caller that needs neither
    # the boundary posteriors nor a bias gradient saves two (B, T, C) arrays.
    b64, prog, L, active, c_lo, c_hi = program_span(len_ptr, active_ptr, NC, CHUNK)

    R1: tl.constexpr = K + 1
    ROW: tl.constexpr = CB
    cc = tl.arange(0, CB)
    cmask = cc < C
    rr = tl.arange(0, KT)
    st_base = prog * (K + 2) * ROW
    gacc = st_out_ptr + st_base  # ring of start adjoints (the state)
    wring = wring_ptr + prog * R1 * ROW  # ring of open-segment scores (scratch)
    seq = b64 * T * C
    holds_end = c_hi == L

    trans = tl.load(trans_ptr + cc[:, None] * C + cc[None, :],
                    mask=cmask[:, None] & cmask[None, :], other=NEG)  # [c', c]
    mu = tl.load(mu_ptr + b64 * C + cc, mask=cmask, other=0.0)

    # --- start state, scaled to mass 1 (ring.outside_start_state says why) -------------------
    # acc[c]: P(a segment of c crosses the cut right of t)
    g_end, acc = outside_start_state(st_in_ptr + st_base, gacc, active, holds_end, K, KT, NKT,
                                     CB, cmask, ROW, 1)
    if holds_end:
        # The sequence ends in this chunk: the last segment's label is softmax(alpha[L] + final).
        a_last = tl.load(falpha_ptr + seq + (L - 1) * C + cc, mask=cmask, other=NEG)
        fin = a_last + tl.load(final_ptr + cc, mask=cmask, other=NEG)
        fm = tl.max(fin, axis=0)
        fms = tl.where(fm == NEG, 0.0, fm)
        pe = tl.exp(fin - fms)
        g_end = pe / tl.maximum(tl.sum(pe, axis=0), 1e-30)
        g_end = tl.where(fm == NEG, 0.0, g_end)

    # --- fill the score ring for the first step (t = c_hi - 1): starts in [c_hi - K, c_hi) ----
    t_first = c_hi - 1
    blk = tl.maximum(t_first, 0) // BLOCK
    fs = blk * BLOCK  # the current frame's first position
    n_cur = tl.load(fnorm_ptr + b64 * NBLK + blk)
    # S_back(p) = S(fs) - S(p), the prefix-sum offset of start p in the current frame.
    s_back = tl.zeros([CB], dtype=tl.float32)
    for qq in range(fs, c_hi - 1):
        s_back -= tl.load(em_ptr + seq + qq * C + cc, mask=cmask, other=0.0) - mu
    p_lo = tl.maximum(c_hi - K, 0)
    for p in range(c_hi - 1, p_lo - 1, -1):
        if p < c_hi - 1:
            s_back += tl.load(em_ptr + seq + p * C + cc, mask=cmask, other=0.0) - mu
        w = tl.load(fstart_ptr + seq + p * C + cc, mask=cmask, other=NEG)
        dn = (tl.load(fnorm_ptr + b64 * NBLK + p // BLOCK) - n_cur).to(tl.float32)
        w = w + dn + s_back
        if HAS_SB:
            w += tl.load(sb_ptr + seq + p * C + cc, mask=cmask, other=0.0)
        tl.store(wring + (p % R1) * ROW + cc, w, mask=cmask)
    for p in range(c_hi - K, p_lo):  # starts before position 0 (p < 0): nothing open
        tl.store(wring + (((p % R1) + R1) % R1) * ROW + cc, tl.full([CB], NEG, tl.float32),
                 mask=cmask)
    tl.debug_barrier()

    g_trans = tl.zeros([CB, CB], dtype=tl.float32)
    for i in range(c_lo, c_hi):
        t = c_hi - 1 - (i - c_lo)
        row_t = seq + t * C
        # --- spread g_end over the segments ending after base t ------------------------------
        if HAS_MS:
            ms = tl.load(ms_ptr + row_t + cc, mask=cmask, other=0)
        run_m = tl.full([CB], NEG, tl.float32)
        run_s = tl.zeros([CB], dtype=tl.float32)
        for kt in range(NKT):
            rows = kt * KT + rr
            dm1 = (t % R1 - rows + R1) % R1
            ok = (rows < R1) & (dm1 < K) & (dm1 <= t)
            s_pos = t - dm1
            m2 = ok[:, None] & cmask[None, :]
            x = tl.load(wring + rows[:, None] * ROW + cc[None, :], mask=m2, other=NEG)
            dur = tl.load(dur_ptr + dm1[:, None] * C + cc[None, :], mask=m2, other=NEG)
            x = x + dur + mu[None, :] * (dm1 + 1).to(tl.float32)[:, None]
            if HAS_ME:
                me = tl.load(me_ptr + seq + s_pos[:, None] * C + cc[None, :], mask=m2, other=0)
                x = tl.where(me > t, x, NEG)
            if HAS_MS:
                x = tl.where(s_pos[:, None] >= ms[None, :], x, NEG)
            x = tl.where(m2, x, NEG)
            tile_max = tl.max(x, axis=0)
            new_m = tl.maximum(run_m, tile_max)
            safe = tl.where(new_m == NEG, 0.0, new_m)
            run_s = run_s * tl.exp(run_m - safe) + tl.sum(tl.exp(x - safe[None, :]), axis=0)
            run_m = new_m
        lse = tl.where(run_m == NEG, 0.0, run_m + tl.log(run_s))
        scale = tl.where(run_m == NEG, 0.0, g_end)
        for kt in range(NKT):
            rows = kt * KT + rr
            dm1 = (t % R1 - rows + R1) % R1
            ok = (rows < R1) & (dm1 < K) & (dm1 <= t)
            s_pos = t - dm1
            m2 = ok[:, None] & cmask[None, :]
            offs = rows[:, None] * ROW + cc[None, :]
            x = tl.load(wring + offs, mask=m2, other=NEG)
            dur = tl.load(dur_ptr + dm1[:, None] * C + cc[None, :], mask=m2, other=NEG)
            x = x + dur + mu[None, :] * (dm1 + 1).to(tl.float32)[:, None]
            if HAS_ME:
                me = tl.load(me_ptr + seq + s_pos[:, None] * C + cc[None, :], mask=m2, other=0)
                x = tl.where(me > t, x, NEG)
            if HAS_MS:
                x = tl.where(s_pos[:, None] >= ms[None, :], x, NEG)
            share = tl.where(m2, tl.exp(x - lse[None, :]), 0.0) * scale[None, :]
            old = tl.load(gacc + offs, mask=m2, other=0.0)
            tl.store(gacc + offs, old + share, mask=m2)
            gd = g_dur_ptr + prog * K * ROW + dm1[:, None] * ROW + cc[None, :]
            tl.store(gd, tl.load(gd, mask=m2, other=0.0) + share, mask=m2)
        tl.debug_barrier()

        # --- the starts at t are complete --------------------------------------------------
        g_start = tl.load(gacc + (t % R1) * ROW + cc, mask=cmask, other=0.0)
        if OUT_EB:
            tl.store(g_eb_ptr + row_t + cc, g_end, mask=cmask)
        if OUT_SB:
            tl.store(g_sb_ptr + row_t + cc, g_start, mask=cmask)
        covered = acc + g_end.to(tl.float64)
        tl.store(g_em_ptr + row_t + cc, covered.to(tl.float32), mask=cmask)
        acc = covered - g_start.to(tl.float64)
        if t == 0:
            tl.store(g_init_ptr + b64 * CB + cc, g_start, mask=cmask)
        # --- and their mass flows to the labels before them: softmax over c' of the step ----
        a_prev = tl.load(falpha_ptr + seq + (tl.maximum(t, 1) - 1) * C + cc, mask=cmask,
                         other=NEG)
        pair = a_prev[:, None] + trans
        pm = tl.max(pair, axis=0)
        pms = tl.where(pm == NEG, 0.0, pm)
        ex = tl.exp(pair - pms[None, :])
        flow = ex / tl.maximum(tl.sum(ex, axis=0), 1e-30)[None, :] * g_start[None, :]
        flow = tl.where((pm == NEG)[None, :] | (t == 0), 0.0, flow)
        g_trans += flow
        g_end = tl.sum(flow, axis=1)

        # --- ring upkeep: the start t - K enters the window, the slot of t leaves ----------
        p = t - K
        if p >= 0:
            s_back += tl.load(em_ptr + seq + p * C + cc, mask=cmask, other=0.0) - mu
            w = tl.load(fstart_ptr + seq + p * C + cc, mask=cmask, other=NEG)
            dn = (tl.load(fnorm_ptr + b64 * NBLK + p // BLOCK) - n_cur).to(tl.float32)
            w = w + dn + s_back
            if HAS_SB:
                w += tl.load(sb_ptr + seq + p * C + cc, mask=cmask, other=0.0)
        else:
            w = tl.full([CB], NEG, tl.float32)
        slot_p = ((p % R1) + R1) % R1
        tl.store(wring + slot_p * ROW + cc, w, mask=cmask)
        tl.store(gacc + slot_p * ROW + cc, tl.zeros([CB], dtype=tl.float32), mask=cmask)
        if (t % BLOCK == 0) & (t > c_lo):
            # Into the previous block's frame: every open score moves by the normaliser step
            # and by that block's emission sum (its prefix sums now start BLOCK earlier).
            tl.debug_barrier()
            n_cur, s_back, g_end, acc = outside_block_rebase(
                wring, gacc, em_ptr + seq, fnorm_ptr + b64 * NBLK, t, mu, n_cur, s_back, g_end,
                C, K, KT, NKT, CB, BLOCK, cmask, ROW, 1)
        tl.debug_barrier()

    if active:
        tl.store(st_out_ptr + st_base + R1 * ROW + cc, g_end, mask=cmask)
        tl.store(gacc + (c_lo % R1) * ROW + cc, tl.zeros([CB], dtype=tl.float32), mask=cmask)
        tl.store(g_trans_ptr + prog * ROW * ROW + cc[:, None] * ROW + cc[None, :], g_trans)
