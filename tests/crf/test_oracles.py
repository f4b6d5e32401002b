"""Self-tests of the brute-force oracles in tests/oracles.py (no genoseg code involved)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oracles import (
    count_segmentations,
    enumerate_segmentations,
    oracle_logz,
    oracle_logz_dp,
    oracle_marginals,
    oracle_posteriors,
    oracle_viterbi,
    segmentation_score,
)

NEG_INF = float("-inf")


def _rand_model(rng, T, C, K, neg_inf=0.0):
    def g(*shape):
        x = rng.normal(size=shape)
        if neg_inf:
            x[rng.random(shape) < neg_inf] = -np.inf
        return x

    return dict(
        emissions=rng.normal(size=(T, C)), transitions=g(C, C), durations=g(K, C),
        init=g(C), final=g(C), start_bias=g(T, C), end_bias=g(T, C),
    )


@pytest.mark.parametrize("L", range(1, 8))
def test_count_c1_k_ge_l_is_power_of_two(L):
    segs = list(enumerate_segmentations(L, K=L + 2, C=1))
    assert len(segs) == 2 ** (L - 1) == count_segmentations(L, L + 2, 1)
    assert len(set(segs)) == len(segs)


@pytest.mark.parametrize("L,K,C", [(1, 1, 1), (1, 3, 4), (5, 2, 1), (5, 2, 3), (6, 3, 2), (7, 7, 2)])
def test_count_matches_closed_form_and_tiles(L, K, C):
    segs = list(enumerate_segmentations(L, K, C))
    assert len(segs) == count_segmentations(L, K, C) == len(set(segs))
    for seg in segs:
        assert seg[0][0] == 0 and seg[-1][1] == L
        assert all(a[1] == b[0] for a, b in zip(seg, seg[1:]))
        assert all(1 <= t - s <= K and 0 <= c < C for s, t, c in seg)
    if K == 2 and C == 1:
        assert len(segs) == 8  # Fibonacci: compositions of 5 into 1s and 2s


@pytest.mark.parametrize("L,K,C", [(1, 1, 1), (4, 2, 3), (6, 6, 1), (5, 3, 2)])
def test_zero_scores_logz_is_log_count(L, K, C):
    z = oracle_logz(np.zeros((L, C)), np.zeros((C, C)), np.zeros((K, C)))
    assert z == pytest.approx(math.log(count_segmentations(L, K, C)), rel=1e-12)


def test_hand_scored_segmentation():
    e = np.arange(8.0).reshape(4, 2)  # e[t, c] = 2t + c
    tr = np.array([[0.0, 10.0], [20.0, 0.0]])
    dur = np.array([[100.0, 200.0], [300.0, 400.0], [500.0, 600.0]])
    sb = np.full((4, 2), 1000.0)
    eb = np.full((4, 2), 10000.0)
    seg = [(0, 3, 1), (3, 4, 0)]
    # content (1 + 3 + 5) + 6, durations 600 + 100, transition 1->0 20, init[1] 0.5, final[0] 0.25,
    # two starts, two ends
    want = 9 + 6 + 700 + 20 + 0.5 + 0.25 + 2000 + 20000
    got = segmentation_score(seg, e, tr, dur, init=[0.0, 0.5], final=[0.25, 0.0],
                             start_bias=sb, end_bias=eb)
    assert got == want
    with pytest.raises(ValueError):
        segmentation_score([(0, 2, 1)], e, tr, dur)  # does not reach L = 4
    with pytest.raises(ValueError):
        segmentation_score([(0, 4, 1)], e, tr, dur)  # duration 4 > K = 3
    me = np.full((4, 2), 4)
    me[0, 1] = 2
    assert segmentation_score(seg, e, tr, dur, max_end=me) == NEG_INF


def test_length_ignores_tail_junk():
    rng = np.random.default_rng(0)
    m = _rand_model(rng, 6, 2, 3)
    junk = dict(m)
    for k in ("emissions", "start_bias", "end_bias"):
        junk[k] = m[k].copy()
        junk[k][4:] = np.array([np.nan, np.inf])
    me = np.full((6, 2), 99)
    me[4:] = -5
    assert oracle_logz(**junk, length=4, max_end=me) == oracle_logz(**m, length=4)
    assert oracle_logz(**m, length=4) == oracle_logz(**{k: (v[:4] if k in ("emissions", "start_bias", "end_bias") else v) for k, v in m.items()})


@pytest.mark.parametrize("seed", range(6))
def test_enumeration_agrees_with_textbook_dp(seed):
    rng = np.random.default_rng(seed)
    T, C, K = 5, 1 + seed % 3, 1 + seed % 4
    m = _rand_model(rng, T, C, K, neg_inf=0.2)
    me = rng.integers(1, T + 3, size=(T, C)) + np.arange(T)[:, None]
    L = int(rng.integers(1, T + 1))
    for kw in (dict(), dict(max_end=me)):
        z = oracle_logz(**m, length=L, **kw)
        z_dp = oracle_logz_dp(**m, length=L, **kw)
        v, seg, _ = oracle_viterbi(**m, length=L, **kw)
        v_dp = oracle_logz_dp(**m, length=L, semiring="max", **kw)
        if z == NEG_INF:
            assert z_dp == v == v_dp == NEG_INF and seg == []
        else:
            assert z_dp == pytest.approx(z, rel=1e-12, abs=1e-12)
            assert v_dp == pytest.approx(v, rel=1e-12, abs=1e-12)
            assert segmentation_score(seg, **m, length=L, **kw) == v


def test_brute_force_exp_sum_and_posteriors():
    rng = np.random.default_rng(1)
    T, C, K = 5, 2, 3
    m = _rand_model(rng, T, C, K)
    segs = list(enumerate_segmentations(T, K, C))
    scores = np.array([segmentation_score(s, **m) for s in segs])
    z = oracle_logz(**m)
    assert z == pytest.approx(math.log(np.exp(scores).sum()), rel=1e-12)
    lp, bp = oracle_posteriors(**m)
    np.testing.assert_allclose(lp.sum(1), 1.0, rtol=1e-12)
    assert bp[-1] == pytest.approx(1.0, rel=1e-12)
    assert np.all((bp >= 0) & (bp <= 1 + 1e-12))
    # expected number of segments = sum of boundary posteriors = sum of start posteriors
    p = np.exp(scores - z)
    n_seg = np.array([len(s) for s in segs])
    mg = oracle_marginals(**m)
    assert bp.sum() == pytest.approx((p * n_seg).sum(), rel=1e-12)
    assert mg["start_bias"].sum() == pytest.approx((p * n_seg).sum(), rel=1e-12)
    assert mg["transitions"].sum() == pytest.approx((p * (n_seg - 1)).sum(), rel=1e-12)
    assert mg["init"].sum() == pytest.approx(1.0) and mg["final"].sum() == pytest.approx(1.0)


def test_marginals_are_finite_difference_gradients():
    rng = np.random.default_rng(2)
    m = _rand_model(rng, 4, 2, 3, neg_inf=0.15)
    me = np.arange(4)[:, None] + rng.integers(1, 4, size=(4, 2))
    mg = oracle_marginals(**m, max_end=me)
    assert mg["logz"] > NEG_INF
    h = 1e-6
    for name in ("emissions", "transitions", "durations", "init", "final", "start_bias", "end_bias"):
        for idx in np.ndindex(m[name].shape):
            if m[name][idx] == NEG_INF:
                assert mg[name][idx] == 0.0
                continue
            up, dn = dict(m), dict(m)
            up[name] = m[name].copy()
            dn[name] = m[name].copy()
            up[name][idx] += h
            dn[name][idx] -= h
            fd = (oracle_logz(**up, max_end=me) - oracle_logz(**dn, max_end=me)) / (2 * h)
            assert mg[name][idx] == pytest.approx(fd, abs=1e-7), (name, idx)


def test_no_valid_segmentation_is_neg_inf_not_nan():
    T, C, K = 5, 2, 2
    dur = np.zeros((K, C))
    dur[0] = -np.inf  # only length-2 segments: an odd length cannot be tiled
    args = (np.zeros((T, C)), np.zeros((C, C)), dur)
    assert oracle_logz(*args) == NEG_INF
    assert oracle_logz_dp(*args) == NEG_INF
    assert oracle_viterbi(*args) == (NEG_INF, [], False)
    lp, bp = oracle_posteriors(*args)
    assert not lp.any() and not bp.any()
    # length 4 = two length-2 segments, 2 labels each
    assert oracle_logz(*args, length=4) == pytest.approx(math.log(2 ** 2), rel=1e-12)


def test_viterbi_uniqueness_flags_ties():
    T, C, K = 4, 2, 2
    e = np.zeros((T, C))
    e[:, 0] = 1.0
    # self-transitions at 0: splits of one run tie, but the labelling (all 0) is unique
    assert oracle_viterbi(e, np.zeros((C, C)), np.zeros((K, C)))[2] is True
    # two labellings exactly tied
    e2 = np.zeros((T, C))
    assert oracle_viterbi(e2, np.zeros((C, C)), np.zeros((K, C)))[2] is False
