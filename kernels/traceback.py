"""Viterbi traceback over the back-pointers of the max-plus scan, chunk-parallel.

A node (e, c) is "a segment of label c ends at e" (end exclusive). Its segment starts at
s = e - bp_dur[e - 1, c]; the node before it is (s, bp_prev[s, c]). The best path is the chain
of nodes from (L, best final label) back to position 0, one dependent pair of loads per segment,
so a single walker needs ~1 us per segment: seconds for a chromosome of short segments.

Chunk-parallel instead: every chunk walks from a guessed entry node at its right end (its
best-scoring label there) down to its left end, marking the nodes it visits and writing the
label of each segment at its start. Walks from different nodes coalesce after a few segments
(as the forward's chunk states do), so one sequential pass then fixes each chunk: starting from
the true entry (the right neighbour's exit), it follows the true path only until it meets a
marked node; from there the chunk's own walk was right. The prefix before the meeting point is
cleared and rewritten. If the true path never meets the chunk's walk, the fix walks the whole
chunk, so the result is always the sequential path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

NEG = tl.constexpr(float("-inf"))


@triton.jit
def _entry_label(ends_ptr, final_ptr, b, e, L, cc, cmask, NCS, SCAN_CHUNK, CB: tl.constexpr):
    """Best label of a segment ending at e, which is a scan chunk's right end (or L)."""
    row = b * NCS + (e - 1) // SCAN_CHUNK
    a = tl.load(ends_ptr + row * CB + cc, mask=cmask, other=NEG)
    fin = tl.load(final_ptr + cc, mask=cmask, other=0.0)
    a = tl.where(e == L, a + fin, a)
    return tl.argmax(a, axis=0).to(tl.int64)


@triton.jit
def _duration(bp_dur_ptr, seq, e, c, C: tl.constexpr):
    """Duration of the best segment of label c ending at e: at least 1, so that a walker can
    never stall (a valid path never reads a 0; an impossible node holds one)."""
    return tl.maximum(tl.load(bp_dur_ptr + seq + (e - 1) * C + c).to(tl.int64), 1)


@triton.jit(do_not_specialize=["T", "NC", "CHUNK", "NCS", "SCAN_CHUNK"])
def walk_chunks_kernel(bp_prev_ptr, bp_dur_ptr, ends_ptr, final_ptr, len_ptr, mark_ptr,
                       seg_ptr, exit_ptr, T, NC, NCS, SCAN_CHUNK, C: tl.constexpr,
                       CB: tl.constexpr, CHUNK):
    """Phase 1: one program per (chunk, sequence) walks from a guessed entry node."""
    j = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    L = tl.load(len_ptr + b).to(tl.int64)
    c_lo = j.to(tl.int64) * CHUNK
    e0 = tl.minimum(c_lo + CHUNK, L)
    seq = b * T * C
    cc = tl.arange(0, CB)
    cmask = cc < C
    c = _entry_label(ends_ptr, final_ptr, b, tl.maximum(e0, 1), L, cc, cmask, NCS, SCAN_CHUNK,
                     CB)
    e = e0
    exit_s = c_lo
    exit_lab = c
    while e > c_lo:
        tl.store(mark_ptr + b * (T + 1) + e, (c + 1).to(tl.int32))
        s = e - _duration(bp_dur_ptr, seq, e, c, C)
        # Selects and masked stores, not if/else: values assigned in branches inside a while
        # loop were seen to come out wrong on the GPU (Triton 3.6) while right in the interpreter.
        tl.store(seg_ptr + b * T + tl.maximum(s, 0), c.to(tl.int32), mask=s > c_lo)
        exit_s = tl.where(s > c_lo, exit_s, s)
        exit_lab = tl.where(s > c_lo, exit_lab, c)
        nxt = tl.load(bp_prev_ptr + seq + tl.maximum(s, 0) * C + c).to(tl.int64)
        c = tl.where(s > 0, nxt, c)
        e = s
    # The exit: the segment that crosses (or starts at) the left end, and the node before it.
    out = exit_ptr + (b * NC + j) * 4
    tl.store(out, exit_s)
    tl.store(out + 1, exit_lab)
    tl.store(out + 2, e)
    tl.store(out + 3, c)


