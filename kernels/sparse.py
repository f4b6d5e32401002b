"""Sparse windows: scan only the (duration, label) cells and transitions that are allowed.

A grammar written as ``-inf`` scores leaves most of the dense window empty. The codon-phase gene
grammar, for instance, allows 3,109 of its 150 x 80 (duration, label) cells and 228 of its
80 x 80 transitions, so the dense scans spend most of every step on cells that can never score.
The sparse kernels (``scan_sparse.py``, ``outside_sparse.py``) read a plan made here from the
``-inf`` pattern of the durations and transitions (shared by the batch), instead of the
(K + 1) x C window and the C x C transition tile:

- the allowed durations of each label, cut into rows of ``W`` cells; a tile is ``RT`` rows. A
  step reduces each row (row partials go to a scratch row of the program), then each label
  combines its rows (``lab_rows``, at most ``RMAX``);
- the predecessors (``pred``, at most ``P``) and successors (``succ``, at most ``Q``) of each
  label, with their transition scores.

Layout. A warp gathers a row of W cells: one label, consecutive allowed durations, so
consecutive starts. The sparse kernels therefore keep their rings label-major (slot stride 1,
label stride K + 1) and read max_end label-major (B, C, T) (``chunked.prepare``): a row's cells
then lie side by side, a few cache lines a row. Slot-major, as the dense kernels keep them,
every cell of a row is in a line of its own, and a step of the gene grammar's window (3,109
cells; the outside reads and writes its adjoint ring too) queued thousands of L1 requests.

``use_sparse`` decides when this pays: the cells a sparse step touches against a dense step's.
``GENOSEG_SPARSE`` (``0`` / ``1``) overrides it, and ``GENOSEG_SPARSE_TILE`` sets the elements of
a row tile, for tests and A/B timings.

Knows tensors only, like every kernel module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton

NEG_INF = float("-inf")
# Elements per row tile. One tile for the whole window pays: the outside keeps its scores in
# registers between its two halves. The gene grammar's fly test-set scans on an H100
# (benchmarks/NOTES_semicrf.md, entry 10): 2048-element tiles 11.4 s (4 warps) / 7.7 s (8);
# 8192 (one tile) 9.2 s / 5.7 s; the dense kernels 18.1 s.
TILE_ELEMENTS = 8192
# A sparse step costs more barriers and gathers than a dense one; it must touch at most this
# share of a dense step's cells to be chosen.
SPARSE_SHARE = 0.5


@dataclass
class SparsePlan:
    """Index tables of a sparse window (int32, on the device) and their sizes."""

    W: int  # cells per row (power of 2)
    RT: int  # rows per tile (power of 2)
    NRT: int  # tiles
    NRP: int  # rows, padded to NRT * RT
    RMAX: int  # rows per label, padded to a power of 2
    P: int  # predecessors per label, padded to a power of 2
    Q: int  # successors per label, padded to a power of 2
    cells: int  # allowed (duration, label) cells
    row_lab: torch.Tensor  # (NRP,) label of each row (0 on padding rows)
    cell_dm1: torch.Tensor  # (NRP, W) duration - 1 of each cell, -1 on padding
    lab_rows: torch.Tensor  # (CB, RMAX) rows of each label, -1 on padding
    pred: torch.Tensor  # (CB, P) predecessors c' of label c, -1 on padding
    succ: torch.Tensor  # (CB, Q) successors c of label c', -1 on padding

    def cost(self, CB: int) -> int:
        """Elements one step touches: the row tiles, the row combine and the transitions."""
        return self.NRP * self.W + CB * (self.RMAX + self.P)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, int(n)))


def plan(durations: torch.Tensor, transitions: torch.Tensor) -> SparsePlan:
    """The sparse plan of a model: allowed = finite ``durations`` (K, C) and ``transitions``
    (C, C). Picks the row width that touches the fewest elements per step."""
    K, C = durations.shape
    CB = _pow2(C)
    dev = durations.device
    tile = int(os.environ.get("GENOSEG_SPARSE_TILE", 0)) or TILE_ELEMENTS  # for A/B runs
    dur_ok = torch.isfinite(durations).cpu()
    trans_ok = torch.isfinite(transitions).cpu()
    per_label = [torch.nonzero(dur_ok[:, c]).flatten().tolist() for c in range(C)]
    best = None
    for W in (4, 8, 16, 32, 64):
        W = min(W, _pow2(K))
        n_rows = [max(1, -(-len(d) // W)) for d in per_label]
        NR = sum(n_rows)
        RT = max(1, min(_pow2(NR), tile // W))
        NRT = -(-NR // RT)
        NRP = NRT * RT
        RMAX = _pow2(max(n_rows))
        cost = NRP * W + CB * RMAX
        if best is None or cost < best[0]:
            best = (cost, W, RT, NRT, NRP, RMAX, n_rows)
    _, W, RT, NRT, NRP, RMAX, n_rows = best
    row_lab = torch.zeros(NRP, dtype=torch.int32)
    cell_dm1 = torch.full((NRP, W), -1, dtype=torch.int32)
    lab_rows = torch.full((CB, RMAX), -1, dtype=torch.int32)
    r = 0
    for c, durs in enumerate(per_label):
        for k in range(n_rows[c]):
            part = durs[k * W:(k + 1) * W]
            row_lab[r] = c
            if part:
                cell_dm1[r, :len(part)] = torch.tensor(part, dtype=torch.int32)
            lab_rows[c, k] = r
            r += 1
    in_deg = trans_ok.sum(dim=0)
    out_deg = trans_ok.sum(dim=1)
    P = _pow2(int(in_deg.max()) if C else 1)
    Q = _pow2(int(out_deg.max()) if C else 1)
    pred = torch.full((CB, P), -1, dtype=torch.int32)
    succ = torch.full((CB, Q), -1, dtype=torch.int32)
    for c in range(C):
        p = torch.nonzero(trans_ok[:, c]).flatten()
        pred[c, :len(p)] = p.to(torch.int32)
        s = torch.nonzero(trans_ok[c, :]).flatten()
        succ[c, :len(s)] = s.to(torch.int32)
    return SparsePlan(W=W, RT=RT, NRT=NRT, NRP=NRP, RMAX=RMAX, P=P, Q=Q,
                      cells=int(dur_ok.sum()), row_lab=row_lab.to(dev),
                      cell_dm1=cell_dm1.to(dev), lab_rows=lab_rows.to(dev), pred=pred.to(dev),
                      succ=succ.to(dev))


def use_sparse(durations: torch.Tensor, transitions: torch.Tensor) -> SparsePlan | None:
    """The plan when the sparse kernels should run (``GENOSEG_SPARSE`` = 0 / 1 overrides)."""
    force = os.environ.get("GENOSEG_SPARSE", "").strip()
    if force == "0":
        return None
    K, C = durations.shape
    if force != "1":
        # Cheap test first: a mostly allowed model never pays for the plan.
        allowed = int(torch.isfinite(durations).sum()) * 1.0
        if allowed > SPARSE_SHARE * K * C:
            return None
    p = plan(durations, transitions)
    if force == "1":
        return p
    CB = _pow2(C)
    dense_cost = (K + 1) * CB + CB * CB
    return p if p.cost(CB) <= SPARSE_SHARE * dense_cost else None


def cell_scores(p: SparsePlan, durations: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """(B, NRP, W) float32: each cell's duration score plus the zero-centring term
    ``mu[b, c] * d`` (the kernels add it per cell, as the dense ones do per (d, c)); -inf on
    padding."""
    dm1 = p.cell_dm1.long()
    lab = p.row_lab.long()[:, None].expand_as(dm1)
    ok = dm1 >= 0
    d0 = dm1.clamp(min=0)
    dur = durations.to(torch.float32)[d0, lab]  # (NRP, W)
    scores = dur[None] + mu[:, lab] * (d0 + 1).to(torch.float32)[None]
    return torch.where(ok[None], scores, torch.full((), NEG_INF, device=scores.device)).contiguous()


def trans_lists(p: SparsePlan, transitions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((CB, P), (CB, Q)) float32: trans[pred, c] and trans[c', succ], -inf on padding."""
    tr = transitions.to(torch.float32)

    def gather(idx, rows_are_dest):
        ok = idx >= 0
        i = idx.long().clamp(min=0)
        lab = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(i)
        lab = lab.clamp(max=tr.shape[0] - 1)
        v = tr[i, lab] if rows_are_dest else tr[lab, i]
        return torch.where(ok, v, torch.full((), NEG_INF, device=v.device)).contiguous()

    return gather(p.pred, True), gather(p.succ, False)


