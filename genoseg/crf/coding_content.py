"""Codon-periodic coding content for the phase gene grammar: a 3-periodic Markov chain.

The encoder scores each base per class (exon, intron, ...), but a class emission cannot say
*which* reading frame a stretch is coding in: every base of an exon gets the same column, at
every codon position. Gene finders get much of their power from exactly that signal (GeneMark,
AUGUSTUS: a 3-periodic inhomogeneous Markov chain of order 4 or 5). Here it is fitted by counting
on the training genes (``fit``), as AUGUSTUS does, and enters the semi-CRF through its generic
inputs only, exactly:

- per strand, the log-likelihood ratio ``c(t, r)`` of base t under the coding chain at codon
  position r against a noncoding chain (introns and intergenic bases), each conditioned on the
  ``order`` bases before t on that strand;
- it is split in two: the mean over codon positions ``m(t) = mean_r c(t, r)`` is added to the
  exon emissions (``mean_scores``); the *frame contrast* ``d(t, r) = c(t, r) - m(t)`` needs the
  segment's frame. (The contrast alone is not enough: the best of three frames of any stretch
  has a positive contrast, so without m, which is about -0.14 nats a noncoding fly base, random
  stretches gain by being called exons.)
- an exon segment [s, e) whose first base has codon position q reads positions
  r(t) = (t - s + q) mod 3 (+ strand) or (q + s - t) mod 3 (- strand), so with per-offset tracks
  g_a(t) = d(t, (t - a) mod 3) and their prefix sums G_a, its score is G_a(e) - G_a(s) with
  a = (s - q) mod 3. The first term depends only on (s, state), the second only on (e, state)
  (every exon state fixes its length mod 3), so they are a ``start_bias`` and an ``end_bias``
  column: ``columns`` builds the 12 of them, ``state_columns`` says which state takes which.

The prefix sums are a random walk (the contrast has no drift between frames), a few thousand at
most over a chromosome, so float32 biases keep it to about 1e-4 nats.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

N_COLUMNS = 13  # column 0: none; then + start q, + end q, - start q, - end q (q = 0, 1, 2)


def column_of(strand: str, at: str, q: int) -> int:
    """Content column of a state whose codon position is q at its first base (``at`` "start")
    or at the base after its last one (``at`` "end")."""
    return 1 + 6 * (strand == "-") + 3 * (at == "end") + q % 3


def state_columns(grammar) -> tuple[np.ndarray, np.ndarray]:
    """((C,), (C,)) int64: the column added to each state's start_bias and end_bias, from the
    codon positions a ``PhaseGrammar`` state fixes at its ends (``codon_positions``); 0 (none)
    for all but the exon states."""
    start = np.zeros(grammar.C, dtype=np.int64)
    end = np.zeros(grammar.C, dtype=np.int64)
    for c, (strand, q_start, q_end) in grammar.codon_positions().items():
        start[c] = column_of(strand, "start", q_start)
        end[c] = column_of(strand, "end", q_end)
    return start, end


def strand_indices(codes: torch.Tensor, order: int, strand: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, valid), both (B, T): the Markov table index (context of the ``order`` bases
    before t on ``strand``, then the base at t, as read on that strand) and whether all of them
    are A, C, G or T. ``codes``: (B, T) ``codons.encode`` codes (4: not ACGT, also padding)."""
    c = codes.long()
    T = c.shape[1]
    if strand == "+":
        padded = torch.nn.functional.pad(c, (order, 0), value=4)
        context = [padded[:, order - j:order - j + T] for j in range(order, 0, -1)]
        base = c
    else:  # the - strand reads right to left, complemented (A<->T, C<->G: 3 - code)
        padded = torch.nn.functional.pad(c, (0, order), value=4)
        context = [padded[:, j:j + T] for j in range(order, 0, -1)]
        context = [torch.where(x < 4, 3 - x, x) for x in context]
        base = torch.where(c < 4, 3 - c, c)
    index = torch.zeros_like(c)
    valid = base < 4
    for x in context + [base]:
        index = index * 4 + x.clamp(max=3)
        valid = valid & (x < 4)
    return index, valid


