"""The semi-CRF model head: learnable transition, boundary and duration scores on top of the
encoder's emissions, with a label scheme's grammar and length limits as hard ``-inf`` masks.

Parameters (C labels, K maximum duration):

- ``transitions`` (C, C), ``init`` (C,), ``final`` (C,): free scores where the scheme allows the
  edge, ``-inf`` where it does not (``torch.where``, so forbidden entries get no gradient and
  stay exactly ``-inf``).
- ``durations`` (K, C): a per-label length prior ``a_c log d + b_c d / K`` plus a learnable
  residual table ("loglinear", initialised flat), a free table ("free"), or nothing ("flat");
  then ``-inf`` where ``d`` breaks the scheme's ``min_length`` / ``max_length``.

The CRF itself (log-partition, Viterbi, posteriors) comes from ``genoseg.crf.backend``, which
dispatches to the Triton kernels or to the pure-PyTorch reference. Optional per-position
constraints (``start_bias``, ``end_bias``, ``max_end``; e.g. splice sites and codon phase in a
later scheme) pass straight through every method.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genoseg.crf import backend as crf
from genoseg.labels.scheme import LabelScheme

DURATION_PRIORS = ("loglinear", "free", "flat")
_CONSTRAINTS = ("start_bias", "end_bias", "max_end")


def _masked(allowed: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    return torch.where(allowed, scores, torch.full((), -math.inf, dtype=scores.dtype,
                                                   device=scores.device))


def _relax_cut_runs(labels: torch.Tensor, lengths: torch.Tensor, min_length: torch.Tensor
                    ) -> torch.Tensor:
    """Copy of ``labels`` with the first and last run set to -1 (unconstrained) where they are
    shorter than their label's min_length: a window edge cut them, so the annotation there says
    less than it seems and would otherwise make the whole window impossible."""
    B, T = labels.shape
    pos = torch.arange(T, device=labels.device)[None, :]
    valid = pos < lengths[:, None]
    run_id = torch.cat([torch.zeros(B, 1, dtype=torch.int64, device=labels.device),
                        (labels[:, 1:] != labels[:, :-1]).cumsum(1)], dim=1)  # (B, T)
    out = labels.clone()
    last_id = run_id.gather(1, (lengths - 1)[:, None])
    for run in (run_id == 0, run_id == last_id):
        run = run & valid
        label = torch.where(run, labels, torch.full_like(labels, -1)).amax(dim=1)  # (B,)
        limit = min_length[label.clamp(min=0)]
        short = (label >= 0) & (run.sum(dim=1) < limit)
        out = out.masked_fill(run & short[:, None], -1)
    return out


def _gold_max_end(labels: torch.Tensor, valid: torch.Tensor, C: int) -> torch.Tensor:
    """(B, T, C) int64: for a segment of label c starting at s, the first position >= s where
    the gold label is known and is not c (T if none). A segment starting on such a position
    gets max_end = s and so cannot exist."""
    B, T = labels.shape
    forbidden = ((labels[..., None] != torch.arange(C, device=labels.device))
                 & (labels >= 0)[..., None] & valid[..., None])  # (B, T, C)
    pos = torch.arange(T, device=labels.device)[None, :, None].expand(B, T, C)
    first = torch.where(forbidden, pos, torch.full_like(pos, T))
    return first.flip(1).cummin(dim=1).values.flip(1)


class SemiCRFHead(nn.Module):
    """Learnable semi-CRF scores for a label scheme.

    Args:
        scheme: the label scheme (grammar, init/final labels, length limits).
        K: maximum segment duration; default ``scheme.max_duration``.
        duration_prior: "loglinear", "free" or "flat" (see the module docstring).
    """

    def __init__(self, scheme: LabelScheme, K: int | None = None,
                 duration_prior: str = "loglinear") -> None:
        super().__init__()
        if duration_prior not in DURATION_PRIORS:
            raise ValueError(f"duration_prior must be one of {DURATION_PRIORS}, "
                             f"got {duration_prior!r}")
        self.scheme = scheme
        self.C = scheme.C
        self.K = int(K if K is not None else scheme.max_duration)
        self.duration_prior = duration_prior
        C, K = self.C, self.K
        # Masks derive from the scheme (saved in the model config), so they are not state.
        self.register_buffer("trans_allowed", scheme.transition_allowed(), persistent=False)
        self.register_buffer("init_allowed", scheme.init_allowed(), persistent=False)
        self.register_buffer("final_allowed", scheme.final_allowed(), persistent=False)
        self.register_buffer("dur_allowed", scheme.duration_allowed(K), persistent=False)
        self.register_buffer("min_length", torch.tensor(scheme.min_length), persistent=False)
        d = torch.arange(1, K + 1, dtype=torch.get_default_dtype())
        # Features of the parametric prior; d / K keeps b's gradient on the scale of a's.
        self.register_buffer("dur_features", torch.stack([d.log(), d / K], dim=1),
                             persistent=False)  # (K, 2)

        self.transitions_raw = nn.Parameter(torch.zeros(C, C))
        self.init_raw = nn.Parameter(torch.zeros(C))
        self.final_raw = nn.Parameter(torch.zeros(C))
        if duration_prior == "loglinear":
            self.dur_coef = nn.Parameter(torch.zeros(2, C))  # rows: a (log d), b (d / K)
            self.dur_residual = nn.Parameter(torch.zeros(K, C))
        elif duration_prior == "free":
            self.dur_table = nn.Parameter(torch.zeros(K, C))

    # ------------------------------------------------------------------------------------------
    # Scores
    # ------------------------------------------------------------------------------------------

    def transitions(self) -> torch.Tensor:
        """(C, C): [i, j] scores label j right after label i; -inf where the grammar forbids."""
        return _masked(self.trans_allowed, self.transitions_raw)

    def init(self) -> torch.Tensor:
        """(C,) scores of the first segment's label; -inf for labels that may not start."""
        return _masked(self.init_allowed, self.init_raw)

    def final(self) -> torch.Tensor:
        """(C,) scores of the last segment's label; -inf for labels that may not end."""
        return _masked(self.final_allowed, self.final_raw)

    def durations(self) -> torch.Tensor:
        """(K, C): row d-1 scores a segment of length d; -inf where the length is forbidden."""
        if self.duration_prior == "loglinear":
            table = self.dur_features @ self.dur_coef + self.dur_residual
        elif self.duration_prior == "free":
            table = self.dur_table
        else:
            table = torch.zeros(self.K, self.C, device=self.transitions_raw.device,
                                dtype=self.transitions_raw.dtype)
        return _masked(self.dur_allowed, table)

    def crf_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for the backend functions: transitions, durations, init, final."""
        return {"transitions": self.transitions(), "durations": self.durations(),
                "init": self.init(), "final": self.final()}

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------

    def nll(self, emissions: torch.Tensor, labels: torch.Tensor,
            lengths: torch.Tensor | None = None, *, relax_cut_runs: bool = True,
            **constraints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative log-likelihood of per-position gold labels.

        ``nll = logZ(all segmentations) - logZ(segmentations consistent with the labels)``. The
        second term is the same ``semicrf_logz`` restricted to segments that cover only
        positions whose gold label is theirs, so it sums over every way to cut the labelling into
        segments (the exact marginal likelihood of the labelling). The restriction is passed as
        ``max_end`` (a segment of label c starting at s must end at or before the first position
        >= s whose gold label is not c), which is the same as setting those emissions to
        ``-inf`` but leaves the emissions, and so the prefix sums, finite.

        Args:
            emissions: (B, T, C) float.
            labels: (B, T) int64 label indices; -1 leaves a position unconstrained (e.g. unknown
                annotation). Ignored at or past ``lengths``.
            lengths: (B,) int64 in [1, T], default T.
            relax_cut_runs: leave the first and last run of each sequence unconstrained when
                shorter than their label's ``min_length``. A training window that starts 5 bp
                before an intron ends holds a 5 bp intron run, which the scheme forbids; without
                this the whole window would be impossible and dropped.
            **constraints: start_bias / end_bias / max_end, as for the backend.

        Returns:
            nll: (B,) float, >= 0 up to rounding; 0 (no gradient) where ``ok`` is False.
            ok: (B,) bool; False where the gold labelling is impossible under the scheme
                (grammar, length limits or constraints), so its likelihood is 0. Those sequences
                must be left out of the loss; ``loss`` does that and counts them.
        """
        B, T, C = self._check(emissions, constraints)
        if labels.shape != (B, T):
            raise ValueError(f"labels must be (B, T) = {(B, T)}, got {tuple(labels.shape)}")
        labels = labels.to(device=emissions.device, dtype=torch.int64)
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64, device=emissions.device)
        lengths = torch.as_tensor(lengths, device=emissions.device).to(torch.int64)
        valid = torch.arange(T, device=emissions.device)[None, :] < lengths[:, None]  # (B, T)
        if ((labels >= C) & valid).any() or ((labels < -1) & valid).any():
            raise ValueError(f"labels must lie in [-1, C={C}) at valid positions")
        if relax_cut_runs:
            labels = _relax_cut_runs(labels, lengths, self.min_length)
        gold_max_end = _gold_max_end(labels, valid, C)
        user_max_end = constraints.get("max_end")
        if user_max_end is None:
            user_max_end = torch.full((B, T, C), T, dtype=torch.int64, device=emissions.device)
        user_max_end = user_max_end.to(torch.int64)
        gold_max_end = torch.minimum(gold_max_end, user_max_end)
        other = {k: v for k, v in constraints.items() if k != "max_end"}

        def logz_pair(rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
            # One scan over both problems (2n sequences): the reference's cost is mostly
            # per-position overhead, so this is nearly as cheap as one.
            n = emissions[rows].shape[0]
            twice = lambda x: torch.cat([x[rows], x[rows]])  # noqa: E731
            z = self._logz(twice(emissions), twice(lengths),
                           {**{k: twice(v) for k, v in other.items()},
                            "max_end": torch.cat([user_max_end[rows], gold_max_end[rows]])})
            return z[:n], z[n:]

        logz, logz_gold = logz_pair(slice(None))
        ok = torch.isfinite(logz) & torch.isfinite(logz_gold)
        if bool(ok.all()):
            return logz - logz_gold, ok
        # Recompute on the possible sequences only, so that no -inf - (-inf) enters any backward
        # pass, whatever the backend does with the gradient of an impossible sequence.
        nll = torch.zeros(B, dtype=logz.dtype, device=logz.device)
        idx = ok.nonzero().squeeze(1)
        if idx.numel():
            logz, logz_gold = logz_pair(idx)
            nll = nll.index_copy(0, idx, logz - logz_gold)
        return nll, ok

    def loss(self, emissions: torch.Tensor, labels: torch.Tensor,
             lengths: torch.Tensor | None = None, *, relax_cut_runs: bool = True,
             **constraints: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mean NLL per base (nats) over the sequences whose labelling is possible.

        Returns (loss scalar, number of sequences left out as impossible). When every sequence
        is impossible the loss is a zero that still backpropagates (to zero gradients).
        """
        B, T = labels.shape
        nll, ok = self.nll(emissions, labels, lengths, relax_cut_runs=relax_cut_runs,
                           **constraints)
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64, device=emissions.device)
        lengths = torch.as_tensor(lengths, device=emissions.device)
        n_bad = int((~ok).sum())
        if n_bad == B:
            # A zero still connected to the graph (emissions may hold -inf, hence nan_to_num).
            zero = emissions.nan_to_num(0.0, posinf=0.0, neginf=0.0).sum() * 0.0
            return zero + self.transitions_raw.sum() * 0.0, n_bad
        bases = lengths[ok].sum().to(nll.dtype)
        return nll[ok].sum() / bases, n_bad

    # ------------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, lengths: torch.Tensor | None = None,
               **constraints: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Viterbi: (scores (B,), list of B int64 (n_seg, 3) tensors [start, end_excl, label]).

        A sequence with no valid segmentation gets score -inf and an empty (0, 3) tensor.
        """
        self._check(emissions, constraints)
        return crf.semicrf_viterbi(emissions, lengths=lengths, **self.crf_inputs(), **constraints)

    @torch.no_grad()
    def posteriors(self, emissions: torch.Tensor, lengths: torch.Tensor | None = None,
                   **constraints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(label_post (B, T, C), boundary_post (B, T)): P(label c at t), P(a segment ends at t)."""
        self._check(emissions, constraints)
        return crf.semicrf_posteriors(emissions, lengths=lengths, **self.crf_inputs(),
                                      **constraints)

    def _logz(self, emissions: torch.Tensor, lengths: torch.Tensor,
              constraints: dict[str, torch.Tensor]) -> torch.Tensor:
        return crf.semicrf_logz(emissions, lengths=lengths, **self.crf_inputs(), **constraints)

    def _check(self, emissions: torch.Tensor, constraints: dict) -> tuple[int, int, int]:
        if emissions.dim() != 3 or emissions.shape[-1] != self.C:
            raise ValueError(f"emissions must be (B, T, C={self.C}), got {tuple(emissions.shape)}")
        unknown = [k for k in constraints if k not in _CONSTRAINTS]
        if unknown:
            raise TypeError(f"unexpected constraint(s) {unknown}; allowed: {_CONSTRAINTS}")
        return tuple(emissions.shape)

    def extra_repr(self) -> str:
        return (f"scheme={self.scheme.name!r}, C={self.C}, K={self.K}, "
                f"duration_prior={self.duration_prior!r}")
