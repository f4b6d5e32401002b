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

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from genoseg_kernels.scan import semicrf_scan_kernel

NEG_INF = float("-inf")
BLOCK = 32  # positions between re-basings of the prefix sums (as in the reference)
ATOL = 1e-4
RTOL = 1e-5


def interpreting() -> bool:
    import os
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
    em: torch.Tensor  # (B, T, C) float32, zero-centred per sequence and label, 0 past lengths
    mu: torch.Tensor  # (B, C) float32: the centring, folded into durations as mu * d
    sb: torch.Tensor | None
    eb: torch.Tensor | None
    me: torch.Tensor | None  # (B, T, C) int32 max_end per start (user limit and -inf emissions)
    ms: torch.Tensor | None  # (B, T, C) int32 min_start per last base
    trans: torch.Tensor  # (C, C) float32
    dur: torch.Tensor  # (K, C) float32
    init: torch.Tensor  # (C,)
    final: torch.Tensor  # (C,)


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
        if x is None:
            return None
        if x.shape != (B, T, C):
            raise ValueError(f"{name} must be (B, T, C) = {(B, T, C)}, got {tuple(x.shape)}")
        x = x.to(torch.float32)
        if valid is not None:
            x = torch.where(valid, x, torch.full((), fill, dtype=torch.float32, device=dev))
        _check_finite_or_neg_inf(name, x)
        return x.contiguous()

    em = per_position("emissions", emissions, 0.0)
    sb = per_position("start_bias", start_bias, 0.0)
    eb = per_position("end_bias", end_bias, 0.0)
    forbidden = torch.isneginf(em)
    any_forbidden = bool(forbidden.any())
    em_finite = torch.where(forbidden, torch.zeros((), device=dev), em) if any_forbidden else em
    # Zero-centre per sequence and label (exact: mu * d moves into the duration score).
    count = lengths[:, None].to(torch.float32)
    if any_forbidden:
        count = (~forbidden).sum(dim=1).clamp(min=1).to(torch.float32)
    mu = (em_finite.sum(dim=1, dtype=torch.float64) / count).to(torch.float32)
    em = em_finite - mu[:, None, :]
    if valid is not None:
        em = torch.where(valid, em, torch.zeros((), device=dev))
    em = em.contiguous()

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
    return Prepared(B=B, T=T, C=C, K=K, lengths=lengths, em=em, mu=mu.contiguous(), sb=sb, eb=eb,
                    me=me, ms=ms, trans=trans, dur=dur, init=vector("init", init),
                    final=vector("final", final))


def reversed_problem(emissions, transitions, durations, lengths=None, init=None, final=None,
                     start_bias=None, end_bias=None, max_end=None) -> Prepared:
    """The same problem on the reversed sequences: the backward pass is this problem's forward.

    Position t of sequence b maps to L_b - 1 - t. Start and end biases swap, transitions are
    transposed, init and final swap, and a limit on where a segment may end given its start
    (max_end) becomes a limit on where it may start given its last base (min_start)."""
    B, T, C = emissions.shape
    dev = emissions.device
    L = (torch.full((B,), T, dtype=torch.int64, device=dev) if lengths is None
         else torch.as_tensor(lengths, device=dev).to(torch.int64))
    if L.shape == (B,) and bool((L == T).all()):
        def flip(x):
            return None if x is None else x.flip(1)
    else:
        t = torch.arange(T, device=dev)[None, :]
        idx = (L[:, None] - 1 - t).clamp(0, T - 1)  # (B, T)

        def flip(x):
            if x is None:
                return None
            return torch.gather(x, 1, idx[..., None].expand(B, T, x.shape[2]))

    min_start = None
    if max_end is not None:
        if max_end.shape != (B, T, C):
            raise ValueError(f"max_end must be (B, T, C) = {(B, T, C)}, got {tuple(max_end.shape)}")
        me = max_end.to(torch.int64).clamp(-1, T + 1)
        min_start = flip(L[:, None, None] - me)
    return prepare(flip(emissions), transitions.t(), durations, lengths, init=final, final=init,
                   start_bias=flip(end_bias), end_bias=flip(start_bias), min_start=min_start)


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
    bp_prev: torch.Tensor | None = None  # (B, T, C) int32
    bp_dur: torch.Tensor | None = None  # (B, T, C) int32, durations 1..K
    gdur: torch.Tensor | None = None  # (B, K, C) float32 expected duration counts (GRAD_DUR)