def fit(records, order: int, pseudocount: float = 1.0) -> tuple[np.ndarray, dict]:
    """The log-likelihood ratio table (3, 4 ** (order + 1)) float32 and counts.

    ``records``: iterable of (codes (T,) uint8, coding (list of (strand, positions (n,) int64,
    codon positions (n,) int64)), noncoding positions (m,) int64). Noncoding bases are counted
    on both strands (the noncoding chain is strand-symmetric)."""
    n = 4 ** (order + 1)
    coding = np.zeros((3, n))
    noncoding = np.zeros(n)
    bases = {"coding": 0, "noncoding": 0}
    for codes, cds, noncoding_pos in records:
        x = torch.from_numpy(np.asarray(codes, dtype=np.uint8))[None]
        by_strand = {s: [v[0].numpy() for v in strand_indices(x, order, s)] for s in "+-"}
        for strand, pos, r in cds:
            index, valid = by_strand[strand]
            ok = valid[pos]
            for q in range(3):
                sel = pos[ok & (r == q)]
                coding[q] += np.bincount(index[sel], minlength=n)
            bases["coding"] += int(ok.sum())
        for strand in "+-":
            index, valid = by_strand[strand]
            sel = noncoding_pos[valid[noncoding_pos]]
            noncoding += np.bincount(index[sel], minlength=n)
            bases["noncoding"] += len(sel)
    if not bases["coding"] or not bases["noncoding"]:
        raise ValueError("the coding content model needs coding and noncoding training bases")

    def log_conditional(counts):  # log P(base | context), Laplace-smoothed
        c = counts.reshape(*counts.shape[:-1], -1, 4) + pseudocount
        return np.log(c / c.sum(axis=-1, keepdims=True)).reshape(counts.shape)

    llr = log_conditional(coding) - log_conditional(noncoding)[None]
    return llr.astype(np.float32), bases


def transcript_codon_positions(tx, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, codon positions) of a transcript's CDS bases inside [0, length): codon
    position 0, 1, 2 read 5' -> 3' on its strand, from its 5'-most part's GFF3 phase."""
    parts = sorted(tx.cds) if tx.strand == "+" else sorted(tx.cds, reverse=True)
    done = (3 - tx.phase5) % 3  # bases of the first codon before the 5'-most part
    pos, rs = [], []
    for s, e in parts:
        p = np.arange(s, e) if tx.strand == "+" else np.arange(e - 1, s - 1, -1)
        pos.append(p)
        rs.append((done + np.arange(e - s)) % 3)
        done += e - s
    pos, rs = np.concatenate(pos), np.concatenate(rs)
    inside = (pos >= 0) & (pos < length)
    return pos[inside].astype(np.int64), rs[inside].astype(np.int64)


class CodingContent(nn.Module):
    """The fitted table (buffer ``llr``, saved with the weights) and its learnable weight."""

    def __init__(self, order: int, weight: float = 1.0) -> None:
        super().__init__()
        self.order = int(order)
        self.register_buffer("llr", torch.zeros(3, 4 ** (self.order + 1)))
        self.weight = nn.Parameter(torch.tensor(float(weight)))

    def _llr(self, codes: torch.Tensor, strand: str) -> torch.Tensor:
        """(B, T, 3) float32: c(t, r), 0 where the base or its context is not ACGT."""
        index, valid = strand_indices(codes, self.order, strand)
        c = self.llr[:, index].permute(1, 2, 0)
        return torch.where(valid[..., None], c, torch.zeros((), dtype=c.dtype, device=c.device))

    def mean_scores(self, codes: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """(B, T, 2): the weighted mean over codon positions of c(t, r), on + and on -: what the
        frame contrast leaves out, added to the exon class emissions (an emission, not a bias:
        its prefix sums drift by about -0.14 nats a noncoding base, which the kernels' own
        zero-centred emission sums absorb and float32 bias columns could not)."""
        mean = torch.stack([self._llr(codes, s).mean(dim=-1) for s in "+-"], dim=-1)
        return self.weight.to(dtype) * mean.to(dtype)

    def frame_contrast(self, codes: torch.Tensor, strand: str) -> torch.Tensor:
        """(B, T, 3) float32: d(t, r), the LLR at codon position r minus its mean over r (0 where
        the base or its context is not ACGT)."""
        c = self._llr(codes, strand)
        return c - c.mean(dim=-1, keepdim=True)

    def columns(self, codes: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """(B, T, N_COLUMNS): the weighted bias columns (``column_of``) of the sequences."""
        B, T = codes.shape
        dev = codes.device
        t = torch.arange(T + 1, device=dev)
        out = [torch.zeros(B, T, dtype=dtype, device=dev)]
        for strand in "+-":
            d = self.frame_contrast(codes, strand).double()
            r_of = (lambda a, tt: (tt - a) % 3) if strand == "+" else (lambda b, tt: (b - tt) % 3)
            tracks = torch.stack([d.gather(2, r_of(a, t[:T]).expand(B, T)[..., None])[..., 0]
                                  for a in range(3)], dim=-1)  # (B, T, 3): g_a(t) or h_b(t)
            prefix = torch.nn.functional.pad(tracks.cumsum(dim=1), (0, 0, 1, 0))  # (B, T+1, 3)
            sign = 1 if strand == "+" else -1
            for at, where, scale in (("start", t[:T], -1.0), ("end", t[1:], 1.0)):
                for q in range(3):
                    offset = (where - sign * q) % 3  # a = s - q (+), b = s + q (-)
                    col = prefix[:, where].gather(2, offset.expand(B, T)[..., None])[..., 0]
                    out.append((scale * col).to(dtype))
        return self.weight.to(dtype) * torch.stack(out, dim=-1)
