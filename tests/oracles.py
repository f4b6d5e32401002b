"""Brute-force oracles for the semi-Markov CRF, written from the specification only.

Everything here works on ONE sequence (no batch dimension) in float64 with plain Python and
numpy, by enumerating every segmentation. It is exponential in the length: keep L <= 7 and the
number of segmentations (`count_segmentations`) below ~1e5.

Arguments mirror `genoseg.crf.reference` for one batch element:

    emissions   (T, C)  float   a segment's content is the sum over its positions
    transitions (C, C)  float   transitions[i, j]: a segment labelled j right after one labelled i
    durations   (K, C)  float   durations[d - 1, c]: a segment of label c and length d
    length      int | None      L (default T); positions >= L are never read
    init, final (C,)    float   added for the first / last segment's label (default 0)
    start_bias  (T, C)  float   added when a segment of label c starts at t
    end_bias    (T, C)  float   added when a segment of label c has its last base at t
    max_end     (T, C)  int     a segment of label c starting at t must end (exclusive) <= max_end[t, c]

Tensors (anything with `.detach()`) and array-likes are both accepted. A segmentation is a tuple
of `(start, end, label)` triples, end exclusive, tiling [0, L). `-inf` means forbidden; nothing
here ever produces NaN from `-inf` inputs.

`oracle_logz_dp` is a textbook O(L K C^2) forward recursion, checked against the enumeration in
tests/crf/test_oracles.py, for lengths too long to enumerate.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

NEG_INF = float("-inf")


def _np(x, dtype=np.float64):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


@dataclass(frozen=True)
class _Model:
    """One sequence's scores, cut to its length L so the padded tail cannot leak in."""

    L: int
    K: int
    C: int
    e: np.ndarray  # (L, C)
    trans: np.ndarray  # (C, C)
    dur: np.ndarray  # (K, C)
    init: np.ndarray  # (C,)
    final: np.ndarray  # (C,)
    sb: np.ndarray  # (L, C)
    eb: np.ndarray  # (L, C)
    me: np.ndarray | None  # (L, C) int64
    T: int  # padded length, for output shapes


def _model(emissions, transitions, durations, length=None, *, init=None, final=None,
           start_bias=None, end_bias=None, max_end=None) -> _Model:
    e = _np(emissions)
    T, C = e.shape
    L = T if length is None else int(length)
    if not 1 <= L <= T:
        raise ValueError(f"length {L} outside [1, {T}]")
    dur = _np(durations)
    K = dur.shape[0]
    zeros_c = np.zeros(C)
    zeros_lc = np.zeros((L, C))
    return _Model(
        L=L, K=K, C=C, T=T,
        e=e[:L].copy(),
        trans=_np(transitions),
        dur=dur,
        init=zeros_c if init is None else _np(init),
        final=zeros_c if final is None else _np(final),
        sb=zeros_lc if start_bias is None else _np(start_bias)[:L].copy(),
        eb=zeros_lc if end_bias is None else _np(end_bias)[:L].copy(),
        me=None if max_end is None else _np(max_end, np.int64)[:L].copy(),
    )


def _compositions(L: int, K: int):
    """Ordered tuples of part sizes in [1, K] summing to L."""
    if L == 0:
        yield ()
        return
    for d in range(1, min(K, L) + 1):
        for rest in _compositions(L - d, K):
            yield (d,) + rest


def enumerate_segmentations(L: int, K: int, C: int, max_end=None):
    """Yield every segmentation of [0, L) into labelled segments of length <= K.

    Each is a tuple of (start, end, label), end exclusive. If `max_end` ((>= L, C) ints) is
    given, segments with end > max_end[start, label] are skipped.
    """
    me = _np(max_end, np.int64)
    for parts in _compositions(L, K):
        bounds = list(itertools.accumulate(parts, initial=0))
        spans = list(zip(bounds[:-1], bounds[1:]))
        for labels in itertools.product(range(C), repeat=len(parts)):
            seg = tuple((s, t, c) for (s, t), c in zip(spans, labels))
            if me is not None and any(t > me[s, c] for s, t, c in seg):
                continue
            yield seg


def count_segmentations(L: int, K: int, C: int) -> int:
    """Number of segmentations without constraints: sum over compositions of C^(#parts)."""
    n = [1] + [0] * L
    for t in range(1, L + 1):
        n[t] = C * sum(n[t - d] for d in range(1, min(K, t) + 1))
    return n[L]


def _score(m: _Model, seg) -> float:
    total = 0.0
    for i, (s, t, c) in enumerate(seg):
        if m.me is not None and t > m.me[s, c]:
            return NEG_INF
        total += float(m.e[s:t, c].sum()) + m.dur[t - s - 1, c] + m.sb[s, c] + m.eb[t - 1, c]
        if i > 0:
            total += m.trans[seg[i - 1][2], c]
    total += m.init[seg[0][2]] + m.final[seg[-1][2]]
    return float(total)


def _check_tiling(m: _Model, seg) -> None:
    pos = 0
    for s, t, c in seg:
        if s != pos or not 1 <= t - s <= m.K or not 0 <= c < m.C:
            raise ValueError(f"not a segmentation of [0, {m.L}) with K={m.K}, C={m.C}: {seg}")
        pos = t
    if pos != m.L:
        raise ValueError(f"segments end at {pos}, not at length {m.L}: {seg}")


