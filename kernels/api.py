"""Public twins of ``genoseg.crf.reference``: same signatures, same semantics, Triton inside.

log Z and the Viterbi score come from one chunk-parallel scan (``chunked.scan``, kernel in
``scan.py``). Gradients and posteriors come from the outside scan (``chunked.outside``, kernel in
``outside.py``), which reads the start messages and alphas the forward stored and redistributes
probability mass from each sequence's end to its start: every marginal (label, start, end,
transition, duration, initial and final label) is a sum of those masses, and none of them
depends on a global normaliser, so they stay accurate at any sequence length.

Viterbi: the max-plus scan stores only back-pointers (best previous label per start, best
duration per end) and each chunk's end state, and ``traceback.py`` walks them chunk-parallel.
"""

from __future__ import annotations

import torch

from genoseg_kernels.chunked import outside, prepare, scan
from genoseg_kernels.traceback import traceback

__all__ = ["semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz",
           "last_stats"]

_STATS: dict = {}


def last_stats() -> dict:
    """What the last call did: chunk length and passes of each scan (for benchmarks, logs)."""
    return dict(_STATS)


def _record(name: str, res) -> None:
    _STATS[name] = {"passes": res.passes, "chunk": res.chunk}
    _STATS["passes"] = res.passes


# ----------------------------------------------------------------------------------------------
# Viterbi traceback
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def semicrf_viterbi(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                    start_bias=None, end_bias=None, max_end=None, chunk=None):
    """Best segmentation. Same arguments and results as ``reference.semicrf_viterbi``:
    (scores (B,), list of B int64 CPU tensors (n_seg, 3) rows [start, end, label])."""
    p = prepare(emissions, transitions, durations, lengths, init, final, start_bias, end_bias,
                max_end)
    res = scan(p, is_max=True, store_bp=True, chunk=chunk)
    _record("viterbi", res)
    B = p.B
    alive = torch.isfinite(res.score)
    lengths_walk = torch.where(alive, p.lengths, torch.zeros_like(p.lengths))
    seg_label = traceback(res.bp_prev, res.bp_dur, res.ends, p.final, lengths_walk, res.chunk,
                          p.K)
    # Compact on the device; only the segments travel to the host, into page-locked memory:
    # a pageable copy of 9e6 segments (221 MB) took 190 ms on an H200 host, a pinned one 5 ms
    # (benchmarks/profile_viterbi.py, session 5; torch caches the pinned blocks).
    segments = []
    pin = seg_label.is_cuda
    for b in range(B):
        L = int(p.lengths[b])
        lab = seg_label[b, :L]
        starts = torch.nonzero(lab >= 0).flatten()
        ends = torch.cat([starts[1:], starts.new_tensor([L])]) if len(starts) else starts
        rows = torch.stack([starts, ends, lab[starts].to(torch.int64)], dim=1).reshape(-1, 3)
        host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=pin)
        segments.append(host.copy_(rows))
    return res.score.to(_out_dtype(emissions)), segments


def _out_dtype(emissions: torch.Tensor) -> torch.dtype:
    return torch.float64 if emissions.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------
# Marginals
# ----------------------------------------------------------------------------------------------


def _forward_and_outside(args: dict, chunk=None):
    p = prepare(**args)
    fwd = scan(p, is_max=False, store=True, chunk=chunk)
    _record("forward", fwd)
    m = outside(p, fwd, need_sb=False)  # boundary posteriors come from the end marginals
    _STATS["outside"] = {"passes": m.passes, "chunk": m.chunk}
    return p, fwd, m


def posteriors_and_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                        start_bias=None, end_bias=None, max_end=None, chunk=None):
    """``semicrf_posteriors`` plus log Z (B,), as ``reference.posteriors_and_logz``."""
    with torch.no_grad():
        _, fwd, m = _forward_and_outside(dict(
            emissions=emissions, transitions=transitions, durations=durations, lengths=lengths,
            init=init, final=final, start_bias=start_bias, end_bias=end_bias, max_end=max_end),
            chunk=chunk)
        alive = torch.isfinite(fwd.score)[:, None, None]
        label_post = torch.where(alive, m.em, torch.zeros((), device=m.em.device))
        boundary_post = torch.where(alive, m.eb, torch.zeros((), device=m.em.device)).sum(dim=2)
    dt = _out_dtype(emissions)
    return label_post.to(dt), boundary_post.to(dt), fwd.score.to(dt)


def semicrf_posteriors(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                       start_bias=None, end_bias=None, max_end=None, chunk=None):
    """Label (B, T, C) and boundary (B, T) posteriors, as ``reference.semicrf_posteriors``."""
    label_post, boundary_post, _ = posteriors_and_logz(
        emissions, transitions, durations, lengths, init=init, final=final,
        start_bias=start_bias, end_bias=end_bias, max_end=max_end, chunk=chunk)
    return label_post, boundary_post


def _detached(x):
    return None if x is None else x.detach()


class _LogPartition(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emissions, transitions, durations, init, final, start_bias, end_bias,
                lengths, max_end, chunk):
        args = dict(emissions=emissions.detach(), transitions=transitions.detach(),
                    durations=durations.detach(), lengths=lengths, init=_detached(init),
                    final=_detached(final), start_bias=_detached(start_bias),
                    end_bias=_detached(end_bias), max_end=max_end)
        p = prepare(**args)
        # The backward needs the forward's messages; store them only when it will run.
        fwd = scan(p, is_max=False, store=any(ctx.needs_input_grad), chunk=chunk)
        _record("forward", fwd)
        ctx.p, ctx.fwd = p, fwd
        ctx.in_dtypes = [x.dtype if x is not None else None
                         for x in (emissions, transitions, durations, init, final, start_bias,
                                   end_bias)]
        return fwd.score.to(_out_dtype(emissions))

    @staticmethod
    def backward(ctx, grad_logz):
        p, fwd = ctx.p, ctx.fwd
        needs = ctx.needs_input_grad
        m = outside(p, fwd, need_sb=needs[5], need_eb=needs[6])
        _STATS["outside"] = {"passes": m.passes, "chunk": m.chunk}
        # Sequences with no valid segmentation contribute nothing.
        w = torch.where(torch.isfinite(fwd.score), grad_logz.double(),
                        torch.zeros_like(fwd.score)).float()
        w3 = w[:, None, None]
        grads = [m.em * w3 if needs[0] else None,
                 (m.trans * w3).sum(dim=0) if needs[1] else None,
                 (m.dur * w3).sum(dim=0) if needs[2] else None,
                 (m.init * w[:, None]).sum(dim=0) if needs[3] else None,
                 (m.final * w[:, None]).sum(dim=0) if needs[4] else None,
                 m.sb * w3 if needs[5] else None,
                 m.eb * w3 if needs[6] else None]
        ctx.p = ctx.fwd = None
        out = [g.to(dt) if g is not None else None for g, dt in zip(grads, ctx.in_dtypes)]
        return (*out, None, None, None)


def semicrf_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                 start_bias=None, end_bias=None, max_end=None, chunk=None):
    """log Z (B,), differentiable, as ``reference.semicrf_logz``. ``chunk`` overrides the chunk
    length of the chunk-parallel scans (a multiple of 32; default: chosen for the card)."""
    return _LogPartition.apply(emissions, transitions, durations, init, final, start_bias,
                               end_bias, lengths, max_end, chunk)
