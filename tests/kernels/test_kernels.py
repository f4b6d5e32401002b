"""genoseg_kernels against the brute-force oracle and the float64 reference, on the CPU.

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1),
so shapes stay tiny. The kernels compute in float32; tolerances are float32-sized (1e-4 on log
scores and probabilities) against float64 truths, which a wrong recursion misses by orders of
magnitude. The same cases as the reference's tests (tests/crf/test_reference.py) are used, so
every optional input, -inf entries, junk past ragged lengths and invalid sequences are covered.
Larger shapes, T up to 1e8 and timing are in test_kernels_gpu.py (marked gpu).

Every test runs twice: on the dense kernels and on the sparse-window kernels (``sparse.py``,
forced with GENOSEG_SPARSE=1), which must give the same results on any model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from crf.test_reference import (  # noqa: E402
    CASES,
    PARAMS,
    assert_gradients_match_oracle,
    call,
    element,
    get_case,
    labels_of,
    lengths_of,
    make_case,
    oracle,
)
from genoseg.crf import reference as ref  # noqa: E402
from genoseg_kernels import api as gk  # noqa: E402
from oracles import segmentation_score  # noqa: E402

NEG_INF = float("-inf")
# On a GPU machine the same tests run the compiled kernels.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-4  # float32 kernel vs float64 truth


@pytest.fixture(params=["dense", "sparse"], autouse=True)
def window(request, monkeypatch):
    """Both kernel families: the sparse window forced on every model, or never used."""
    monkeypatch.setenv("GENOSEG_SPARSE", "1" if request.param == "sparse" else "0")
    return request.param


def _np(x):
    return x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, np.float64)


def _close(got, want, atol=ATOL, rtol=1e-5, msg=""):
    got, want = _np(got), _np(want)
    np.testing.assert_allclose(got, want,
                               rtol=rtol, atol=atol, err_msg=msg)


def kcall(fn, c, chunk=None, **override):
    """Like the reference tests' ``call``, plus the kernels' chunk length."""
    kw = {k: (v.to(DEVICE) if torch.is_tensor(v) and not v.requires_grad else v)
          for k, v in {**c, **override}.items()}
    out = fn(kw["emissions"], kw["transitions"], kw["durations"], kw["lengths"],
             init=kw["init"], final=kw["final"], start_bias=kw["start_bias"],
             end_bias=kw["end_bias"], max_end=kw["max_end"], chunk=chunk)
    return out


def _check_viterbi(c, b, seg, best):
    """seg is a valid segmentation of element b whose float64 score is the best one."""
    L, K = lengths_of(c)[b], c["durations"].shape[0]
    rows = seg.tolist()
    assert seg.dtype == torch.int64 and rows[0][0] == 0 and rows[-1][1] == L, rows
    for i, (s, t, lab) in enumerate(rows):
        assert 1 <= t - s <= K, rows
        if i:
            assert rows[i - 1][1] == s, rows
    assert segmentation_score(seg, **element(c, b)) == pytest.approx(best, rel=1e-6, abs=ATOL)
    return rows


@pytest.mark.parametrize("name", CASES)
def test_kernels_match_oracle(name):
    c = get_case(name)
    B, T, C = c["emissions"].shape
    label_post, boundary_post, logz = kcall(gk.posteriors_and_logz, c)
    plain = kcall(gk.semicrf_logz, c)  # forward only: no grad needed
    scores, segments = kcall(gk.semicrf_viterbi, c)
    assert logz.dtype == torch.float64 and label_post.shape == (B, T, C)
    assert boundary_post.shape == (B, T) and len(segments) == B
    for x in (label_post, boundary_post, logz, plain, scores):
        assert not torch.isnan(x).any(), x
    for b, o in enumerate(oracle(name)):
        mg = o["marginals"]
        best, best_seg, unique = o["viterbi"]
        if mg["logz"] == NEG_INF:
            assert logz[b].item() == NEG_INF and plain[b].item() == NEG_INF
            assert scores[b].item() == NEG_INF and tuple(segments[b].shape) == (0, 3)
            assert (label_post[b] == 0).all() and (boundary_post[b] == 0).all()
            continue
        _close(logz[b], mg["logz"], msg=f"b={b} logZ")
        _close(plain[b], mg["logz"], msg=f"b={b} logZ forward-only")
        _close(label_post[b], mg["emissions"], msg=f"b={b} label posteriors")
        _close(boundary_post[b], mg["end_bias"].sum(1), msg=f"b={b} boundary posteriors")
        _close(scores[b], best, msg=f"b={b} Viterbi score")
        rows = _check_viterbi(c, b, segments[b], best)
        if unique:
            L = lengths_of(c)[b]
            np.testing.assert_array_equal(labels_of(rows, L), labels_of(best_seg, L))


@pytest.mark.parametrize("name", CASES)
def test_kernel_gradients_match_oracle(name):
    assert_gradients_match_oracle(
        name, lambda case, **leaves: kcall(gk.semicrf_logz, case, **leaves),
        rtol=1e-5, atol=ATOL, device=DEVICE)


def test_invalid_neighbour_does_not_poison_gradients():
    c = get_case("invalid_mixed_odd_length")
    leaves = {k: c[k].clone().to(DEVICE).requires_grad_(True) for k in PARAMS}
    logz = kcall(gk.semicrf_logz, c, **leaves)
    assert torch.isinf(logz).any() and torch.isfinite(logz).any()
    logz[torch.isfinite(logz)].sum().backward()
    for k in PARAMS:
        assert not torch.isnan(leaves[k].grad).any(), k


# ----------------------------------------------------------------------------------------------
# Chunk-parallel scans: many chunks from guessed states, checked and rerun until exact


def _chunked_case():
    c = make_case(34, 2, 128, 4, 6, ragged=True, neg_inf=0.1, max_end=True, scale=2.0)
    assert 32 < int(c["lengths"][1]) < 128  # the second sequence ends inside a later chunk
    return c


def _assert_chunked_scans_match_reference(c, chunk=32):
    """logZ, every gradient, label and boundary posteriors and the Viterbi path of the kernels
    run in chunks of ``chunk`` (guessed starts), against the float64 reference. Gradients of
    -inf scores are compared as 0."""
    leaves = {k: c[k].clone().to(DEVICE).requires_grad_(True) for k in PARAMS}
    logz = kcall(gk.semicrf_logz, c, chunk=chunk, **leaves)
    passes = gk.last_stats()
    assert passes["forward"]["chunk"] == chunk and passes["forward"]["passes"] >= 2
    logz.sum().backward()
    ref_leaves = {k: c[k].clone().requires_grad_(True) for k in PARAMS}
    want = call(ref.semicrf_logz, c, **ref_leaves)
    want.sum().backward()
    _close(logz.detach(), want.detach(), msg="logZ")
    for k in PARAMS:
        _close(leaves[k].grad.nan_to_num(0.0), ref_leaves[k].grad.nan_to_num(0.0), atol=3e-4,
               msg=f"d logZ / d {k}")

    post, bpost, _ = kcall(gk.posteriors_and_logz, c, chunk=chunk)
    post_ref, bpost_ref = call(ref.semicrf_posteriors, c)
    _close(post, post_ref, msg="label posteriors")
    _close(bpost, bpost_ref, msg="boundary posteriors")

    scores, segs = kcall(gk.semicrf_viterbi, c, chunk=chunk)
    scores_ref, segs_ref = call(ref.semicrf_viterbi, c)
    _close(scores, scores_ref, msg="Viterbi score")
    for b in range(len(segs)):
        L = lengths_of(c)[b]
        got, want = labels_of(segs[b].tolist(), L), labels_of(segs_ref[b].tolist(), L)
        # Random scores make ties vanishingly unlikely: the labelling is the reference's.
        np.testing.assert_array_equal(got, want)


def test_chunked_scans_match_reference():
    _assert_chunked_scans_match_reference(_chunked_case())


def test_repeats_are_bitwise_identical():
    c = _chunked_case()
    a = kcall(gk.posteriors_and_logz, c, chunk=32)
    b = kcall(gk.posteriors_and_logz, c, chunk=32)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_emissions_accumulate_in_float32(dtype):
    c = make_case(22, 2, 12, 3, 4, junk=False)
    low = {**c, "emissions": c["emissions"].to(dtype)}
    got = kcall(gk.semicrf_logz, low)
    assert got.dtype == torch.float32
    want = call(ref.semicrf_logz, {**c, "emissions": c["emissions"].to(dtype).double()})
    _close(got, want)


def test_bad_input_is_a_clear_error():
    c = make_case(23, 1, 5, 2, 3, junk=False)
    with pytest.raises(ValueError, match="transitions must be"):
        kcall(gk.semicrf_logz, c, transitions=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="lengths must lie"):
        kcall(gk.semicrf_logz, c, lengths=torch.tensor([9]))
    bad = c["emissions"].clone()
    bad[0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        kcall(gk.semicrf_logz, c, emissions=bad)


@pytest.mark.parametrize("emission_scale,K", [(1.0, 5), (0.05, 5), (1.0, 40)])
def test_chunk_parallel_traceback_is_the_sequential_path(emission_scale, K):
    """Eight chunks walk from guessed entries; with weak emissions the walks meet late, so the
    stitch must rewrite long prefixes. The labels must be the reference's path. K = 40 > the
    scan's chunk of 32: the traceback's chunks are two scan chunks long (entries at every
    other scan chunk end)."""
    g = torch.Generator().manual_seed(31)
    B, T, C = 2, 256, 3
    em = emission_scale * torch.randn(B, T, C, generator=g, dtype=torch.float64)
    tr = torch.randn(C, C, generator=g, dtype=torch.float64)
    du = torch.randn(K, C, generator=g, dtype=torch.float64)
    lengths = torch.tensor([T, 201])
    scores, segs = gk.semicrf_viterbi(em.to(DEVICE), tr.to(DEVICE), du.to(DEVICE),
                                      lengths.to(DEVICE), chunk=32)
    want_scores, want_segs = ref.semicrf_viterbi(em, tr, du, lengths)
    _close(scores, want_scores)
    for b in range(B):
        L = int(lengths[b])
        np.testing.assert_array_equal(labels_of(segs[b].tolist(), L),
                                      labels_of(want_segs[b].tolist(), L))


# ----------------------------------------------------------------------------------------------
# Sparse windows: the plan, and a grammar-like model that fills several rows and tiles


def _grammar_like(seed=41, B=2, T=80, C=7, K=40):
    """Durations allowed every third length for some labels (like exons and codon phase), one
    length for others (like tiled pieces), all for the rest; a sparse transition graph."""
    c = make_case(seed, B, T, C, K, ragged=True, max_end=True, scale=0.5)
    d = torch.arange(K)
    allowed = torch.zeros(K, C, dtype=torch.bool)
    allowed[:, 0] = True
    allowed[(d % 3) == 2, 1] = True
    allowed[(d % 3) == 0, 2] = True
    allowed[K - 1, 3] = True
    allowed[d >= 9, 4] = True
    allowed[2, 5] = True
    allowed[:5, 6] = True
    c["durations"] = c["durations"].masked_fill(~allowed, NEG_INF)
    edges = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 3), (3, 4), (4, 0), (1, 5), (5, 6), (6, 0),
             (2, 0), (4, 4)]
    trans = torch.full((C, C), NEG_INF, dtype=torch.float64)
    for a, b in edges:
        trans[a, b] = c["transitions"][a, b]
    c["transitions"] = trans
    return c


def test_sparse_plan_holds_every_allowed_cell_once():
    from genoseg_kernels import sparse

    c = _grammar_like()
    dur, trans = c["durations"].float(), c["transitions"].float()
    p = sparse.plan(dur, trans)
    K, C = dur.shape
    seen = torch.zeros(K, C, dtype=torch.int64)
    for r in range(p.NRP):
        for d in p.cell_dm1[r].tolist():
            if d >= 0:
                seen[d, int(p.row_lab[r])] += 1
    assert torch.equal(seen, torch.isfinite(dur).long())
    assert p.cells == int(torch.isfinite(dur).sum())
    for lab in range(C):  # a label's rows are its own
        rows = [r for r in p.lab_rows[lab].tolist() if r >= 0]
        assert rows and all(int(p.row_lab[r]) == lab for r in rows)
    preds = {(int(a), lab) for lab in range(C) for a in p.pred[lab].tolist() if a >= 0}
    succs = {(lab, int(b)) for lab in range(C) for b in p.succ[lab].tolist() if b >= 0}
    allowed = {(a, b) for a, b in zip(*torch.nonzero(torch.isfinite(trans), as_tuple=True))}
    allowed = {(int(a), int(b)) for a, b in allowed}
    assert preds == allowed and succs == allowed


def test_sparse_window_is_chosen_only_where_it_pays(monkeypatch):
    """The gene grammar (80 states, K = 150: 3,109 of 12,000 cells, 228 of 6,400 transitions)
    takes the sparse window; a dense model, and a small-C model whose dense tile is cheap, keep
    the dense one."""
    from genoseg.labels.phase_crf import PhaseGrammar
    from genoseg_kernels import sparse

    monkeypatch.delenv("GENOSEG_SPARSE")
    g = PhaseGrammar(150, 40)
    neg = torch.tensor(NEG_INF)
    dur = torch.where(torch.from_numpy(g.durations_allowed()), torch.tensor(0.0), neg)
    trans = torch.where(torch.from_numpy(g.transitions_allowed()), torch.tensor(0.0), neg)
    p = sparse.use_sparse(dur, trans)
    assert p is not None and p.cells == 3109
    assert p.cost(128) < 0.3 * (151 * 128 + 128 * 128)
    dense = make_case(3, 1, 4, 7, 90)
    assert sparse.use_sparse(dense["durations"].float(), dense["transitions"].float()) is None
    small = _grammar_like(K=90)  # 38 % of the cells, but 8 columns: the dense step is cheaper
    assert sparse.use_sparse(small["durations"].float(), small["transitions"].float()) is None


def test_sparse_window_over_several_rows_and_tiles(monkeypatch, window):
    """Labels spread over several rows and rows over several tiles (small tiles forced), chunked
    with guessed starts: logZ, every gradient, posteriors and the Viterbi path against the
    float64 reference."""
    from genoseg_kernels import sparse

    monkeypatch.setattr(sparse, "TILE_ELEMENTS", 64)
    c = _grammar_like()
    if window == "sparse":
        p = sparse.plan(c["durations"].float(), c["transitions"].float())
        assert p.NRT > 1 and p.RMAX > 1, (p.NRT, p.RMAX)
    assert torch.isfinite(call(ref.semicrf_logz, c)).all()
    _assert_chunked_scans_match_reference(c)


@pytest.mark.parametrize("label_major", [False, True])
def test_ring_view_reads_slot_and_label_in_either_layout(label_major, window):
    """Chunk states as the kernels lay them out: slot-major (slot * CB + label) for the dense
    kernels, label-major (label * (K + 1) + slot) for the sparse ones; ``ring_view`` indexes
    both as [slot, label], writes through to the state, and leaves the end row alone."""
    from genoseg_kernels.chunked import ring_view

    if window == "sparse":
        pytest.skip("layout only: one run is enough")
    B, NC, K, CB = 2, 3, 5, 8
    st = torch.arange(B * NC * (K + 2) * CB, dtype=torch.float32).reshape(B, NC, K + 2, CB)
    flat = st.reshape(B, NC, -1)
    ring = ring_view(st, K, label_major)
    assert ring.shape == (B, NC, K + 1, CB)
    for slot, label in ((0, 0), (2, 5), (K, CB - 1)):
        at = label * (K + 1) + slot if label_major else slot * CB + label
        assert torch.equal(ring[:, :, slot, label], flat[:, :, at])
    ring[:, :, 1, 3] = -1.0
    at = 3 * (K + 1) + 1 if label_major else CB + 3
    assert bool((flat[:, :, at] == -1.0).all()) and int((st == -1.0).sum()) == B * NC
    assert not bool((st[:, :, K + 1] == -1.0).any())
