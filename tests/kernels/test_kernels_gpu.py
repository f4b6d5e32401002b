"""genoseg_kernels on a GPU (marked gpu: skipped without CUDA; run through the device tool).

Tolerances follow flash-attention's rule: the kernel's error against the float64 reference may be
at most twice the float32 reference's own error plus a small floor. Posteriors are compared with
an absolute tolerance. Long sequences (which the reference cannot scan in reasonable time) are
checked chunk-parallel against the same kernel run as one sequential chunk.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from genoseg.crf import reference as ref  # noqa: E402
from genoseg_kernels import api as gk  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"
NEG_INF = float("-inf")


def _model(seed, B, T, K, C, *, ragged=False, extras=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    kw = dict(emissions=scale * rn(B, T, C), transitions=rn(C, C), durations=rn(K, C))
    lengths = None
    if ragged:
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = T
        for b in range(B):
            kw["emissions"][b, lengths[b]:] = float("nan")  # junk the kernels must ignore
    if extras:
        kw.update(init=rn(C), final=rn(C), start_bias=rn(B, T, C), end_bias=rn(B, T, C))
        t = torch.arange(T).view(1, T, 1)
        kw["max_end"] = t + torch.randint(1, K + 3, (B, T, C), generator=g)
        if ragged:
            for b in range(B):
                kw["start_bias"][b, lengths[b]:] = float("inf")
    kw = {k: v.to(DEV) for k, v in kw.items()}
    return kw, (None if lengths is None else lengths.to(DEV))


def _call(fn, kw, lengths, dtype=None, **extra):
    args = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
            for k, v in kw.items()}
    em, tr, du = args.pop("emissions"), args.pop("transitions"), args.pop("durations")
    return fn(em, tr, du, lengths, **args, **extra)


SHAPES = {  # (B, T, K, C, ragged, extras)
    "T1": (2, 1, 4, 3, False, True),
    "K_gt_T": (2, 5, 9, 7, True, True),
    "ragged_junk_C11": (3, 700, 20, 11, True, True),
    "C64": (1, 400, 16, 64, False, False),
    "K4096": (1, 5000, 4096, 5, False, False),
    "multi_chunk": (2, 6000, 32, 6, True, True),
}


@pytest.mark.parametrize("name", SHAPES)
def test_kernels_match_reference_on_gpu(name):
    B, T, K, C, ragged, extras = SHAPES[name]
    kw, lengths = _model(1, B, T, K, C, ragged=ragged, extras=extras)
    chunk = 1024 if name == "multi_chunk" else None
    _check_against_reference(name, kw, lengths, chunk)


def _gene_grammar_model(seed, B, T):
    """Random scores on the codon-phase gene grammar's -inf pattern (80 states, K = 150), the
    model the sparse window exists for, with every optional input."""
    from genoseg.labels.phase_crf import PhaseGrammar

    g = PhaseGrammar(150, 40)
    kw, lengths = _model(seed, B, T, 150, g.C, ragged=True, extras=True)
    neg = torch.tensor(NEG_INF, dtype=torch.float64, device=DEV)
    kw["durations"] = torch.where(torch.from_numpy(g.durations_allowed()).to(DEV),
                                  kw["durations"], neg)
    kw["transitions"] = torch.where(torch.from_numpy(g.transitions_allowed()).to(DEV),
                                    kw["transitions"], neg)
    return kw, lengths


@pytest.mark.parametrize("chunk", [None, 1024])
def test_sparse_window_matches_reference_on_gpu(chunk, monkeypatch):
    """The gene grammar's pattern takes the sparse kernels (automatically) and matches the
    reference as the dense kernels do; sequential and chunked."""
    from genoseg_kernels import sparse

    monkeypatch.delenv("GENOSEG_SPARSE", raising=False)
    kw, lengths = _gene_grammar_model(7, 2, 3000)
    assert sparse.use_sparse(kw["durations"].float(), kw["transitions"].float()) is not None
    _check_against_reference(f"gene grammar, chunk {chunk}", kw, lengths, chunk)


def test_sparse_and_dense_kernels_agree_on_gpu(monkeypatch):
    """Same model, both kernel families: log Z, gradients and posteriors to float32 rounding,
    the same Viterbi score."""
    kw, lengths = _gene_grammar_model(8, 3, 4000)
    names = ["emissions", "transitions", "durations", "start_bias", "end_bias"]
    out = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("GENOSEG_SPARSE", mode)
        leaves = {k: (v.float() if v.is_floating_point() else v).clone() for k, v in kw.items()}
        for k in names:
            leaves[k].requires_grad_(True)
        z = _call(gk.semicrf_logz, leaves, lengths)
        z.sum().backward()
        post, bpost = _call(gk.semicrf_posteriors, kw, lengths, torch.float32)
        v, _ = _call(gk.semicrf_viterbi, kw, lengths, torch.float32)
        out[mode] = dict(z=z.detach().double(), post=post, bpost=bpost, v=v.double(),
                         **{k: leaves[k].grad.nan_to_num(0.0) for k in names})
    for key in out["0"]:
        a, b = out["0"][key].double(), out["1"][key].double()
        scale = b.abs().max().item() + 1.0
        assert (a - b).abs().max().item() <= 2e-5 * scale, key


def _check_against_reference(name, kw, lengths, chunk):
    z64 = _call(ref.semicrf_logz, kw, lengths)
    z32 = _call(ref.semicrf_logz, kw, lengths, torch.float32).double()
    zk = _call(gk.semicrf_logz, kw, lengths, torch.float32, chunk=chunk).double()
    floor = 1e-6 * z64.abs().clamp(min=1.0) + 1e-5
    err, err32 = (zk - z64).abs(), (z32 - z64).abs()
    assert (err <= 2 * err32 + floor).all(), (name, err.tolist(), err32.tolist())

    post, bpost = _call(ref.semicrf_posteriors, kw, lengths)
    post32, bpost32 = _call(ref.semicrf_posteriors, kw, lengths, torch.float32)
    postk, bpostk = _call(gk.semicrf_posteriors, kw, lengths, torch.float32, chunk=chunk)
    for got, f32, want in ((postk, post32, post), (bpostk, bpost32, bpost)):
        err = (got.double() - want).abs().max().item()
        err32 = (f32.double() - want).abs().max().item()
        assert err <= 2 * err32 + 2e-4, (name, err, err32)

    v64, segs = _call(ref.semicrf_viterbi, kw, lengths)
    v32, _ = _call(ref.semicrf_viterbi, kw, lengths, torch.float32)
    vk, segsk = _call(gk.semicrf_viterbi, kw, lengths, torch.float32, chunk=chunk)
    verr, verr32 = (vk.double() - v64).abs(), (v32.double() - v64).abs()
    assert (verr <= 2 * verr32 + floor).all(), (name, verr.tolist(), verr32.tolist())
    for b_, (a, b) in enumerate(zip(segsk, segs)):
        if not torch.equal(_labels(a), _labels(b)):
            # Only a float32 near-tie may change the path: the kernel's path, scored in float64,
            # must then be as good as the best one to the float32 error bound.
            got = _path_score(kw, lengths, b_, a)
            assert abs(got - v64[b_].item()) <= 2 * verr32[b_].item() + floor[b_].item(), name


def test_gradients_match_reference_on_gpu():
    kw, lengths = _model(2, 3, 900, 24, 7, ragged=True, extras=True)
    names = ["emissions", "transitions", "durations", "init", "final", "start_bias", "end_bias"]
    grads = {}
    for impl, dtype in ((ref, None), (gk, torch.float32)):
        leaves = {k: (v.to(dtype) if dtype and v.is_floating_point() else v).clone()
                  for k, v in kw.items()}
        for k in names:
            leaves[k].requires_grad_(True)
        extra = {"chunk": 256} if impl is gk else {}
        z = _call(impl.semicrf_logz, leaves, lengths, **extra)
        torch.where(torch.isfinite(z), z, torch.zeros_like(z)).sum().backward()
        grads[impl] = {k: leaves[k].grad.double() for k in names}
    for k in names:
        scale = grads[ref][k].abs().max().item() + 1.0
        diff = (grads[gk][k] - grads[ref][k]).abs().max().item()
        assert diff <= 2e-4 * scale, (k, diff, scale)


def _path_score(kw, lengths, b, seg) -> float:
    """float64 score of one segmentation (rows start, end, label) of sequence b."""
    seg = seg.to(DEV)
    s, e, c = seg[:, 0], seg[:, 1], seg[:, 2]
    em = kw["emissions"][b].double()
    S = torch.cat([torch.zeros(1, em.shape[1], dtype=torch.float64, device=DEV), em.cumsum(0)])
    score = (S[e, c] - S[s, c]).sum() + kw["durations"].double()[e - s - 1, c].sum()
    score += kw["transitions"].double()[c[:-1], c[1:]].sum()
    if "init" in kw:
        score += kw["init"].double()[c[0]] + kw["final"].double()[c[-1]]
        score += kw["start_bias"][b].double()[s, c].sum() + kw["end_bias"][b].double()[e - 1, c].sum()
    return score.item()


def _labels(seg: torch.Tensor) -> torch.Tensor:
    if len(seg) == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.repeat_interleave(seg[:, 2], seg[:, 1] - seg[:, 0])


def test_repeats_are_bitwise_identical_on_gpu():
    kw, lengths = _model(3, 2, 20_000, 64, 16, ragged=True, extras=True)
    a = _call(gk.posteriors_and_logz, kw, lengths, torch.float32)
    b = _call(gk.posteriors_and_logz, kw, lengths, torch.float32)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("T", [2_000_000])
def test_chunk_parallel_equals_sequential(T):
    """Many chunks from guessed states, rerun until exact, against one sequential chunk."""
    kw, _ = _model(4, 1, T, 64, 16, scale=2.0)
    kw = {k: v.float() for k, v in kw.items()}
    seq_chunk = -(-T // 32) * 32
    z_seq = _call(gk.semicrf_logz, kw, None, chunk=seq_chunk)
    z_par = _call(gk.semicrf_logz, kw, None)
    stats = gk.last_stats()["forward"]
    assert stats["chunk"] < T and stats["passes"] >= 2
    rel = ((z_par.double() - z_seq.double()).abs() / z_seq.double().abs()).item()
    assert rel < 1e-6, rel
    v_seq, s_seq = _call(gk.semicrf_viterbi, kw, None, chunk=seq_chunk)
    v_par, s_par = _call(gk.semicrf_viterbi, kw, None)
    assert abs(v_par.item() - v_seq.item()) <= 1e-6 * abs(v_seq.item())
    if not torch.equal(_labels(s_par[0]), _labels(s_seq[0])):
        # Different chunkings round differently; paths may part only at float32 near-ties.
        a, b = _path_score(kw, None, 0, s_par[0]), _path_score(kw, None, 0, s_seq[0])
        assert abs(a - b) <= 1e-6 * abs(b), (a, b)


def test_hundred_million_positions():
    """B = 1, T = 1e8: two different chunkings give the same log Z."""
    T, K, C = 100_000_000, 64, 16
    g = torch.Generator(device=DEV).manual_seed(5)
    em = torch.randn(1, T, C, device=DEV, generator=g)
    tr = 0.5 * torch.randn(C, C, device=DEV, generator=g)
    du = 0.5 * torch.randn(K, C, device=DEV, generator=g)
    za = gk.semicrf_logz(em, tr, du)
    pa = gk.last_stats()["forward"]
    zb = gk.semicrf_logz(em, tr, du, chunk=pa["chunk"] * 2)
    assert torch.isfinite(za).all()
    rel = ((za.double() - zb.double()).abs() / zb.double().abs()).item()
    assert rel < 1e-6, (rel, pa)


def _compiled_variants(kernel) -> int:
    """Number of compiled variants of a Triton kernel (the attribute moved between versions)."""
    if hasattr(kernel, "device_caches"):
        return sum(len(c[0]) for c in kernel.device_caches.values())
    if hasattr(kernel, "cache"):
        return sum(len(c) for c in kernel.cache.values())
    pytest.skip("this Triton version exposes no kernel cache")


def test_new_lengths_do_not_recompile():
    from genoseg_kernels.outside import semicrf_outside_kernel
    from genoseg_kernels.scan import semicrf_scan_kernel

    def run(T, lengths=None):
        kw, _ = _model(6, 2, T, 16, 5)
        kw = {k: v.float().requires_grad_() for k, v in kw.items()}
        _call(gk.semicrf_logz, kw, lengths).sum().backward()

    run(3000)
    before = (_compiled_variants(semicrf_scan_kernel), _compiled_variants(semicrf_outside_kernel))
    run(4111, torch.tensor([4111, 977], device=DEV))
    run(123_457)
    after = (_compiled_variants(semicrf_scan_kernel), _compiled_variants(semicrf_outside_kernel))
    assert after == before, (before, after)
