"""Input preparation and the chunk-parallel driver around the scan kernel.

One long sequence must keep the whole GPU busy, so it is cut into chunks that all run at once.
Chunk 0 starts from the exact initial state; every other chunk starts from a guess (a flat state).
After a pass, each chunk's start state is compared with its predecessor's end state; chunks whose
start was wrong rerun from that end state. Because the recursion is linear in the log semiring
(and in max-plus), a chunk started from a wrong state converges to the right state up to an
additive constant, so after a few passes every start state matches and the stitched scan equals
the sequential one. Pass k makes at least the first k chunks exact, so the loop always ends.
log Z is the sum of the chunks' log growth factors plus the last chunk's final term.

The comparison is matched to float32 rounding: entries must agree to ``ATOL + RTOL * |gap|``
(gap = distance below the state's maximum; both states are normalised to maximum 0) and -inf
entries must agree exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton

from genoseg_kernels import sparse
from genoseg_kernels.scan import semicrf_scan_kernel
from genoseg_kernels.scan_sparse import semicrf_sparse_scan_kernel

NEG_INF = float("-inf")
BLOCK = 32  # positions between re-basings of the prefix sums (as in the reference)
ATOL = 1e-4
RTOL = 1e-5
# Programs per SM when a sequence is cut into chunks: each program's step is a chain of
# dependent loads and reductions, so several per SM hide each other's latency.
PROGRAMS_PER_SM = 8


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Validated kernel inputs, batch-major (B, T, C), float32 scores, int32 limits."""

    B: int
    T: int
    C: int
    K: int
    lengths: torch.Tensor  # (B,) int64 on the device
    em: torch.Tensor  # (B, T, C) float32 (-inf entries zeroed: they became max_end limits)
    mu: torch.Tensor  # (B, C) float32 per-label mean: kernels use em - mu, durations + mu * d
    sb: torch.Tensor | None
    eb: torch.Tensor | None
    # (B, T, C) int32 max_end per start (user limit and -inf emissions); (B, C, T) label-major
    # under a sparse plan, whose kernels read it one label's run of starts at a time.
    me: torch.Tensor | None
    ms: torch.Tensor | None  # (B, T, C) int32 min_start per last base
    trans: torch.Tensor  # (C, C) float32
    dur: torch.Tensor  # (K, C) float32
    init: torch.Tensor  # (C,)
    final: torch.Tensor  # (C,)
    # Sparse window (sparse.py), when the -inf pattern of dur and trans makes it pay: the plan,
    # each cell's score (B, NRP, W) and the transition lists (CB, P), (CB, Q).
    plan: sparse.SparsePlan | None = None
    cells: torch.Tensor | None = None
    tpred: torch.Tensor | None = None
    tsucc: torch.Tensor | None = None


def _check_finite_or_neg_inf(name: str, x: torch.Tensor) -> None:
    if torch.isnan(x).any() or torch.isposinf(x).any():
        raise ValueError(f"{name} holds NaN or +inf (use -inf for forbidden)")