def segmentation_score(segments, emissions, transitions, durations, length=None, **kw) -> float:
    """Score of one segmentation (rows (start, end, label)); -inf if it breaks `max_end`.

    Raises ValueError if `segments` does not tile [0, L) with durations in [1, K].
    """
    m = _model(emissions, transitions, durations, length, **kw)
    seg = tuple(tuple(int(v) for v in row) for row in _np(segments, np.int64).reshape(-1, 3))
    _check_tiling(m, seg)
    return _score(m, seg)


def _scored(m: _Model):
    for seg in enumerate_segmentations(m.L, m.K, m.C, m.me):
        yield seg, _score(m, seg)


def _logsumexp(xs) -> float:
    xs = list(xs)
    mx = max(xs, default=NEG_INF)
    if mx == NEG_INF:
        return NEG_INF
    return mx + math.log(math.fsum(math.exp(x - mx) for x in xs))


def oracle_logz(emissions, transitions, durations, length=None, **kw) -> float:
    """log of the sum of exp(score) over all segmentations; -inf if none is allowed."""
    m = _model(emissions, transitions, durations, length, **kw)
    return _logsumexp(s for _, s in _scored(m))


def _labelling(seg) -> tuple:
    return tuple(c for s, t, c in seg for _ in range(s, t))


def oracle_viterbi(emissions, transitions, durations, length=None, *, margin=1e-6, **kw):
    """Return (best_score, best_segments, unique).

    best_segments is a list of (start, end, label) ([] if best_score is -inf). `unique` is True
    when the best per-position labelling beats every other labelling by more than `margin`
    (splits of one run into same-label segments count as the same labelling).
    """
    m = _model(emissions, transitions, durations, length, **kw)
    best_score, best_seg = NEG_INF, []
    by_labelling: dict[tuple, float] = {}
    for seg, s in _scored(m):
        if s == NEG_INF:
            continue
        if s > best_score:
            best_score, best_seg = s, list(seg)
        lab = _labelling(seg)
        by_labelling[lab] = max(by_labelling.get(lab, NEG_INF), s)
    top = sorted(by_labelling.values(), reverse=True)
    unique = len(top) >= 1 and (len(top) == 1 or top[0] - top[1] > margin)
    return best_score, best_seg, unique


def oracle_marginals(emissions, transitions, durations, length=None, **kw) -> dict:
    """Expected feature counts under the Gibbs distribution, i.e. d logZ / d (each score).

    Keys: logz, emissions (T, C), transitions (C, C), durations (K, C), init (C,), final (C,),
    start_bias (T, C), end_bias (T, C). Arrays are zero at/after L and all zero if logZ = -inf.
    """
    m = _model(emissions, transitions, durations, length, **kw)
    scored = [(seg, s) for seg, s in _scored(m) if s != NEG_INF]
    logz = _logsumexp(s for _, s in scored)
    out = dict(
        logz=logz,
        emissions=np.zeros((m.T, m.C)), transitions=np.zeros((m.C, m.C)),
        durations=np.zeros((m.K, m.C)), init=np.zeros(m.C), final=np.zeros(m.C),
        start_bias=np.zeros((m.T, m.C)), end_bias=np.zeros((m.T, m.C)),
    )
    if logz == NEG_INF:
        return out
    for seg, s in scored:
        w = math.exp(s - logz)
        for i, (a, b, c) in enumerate(seg):
            out["emissions"][a:b, c] += w
            out["durations"][b - a - 1, c] += w
            out["start_bias"][a, c] += w
            out["end_bias"][b - 1, c] += w
            if i > 0:
                out["transitions"][seg[i - 1][2], c] += w
        out["init"][seg[0][2]] += w
        out["final"][seg[-1][2]] += w
    return out


def oracle_posteriors(emissions, transitions, durations, length=None, **kw):
    """Return (label_post (T, C), boundary_post (T,)), zero at/after L and zero if logZ = -inf.

    label_post[t, c] = P(position t is in a segment labelled c);
    boundary_post[t] = P(some segment has its last base at t).
    """
    mg = oracle_marginals(emissions, transitions, durations, length, **kw)
    return mg["emissions"], mg["end_bias"].sum(axis=1)


def oracle_logz_dp(emissions, transitions, durations, length=None, *, semiring="logsumexp", **kw):
    """Textbook O(L K C^2) forward recursion in float64 (semiring 'logsumexp' or 'max').

    alpha[t, c] = best/total score of segmentations of [0, t) whose last segment has label c.
    Independent of enumeration; used to reach lengths the enumeration cannot.
    """
    m = _model(emissions, transitions, durations, length, **kw)
    red = (lambda v: _logsumexp(v)) if semiring == "logsumexp" else (lambda v: max(v, default=NEG_INF))
    alpha = np.full((m.L + 1, m.C), NEG_INF)
    for t in range(1, m.L + 1):
        for c in range(m.C):
            terms = []
            for d in range(1, min(m.K, t) + 1):
                s = t - d
                if m.me is not None and t > m.me[s, c]:
                    continue
                # direct sum, not prefix-sum differences: -inf emissions must not become NaN
                seg = float(m.e[s:t, c].sum()) + m.dur[d - 1, c] + m.sb[s, c] + m.eb[t - 1, c]
                if s == 0:
                    terms.append(seg + m.init[c])
                else:
                    terms.extend(alpha[s, cp] + m.trans[cp, c] + seg for cp in range(m.C))
            alpha[t, c] = red([x for x in terms if x != NEG_INF])
    return red([x for x in (alpha[m.L] + m.final) if x != NEG_INF])