def _tiles(K: int, C: int) -> tuple[int, int, int, int]:
    CB = triton.next_power_of_2(C)
    KT = max(1, min(triton.next_power_of_2(K + 1), max(1, 2048 // CB)))
    NKT = -(-(K + 1) // KT)
    num_warps = 4 if KT * CB >= 512 else (2 if KT * CB >= 128 else 1)
    return CB, KT, NKT, num_warps


def choose_chunk(B: int, T: int, K: int, device: torch.device) -> int:
    """Chunk length: enough programs to fill the card a few times over, but chunks of at least
    4K positions (shorter ones mostly burn passes)."""
    if device.type != "cuda" or interpreting():
        return -(-T // BLOCK) * BLOCK
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    per_seq = max(1, -(-4 * sms // B))
    chunk = max(4 * K, 1024, -(-T // per_seq))
    return -(-chunk // BLOCK) * BLOCK


def _flat_guess(B: int, NC: int, K: int, CB: int, C: int, chunk: int, dev) -> torch.Tensor:
    """Start states: exact for chunk 0 (nothing open, no alpha), flat (all zero) elsewhere, with
    the two stale ring slots and any slot of a position before 0 at -inf."""
    R1 = K + 1
    st = torch.zeros((B, NC, K + 2, CB), dtype=torch.float32, device=dev)
    st[..., C:] = NEG_INF
    c = torch.arange(NC, device=dev) * chunk  # chunk starts
    slots = torch.arange(R1, device=dev)
    # Position held by each slot at chunk start c: the one in [c - K - 1, c - 1] congruent to it.
    pos = c[:, None] - 1 - ((c[:, None] - 1 - slots[None, :]) % R1)
    dm = c[:, None] - pos  # 1 .. K + 1
    dead = (dm > K - 1) | (pos < 0)  # live: positions (c - K, c - 1]
    st[:, :, :R1][dead[None].expand(B, NC, R1)] = NEG_INF
    st[:, 0] = NEG_INF
    return st


def _close(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, NC') bool: states equal to float32 rounding (see module docstring)."""
    a_inf, b_inf = torch.isneginf(a), torch.isneginf(b)
    both = ~a_inf & ~b_inf
    gap = torch.where(both, -a, torch.zeros_like(a)).clamp(min=0)
    diff = torch.where(both, (a - b).abs(), torch.zeros_like(a))
    ok = (a_inf == b_inf) & (diff <= ATOL + RTOL * gap)
    return ok.flatten(2).all(dim=2)


def scan(p: Prepared, *, is_max: bool, store: bool = False, chunk: int | None = None,
         grad_dur: dict | None = None, max_passes: int | None = None) -> ScanResult:
    B, T, C, K = p.B, p.T, p.C, p.K
    dev = p.em.device
    chunk = chunk or choose_chunk(B, T, K, dev)
    if chunk % BLOCK:
        raise ValueError(f"chunk must be a multiple of {BLOCK}")
    NC = -(-T // chunk)
    NBLK = -(-T // BLOCK)
    CB, KT, NKT, num_warps = _tiles(K, C)
    f32 = dict(dtype=torch.float32, device=dev)
    st_in = _flat_guess(B, NC, K, CB, C, chunk, dev)
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
        if is_max:
            bp_prev = torch.zeros((B, T, C), dtype=torch.int32, device=dev)
            bp_dur = torch.zeros((B, T, C), dtype=torch.int32, device=dev)
    gd = grad_dur or {}
    gdur = torch.zeros((B, NC, K, CB), **f32) if grad_dur else dummy_f
    if grad_dur:
        st_in = grad_dur["start_states"]
        active = exists.to(torch.int32).contiguous()

    passes = 0
    limit = max_passes or (NC + 1)
    while True:
        grid = (NC, B)
        semicrf_scan_kernel[grid](
            p.em, p.sb if p.sb is not None else dummy_f, p.eb if p.eb is not None else dummy_f,
            p.me if p.me is not None else dummy_i, p.ms if p.ms is not None else dummy_i,
            p.trans, p.dur, p.mu, p.init, p.final, p.lengths,
            st_in, st_out, growth, zend, active,
            start_out if store else dummy_f, alpha_out if store else dummy_f, norm_out,
            bp_prev if bp_prev is not None else dummy_i, bp_dur if bp_dur is not None else dummy_i,
            gdur, gd.get("fwd_start", dummy_f), gd.get("fwd_norm", dummy_d),
            gd.get("offsets", dummy_d), gd.get("logz", dummy_d),
            T, NC, NBLK,
            K=K, C=C, CB=CB, KT=KT, NKT=NKT, BLOCK=BLOCK, CHUNK=chunk,
            IS_MAX=is_max, HAS_SB=p.sb is not None, HAS_EB=p.eb is not None,
            HAS_ME=p.me is not None, HAS_MS=p.ms is not None, STORE=store,
            GRAD_DUR=bool(grad_dur), num_warps=num_warps,
        )
        passes += 1
        if NC == 1 or grad_dur:
            break
        ok = _close(st_out[:, :-1, :, :C], st_in[:, 1:, :, :C])
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
    res.final_states = st_in  # the converged start states (for a later gradient pass)
    if store:
        blk_chunk = (torch.arange(NBLK, device=dev) * BLOCK) // chunk
        res.norm = norm_out + offsets[:, blk_chunk]
        res.start, res.alpha, res.bp_prev, res.bp_dur = start_out, alpha_out, bp_prev, bp_dur
    if grad_dur:
        res.gdur = gdur[..., :C].sum(dim=1)  # (B, K, C)
    return res
