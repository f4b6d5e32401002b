"""The fused semi-CRF scan over a sparse window (see ``sparse.py`` for the plan).

The same recursion, state layout, re-basing and chunk hand-over as ``scan.py`` (read that first);
only the two inner products change:

- the segment-start message reads the allowed predecessors of each label
  (``start[c] = lse_j alpha[pred[c, j]] + trans[pred[c, j], c]``), through a scratch copy of
  alpha, instead of the C x C tile;
- the window reads only the allowed (duration, label) cells: each row of W cells (one label)
  is reduced and its partial (max, sum; or max and best duration) goes to the program's scratch
  row; after a barrier each label combines its rows.

So a step costs about (allowed cells + C * (rows per label + predecessors)) elements instead of
(K + 1) * C + C^2. Three barriers a step instead of one: alpha before the start messages, the
ring row before the window, the row partials before their combine.
"""

from __future__ import annotations

import triton
import triton.language as tl

from genoseg_kernels.ring import (log_total, program_span, scan_block_rebase, scan_hand_over,
                   scan_start_state)

NEG = tl.constexpr(float("-inf"))


@triton.jit(do_not_specialize=["T", "NC", "NBLK", "CHUNK"])
def semicrf_sparse_scan_kernel(
    # Pointers: inputs (B, T, C) and model
    em_ptr, sb_ptr, eb_ptr, me_ptr, ms_ptr,
    mu_ptr, init_ptr, final_ptr, len_ptr,
    # Pointers: the plan (sparse.py)
    pred_ptr,  # (CB, P) int32 predecessors
    tpred_ptr,  # (CB, P) float32 trans[pred, c]
    rowlab_ptr,  # (NRP,) int32 label of each row
    celldm1_ptr,  # (NRP, W) int32 duration - 1 of each cell
    cellsc_ptr,  # (B, NRP, W) float32 duration score + mu * d of each cell
    labrows_ptr,  # (CB, RMAX) int32 rows of each label
    # Pointers: state, outputs and scratch
    st_in_ptr, st_out_ptr, growth_ptr, zend_ptr, active_ptr,
    start_out_ptr, alpha_out_ptr, norm_out_ptr, bp_prev_ptr, bp_dur_ptr,
    scr_ptr,  # (B * NC, CB + 2 * NRP) float32: alpha, row maxima, row sums (or best d - 1)
    # Sizes
    T, NC, NBLK, CHUNK,
    K: tl.constexpr, C: tl.constexpr, CB: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
    BLOCK: tl.constexpr,
    W: tl.constexpr, RT: tl.constexpr, NRT: tl.constexpr, NRP: tl.constexpr,
    RMAX: tl.constexpr, P: tl.constexpr,
    # Meta-parameters
    IS_MAX: tl.constexpr, HAS_SB: tl.constexpr, HAS_EB: tl.constexpr, HAS_ME: tl.constexpr,
    HAS_MS: tl.constexpr, STORE: tl.constexpr, STORE_BP: tl.constexpr,
):
    b64, prog, L, active, c_lo, c_hi = program_span(len_ptr, active_ptr, NC, CHUNK)

    R1: tl.constexpr = K + 1  # ring slots
    ROW: tl.constexpr = CB
    # The ring is label-major (slot stride 1, label stride R1): a row of the window is one
    # label's consecutive durations, so its cells sit side by side and a warp's gather touches
    # a few cache lines instead of one line per cell (see sparse.py, "Layout").
    SS: tl.constexpr = 1
    LS: tl.constexpr = R1
    cc = tl.arange(0, CB)
    cmask = cc < C
    st_base = prog * (K + 2) * ROW
    ring = st_out_ptr + st_base

    # The start state becomes this program's ring.
    alpha = scan_start_state(st_in_ptr + st_base, ring, active, K, KT, NKT, CB, cmask,
                             SS, LS)

    # The plan's small tables live in registers for the whole chunk.
    pj = tl.arange(0, P)
    pred = tl.load(pred_ptr + cc[:, None] * P + pj[None, :])  # [c, j] -> c'
    pred_ok = pred >= 0
    pred_safe = tl.maximum(pred, 0)
    tpred = tl.load(tpred_ptr + cc[:, None] * P + pj[None, :])  # -inf on padding
    ri = tl.arange(0, RMAX)
    lab_rows = tl.load(labrows_ptr + cc[:, None] * RMAX + ri[None, :])  # [c, r] -> row
    lab_rows_ok = lab_rows >= 0
    lab_rows_safe = tl.maximum(lab_rows, 0)
    wj = tl.arange(0, W)
    rt_r = tl.arange(0, RT)
    scr = scr_ptr + prog * (CB + 2 * NRP)
    scr_m = scr + CB
    scr_s = scr + CB + NRP
    cells_b = cellsc_ptr + b64 * NRP * W

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
        # --- segment-start message at t from the allowed predecessors ------------------------
        tl.store(scr + cc, alpha)
        tl.debug_barrier()
        pair = tl.load(scr + pred_safe, mask=pred_ok, other=NEG) + tpred  # [c, j]
        if IS_MAX:
            start = tl.max(pair, axis=1)
            best_j = tl.argmax(pair, axis=1)
            prev = tl.sum(tl.where(pj[None, :] == best_j[:, None], pred_safe, 0), axis=1)
        else:
            pm = tl.max(pair, axis=1)
            pms = tl.where(pm == NEG, 0.0, pm)
            start = pms + tl.log(tl.sum(tl.exp(pair - pms[:, None]), axis=1))
        start = tl.where(t == 0, init, start)
        row_t = b64 * T * C + t * C
        open_new = start - S
        if HAS_SB:
            open_new += tl.load(sb_ptr + row_t + cc, mask=cmask, other=0.0)
        tl.store(ring + (t % R1) * SS + cc * LS, open_new, mask=cmask)
        if STORE:
            tl.store(start_out_ptr + row_t + cc, start, mask=cmask)
        if STORE_BP:
            tl.store(bp_prev_ptr + row_t + cc, prev.to(bp_prev_ptr.dtype.element_ty), mask=cmask)
        e = tl.load(em_b + t * C + cc, mask=cmask, other=0.0) - mu
        S_next = S + e
        eb = tl.zeros([CB], dtype=tl.float32)
        if HAS_EB:  # loaded before the window, so that its latency overlaps the window's work
            eb = tl.load(eb_ptr + row_t + cc, mask=cmask, other=0.0)
        tl.debug_barrier()

        # --- segments ending at t + 1: each row of allowed cells, then each label's rows ------
        for rt in range(NRT):
            rws = rt * RT + rt_r
            lab = tl.load(rowlab_ptr + rws)  # [RT]
            dm1 = tl.load(celldm1_ptr + rws[:, None] * W + wj[None, :])  # [RT, W]
            ok = (dm1 >= 0) & (dm1 <= t)
            s_pos = t - dm1
            slot = (t % R1 - dm1 + R1) % R1
            x = tl.load(ring + slot * SS + lab[:, None] * LS, mask=ok, other=NEG)
            x += tl.load(cells_b + rws[:, None] * W + wj[None, :], mask=ok, other=NEG)
            if HAS_ME:
                me = tl.load(me_ptr + b64 * T * C + lab[:, None].to(tl.int64) * T + s_pos,
                             mask=ok, other=0)
                x = tl.where(me > t, x, NEG)
            if HAS_MS:
                ms = tl.load(ms_ptr + row_t + lab)
                x = tl.where(s_pos >= ms[:, None], x, NEG)
            x = tl.where(ok, x, NEG)
            row_m = tl.max(x, axis=1)
            tl.store(scr_m + rws, row_m)
            if IS_MAX:
                best_w = tl.argmax(x, axis=1)
                row_d = tl.sum(tl.where(wj[None, :] == best_w[:, None], dm1, 0), axis=1)
                tl.store(scr_s + rws, row_d.to(tl.float32))
            else:
                safe = tl.where(row_m == NEG, 0.0, row_m)
                tl.store(scr_s + rws, tl.sum(tl.exp(x - safe[:, None]), axis=1))
        tl.debug_barrier()
        part_m = tl.load(scr_m + lab_rows_safe, mask=lab_rows_ok, other=NEG)  # [c, r]
        if IS_MAX:
            window = tl.max(part_m, axis=1)
            best_r = tl.argmax(part_m, axis=1)
            part_d = tl.load(scr_s + lab_rows_safe, mask=lab_rows_ok, other=0.0)
            best_d = tl.sum(tl.where(ri[None, :] == best_r[:, None], part_d, 0.0), axis=1)
            best_d = best_d.to(tl.int32) + 1
            best_d = tl.where(window == NEG, 0, best_d)
        else:
            part_s = tl.load(scr_s + lab_rows_safe, mask=lab_rows_ok, other=0.0)
            run_m = tl.max(part_m, axis=1)
            safe = tl.where(run_m == NEG, 0.0, run_m)
            run_s = tl.sum(part_s * tl.exp(part_m - safe[:, None]), axis=1)
            window = tl.where(run_m == NEG, NEG, run_m + tl.log(run_s))
        alpha = S_next + window + eb
        alpha = tl.where(cmask, alpha, NEG)
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
                                             SS, LS)
            lognorm += shift.to(tl.float64)
            S = tl.zeros([CB], dtype=tl.float32)
            if STORE:
                if t + 1 < c_hi:
                    tl.store(norm_out_ptr + b64 * NBLK + (t + 1) // BLOCK, lognorm)
            tl.debug_barrier()

    if active:
        scan_hand_over(st_out_ptr + st_base, growth_ptr, prog, ring, alpha, lognorm, c_hi, K,
                       CB, cmask, SS, LS)