def prepare(emissions, transitions, durations, lengths=None, init=None, final=None,
            start_bias=None, end_bias=None, max_end=None, min_start=None) -> Prepared:
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, T, C), got shape {tuple(emissions.shape)}")
    B, T, C = emissions.shape
    if B < 1 or T < 1 or C < 1:
        raise ValueError(f"emissions must have B, T, C >= 1, got {(B, T, C)}")
    if transitions.shape != (C, C):
        raise ValueError(f"transitions must be (C, C) = {(C, C)}, got {tuple(transitions.shape)}")
    if durations.dim() != 2 or durations.shape[1] != C or durations.shape[0] < 1:
        raise ValueError(f"durations must be (K, C) with C = {C}, got {tuple(durations.shape)}")
    if T >= 2**31 - 2:
        raise ValueError(f"T = {T} is beyond the int32 limits the kernels use")
    K = durations.shape[0]
    dev = emissions.device
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=dev)
    else:
        lengths = torch.as_tensor(lengths, device=dev).to(torch.int64)
        if lengths.shape != (B,):
            raise ValueError(f"lengths must be (B,) = ({B},), got {tuple(lengths.shape)}")
        if (lengths < 1).any() or (lengths > T).any():
            raise ValueError(f"lengths must lie in [1, T={T}], got {lengths.tolist()}")
    ragged = bool((lengths != T).any())
    valid = (torch.arange(T, device=dev)[None, :] < lengths[:, None])[..., None] if ragged else None

    def per_position(name, x, fill):
        """float32, contiguous, junk past the lengths replaced: no copy of a clean float32 input."""
        if x is None:
            return None
        if x.shape != (B, T, C):
            raise ValueError(f"{name} must be (B, T, C) = {(B, T, C)}, got {tuple(x.shape)}")
        x = x.to(torch.float32)
        if valid is not None:
            x = torch.where(valid, x, torch.full((), fill, dtype=torch.float32, device=dev))
        if not bool(torch.isfinite(x).all()):
            _check_finite_or_neg_inf(name, x)
        return x.contiguous()

    em = per_position("emissions", emissions, 0.0)
    sb = per_position("start_bias", start_bias, 0.0)
    eb = per_position("end_bias", end_bias, 0.0)
    forbidden = torch.isneginf(em) if not bool(torch.isfinite(em).all()) else None
    any_forbidden = forbidden is not None
    if any_forbidden:
        em = torch.where(forbidden, torch.zeros((), device=dev), em).contiguous()
    # Zero-centre per sequence and label (exact: mu * d moves into the duration score). The
    # kernels subtract mu as they load, so the emissions are never copied for it.
    count = lengths[:, None].to(torch.float32)
    if any_forbidden:
        count = (~forbidden).sum(dim=1).clamp(min=1).to(torch.float32)
    mu = em.sum(dim=1) / count

    def limits(name, x, fill):
        if x is None:
            return None
        if x.shape != (B, T, C):
            raise ValueError(f"{name} must be (B, T, C) = {(B, T, C)}, got {tuple(x.shape)}")
        x = x.to(torch.int64).clamp(-1, T + 1).to(torch.int32)
        if valid is not None:
            x = torch.where(valid, x, torch.full((), fill, dtype=torch.int32, device=dev))
        return x.contiguous()

    me = limits("max_end", max_end, T)
    ms = limits("min_start", min_start, 0)
    if any_forbidden:
        # A -inf emission forbids every segment of that label covering the position: a segment
        # starting at s must end at or before the first forbidden position at or after s.
        pos = torch.arange(T, device=dev, dtype=torch.int32)[None, :, None].expand(B, T, C)
        first_bad = torch.where(forbidden, pos, torch.full((), T, dtype=torch.int32, device=dev))
        reach = first_bad.flip(1).cummin(dim=1).values.flip(1)
        me = reach.contiguous() if me is None else torch.minimum(me, reach).contiguous()

    def vector(name, x):
        if x is None:
            return torch.zeros(C, dtype=torch.float32, device=dev)
        if x.shape != (C,):
            raise ValueError(f"{name} must be (C,) = ({C},), got {tuple(x.shape)}")
        x = x.to(torch.float32).contiguous()
        _check_finite_or_neg_inf(name, x)
        return x

    trans = transitions.to(torch.float32).contiguous()
    _check_finite_or_neg_inf("transitions", trans)
    dur = durations.to(torch.float32).contiguous()
    _check_finite_or_neg_inf("durations", dur)
    p = Prepared(B=B, T=T, C=C, K=K, lengths=lengths, em=em, mu=mu.contiguous(), sb=sb, eb=eb,
                 me=me, ms=ms, trans=trans, dur=dur, init=vector("init", init),
                 final=vector("final", final))
    p.plan = sparse.use_sparse(dur, trans)
    if p.plan is not None:
        p.cells = sparse.cell_scores(p.plan, dur, p.mu)
        p.tpred, p.tsucc = sparse.trans_lists(p.plan, trans)
        if p.me is not None:
            p.me = p.me.transpose(1, 2).contiguous()
    return p


