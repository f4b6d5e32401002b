"""Public twins of ``genoseg.crf.reference``: same signatures, same semantics, Triton inside.

Forward (log Z, Viterbi score): one chunk-parallel scan (``chunked.scan``).
Backward / posteriors: the backward pass is the forward scan of the REVERSED problem (start and
end biases swapped, transitions transposed, init and final swapped, max_end turned into a
min_start), which gives beta (completions after a segment ends) and G (completions from a segment
start, that segment included) at every position. With the forward's stored start messages and
alphas, the posteriors are elementwise:

    P(segment of c ends after base u)  = exp(alpha[u + 1, c] + beta[u + 1, c] - log Z)
    P(segment of c starts at u)        = exp(start[u, c] + G[u, c] - log Z)
    P(u lies in a segment of c)        = sum_{s <= u} P(start at s) - sum_{e <= u} P(end after e)

(segments of one label never overlap; the running sums are float64), and the duration gradient
comes from a last pass of the reversed scan that splits each start's probability over durations.
Stored values carry per-block float64 normalisers, so nothing is ever exponentiated far from 0.

Viterbi: the max-plus scan stores back-pointers (best previous label per start, best duration
per end); a one-program-per-sequence kernel walks them from the end.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from genoseg_kernels import chunked
from genoseg_kernels.chunked import BLOCK, prepare, reversed_problem, scan

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


@triton.jit
def _traceback_kernel(bp_prev_ptr, bp_dur_ptr, last_ptr, len_ptr, seg_label_ptr, T,
                      C: tl.constexpr):
    """Walk back from each sequence's end; write the label of every segment at its start."""
    b = tl.program_id(0).to(tl.int64)
    pos = tl.load(len_ptr + b).to(tl.int64)
    lab = tl.load(last_ptr + b).to(tl.int64)
    base = b * T * C
    while pos > 0:
        d = tl.load(bp_dur_ptr + base + (pos - 1) * C + lab).to(tl.int64)
        s = pos - d
        tl.store(seg_label_ptr + b * T + s, lab.to(tl.int32))
        nxt = tl.load(bp_prev_ptr + base + tl.maximum(s, 0) * C + lab).to(tl.int64)
        lab = tl.where(s > 0, nxt, lab)
        pos = s


@torch.no_grad()
def semicrf_viterbi(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                    start_bias=None, end_bias=None, max_end=None, chunk=None):
    """Best segmentation. Same arguments and results as ``reference.semicrf_viterbi``:
    (scores (B,), list of B int64 CPU tensors (n_seg, 3) rows [start, end, label])."""
    p = prepare(emissions, transitions, durations, lengths, init, final, start_bias, end_bias,
                max_end)
    res = scan(p, is_max=True, store=True, chunk=chunk)
    _record("viterbi", res)
    B, T = p.B, p.T
    idx = (p.lengths - 1)[:, None, None].expand(B, 1, p.C)
    last_alpha = torch.gather(res.alpha, 1, idx)[:, 0]  # (B, C) frame values
    last = (last_alpha + p.final).argmax(dim=1).to(torch.int32)
    alive = torch.isfinite(res.score)
    seg_label = torch.full((B, T), -1, dtype=torch.int32, device=p.em.device)
    lengths_walk = torch.where(alive, p.lengths, torch.zeros_like(p.lengths))
    _traceback_kernel[(B,)](res.bp_prev, res.bp_dur, last, lengths_walk, seg_label, T, C=p.C,
                            num_warps=1)
    segments = []
    seg_label = seg_label.cpu()
    for b in range(B):
        L = int(p.lengths[b])
        lab = seg_label[b, :L]
        starts = torch.nonzero(lab >= 0).flatten()
        ends = torch.cat([starts[1:], torch.tensor([L])]) if len(starts) else starts
        segments.append(torch.stack([starts, ends, lab[starts].to(torch.int64)], dim=1)
                        .reshape(-1, 3).to(torch.int64))
    return res.score.to(_out_dtype(emissions)), segments


def _out_dtype(emissions: torch.Tensor) -> torch.dtype:
    return torch.float64 if emissions.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------
# Marginals
# ----------------------------------------------------------------------------------------------


