"""The reference on a CUDA device agrees with itself on the CPU (marked gpu: skipped without CUDA)."""

import math

import pytest
import torch

from genoseg.crf.reference import semicrf_logz, semicrf_posteriors, semicrf_viterbi

pytestmark = pytest.mark.gpu


def _inputs(B, T, C, K, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(B, T, C, generator=g, dtype=torch.float64) * 2
    trans = torch.randn(C, C, generator=g, dtype=torch.float64)
    trans[0, 1] = -math.inf
    dur = torch.randn(K, C, generator=g, dtype=torch.float64)
    lengths = torch.tensor([T] + [max(1, T - 7 * b) for b in range(1, B)])
    for b in range(B):
        em[b, lengths[b]:] = float("nan")  # junk past the lengths must be ignored
    sb = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    max_end = torch.randint(1, T + 1, (B, T, C), generator=g)
    max_end = torch.maximum(max_end, torch.arange(T)[None, :, None] + 1)
    to = dict(device=device, dtype=dtype)
    return (em.to(**to), trans.to(**to), dur.to(**to), lengths.to(device),
            dict(start_bias=sb.to(**to), max_end=max_end.to(device)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(3, 97, 5, 7), (2, 1, 3, 4), (2, 40, 11, 64)])
def test_cuda_matches_cpu(shape, dtype):
    B, T, C, K = shape
    cpu = _inputs(B, T, C, K, "cpu", torch.float64)
    gpu = _inputs(B, T, C, K, "cuda", dtype)
    ref_z = semicrf_logz(*cpu[:4], **cpu[4])
    z = semicrf_logz(*gpu[:4], **gpu[4])
    tol = 1e-9 if dtype == torch.float64 else 1e-4  # float32: a few ulps of |logZ| ~ 1e2
    torch.testing.assert_close(z.cpu().double(), ref_z, rtol=tol, atol=tol)
    ref_lp, ref_bp = semicrf_posteriors(*cpu[:4], **cpu[4])
    lp, bp = semicrf_posteriors(*gpu[:4], **gpu[4])
    torch.testing.assert_close(lp.cpu().double(), ref_lp, rtol=0, atol=tol * 10)
    torch.testing.assert_close(bp.cpu().double(), ref_bp, rtol=0, atol=tol * 10)
    ref_s, _ = semicrf_viterbi(*cpu[:4], **cpu[4])
    s, segs = semicrf_viterbi(*gpu[:4], **gpu[4])
    torch.testing.assert_close(s.cpu().double(), ref_s, rtol=tol, atol=tol)
    assert all(seg.device.type == "cpu" for seg in segs)


def test_cuda_gradients_match_cpu():
    cpu = _inputs(2, 50, 4, 9, "cpu", torch.float64)
    gpu = _inputs(2, 50, 4, 9, "cuda", torch.float64)
    grads = []
    for em, trans, dur, lengths, kw in (cpu, gpu):
        em, trans, dur = (x.clone().requires_grad_(True) for x in (em, trans, dur))
        semicrf_logz(em, trans, dur, lengths, **kw).sum().backward()
        grads.append([x.grad.cpu() for x in (em, trans, dur)])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
