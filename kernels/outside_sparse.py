"""The outside (reverse) scan over a sparse window (see ``sparse.py`` for the plan).

The same mass-preserving recursion, state layout, frames and mass pinning as ``outside.py``
(read that first); only the inner products change:

- spreading g_end over the segments that end at t touches only the allowed (duration, label)
  cells: the window's log-sum per label comes from row partials combined per label (as in
  ``scan_sparse.py``), then each cell's share goes to the start adjoint of its slot and to its
  own duration count (``g_cells``, one per cell, scattered to (K, C) by the driver);
- the flow of the start adjoints to the labels before them reads the allowed predecessors for
  each label's normaliser and the allowed successors for each label's new end adjoint, and
  counts transitions per (label, successor) (``g_succ``, scattered to (C, C) by the driver).
"""

from __future__ import annotations

import triton
import triton.language as tl

from genoseg_kernels.ring import outside_block_rebase, outside_start_state, program_span

NEG = tl.constexpr(float("-inf"))


@triton.jit
def _window_tile(rws, t, T, wring, cells_b, rowlab_ptr, celldm1_ptr, me_ptr, ms_row, seq, wj,
                 W: tl.constexpr, R1: tl.constexpr, SS: tl.constexpr, LS: tl.constexpr,
                 HAS_ME: tl.constexpr, HAS_MS: tl.constexpr):
    """Rows ``rws`` of the window at step t: each cell's label, validity, ring slot and score
    (open-segment score + duration score; -inf where not allowed)."""
    lab = tl.load(rowlab_ptr + rws)
    dm1 = tl.load(celldm1_ptr + rws[:, None] * W + wj[None, :])
    ok = (dm1 >= 0) & (dm1 <= t)
    s_pos = t - dm1
    slot = (t % R1 - dm1 + R1) % R1
    x = tl.load(wring + slot * SS + lab[:, None] * LS, mask=ok, other=NEG)
    x += tl.load(cells_b + rws[:, None] * W + wj[None, :], mask=ok, other=NEG)
    if HAS_ME:
        me = tl.load(me_ptr + seq + lab[:, None].to(tl.int64) * T + s_pos, mask=ok, other=0)
        x = tl.where(me > t, x, NEG)
    if HAS_MS:
        x = tl.where(s_pos >= tl.load(ms_row + lab)[:, None], x, NEG)
    return lab, ok, slot, tl.where(ok, x, NEG)


@triton.jit
def _row_partials(x, rws, scr_m, scr_s):
    """Each row's (max, sum of exp(x - max)) to the scratch."""
    row_m = tl.max(x, axis=1)
    safe = tl.where(row_m == NEG, 0.0, row_m)
    tl.store(scr_m + rws, row_m)
    tl.store(scr_s + rws, tl.sum(tl.exp(x - safe[:, None]), axis=1))


@triton.jit
def _label_lse(g_end, lab_rows_safe, lab_rows_ok, scr_m, scr_s, scr_lse, scr_scale, cc):
    """Each label's window log-sum from its rows' partials, and its share of g_end (0 where the
    window is empty), to the scratch."""
    part_m = tl.load(scr_m + lab_rows_safe, mask=lab_rows_ok, other=NEG)
    part_s = tl.load(scr_s + lab_rows_safe, mask=lab_rows_ok, other=0.0)
    run_m = tl.max(part_m, axis=1)
    safe = tl.where(run_m == NEG, 0.0, run_m)
    run_s = tl.sum(part_s * tl.exp(part_m - safe[:, None]), axis=1)
    tl.store(scr_lse + cc, tl.where(run_m == NEG, 0.0, run_m + tl.log(run_s)))
    tl.store(scr_scale + cc, tl.where(run_m == NEG, 0.0, g_end))


@triton.jit
def _spread(x, ok, lab, slot, rws, wj, W: tl.constexpr, SS: tl.constexpr, LS: tl.constexpr,
            gacc, gcells, scr_lse, scr_scale):
    """Each cell's share of its label's g_end, added to its start's adjoint and its count."""
    lse_r = tl.load(scr_lse + lab)
    scale_r = tl.load(scr_scale + lab)
    share = tl.where(ok, tl.exp(x - lse_r[:, None]), 0.0) * scale_r[:, None]
    ga = gacc + slot * SS + lab[:, None] * LS
    tl.store(ga, tl.load(ga, mask=ok, other=0.0) + share, mask=ok)
    gd = gcells + rws[:, None] * W + wj[None, :]
    tl.store(gd, tl.load(gd, mask=ok, other=0.0) + share, mask=ok)