class _Marginals:
    """Forward and reversed scans of one problem, and the posteriors they give."""

    def __init__(self, args: dict, chunk=None):
        self.p = prepare(**args)
        self.fwd = scan(self.p, is_max=False, store=True, chunk=chunk)
        _record("forward", self.fwd)
        self.logz = self.fwd.score  # (B,) float64
        self.q = reversed_problem(**args)
        self.rev = scan(self.q, is_max=False, store=True, chunk=self.fwd.chunk)
        _record("backward", self.rev)
        p = self.p
        B, T, C = p.B, p.T, p.C
        dev = p.em.device
        t = torch.arange(T, device=dev)
        self.valid = t[None, :] < p.lengths[:, None]  # (B, T)
        self.rev_row = (p.lengths[:, None] - 1 - t[None, :]).clamp(0, T - 1)  # (B, T)
        self.alive = torch.isfinite(self.logz)
        self.logz_safe = torch.where(self.alive, self.logz, torch.full_like(self.logz, 1e300))

    def _from_rev(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) in reversed indexing -> original indexing."""
        B, T, C = x.shape
        return torch.gather(x, 1, self.rev_row[..., None].expand(B, T, C))

    def _norms(self) -> torch.Tensor:
        """(B, T) float64: forward normaliser at u + reversed normaliser at L - 1 - u - log Z."""
        blk = torch.arange(self.p.T, device=self.p.em.device) // BLOCK
        nf = self.fwd.norm[:, blk]
        nr = torch.gather(self.rev.norm, 1, self.rev_row // BLOCK)
        return nf + nr - self.logz_safe[:, None]

    def boundary_terms(self):
        """(p_start, p_end) (B, T, C) float32 and the (B, T) float64 offsets used."""
        n = self._norms()
        beta = self._from_rev(self.rev.start)  # beta[u + 1]
        G = self._from_rev(self.rev.alpha)  # G[u]
        ok = (self.valid & self.alive[:, None])[..., None]
        zero = torch.zeros((), device=n.device)
        p_end = torch.where(ok, torch.exp(self.fwd.alpha + beta + n[..., None].float()), zero)
        p_start = torch.where(ok, torch.exp(self.fwd.start + G + n[..., None].float()), zero)
        return p_start, p_end, n, G

    def trans_grad(self, G, n, weight):
        """sum_b w_b sum_{u >= 1} P(label c' ends after u - 1 and c starts at u): (C, C)."""
        p = self.p
        B, T, C = p.B, p.T, p.C
        out = torch.zeros((C, C), dtype=torch.float64, device=p.em.device)
        # n[u] pairs the forward normaliser of u with the reversed one of u; here the forward
        # value comes from row u - 1, so correct by the difference of forward block normalisers.
        blk = torch.arange(T, device=p.em.device) // BLOCK
        nf = self.fwd.norm[:, blk]
        step = max(1, (1 << 24) // max(1, B * C * C))
        for u0 in range(1, T, step):
            u1 = min(T, u0 + step)
            a = self.fwd.alpha[:, u0 - 1:u1 - 1]  # alpha[u]
            g = G[:, u0:u1]
            corr = (n[:, u0:u1] + nf[:, u0 - 1:u1 - 1] - nf[:, u0:u1]).float()
            x = a[..., :, None] + p.trans + g[..., None, :] + corr[..., None, None]
            ok = (self.valid[:, u0:u1] & self.alive[:, None])[..., None, None]
            x = torch.where(ok, torch.exp(x), torch.zeros((), device=x.device))
            out += (x.double() * weight[:, None, None, None]).sum(dim=(0, 1))
        return out.float()

    def duration_grad(self, weight):
        """(K, C): sum_b w_b * expected number of segments of each duration and label."""
        p = self.p
        res = scan(self.q, is_max=False, chunk=self.rev.chunk, grad_dur={
            "start_states": self.rev.final_states, "fwd_start": self.fwd.start,
            "fwd_norm": self.fwd.norm.contiguous(), "offsets": self.rev.offsets.contiguous(),
            "logz": self.logz_safe.contiguous(), "per_sequence": True})
        return (res.gdur * weight[:, None, None].float()).sum(dim=0)


def posteriors_and_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                        start_bias=None, end_bias=None, max_end=None, chunk=None):
    """``semicrf_posteriors`` plus log Z (B,), as ``reference.posteriors_and_logz``."""
    with torch.no_grad():
        m = _Marginals(dict(emissions=emissions, transitions=transitions, durations=durations,
                            lengths=lengths, init=init, final=final, start_bias=start_bias,
                            end_bias=end_bias, max_end=max_end), chunk=chunk)
        p_start, p_end, _, _ = m.boundary_terms()
        label_post = _label_posteriors(p_start, p_end)
        boundary_post = p_end.sum(dim=2)
    dt = _out_dtype(emissions)
    return label_post.to(dt), boundary_post.to(dt), m.logz.to(dt)


def _label_posteriors(p_start: torch.Tensor, p_end: torch.Tensor) -> torch.Tensor:
    # covered(u) = #starts at s <= u - #ends after bases e < u; float64 running sums.
    net = (p_start.double() - p_end.double()).cumsum(dim=1) + p_end.double()
    return net.clamp_(0.0, 1.0).float()


def semicrf_posteriors(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                       start_bias=None, end_bias=None, max_end=None, chunk=None):
    """Label (B, T, C) and boundary (B, T) posteriors, as ``reference.semicrf_posteriors``."""
    label_post, boundary_post, _ = posteriors_and_logz(
        emissions, transitions, durations, lengths, init=init, final=final,
        start_bias=start_bias, end_bias=end_bias, max_end=max_end, chunk=chunk)
    return label_post, boundary_post


class _LogPartition(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emissions, transitions, durations, init, final, start_bias, end_bias,
                lengths, max_end, chunk):
        args = dict(emissions=emissions.detach(), transitions=transitions.detach(),
                    durations=durations.detach(), lengths=lengths,
                    init=None if init is None else init.detach(),
                    final=None if final is None else final.detach(),
                    start_bias=None if start_bias is None else start_bias.detach(),
                    end_bias=None if end_bias is None else end_bias.detach(), max_end=max_end)
        if any(ctx.needs_input_grad):
            m = _Marginals(args, chunk=chunk)
            ctx.marginals = m
            logz = m.logz
        else:
            p = prepare(**args)
            res = scan(p, is_max=False, chunk=chunk)
            _record("forward", res)
            logz = res.score
            ctx.marginals = None
        ctx.in_dtypes = [x.dtype if x is not None else None
                         for x in (emissions, transitions, durations, init, final, start_bias,
                                   end_bias)]
        return logz.to(_out_dtype(emissions))

    @staticmethod
    def backward(ctx, grad_logz):
        m = ctx.marginals
        w = torch.where(m.alive, grad_logz.double(), torch.zeros_like(m.logz))
        wf = w.float()
        needs = ctx.needs_input_grad
        p_start, p_end, n, G = m.boundary_terms()
        g_em = _label_posteriors(p_start, p_end) * wf[:, None, None] if needs[0] else None
        g_trans = m.trans_grad(G, n, w) if needs[1] else None
        g_dur = m.duration_grad(w) if needs[2] else None
        g_init = (p_start[:, 0] * wf[:, None]).sum(dim=0) if needs[3] else None
        if needs[4]:
            idx = (m.p.lengths - 1)[:, None, None].expand(m.p.B, 1, m.p.C)
            g_final = (torch.gather(p_end, 1, idx)[:, 0] * wf[:, None]).sum(dim=0)
        else:
            g_final = None
        g_sb = p_start * wf[:, None, None] if needs[5] else None
        g_eb = p_end * wf[:, None, None] if needs[6] else None
        grads = [g_em, g_trans, g_dur, g_init, g_final, g_sb, g_eb]
        out = [g.to(dt) if g is not None else None for g, dt in zip(grads, ctx.in_dtypes)]
        return (*out, None, None, None)


def semicrf_logz(emissions, transitions, durations, lengths=None, *, init=None, final=None,
                 start_bias=None, end_bias=None, max_end=None, chunk=None):
    """log Z (B,), differentiable, as ``reference.semicrf_logz``. ``chunk`` overrides the chunk
    length of the chunk-parallel scan (a multiple of 32; default: chosen for the card)."""
    return _LogPartition.apply(emissions, transitions, durations, init, final, start_bias,
                               end_bias, lengths, max_end, chunk)