@triton.jit(do_not_specialize=["T", "NC", "CHUNK", "NCS", "SCAN_CHUNK"])
def stitch_kernel(bp_prev_ptr, bp_dur_ptr, ends_ptr, final_ptr, len_ptr, mark_ptr, seg_ptr,
                  exit_ptr, T, NC, NCS, SCAN_CHUNK, C: tl.constexpr, CB: tl.constexpr, CHUNK,
                  VB: tl.constexpr):
    """Phase 2: one program per sequence fixes the chunks from right to left."""
    b = tl.program_id(0).to(tl.int64)
    L = tl.load(len_ptr + b).to(tl.int64)
    seq = b * T * C
    cc = tl.arange(0, CB)
    cmask = cc < C
    vv = tl.arange(0, VB)
    n_chunks = tl.where(L > 0, (L - 1) // CHUNK + 1, 0)
    cur_e = L
    cur_c = _entry_label(ends_ptr, final_ptr, b, tl.maximum(L, 1), L, cc, cmask, NCS,
                         SCAN_CHUNK, CB)
    pend_s = L * 0 - 1  # start of the true segment crossing into the chunk on the right
    pend_c = cur_c * 0
    for jj in range(0, n_chunks):
        j = n_chunks - 1 - jj
        c_lo = j.to(tl.int64) * CHUNK
        e0 = tl.minimum(c_lo + CHUNK, L)
        # 1. Follow the true path until it meets this chunk's own walk.
        e = cur_e
        c = cur_c
        met = tl.load(mark_ptr + b * (T + 1) + e) == (c + 1).to(tl.int32)
        while (e > c_lo) & (met == 0):
            s = e - _duration(bp_dur_ptr, seq, e, c, C)
            nxt = tl.load(bp_prev_ptr + seq + tl.maximum(s, 0) * C + c).to(tl.int64)
            c = tl.where(s > 0, nxt, c)
            e = s
            met = (e > c_lo) & (tl.load(mark_ptr + b * (T + 1) + tl.maximum(e, 0)) ==
                                (c + 1).to(tl.int32))
        meet_e = e
        # 2. Clear what the chunk's walk wrote before the meeting point ...
        lo = tl.maximum(meet_e, c_lo + 1)
        for off in range(lo, e0, VB):
            pos = off + vv
            tl.store(seg_ptr + b * T + pos, tl.full([VB], -1, tl.int32), mask=pos < e0)
        # The clearing stores come from every thread, the scalar stores below from one: order
        # them, or a cleared slot may land after the label written into it.
        tl.debug_barrier()
        # ... restore the segment crossing in from the right, and write the true prefix.
        tl.store(seg_ptr + b * T + tl.maximum(pend_s, 0), pend_c.to(tl.int32), mask=pend_s >= 0)
        e = cur_e
        c = cur_c
        while e > meet_e:
            s = e - _duration(bp_dur_ptr, seq, e, c, C)
            tl.store(seg_ptr + b * T + tl.maximum(s, 0), c.to(tl.int32), mask=s > c_lo)
            pend_s = tl.where(s > c_lo, pend_s, s)
            pend_c = tl.where(s > c_lo, pend_c, c)
            nxt = tl.load(bp_prev_ptr + seq + tl.maximum(s, 0) * C + c).to(tl.int64)
            c = tl.where(s > 0, nxt, c)
            e = s
        # 3. If the paths met, the chunk's own walk is the path from there: take its exit.
        met_here = meet_e > c_lo
        out = exit_ptr + (b * NC + j) * 4
        pend_s = tl.where(met_here, tl.load(out), pend_s)
        pend_c = tl.where(met_here, tl.load(out + 1), pend_c)
        cur_e = tl.where(met_here, tl.load(out + 2), e)
        cur_c = tl.where(met_here, tl.load(out + 3), c)
    tl.store(seg_ptr + b * T + tl.maximum(pend_s, 0), pend_c.to(tl.int32), mask=pend_s >= 0)


def traceback(bp_prev: torch.Tensor, bp_dur: torch.Tensor, ends: torch.Tensor,
              final: torch.Tensor, lengths: torch.Tensor, scan_chunk: int, K: int) -> torch.Tensor:
    """(B, T) int32: the label of every Viterbi segment at its start position, -1 elsewhere.
    ``ends`` (B, NCS, CB) holds alpha at the right end of each chunk of the scan (chunk length
    ``scan_chunk``), up to a constant. ``lengths`` is 0 for sequences with no valid
    segmentation (nothing is written)."""
    B, T, C = bp_prev.shape
    # A segment may not jump over a whole chunk, so chunks are at least K long; a multiple of
    # the scan's chunk, so that every chunk's right end has its alpha in ``ends``.
    chunk = scan_chunk * -(-K // scan_chunk) if scan_chunk < K else scan_chunk
    NC = -(-T // chunk)
    NCS = ends.shape[1]
    dev = bp_prev.device
    CB = triton.next_power_of_2(C)
    mark = torch.zeros((B, T + 1), dtype=torch.int32, device=dev)
    seg = torch.full((B, T), -1, dtype=torch.int32, device=dev)
    exits = torch.zeros((B, NC, 4), dtype=torch.int64, device=dev)
    lengths = lengths.contiguous()
    ends = ends.contiguous()
    assert ends.shape == (B, NCS, CB) and NCS == -(-T // scan_chunk)
    walk_chunks_kernel[(NC, B)](bp_prev, bp_dur, ends, final, lengths, mark, seg, exits, T, NC,
                                NCS, scan_chunk, C=C, CB=CB, CHUNK=chunk, num_warps=1)
    stitch_kernel[(B,)](bp_prev, bp_dur, ends, final, lengths, mark, seg, exits, T, NC, NCS,
                        scan_chunk, C=C, CB=CB, CHUNK=chunk, VB=128, num_warps=1)
    return seg