@triton.jit(do_not_specialize=["T", "NC", "NBLK", "CHUNK"])
def semicrf_sparse_outside_kernel(
    # Pointers: inputs (B, T, C) and model
    em_ptr, sb_ptr, me_ptr, ms_ptr,
    mu_ptr, final_ptr, len_ptr,
    # Pointers: the plan (sparse.py)
    pred_ptr,  # (CB, P) int32 predecessors
    tpred_ptr,  # (CB, P) float32 trans[pred, c]
    succ_ptr,  # (CB, Q) int32 successors
    tsucc_ptr,  # (CB, Q) float32 trans[c', succ]
    rowlab_ptr,  # (NRP,) int32 label of each row
    celldm1_ptr,  # (NRP, W) int32 duration - 1 of each cell
    cellsc_ptr,  # (B, NRP, W) float32 duration score + mu * d of each cell
    labrows_ptr,  # (CB, RMAX) int32 rows of each label
    # Pointers: the forward's messages
    fstart_ptr, falpha_ptr, fnorm_ptr,
    # Pointers: state, scratch and outputs
    st_in_ptr, st_out_ptr, wring_ptr, active_ptr,
    scr_ptr,  # (B * NC, 4 * CB + 2 * NRP) float32 scratch
    g_em_ptr, g_sb_ptr, g_eb_ptr,
    g_succ_ptr,  # (B * NC, CB, Q) transition counts per (label, successor)
    g_cells_ptr,  # (B * NC, NRP, W) duration counts per cell
    g_init_ptr,
    # Sizes
    T, NC, NBLK, CHUNK,
    K: tl.constexpr, C: tl.constexpr, CB: tl.constexpr, KT: tl.constexpr, NKT: tl.constexpr,
    BLOCK: tl.constexpr,
    W: tl.constexpr, RT: tl.constexpr, NRT: tl.constexpr, NRP: tl.constexpr,
    RMAX: tl.constexpr, P: tl.constexpr, Q: tl.constexpr,
    # Meta-parameters
    HAS_SB: tl.constexpr, HAS_ME: tl.constexpr, HAS_MS: tl.constexpr,
    OUT_SB: tl.constexpr, OUT_EB: tl.constexpr,
):
    b64, prog, L, active, c_lo, c_hi = program_span(len_ptr, active_ptr, NC, CHUNK)

    R1: tl.constexpr = K + 1
    ROW: tl.constexpr = CB
    # Both rings are label-major, as in scan_sparse.py (a window row's cells side by side).
    SS: tl.constexpr = 1
    LS: tl.constexpr = R1
    cc = tl.arange(0, CB)
    cmask = cc < C
    st_base = prog * (K + 2) * ROW
    gacc = st_out_ptr + st_base  # ring of start adjoints (the state)
    wring = wring_ptr + prog * R1 * ROW  # ring of open-segment scores (scratch)
    seq = b64 * T * C
    holds_end = c_hi == L

    mu = tl.load(mu_ptr + b64 * C + cc, mask=cmask, other=0.0)
    # The plan's small tables live in registers for the whole chunk.
    pj = tl.arange(0, P)
    pred = tl.load(pred_ptr + cc[:, None] * P + pj[None, :])
    pred_ok = pred >= 0
    pred_safe = tl.maximum(pred, 0)
    tpred = tl.load(tpred_ptr + cc[:, None] * P + pj[None, :])
    qk = tl.arange(0, Q)
    succ = tl.load(succ_ptr + cc[:, None] * Q + qk[None, :])
    succ_ok = succ >= 0
    succ_safe = tl.maximum(succ, 0)
    tsucc = tl.load(tsucc_ptr + cc[:, None] * Q + qk[None, :])
    ri = tl.arange(0, RMAX)
    lab_rows = tl.load(labrows_ptr + cc[:, None] * RMAX + ri[None, :])
    lab_rows_ok = lab_rows >= 0
    lab_rows_safe = tl.maximum(lab_rows, 0)
    wj = tl.arange(0, W)
    rt_r = tl.arange(0, RT)
    scr = scr_ptr + prog * (4 * CB + 2 * NRP)
    scr_lse = scr  # the window's log-sum per label
    scr_scale = scr + CB  # g_end where the window is not empty
    scr_plse = scr + 2 * CB  # the transition step's log-sum per label
    scr_gstart = scr + 3 * CB  # the start adjoints at t
    scr_m = scr + 4 * CB
    scr_s = scr + 4 * CB + NRP
    cells_b = cellsc_ptr + b64 * NRP * W
    gcells = g_cells_ptr + prog * NRP * W

    # --- start state, scaled to mass 1 (as in outside.py) ------------------------------------
    # acc[c]: P(a segment of c crosses the cut right of t)
    g_end, acc = outside_start_state(st_in_ptr + st_base, gacc, active, holds_end, K, KT, NKT,
                                     CB, cmask, SS, LS)
    if holds_end:
        a_last = tl.load(falpha_ptr + seq + (L - 1) * C + cc, mask=cmask, other=NEG)
        fin = a_last + tl.load(final_ptr + cc, mask=cmask, other=NEG)
        fm = tl.max(fin, axis=0)
        fms = tl.where(fm == NEG, 0.0, fm)
        pe = tl.exp(fin - fms)
        g_end = pe / tl.maximum(tl.sum(pe, axis=0), 1e-30)
        g_end = tl.where(fm == NEG, 0.0, g_end)

    # --- fill the score ring for the first step (as in outside.py) ---------------------------
    t_first = c_hi - 1
    blk = tl.maximum(t_first, 0) // BLOCK
    fs = blk * BLOCK
    n_cur = tl.load(fnorm_ptr + b64 * NBLK + blk)
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
        tl.store(wring + (p % R1) * SS + cc * LS, w, mask=cmask)
    for p in range(c_hi - K, p_lo):
        tl.store(wring + (((p % R1) + R1) % R1) * SS + cc * LS, tl.full([CB], NEG, tl.float32),
                 mask=cmask)
    tl.debug_barrier()

    g_succ = tl.zeros([CB, Q], dtype=tl.float32)
    for i in range(c_lo, c_hi):
        t = c_hi - 1 - (i - c_lo)
        row_t = seq + t * C
        ms_row = ms_ptr + row_t
        # Loads that depend on nothing this step computes go first, so that their latency
        # overlaps the window's work: the forward's alpha row before t (the transition step)
        # and the start t - K entering the score ring.
        a_row = falpha_ptr + seq + (tl.maximum(t, 1) - 1) * C
        pair = tl.load(a_row + pred_safe, mask=pred_ok, other=NEG) + tpred  # [c, j]
        a_prev = tl.load(a_row + cc, mask=cmask, other=NEG)
        p = t - K
        has_p = p >= 0
        p_safe = tl.maximum(p, 0)
        m_p = cc < tl.where(has_p, C, 0)  # (a mask of the scalar flag upsets the interpreter)
        em_p = tl.load(em_ptr + seq + p_safe * C + cc, mask=m_p, other=0.0)
        w_p = tl.load(fstart_ptr + seq + p_safe * C + cc, mask=m_p, other=NEG)
        n_p = tl.load(fnorm_ptr + b64 * NBLK + p_safe // BLOCK)
        if HAS_SB:
            w_p += tl.load(sb_ptr + seq + p_safe * C + cc, mask=m_p, other=0.0)

        # --- the window's log-sum per label: row partials, then each label's rows; then each
        # cell's share of g_end goes to its start's adjoint and its duration count -----------
        if NRT == 1:
            # One tile: its scores stay in registers between the two halves.
            lab, ok, slot, x = _window_tile(rt_r, t, T, wring, cells_b, rowlab_ptr, celldm1_ptr,
                                            me_ptr, ms_row, seq, wj, W, R1, SS, LS, HAS_ME,
                                            HAS_MS)
            _row_partials(x, rt_r, scr_m, scr_s)
            tl.debug_barrier()
            _label_lse(g_end, lab_rows_safe, lab_rows_ok, scr_m, scr_s, scr_lse, scr_scale, cc)
            tl.debug_barrier()
            _spread(x, ok, lab, slot, rt_r, wj, W, SS, LS, gacc, gcells, scr_lse, scr_scale)
        else:
            for rt in range(NRT):
                rws = rt * RT + rt_r
                lab, ok, slot, x = _window_tile(rws, t, T, wring, cells_b, rowlab_ptr,
                                                celldm1_ptr, me_ptr, ms_row, seq, wj, W, R1,
                                                SS, LS, HAS_ME, HAS_MS)
                _row_partials(x, rws, scr_m, scr_s)
            tl.debug_barrier()
            _label_lse(g_end, lab_rows_safe, lab_rows_ok, scr_m, scr_s, scr_lse, scr_scale, cc)
            tl.debug_barrier()
            for rt in range(NRT):
                rws = rt * RT + rt_r
                lab, ok, slot, x = _window_tile(rws, t, T, wring, cells_b, rowlab_ptr,
                                                celldm1_ptr, me_ptr, ms_row, seq, wj, W, R1,
                                                SS, LS, HAS_ME, HAS_MS)
                _spread(x, ok, lab, slot, rws, wj, W, SS, LS, gacc, gcells, scr_lse, scr_scale)
        tl.debug_barrier()

        # --- the starts at t are complete --------------------------------------------------
        g_start = tl.load(gacc + (t % R1) * SS + cc * LS, mask=cmask, other=0.0)
        if OUT_EB:
            tl.store(g_eb_ptr + row_t + cc, g_end, mask=cmask)
        if OUT_SB:
            tl.store(g_sb_ptr + row_t + cc, g_start, mask=cmask)
        covered = acc + g_end.to(tl.float64)
        tl.store(g_em_ptr + row_t + cc, covered.to(tl.float32), mask=cmask)
        acc = covered - g_start.to(tl.float64)
        if t == 0:
            tl.store(g_init_ptr + b64 * CB + cc, g_start, mask=cmask)
        # --- their mass flows to the labels before them: softmax over the predecessors ------
        pm = tl.max(pair, axis=1)
        pms = tl.where(pm == NEG, 0.0, pm)
        plse = tl.where(pm == NEG, NEG, pms + tl.log(tl.sum(tl.exp(pair - pms[:, None]), axis=1)))
        tl.store(scr_plse + cc, plse)
        tl.store(scr_gstart + cc, g_start)
        tl.debug_barrier()
        # ... each label c' collects from its successors c: exp(a[c'] + trans - plse[c]) g_start[c]
        s_plse = tl.load(scr_plse + succ_safe, mask=succ_ok, other=NEG)
        s_gstart = tl.load(scr_gstart + succ_safe, mask=succ_ok, other=0.0)
        live = succ_ok & (s_plse != NEG) & (a_prev != NEG)[:, None]
        expo = tl.where(live, a_prev[:, None] + tsucc - tl.where(live, s_plse, 0.0), NEG)
        flow = tl.where(live, tl.exp(expo), 0.0) * s_gstart
        flow = tl.where(t == 0, 0.0, flow)
        g_succ += flow
        g_end = tl.sum(flow, axis=1)

        # --- ring upkeep: the start t - K enters the window, the slot of t leaves ----------
        s_back += tl.where(has_p, em_p - mu, 0.0)
        w = tl.where(has_p, w_p + (n_p - n_cur).to(tl.float32) + s_back, NEG)
        slot_p = ((p % R1) + R1) % R1
        tl.store(wring + slot_p * SS + cc * LS, w, mask=cmask)
        tl.store(gacc + slot_p * SS + cc * LS, tl.zeros([CB], dtype=tl.float32), mask=cmask)
        if (t % BLOCK == 0) & (t > c_lo):
            # Into the previous block's frame, and the mass pinned to 1 (as in outside.py).
            tl.debug_barrier()
            n_cur, s_back, g_end, acc = outside_block_rebase(
                wring, gacc, em_ptr + seq, fnorm_ptr + b64 * NBLK, t, mu, n_cur, s_back, g_end,
                C, K, KT, NKT, CB, BLOCK, cmask, SS, LS)
        tl.debug_barrier()

    if active:
        tl.store(st_out_ptr + st_base + R1 * ROW + cc, g_end, mask=cmask)
        tl.store(gacc + (c_lo % R1) * SS + cc * LS, tl.zeros([CB], dtype=tl.float32), mask=cmask)
        tl.store(g_succ_ptr + prog * CB * Q + cc[:, None] * Q + qk[None, :], g_succ)