def scatter_dur(p: SparsePlan, g_cells: torch.Tensor, K: int, C: int) -> torch.Tensor:
    """(B, NRP, W) per-cell sums -> (B, K, C) dense duration marginals."""
    B = g_cells.shape[0]
    ok = (p.cell_dm1 >= 0).flatten()
    dm1 = p.cell_dm1.long().flatten()[ok]
    lab = p.row_lab.long()[:, None].expand_as(p.cell_dm1).flatten()[ok]
    out = torch.zeros((B, K * C), dtype=g_cells.dtype, device=g_cells.device)
    out.index_add_(1, dm1 * C + lab, g_cells.reshape(B, -1)[:, ok])
    return out.view(B, K, C)


def scatter_trans(p: SparsePlan, g_succ: torch.Tensor, C: int) -> torch.Tensor:
    """(B, CB, Q) per-successor sums -> (B, C, C) dense transition marginals [c', c]."""
    B = g_succ.shape[0]
    CB = p.succ.shape[0]
    src = torch.arange(CB, device=g_succ.device)[:, None].expand_as(p.succ)
    ok = (p.succ >= 0).flatten()
    idx = (src.flatten() * C + p.succ.long().flatten().clamp(min=0))[ok]
    out = torch.zeros((B, C * C), dtype=g_succ.dtype, device=g_succ.device)
    out.index_add_(1, idx, g_succ.reshape(B, -1)[:, ok])
    return out.view(B, C, C)
