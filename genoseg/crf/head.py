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
later scheme) pass through every method (expanded as below).

Canonical tiling (the scheme's ``tile`` labels). Every public method works in *class* space (the
scheme's C labels: emissions (B, T, C), gold labels, decoded segments, posteriors). Inside, the
CRF runs over C' = C + n_tiled *expanded* labels: index c < C is class c itself -- for a tiled
class X, the LAST piece of an X run -- and index C + k is the FULL piece X* of the k-th tiled
class. With X's hard limits [m, M] (m = min_length, M = max_length or K), X allows durations
[m, M] and X* exactly one duration F = M - m + 1 (1 <= F <= K). A run of X is X*^q X.

    Uniqueness: a run of length n >= m has exactly one such segmentation. Its length is
    n = q F + r with q >= 0 full pieces and a last piece r in [m, M] = [m, m + F - 1], i.e. r
    ranges over exactly F consecutive values, so r = m + ((n - m) mod F) and q = (n - m) div F
    are forced. Runs themselves are fixed by the labelling: X -> X and X -> X* are forbidden (a
    tiled class has no self edge), X* may only be followed by X* or X, and X* may not end the
    sequence, so a maximal run of X is exactly one X*^q X. Hence each class labelling has exactly
    one segmentation, the CRF's P(segmentation) is P(labelling), and Viterbi maximises the same
    thing training does (no spurious ambiguity). Untiled classes keep the scheme's semantics.

Expanded grammar and scores: P -> X* for every allowed P -> X, with the same learnable score as
P -> X (entering a run costs the same whatever its length); X* -> X* (``tile_stay``) and
X* -> X (``tile_exit``): one learnable scalar each per tiled class; X* -> anything else
forbidden. A tiled predecessor P is always its last piece (P* only continues its own run).
init: X* allowed iff X is; final: never X*. Duration of X*: one learnable scalar per tiled class
(``tile_piece``) at d = F, -inf elsewhere. Emissions of X* are X's (``expand``: index_select, so
gradients sum back into the encoder's C columns). All three new parameters start at 0.

Constraints in class space expand the same way: X* takes X's ``start_bias`` and ``max_end``
(both apply per piece, as they did per segment under self-transition tiling: a start_bias or
max_end meant for a run's *start* also binds the run's interior piece starts, so such
constraints belong on untiled labels); X's ``end_bias`` applies only at the run's last base, so
X* gets end_bias 0.
"""

from __future__ import annotations

import math

import numpy as np
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


def marginal_grads(log_z: torch.Tensor, inputs: tuple) -> tuple:
    """d log Z / d inputs summed over the sequences of a batch: each sequence's marginals. An
    impossible sequence (log Z = -inf) contributes nothing, so nothing non-finite flows back.

    The gradient is taken of one scalar, not of log Z with ``grad_outputs``: torch's
    ``autograd.grad`` imports sympy (through ``torch.fx.experimental.symbolic_shapes``) for an
    explicit ``grad_outputs`` tensor, which cost about 2 s of every GPU annotate."""
    finite = torch.isfinite(log_z)
    total = torch.where(finite, log_z, torch.zeros((), dtype=log_z.dtype, device=log_z.device))
    return torch.autograd.grad(total.sum(), inputs)


def nll_of_possible(logz_pair, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll (B,), ok (B,)) from ``logz_pair(rows) -> (logZ, gold logZ)`` of those rows: 0 and
    ok False where either is -inf (the gold labelling is impossible). Impossible sequences are
    recomputed away, so that no -inf - (-inf) enters any backward pass, whatever the backend
    does with the gradient of an impossible sequence."""
    logz, logz_gold = logz_pair(slice(None))
    ok = torch.isfinite(logz) & torch.isfinite(logz_gold)
    if bool(ok.all()):
        return logz - logz_gold, ok
    nll = torch.zeros(B, dtype=logz.dtype, device=logz.device)
    idx = ok.nonzero().squeeze(1)
    if idx.numel():
        logz, logz_gold = logz_pair(idx)
        nll = nll.index_copy(0, idx, logz - logz_gold)
    return nll, ok


def _tiling(scheme: LabelScheme, K: int) -> tuple[list[int], list[int]]:
    """(tiled class indices, full-piece duration F of each)."""
    tiled, piece = [], []
    for c, t in enumerate(scheme.tile):
        if not t:
            continue
        m = scheme.min_length[c]
        M = min(scheme.max_length[c] or K, K)
        if m > M:
            raise ValueError(f"label {scheme.labels[c]!r}: min_length {m} exceeds the longest "
                             f"segment {M} (K = {K}), so it cannot tile")
        tiled.append(c)
        piece.append(M - m + 1)
    return tiled, piece


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
        # Canonical tiling: expanded labels C' = C + n_tiled (module docstring).
        tiled, piece = _tiling(scheme, K)
        n = len(tiled)
        self.n_tiled = n
        self.C_expanded = Cx = C + n
        tiled_t = torch.tensor(tiled, dtype=torch.int64)
        full = torch.arange(C, Cx)
        self.register_buffer("class_of", torch.cat([torch.arange(C), tiled_t]), persistent=False)
        self.register_buffer("tiled_classes", tiled_t, persistent=False)
        self.register_buffer("is_full_piece", torch.arange(Cx) >= C, persistent=False)
        base = scheme.transition_allowed()
        allowed_x = torch.zeros(Cx, Cx, dtype=torch.bool)
        allowed_x[:C, :] = base[:, self.class_of]  # P -> X and P -> X* (P a class / last piece)
        allowed_x[full, full] = True  # X* -> X*
        allowed_x[full, tiled_t] = True  # X* -> X
        self.register_buffer("trans_allowed_x", allowed_x, persistent=False)
        self.register_buffer("init_allowed_x", scheme.init_allowed()[self.class_of],
                             persistent=False)
        self.register_buffer("final_allowed_x", torch.cat([scheme.final_allowed(),
                                                           torch.zeros(n, dtype=torch.bool)]),
                             persistent=False)
        piece_allowed = torch.zeros(K, n, dtype=torch.bool)
        piece_allowed[torch.tensor(piece, dtype=torch.int64) - 1, torch.arange(n)] = True
        self.register_buffer("piece_allowed", piece_allowed, persistent=False)
        self.piece_length = tuple(piece)
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
        self.tile_stay = nn.Parameter(torch.zeros(n))  # X* -> X*
        self.tile_exit = nn.Parameter(torch.zeros(n))  # X* -> X
        self.tile_piece = nn.Parameter(torch.zeros(n))  # duration score of X* (d = F)

    _TILE_PARAMS = ("tile_stay", "tile_exit", "tile_piece")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Checkpoints from before tiling existed hold no tile_* entries; with a scheme that tiles
        # nothing (as theirs does) the parameters are empty, so nothing is lost.
        if self.n_tiled == 0:
            for name in self._TILE_PARAMS:
                state_dict.setdefault(prefix + name, torch.zeros(0))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

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
        """Keyword arguments for the backend functions over the EXPANDED labels (C' = C +
        n_tiled; module docstring): transitions (C', C'), durations (K, C'), init, final (C',).
        Emissions and constraints for them come from ``expand`` / ``expand_constraints``."""
        C, n = self.C, self.n_tiled
        trans, dur = self.transitions_raw, self.durations()
        rows = torch.arange(n, device=trans.device)
        cont = torch.zeros(n, self.C_expanded, dtype=trans.dtype, device=trans.device)
        cont = cont.index_put((rows, rows + C), self.tile_stay)
        cont = cont.index_put((rows, self.tiled_classes), self.tile_exit)
        trans_x = torch.cat([trans[:, self.class_of], cont], dim=0)  # (C', C')
        piece = torch.zeros(self.K, n, dtype=dur.dtype, device=dur.device) + self.tile_piece
        return {
            "transitions": _masked(self.trans_allowed_x, trans_x),
            "durations": torch.cat([dur, _masked(self.piece_allowed, piece)], dim=1),
            "init": _masked(self.init_allowed_x, self.init_raw[self.class_of]),
            "final": _masked(self.final_allowed_x,
                             torch.cat([self.final_raw, self.final_raw.new_zeros(n)])),
        }

    def expand(self, emissions: torch.Tensor) -> torch.Tensor:
        """(B, T, C) class emissions -> (B, T, C') expanded: X* takes X's column."""
        if self.n_tiled == 0:
            return emissions
        return emissions.index_select(-1, self.class_of)

    def expand_constraints(self, constraints: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """start_bias / max_end: X* takes X's; end_bias: X* gets 0 (X's end_bias applies only
        at the run's last base, where its last piece ends)."""
        if self.n_tiled == 0:
            return dict(constraints)
        out = {}
        for key, value in constraints.items():
            if value is None:
                continue
            if key == "end_bias":
                out[key] = torch.cat([value, value.new_zeros(*value.shape[:-1], self.n_tiled)],
                                     dim=-1)
            else:
                out[key] = value.index_select(-1, self.class_of)
        return out

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
        segments (the exact marginal likelihood of the labelling; for tiled labels there is
        exactly one way per run, module docstring). The restriction is passed as
        ``max_end`` (a segment of label c starting at s must end at or before the first position
        >= s whose gold label is not c), which is the same as setting those emissions to
        ``-inf`` but leaves the emissions, and so the prefix sums, finite.

        Args:
            emissions: (B, T, C) float (class space, as the encoder gives them).
            labels: (B, T) int64 class indices; -1 leaves a position unconstrained (e.g. unknown
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
        # The clamp works in class space and expands like any max_end: a piece of expanded label
        # c' starting at s must end at or before the first position >= s whose gold class is
        # not class(c').
        gold_max_end = _gold_max_end(labels, valid, C)
        user_max_end = constraints.get("max_end")
        if user_max_end is None:
            user_max_end = torch.full((B, T, C), T, dtype=torch.int64, device=emissions.device)
        user_max_end = user_max_end.to(torch.int64)
        gold_max_end = torch.minimum(gold_max_end, user_max_end)
        other = {k: v for k, v in constraints.items() if k != "max_end"}
        user_max_end, gold_max_end = (self.expand(x) for x in (user_max_end, gold_max_end))
        other = self.expand_constraints(other)
        emissions_x = self.expand(emissions)

        def logz_pair(rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
            # One scan over both problems (2n sequences): the reference's cost is mostly
            # per-position overhead, so this is nearly as cheap as one.
            n = emissions_x[rows].shape[0]
            twice = lambda x: torch.cat([x[rows], x[rows]])  # noqa: E731
            z = self._logz(twice(emissions_x), twice(lengths),
                           {**{k: twice(v) for k, v in other.items()},
                            "max_end": torch.cat([user_max_end[rows], gold_max_end[rows]])})
            return z[:n], z[n:]

        return nll_of_possible(logz_pair, B)

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
        """Viterbi: (scores (B,), list of B int64 CPU (n, 3) tensors [start, end_excl, class]).

        Class space: the pieces of one tiled run come back merged into one row (runs of an
        untiled label with a self transition stay one row per segment). Since every labelling
        has one segmentation when its labels tile, this is the most probable labelling. A
        sequence with no valid segmentation gets score -inf and an empty (0, 3) tensor.
        """
        self._check(emissions, constraints)
        scores, paths = crf.semicrf_viterbi(self.expand(emissions), lengths=lengths,
                                            **self.crf_inputs(),
                                            **self.expand_constraints(constraints))
        return scores, [self._to_classes(p) for p in paths]

    def _to_classes(self, path: torch.Tensor) -> torch.Tensor:
        """Expanded Viterbi rows -> class rows, each full piece merged into what follows it."""
        if self.n_tiled == 0 or path.shape[0] == 0:
            return path
        path = path.cpu()
        labels = path[:, 2]
        full = self.is_full_piece.cpu()[labels]
        # A row starts a new output row unless the row before it is a full piece of its run.
        keep = torch.ones(len(path), dtype=torch.bool)
        keep[1:] = ~full[:-1]
        starts = keep.nonzero().squeeze(1)
        ends = torch.cat([starts[1:], torch.tensor([len(path)])]) - 1
        return torch.stack([path[starts, 0], path[ends, 1],
                            self.class_of.cpu()[labels[ends]]], dim=1)

    @torch.no_grad()
    def posteriors(self, emissions: torch.Tensor, lengths: torch.Tensor | None = None,
                   **constraints: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(label_post (B, T, C), boundary_post (B, T), log_z (B,)) in class space.

        label_post[b, t, c]: P(position t has class c) (the expanded labels of c summed);
        boundary_post[b, t]: P(a RUN has its last base at t), i.e. a segment of a non-full-piece
        label ends there (a tiled run's interior piece ends are not boundaries). Both are 0 at
        or past a sequence's length and where no segmentation is valid (log_z -inf). They are
        the gradients of log_z with respect to the emissions and to a zero end_bias, so this
        works unchanged for any backend with a differentiable ``semicrf_logz``.
        """
        self._check(emissions, constraints)
        expanded = self.expand_constraints(constraints)
        inputs = {k: v.detach() for k, v in self.crf_inputs().items()}
        with torch.enable_grad():
            em = emissions.detach().requires_grad_(True)
            eb = expanded.pop("end_bias", None)
            B, T, _ = em.shape
            eb = (em.new_zeros(B, T, self.C_expanded) if eb is None else eb.detach().clone())
            eb.requires_grad_(True)
            log_z = crf.semicrf_logz(self.expand(em), lengths=lengths, end_bias=eb, **inputs,
                                     **expanded)
            label_post, end_post = marginal_grads(log_z, (em, eb))
        label_post = label_post.nan_to_num(0.0)
        boundary_post = end_post[..., :self.C].nan_to_num(0.0).sum(dim=-1)
        return label_post, boundary_post, log_z.detach()

    @torch.no_grad()
    def decode_and_posteriors(self, emissions: torch.Tensor,
                              lengths: torch.Tensor | None = None, **constraints: torch.Tensor):
        """``decode`` and ``posteriors`` of one batch: (scores, paths, label_post,
        boundary_post, log_z). Under the compiled CPU backend both come from one preparation of
        the inputs (``cpu.viterbi_and_marginals``); elsewhere it is the two calls."""
        if crf.resolve(emissions.device) != "cpu":
            scores, paths = self.decode(emissions, lengths, **constraints)
            return (scores, paths, *self.posteriors(emissions, lengths, **constraints))
        from genoseg.crf import cpu

        self._check(emissions, constraints)
        inputs = {k: v.detach() for k, v in self.crf_inputs().items()}
        # A run ends where one of the first C labels ends (never a full piece X*).
        boundary_states = np.arange(self.C_expanded) < self.C
        scores, paths, log_z, label_post, boundary_post = cpu.viterbi_and_marginals(
            self.expand(emissions), lengths=lengths, **inputs,
            **self.expand_constraints(constraints), class_of=self.class_of.cpu().numpy(),
            boundary_states=boundary_states)
        return (scores, [self._to_classes(p) for p in paths], label_post, boundary_post, log_z)

    def _logz(self, emissions: torch.Tensor, lengths: torch.Tensor,
              constraints: dict[str, torch.Tensor]) -> torch.Tensor:
        """Backend logZ; emissions and constraints already expanded."""
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
                f"tiled={self.n_tiled}, duration_prior={self.duration_prior!r}")