# ----------------------------------------------------------------------------------------------
# The chunk-parallel scan
# ----------------------------------------------------------------------------------------------


@dataclass
class ScanResult:
    score: torch.Tensor  # (B,) float64: log Z (or the best score), -inf where nothing is valid
    passes: int
    chunk: int
    offsets: torch.Tensor  # (B, NC) float64: absolute log-normaliser at each chunk start
    start: torch.Tensor | None = None  # (B, T, C) start messages, frame values (STORE)
    alpha: torch.Tensor | None = None  # (B, T, C) row t holds alpha[t + 1], frame values (STORE)
    norm: torch.Tensor | None = None  # (B, NBLK) float64 absolute normaliser of each block
    bp_prev: torch.Tensor | None = None  # (B, T, C) int32 (STORE_BP)
    bp_dur: torch.Tensor | None = None  # (B, T, C) int32, durations 1..K (STORE_BP)
    # (B, NC, CB) alpha at each chunk's right end (its last position or the sequence end), up
    # to a constant per chunk: where the traceback enters each chunk. Padding columns are junk.
    ends: torch.Tensor | None = None


def _tiles(K: int, C: int, outside: bool = False) -> tuple[int, int, int, int]:
    CB = triton.next_power_of_2(C)
    KT = max(1, min(triton.next_power_of_2(K + 1), max(1, 2048 // CB)))
    NKT = -(-(K + 1) // KT)
    # Warps per program, measured on an H200 (benchmarks/NOTES_semicrf.md): one when the window
    # is one tile (no cross-warp barrier in the step); for the scan two up to 3 tiles and four
    # beyond ((1, 1e5, 1000, 24) forward 316 -> 192 ms with 4; (8, 1e5, 256, 16) 20 -> 24 ms);
    # the outside scan does twice the work per tile and wants four from 2 tiles on.
    if NKT == 1:
        num_warps = 1
    elif outside:
        num_warps = 4
    else:
        num_warps = 2 if NKT <= 3 else 4
    num_warps = int(os.environ.get("GENOSEG_NUM_WARPS", num_warps))  # for tuning runs
    return CB, KT, NKT, num_warps


def _sparse_warps(plan: sparse.SparsePlan) -> int:
    """Warps of a sparse program: one for a single small tile, eight for a tile of 4096
    elements or more (the gene grammar's 8192-element tile: 9.2 s with 4 warps, 5.7 s with 8
    for the fly test set's scans on an H100), else four."""
    n = int(os.environ.get("GENOSEG_NUM_WARPS", 0))
    if n:
        return n
    if plan.NRT == 1 and plan.NRP * plan.W <= 512:
        return 1
    return 8 if plan.RT * plan.W >= 4096 else 4


def choose_chunk(B: int, T: int, K: int, device: torch.device) -> int:
    """Chunk length: enough programs to fill the card a few times over, but chunks of at least
    4K positions (shorter ones mostly burn passes)."""
    if device.type != "cuda" or interpreting():
        return -(-T // BLOCK) * BLOCK
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    per_sm = int(os.environ.get("GENOSEG_PROGRAMS_PER_SM", PROGRAMS_PER_SM))
    per_seq = max(1, -(-per_sm * sms // B))
    chunk = max(4 * K, 1024, -(-T // per_seq))
    return -(-chunk // BLOCK) * BLOCK


def ring_view(st: torch.Tensor, K: int, label_major: bool) -> torch.Tensor:
    """The ring part of chunk states (B, NC, K + 2, CB) as (B, NC, K + 1, CB) [slot, label],
    whatever its memory layout: slot-major (the dense kernels) or label-major (the sparse ones,
    ``sparse.py``, "Layout"). Row K + 1 of a state, the end row, is always label-contiguous."""
    B, NC, _, CB = st.shape
    ring = st[:, :, :K + 1]
    if label_major:
        ring = ring.view(B, NC, CB, K + 1).transpose(2, 3)
    return ring


def _flat_guess(B: int, NC: int, K: int, CB: int, C: int, chunk: int, dev,
                label_major: bool = False) -> torch.Tensor:
    """Start states: exact for chunk 0 (nothing open, no alpha), flat (all zero) elsewhere, with
    the two stale ring slots and any slot of a position before 0 at -inf."""
    R1 = K + 1
    st = torch.zeros((B, NC, K + 2, CB), dtype=torch.float32, device=dev)
    ring = ring_view(st, K, label_major)
    ring[..., C:] = NEG_INF
    st[:, :, R1, C:] = NEG_INF
    c = torch.arange(NC, device=dev) * chunk  # chunk starts
    slots = torch.arange(R1, device=dev)
    # Position held by each slot at chunk start c: the one in [c - K - 1, c - 1] congruent to it.
    pos = c[:, None] - 1 - ((c[:, None] - 1 - slots[None, :]) % R1)
    dm = c[:, None] - pos  # 1 .. K + 1
    dead = (dm > K - 1) | (pos < 0)  # live: positions (c - K, c - 1]
    ring[dead[None].expand(B, NC, R1)] = NEG_INF
    st[:, 0] = NEG_INF
    return st


def _states_close(a: torch.Tensor, b: torch.Tensor, K: int, C: int, label_major: bool
                  ) -> torch.Tensor:
    """(B, NC') bool: chunk states a and b (B, NC', K + 2, CB) equal to float32 rounding over
    their C real labels (``_close``), ring and end row."""
    ring = _close(ring_view(a, K, label_major)[..., :C], ring_view(b, K, label_major)[..., :C])
    return ring & _close(a[:, :, K + 1:, :C], b[:, :, K + 1:, :C])


def _close(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, NC') bool: states equal to float32 rounding (see module docstring)."""
    a_inf, b_inf = torch.isneginf(a), torch.isneginf(b)
    both = ~a_inf & ~b_inf
    gap = torch.where(both, -a, torch.zeros_like(a)).clamp(min=0)
    diff = torch.where(both, (a - b).abs(), torch.zeros_like(a))
    ok = (a_inf == b_inf) & (diff <= ATOL + RTOL * gap)
    return ok.flatten(2).all(dim=2)


# Back-pointers are int32. int16 ones (half the bytes) lost elements on an H200 under Triton 3.6
# when the label axis was masked (C not a power of two): the Viterbi scores were right but some
# stored durations read 0, and the GPU run of the traceback test hung on one (session 5). The
# interpreter never showed it.
BACKPOINTER_DTYPE = torch.int32


def scan(p: Prepared, *, is_max: bool, store: bool = False, store_bp: bool = False,
         chunk: int | None = None, max_passes: int | None = None) -> ScanResult:
    """``store``: keep the messages the outside scan reads. ``store_bp`` (max only): keep the
    back-pointers and chunk-end alphas the traceback reads."""
    if store_bp and not is_max:
        raise ValueError("back-pointers exist only for the max semiring")
    B, T, C, K = p.B, p.T, p.C, p.K
    dev = p.em.device
    chunk = chunk or choose_chunk(B, T, K, dev)
    if chunk % BLOCK:
        raise ValueError(f"chunk must be a multiple of {BLOCK}")
    NC = -(-T // chunk)
    NBLK = -(-T // BLOCK)
    CB, KT, NKT, num_warps = _tiles(K, C)
    f32 = dict(dtype=torch.float32, device=dev)
    plan = p.plan
    scratch = None
    if plan is not None:
        num_warps = _sparse_warps(plan)
        scratch = torch.empty((B * NC, CB + 2 * plan.NRP), **f32)
    st_in = _flat_guess(B, NC, K, CB, C, chunk, dev, label_major=plan is not None)
    st_out = torch.empty_like(st_in)
    growth = torch.zeros((B, NC), dtype=torch.float64, device=dev)
    zend = torch.full((B,), NEG_INF, dtype=torch.float64, device=dev)
    starts = torch.arange(NC, device=dev) * chunk
    exists = starts[None, :] < p.lengths[:, None]  # (B, NC)
    active = exists.to(torch.int32).contiguous()
    dummy_f = torch.empty(1, **f32)
    dummy_i = torch.empty(1, dtype=torch.int32, device=dev)
    dummy_d = torch.empty(1, dtype=torch.float64, device=dev)
    start_out = alpha_out = bp_prev = bp_dur = None
    norm_out = dummy_d
    if store:
        start_out = torch.empty((B, T, C), **f32)
        alpha_out = torch.empty((B, T, C), **f32)
        norm_out = torch.zeros((B, NBLK), dtype=torch.float64, device=dev)
    if store_bp:
        bp_prev = torch.zeros((B, T, C), dtype=BACKPOINTER_DTYPE, device=dev)
        bp_dur = torch.zeros((B, T, C), dtype=BACKPOINTER_DTYPE, device=dev)

    passes = 0
    limit = max_passes or (NC + 1)
    while True:
        grid = (NC, B)
        inputs = (p.em, p.sb if p.sb is not None else dummy_f,
                  p.eb if p.eb is not None else dummy_f,
                  p.me if p.me is not None else dummy_i, p.ms if p.ms is not None else dummy_i)
        outputs = (st_in, st_out, growth, zend, active,
                   start_out if store else dummy_f, alpha_out if store else dummy_f, norm_out,
                   bp_prev if bp_prev is not None else dummy_i,
                   bp_dur if bp_dur is not None else dummy_i)
        flags = dict(IS_MAX=is_max, HAS_SB=p.sb is not None, HAS_EB=p.eb is not None,
                     HAS_ME=p.me is not None, HAS_MS=p.ms is not None, STORE=store,
                     STORE_BP=store_bp, num_warps=num_warps)
        if plan is None:
            semicrf_scan_kernel[grid](
                *inputs, p.trans, p.dur, p.mu, p.init, p.final, p.lengths, *outputs,
                T, NC, NBLK, chunk, K=K, C=C, CB=CB, KT=KT, NKT=NKT, BLOCK=BLOCK, **flags)
        else:
            semicrf_sparse_scan_kernel[grid](
                *inputs, p.mu, p.init, p.final, p.lengths,
                plan.pred, p.tpred, plan.row_lab, plan.cell_dm1, p.cells, plan.lab_rows,
                *outputs, scratch, T, NC, NBLK, chunk, K=K, C=C, CB=CB, KT=KT, NKT=NKT,
                BLOCK=BLOCK, W=plan.W, RT=plan.RT, NRT=plan.NRT, NRP=plan.NRP, RMAX=plan.RMAX,
                P=plan.P, **flags)
        passes += 1
        if NC == 1:
            break
        ok = _states_close(st_out[:, :-1], st_in[:, 1:], K, C, label_major=plan is not None)
        wrong = exists[:, 1:] & ~ok
        if not bool(wrong.any()):
            break
        if passes >= limit:
            raise RuntimeError(f"chunked scan did not converge in {passes} passes")
        src = st_out[:, :-1]
        st_in[:, 1:][wrong] = src[wrong]
        active = torch.zeros((B, NC), dtype=torch.int32, device=dev)
        active[:, 1:] = wrong.to(torch.int32)

    offsets = torch.zeros((B, NC), dtype=torch.float64, device=dev)
    if NC > 1:
        offsets[:, 1:] = torch.where(exists[:, :-1], growth[:, :-1], 0.0).cumsum(dim=1)
    last = (p.lengths - 1) // chunk
    score = offsets.gather(1, last[:, None])[:, 0] + zend
    score = torch.where(torch.isnan(score), torch.full_like(score, NEG_INF), score)
    res = ScanResult(score=score, passes=passes, chunk=chunk, offsets=offsets)
    if store:
        blk_chunk = (torch.arange(NBLK, device=dev) * BLOCK) // chunk
        res.norm = norm_out + offsets[:, blk_chunk]
        res.start, res.alpha = start_out, alpha_out
    if store_bp:
        res.bp_prev, res.bp_dur = bp_prev, bp_dur
        res.ends = st_out[:, :, K + 1].contiguous()
    return res


# ----------------------------------------------------------------------------------------------
# The chunk-parallel outside scan (marginals)
# ----------------------------------------------------------------------------------------------

P_ATOL = 2e-6  # outside states are probabilities; float32 noise on them is ~1e-7
P_RTOL = 1e-4


@dataclass
class Marginals:
    em: torch.Tensor  # (B, T, C) P(position in a segment of label c)   = d logZ / d emissions
    sb: torch.Tensor | None  # (B, T, C) P(a segment of label c starts here) = d logZ / d start_bias
    eb: torch.Tensor | None  # (B, T, C) P(a segment of label c ends here)   = d logZ / d end_bias
    trans: torch.Tensor  # (B, C, C) expected transition counts
    dur: torch.Tensor  # (B, K, C) expected segment counts per duration
    init: torch.Tensor  # (B, C)
    final: torch.Tensor  # (B, C)
    passes: int
    chunk: int


def outside(p: Prepared, fwd: ScanResult, max_passes: int | None = None, *, need_sb: bool = True,
            need_eb: bool = True) -> Marginals:
    """Marginals of every score from the forward's stored messages (``scan(..., store=True)``).
    ``need_sb`` / ``need_eb`` False: leave out the start / end marginals (None)."""
    from genoseg_kernels.outside import semicrf_outside_kernel
    from genoseg_kernels.outside_sparse import semicrf_sparse_outside_kernel

    B, T, C, K = p.B, p.T, p.C, p.K
    dev = p.em.device
    chunk = fwd.chunk
    NC = -(-T // chunk)
    NBLK = -(-T // BLOCK)
    CB, KT, NKT, num_warps = _tiles(K, C, outside=True)
    f32 = dict(dtype=torch.float32, device=dev)
    starts = torch.arange(NC, device=dev) * chunk
    exists = starts[None, :] < p.lengths[:, None]
    # Guesses: no open segment, and the label of the segment ending at the chunk's right end
    # distributed as the forward alone suggests. The chunk holding the end starts exactly.
    st_in = torch.zeros((B, NC, K + 2, CB), **f32)
    right = (starts + chunk).clamp(max=T)
    rows = torch.minimum(right[None, :].expand(B, NC), p.lengths[:, None]) - 1
    a_right = torch.gather(fwd.alpha, 1, rows[..., None].expand(B, NC, C))
    st_in[:, :, K + 1, :C] = torch.softmax(a_right, dim=2).nan_to_num(0.0)
    st_out = torch.empty_like(st_in)
    wring = torch.empty((B, NC, K + 1, CB), **f32)
    g_em = torch.zeros((B, T, C), **f32)
    g_sb = torch.zeros((B, T, C), **f32) if need_sb else None
    g_eb = torch.zeros((B, T, C), **f32) if need_eb else None
    plan = p.plan
    if plan is None:
        g_trans = torch.zeros((B, NC, CB, CB), **f32)
        g_dur = torch.zeros((B, NC, K, CB), **f32)
    else:
        # Per (label, successor) and per allowed cell; scattered to (C, C) and (K, C) below.
        g_trans = torch.zeros((B, NC, CB, plan.Q), **f32)
        g_dur = torch.zeros((B, NC, plan.NRP, plan.W), **f32)
        scratch = torch.empty((B * NC, 4 * CB + 2 * plan.NRP), **f32)
        num_warps = _sparse_warps(plan)
    g_init = torch.zeros((B, CB), **f32)
    active = exists.to(torch.int32).contiguous()
    dummy_f = torch.empty(1, **f32)
    dummy_i = torch.empty(1, dtype=torch.int32, device=dev)
    norm = fwd.norm.contiguous()
    passes = 0
    limit = max_passes or (NC + 1)
    while True:
        g_dur[active.bool()] = 0.0
        inputs = (p.em, p.sb if p.sb is not None else dummy_f,
                  p.me if p.me is not None else dummy_i, p.ms if p.ms is not None else dummy_i)
        flags = dict(HAS_SB=p.sb is not None, HAS_ME=p.me is not None, HAS_MS=p.ms is not None,
                     OUT_SB=need_sb, OUT_EB=need_eb, num_warps=num_warps)
        g_bias = (g_sb if need_sb else dummy_f, g_eb if need_eb else dummy_f)
        if plan is None:
            semicrf_outside_kernel[(NC, B)](
                *inputs, p.trans, p.dur, p.mu, p.final, p.lengths,
                fwd.start, fwd.alpha, norm, st_in, st_out, wring, active,
                g_em, *g_bias, g_trans, g_dur, g_init, T, NC, NBLK,
                chunk, K=K, C=C, CB=CB, KT=KT, NKT=NKT, BLOCK=BLOCK, **flags)
        else:
            semicrf_sparse_outside_kernel[(NC, B)](
                *inputs, p.mu, p.final, p.lengths,
                plan.pred, p.tpred, plan.succ, p.tsucc, plan.row_lab, plan.cell_dm1, p.cells,
                plan.lab_rows, fwd.start, fwd.alpha, norm, st_in, st_out, wring, active,
                scratch, g_em, *g_bias, g_trans, g_dur, g_init, T, NC, NBLK,
                chunk, K=K, C=C, CB=CB, KT=KT, NKT=NKT, BLOCK=BLOCK, W=plan.W, RT=plan.RT,
                NRT=plan.NRT, NRP=plan.NRP, RMAX=plan.RMAX, P=plan.P, Q=plan.Q, **flags)
        passes += 1
        if NC == 1:
            break
        # Chunk j starts where chunk j + 1 ended.
        a, b = (torch.cat([ring_view(x, K, plan is not None)[..., :C], x[:, :, K + 1:, :C]],
                          dim=2) for x in (st_out[:, 1:], st_in[:, :-1]))
        # Compared at mass 1, as the kernel uses them (see outside.py).
        a = a / a.sum(dim=(2, 3), keepdim=True).clamp(min=1e-30)
        b = b / b.sum(dim=(2, 3), keepdim=True).clamp(min=1e-30)
        ok = ((a - b).abs() <= P_ATOL + P_RTOL * b.abs()).flatten(2).all(dim=2)
        holds_end = (starts[None, :-1] + chunk) >= p.lengths[:, None]
        wrong = exists[:, 1:] & ~holds_end & ~ok
        if not bool(wrong.any()):
            break
        if passes >= limit:
            raise RuntimeError(f"chunked outside scan did not converge in {passes} passes")
        st_in[:, :-1][wrong] = st_out[:, 1:][wrong]
        active = torch.zeros((B, NC), dtype=torch.int32, device=dev)
        active[:, :-1] = wrong.to(torch.int32)
    idx = (p.lengths - 1)[:, None, None].expand(B, 1, C)
    a_last = torch.gather(fwd.alpha, 1, idx)[:, 0]
    g_final = torch.softmax(a_last + p.final, dim=1).nan_to_num(0.0)
    if plan is None:
        m_trans, m_dur = g_trans.sum(dim=1)[:, :C, :C], g_dur.sum(dim=1)[..., :C]
    else:
        m_trans = sparse.scatter_trans(plan, g_trans.sum(dim=1), C)
        m_dur = sparse.scatter_dur(plan, g_dur.sum(dim=1), K, C)
    return Marginals(em=g_em, sb=g_sb, eb=g_eb, trans=m_trans, dur=m_dur, init=g_init[:, :C],
                     final=g_final, passes=passes, chunk=chunk)
