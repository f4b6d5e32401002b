"""The semi-CRF head of the codon-phase gene grammar (``[crf] grammar = "phase"``).

Same public methods as ``genoseg.crf.head.SemiCRFHead`` (``nll``, ``loss``, ``decode``,
``posteriors``), in the same class space (the gene scheme's five labels), plus one required
input: ``codes``, the (B, T) sequence (``codons.encode`` codes; ``codes_from_inputs`` takes
them from the network's one-hot input). From it every call builds the grammar's hard
constraints (``genoseg.labels.phase_crf``: start/stop codons, GT/GC..AG splice sites, no
in-frame stop in an exon, no stop across a splice) as ``start_bias`` / ``end_bias`` /
``max_end`` over the 80 CRF states, so any decoded path is a set of valid gene models.

The encoder gives ``n_outputs = 5 + 8`` columns per base: the five class emissions (each state
takes its class's column) and eight site scores (``phase_crf.SITES``) that are added to the
bias of the states whose boundary that site is (e.g. the donor score to an intron's splice
head), so the network learns splice-site and start/stop strength; a GC donor also gets one
learned offset (``gc_donor``). Transitions, init/final and durations are learnable per state;
durations use the log-linear prior of ``SemiCRFHead`` plus a residual table. Any state may
start a sequence (a window or contig may cut a run anywhere); only a last piece may end one.
Decoding may ask for complete genes (``complete_genes=True``): then a sequence starts and ends
in intergenic sequence, as a contig end does unless the assembly cut a gene. With free ends a
run touching a sequence end comes back as a ``phase_crf.CutRun`` (what its states tell: its
reading frame, not its cut-off site), from which ``phase_crf.gene_transcripts`` makes partial
gene models.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from genoseg.crf import backend as crf
from genoseg.crf.head import (_gold_max_end, _masked, _relax_cut_runs, marginal_grads,
                              nll_of_possible)
from genoseg.crf.threads import map_sequences
from genoseg.labels import codons
from genoseg.labels.phase_crf import SITES, PhaseGrammar, cut_run
from genoseg.labels.scheme import GENE_LABELS, LabelScheme

N_CLASSES = len(GENE_LABELS)
COLUMN_BASES_PER_THREAD = 500_000


def codes_from_inputs(x: torch.Tensor) -> torch.Tensor:
    """(B, T) uint8 base codes (A C G T -> 0..3, else 4) from the network input (B, T, ch),
    whose first five channels are the one-hot A, C, G, T, N (``genoseg.inputs``)."""
    onehot = x[..., :5]
    code = onehot.argmax(dim=-1)
    return torch.where(onehot.sum(dim=-1) > 0, code, torch.full_like(code, 4)).to(torch.uint8)


class PhaseGeneHead(nn.Module):
    """Learnable scores of the phase gene grammar.

    Args:
        scheme: a gene scheme (kind "gene", labels ``GENE_LABELS``): the class space.
        K: maximum piece duration (>= 5).
        min_intron: shortest intron (bp).
        flat_long_runs: pin the per-piece prior score of intergenic and intron full pieces
            (self transition plus duration) to 0, as an HMM's geometric tail with a long mean
            length, so a long intron and a long intergenic stretch differ only by their
            emissions. The training genes' short flanks cannot teach these two rates: learned
            freely, the intron's came out 0.023 nats/bp ahead, and whole chromosomes decoded as
            a few hundred giant genes spanning 93 % of the sequence.
    """

    grammar_name = "phase"

    def __init__(self, scheme: LabelScheme, K: int, min_intron: int = 40,
                 flat_long_runs: bool = False, content_order: int = 0,
                 content_weight: float = 1.0) -> None:
        super().__init__()
        if scheme.kind != "gene" or tuple(scheme.labels) != GENE_LABELS:
            raise ValueError(f"the phase grammar needs a gene scheme with labels {GENE_LABELS}, "
                             f"got {scheme.labels}")
        self.scheme = scheme
        self.C = N_CLASSES
        self.K = int(K)
        self.grammar = g = PhaseGrammar(self.K, min_intron)
        self.C_expanded = Cx = g.C
        self.n_outputs = N_CLASSES + len(SITES)
        self.register_buffer("class_of", torch.from_numpy(g.class_of()), persistent=False)
        self.register_buffer("is_last", torch.from_numpy(g.is_last()), persistent=False)
        self.register_buffer("is_intergenic",
                             self.class_of == GENE_LABELS.index("intergenic"), persistent=False)
        # How a run's end shows in a path (``PhaseGrammar.run_end_states``): the end of one of
        # these states' segments, or the start of one of those right after it.
        run_ends, run_opens = g.run_end_states()
        self.register_buffer("run_ends", torch.from_numpy(run_ends), persistent=False)
        self.register_buffer("run_opens", torch.from_numpy(run_opens), persistent=False)
        self.register_buffer("trans_allowed_x", torch.from_numpy(g.transitions_allowed()),
                             persistent=False)
        self.register_buffer("dur_allowed_x", torch.from_numpy(g.durations_allowed()),
                             persistent=False)
        start_site, end_site = g.site_channels()
        n_sites = len(SITES)  # index n_sites = a zero column: no site score
        self.register_buffer("start_site", torch.from_numpy(np.where(start_site < 0, n_sites,
                                                                      start_site)),
                             persistent=False)
        self.register_buffer("end_site", torch.from_numpy(np.where(end_site < 0, n_sites,
                                                                    end_site)),
                             persistent=False)
        # Which distinct constraint column (``PhaseGrammar.sequence_columns``) each state uses.
        for key, column in g.column_index().items():
            self.register_buffer(f"column_{key}", torch.from_numpy(column), persistent=False)
        # Runs cut by a window edge and shorter than this are left unconstrained in training
        # (an exon run needs its 3-bp codon head plus a last piece; an intron its minimum).
        self.register_buffer("relax_length", torch.tensor([1, 6, min_intron, 6, min_intron]),
                             persistent=False)
        self.flat_long_runs = bool(flat_long_runs)
        long_classes = {GENE_LABELS.index(name) for name in ("intergenic", "intron+", "intron-")}
        long_pieces = [i for i, st in enumerate(g.states)
                       if flat_long_runs and st.role == "piece" and st.cls in long_classes]
        flat_trans = torch.zeros(Cx, Cx, dtype=torch.bool)
        flat_trans[long_pieces, long_pieces] = True
        flat_dur = torch.zeros(self.K, Cx, dtype=torch.bool)
        flat_dur[:, long_pieces] = True
        self.register_buffer("flat_trans", flat_trans, persistent=False)
        self.register_buffer("flat_dur", flat_dur, persistent=False)
        d = torch.arange(1, self.K + 1, dtype=torch.get_default_dtype())
        self.register_buffer("dur_features", torch.stack([d.log(), d / self.K], dim=1),
                             persistent=False)
        self.transitions_raw = nn.Parameter(torch.zeros(Cx, Cx))
        self.init_raw = nn.Parameter(torch.zeros(Cx))
        self.final_raw = nn.Parameter(torch.zeros(Cx))
        self.dur_coef = nn.Parameter(torch.zeros(2, Cx))
        self.dur_residual = nn.Parameter(torch.zeros(self.K, Cx))
        self.gc_donor = nn.Parameter(torch.zeros(()))
        # The codon-periodic coding content (genoseg.crf.coding_content), fitted by counting on
        # the training genes when the run starts (genoseg.training.loop), or None.
        self.content = None
        if content_order:
            from genoseg.crf.coding_content import CodingContent, state_columns

            self.content = CodingContent(content_order, content_weight)
            start_col, end_col = state_columns(g)
            self.register_buffer("content_start", torch.from_numpy(start_col), persistent=False)
            self.register_buffer("content_end", torch.from_numpy(end_col), persistent=False)

    # ------------------------------------------------------------------------------------------
    # Scores
    # ------------------------------------------------------------------------------------------

    def crf_inputs(self, complete_genes: bool = False) -> dict[str, torch.Tensor]:
        """transitions (C', C'), durations (K, C'), init, final (C',) over the states.

        ``complete_genes``: only intergenic states may start or end the sequence, so every gene
        lies whole inside it. The learned init/final scores come from training windows cut at
        random places, where a window often starts inside an intron; a contig end is not such a
        cut, and with free ends the decoder explained the short flanks of the fly test records
        as the intron of a gene cut by the record end (17 of 100 genes lost that way)."""
        dur = self.dur_features @ self.dur_coef + self.dur_residual
        trans = self.transitions_raw
        if self.flat_long_runs:
            zero = trans.new_zeros(())
            trans = torch.where(self.flat_trans, zero, trans)
            dur = torch.where(self.flat_dur, zero, dur)
        init_ok = self.is_intergenic if complete_genes else torch.ones_like(self.is_last)
        return {"transitions": _masked(self.trans_allowed_x, trans),
                "durations": _masked(self.dur_allowed_x, dur),
                "init": _masked(init_ok, self.init_raw),
                "final": _masked(self.is_last & init_ok, self.final_raw)}

    def expand(self, emissions: torch.Tensor) -> torch.Tensor:
        """(B, T, n_outputs) network output -> (B, T, C') state emissions."""
        return emissions[..., self.class_of]

    def with_content(self, emissions: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        """The network's output plus the coding content's mean score in the exon columns
        (``CodingContent.mean_scores``); the output itself without a content model. Every
        public method applies it once, before anything reads the class emissions."""
        if self.content is None:
            return emissions
        if codes is None:
            raise TypeError("a phase head with a coding content model needs codes=")
        mean = self.content.mean_scores(codes.to(emissions.device), dtype=emissions.dtype)
        delta = emissions.new_zeros(emissions.shape)
        delta[..., GENE_LABELS.index("exon+")] = mean[..., 0]
        delta[..., GENE_LABELS.index("exon-")] = mean[..., 1]
        return emissions + delta

    def sequence_columns(self, codes: torch.Tensor, lengths) -> list[dict]:
        """Each sequence's distinct constraint columns (``PhaseGrammar.sequence_columns`` of
        its codes, cut at its length): what ``constraints`` gathers per state, and what the
        lean host Viterbi reads (``genoseg.crf.phase_viterbi.decode``).

        numpy on the host, one sequence per thread, but one thread per
        COLUMN_BASES_PER_THREAD bases at most: on short sequences the numpy calls are small and
        hold the GIL. For the 100 fly test records this step took 2.2 s on the 16 threads of
        an H100 host (profile, session 10); on a 2-core CPU it takes 0.32 s on one thread and
        0.55 s on 16."""
        codes_np = codes.detach().cpu().numpy().astype(np.uint8)
        lens = [int(L) for L in torch.as_tensor(lengths).cpu().tolist()]
        return self.sequence_columns_of([codes_np[b, :L] for b, L in enumerate(lens)])

    def sequence_columns_of(self, codes: list[np.ndarray]) -> list[dict]:
        """``sequence_columns`` of unpadded per-sequence codes (uint8 arrays)."""
        g = self.grammar
        return map_sequences(lambda b: g.sequence_columns(codes[b]), len(codes),
                             sizes=[len(c) for c in codes], min_size=COLUMN_BASES_PER_THREAD)

    def constraints(self, emissions: torch.Tensor, codes: torch.Tensor,
                    lengths: torch.Tensor, columns: list[dict] | None = None
                    ) -> dict[str, torch.Tensor]:
        """start_bias, end_bias (B, T, C') float and max_end (B, T, C') int64 over the states:
        -inf where the sequence forbids, else the learned site score (plus the GC offset).
        ``columns``: the sequences' ``sequence_columns``, when the caller has them."""
        B, T, _ = emissions.shape
        dev = emissions.device
        lens = [int(L) for L in lengths.detach().cpu().tolist()]
        per_seq = columns if columns is not None else self.sequence_columns(codes, lens)
        gathered = {}
        for key, neutral in (("start_ok", True), ("end_ok", True), ("start_gc", False),
                             ("end_gc", False), ("max_end", T)):
            n = per_seq[0][key].shape[1]
            # The distinct columns are few (about 34 bool and 22 int for 80 states): fill them
            # on the host, move them, and gather the per-state columns on the device, so the
            # host never builds or copies (B, T, C') arrays.
            dtype = np.int32 if key == "max_end" else bool
            host = np.full((B, T, n), neutral, dtype=dtype)
            for b, cols in enumerate(per_seq):
                # max_end >= T means no limit (the grammar uses a huge sentinel): clip to T
                # before narrowing to int32.
                host[b, :lens[b]] = np.minimum(cols[key], T) if key == "max_end" else cols[key]
            if key == "max_end" and dev.type == "cpu":
                host = host.astype(np.int64)  # already <= T: no clamp needed
            gathered[key] = _gather_last(torch.from_numpy(host).to(dev),
                                         getattr(self, f"column_{key}"))
        ok_s, ok_e = gathered["start_ok"], gathered["end_ok"]
        gc_s, gc_e = gathered["start_gc"], gathered["end_gc"]
        max_end = gathered["max_end"]
        if dev.type != "cpu":
            max_end = max_end.to(torch.int64).clamp(max=T)
        sites = emissions[..., N_CLASSES:]
        sites = torch.cat([sites, sites.new_zeros(B, T, 1)], dim=-1)
        neg = torch.full((), -math.inf, dtype=emissions.dtype, device=dev)

        content = (None if self.content is None
                   else self.content.columns(codes.to(dev), dtype=emissions.dtype))

        def bias(ok, gc, channel, content_column):
            score = _gather_last(sites, channel)
            score = score + torch.where(gc, self.gc_donor.to(score.dtype),
                                        torch.zeros((), dtype=score.dtype, device=dev))
            if content is not None:
                score = score + _gather_last(content, content_column)
            return torch.where(ok, score, neg)

        return {"start_bias": bias(ok_s, gc_s, self.start_site,
                                   getattr(self, "content_start", None)),
                "end_bias": bias(ok_e, gc_e, self.end_site, getattr(self, "content_end", None)),
                "max_end": max_end}

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------

    def nll(self, emissions: torch.Tensor, labels: torch.Tensor,
            lengths: torch.Tensor | None = None, *, codes: torch.Tensor,
            relax_cut_runs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative log-likelihood of per-position gold class labels (as ``SemiCRFHead.nll``:
        logZ over all paths minus logZ over the paths whose states' classes match the labels,
        which sums over the phase labellings the classes leave open, e.g. at a window edge).
        Returns (nll (B,), ok (B,)); ok is False where the gold labelling is impossible."""
        B, T, _ = self._check(emissions)
        dev = emissions.device
        labels = labels.to(device=dev, dtype=torch.int64)
        lengths = self._lengths(lengths, B, T, dev)
        valid = torch.arange(T, device=dev)[None, :] < lengths[:, None]
        if ((labels >= self.C) & valid).any() or ((labels < -1) & valid).any():
            raise ValueError(f"labels must lie in [-1, C={self.C}) at valid positions")
        if relax_cut_runs:
            labels = _relax_cut_runs(labels, lengths, self.relax_length)
        emissions = self.with_content(emissions, codes)
        cons = self.constraints(emissions, codes, lengths)
        seq_max_end = cons.pop("max_end")
        gold_max_end = torch.minimum(
            _gold_max_end(labels, valid, self.C).index_select(-1, self.class_of), seq_max_end)
        em = self.expand(emissions)
        inputs = self.crf_inputs()

        def logz_pair(rows):
            n = em[rows].shape[0]
            twice = lambda x: torch.cat([x[rows], x[rows]])  # noqa: E731
            z = crf.semicrf_logz(twice(em), lengths=twice(lengths), **inputs,
                                 start_bias=twice(cons["start_bias"]),
                                 end_bias=twice(cons["end_bias"]),
                                 max_end=torch.cat([seq_max_end[rows], gold_max_end[rows]]))
            return z[:n], z[n:]

        return nll_of_possible(logz_pair, B)

    def loss(self, emissions: torch.Tensor, labels: torch.Tensor,
             lengths: torch.Tensor | None = None, *, codes: torch.Tensor,
             relax_cut_runs: bool = True) -> tuple[torch.Tensor, int]:
        """Mean NLL per base over the possible sequences, and the number left out."""
        B, T = labels.shape
        lengths = self._lengths(lengths, B, T, emissions.device)
        nll, ok = self.nll(emissions, labels, lengths, codes=codes,
                           relax_cut_runs=relax_cut_runs)
        n_bad = int((~ok).sum())
        if n_bad == B:
            zero = emissions.nan_to_num(0.0, posinf=0.0, neginf=0.0).sum() * 0.0
            return zero + self.transitions_raw.sum() * 0.0, n_bad
        return nll[ok].sum() / lengths[ok].sum().to(nll.dtype), n_bad

    # ------------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------------

    def _constraints_for(self, emissions, codes, lengths, constraints):
        """The given prebuilt ``constraints`` (``self.constraints`` of these emissions, codes
        and lengths: decode and posteriors of one batch share them), else built from codes."""
        if constraints is not None:
            return dict(constraints)
        if codes is None:
            raise TypeError("the phase head needs codes= (or prebuilt constraints=)")
        return self.constraints(emissions, codes, lengths)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, lengths: torch.Tensor | None = None, *,
               codes: torch.Tensor | None = None, with_labels: bool = False,
               constraints: dict | None = None, complete_genes: bool = False):
        """Viterbi: (scores (B,), list of B int64 CPU (n, 3) class rows [start, end, class]),
        one row per run. ``with_labels``: also a list of B lists with each run's phase label
        name, or for a run touching a sequence end (maybe cut there) a
        ``phase_crf.CutRun``: what its states tell (``_runs``). ``complete_genes``: see
        ``crf_inputs``."""
        B, T, _ = self._check(emissions)
        lengths = self._lengths(lengths, B, T, emissions.device)
        cons = self._constraints_for(emissions, codes, lengths, constraints)
        emissions = self.with_content(emissions, codes)
        scores, paths = crf.semicrf_viterbi(self.expand(emissions), lengths=lengths,
                                            **self.crf_inputs(complete_genes), **cons)
        runs = [self._runs(p, int(L), _codes_row(codes, b, int(L)))
                for b, (p, L) in enumerate(zip(paths, lengths.tolist()))]
        rows = [r[0] for r in runs]
        if with_labels:
            return scores, rows, [r[1] for r in runs]
        return scores, rows

    def _runs(self, path: torch.Tensor, length: int, codes: np.ndarray | None = None
              ) -> tuple[torch.Tensor, list]:
        """State rows -> (class rows, run labels): a run ends at its last piece, at a codon head
        that is a whole 3-bp exon, or at the end of the path (always a last piece), and its
        final state names its label. A run touching either end of the sequence may be cut
        there (``constraints`` relaxes the sites): its label is a ``phase_crf.CutRun``, which
        says what of that name holds (``codes``: the sequence's codes, for its
        ``stop_at_cut``)."""
        path = path.cpu().numpy()
        g = self.grammar
        rows, labels = [], []
        start = None
        for k, (s, e, c) in enumerate(path.tolist()):
            if start is None:
                start = s
            nxt = int(path[k + 1, 2]) if k + 1 < len(path) else None
            state = g.states[c]
            label = g.exit_label(c, nxt)
            ends = (state.role == "last" or label is not None or nxt is None
                    or g.states[nxt].cls != state.cls)
            if ends:
                rows.append((start, e, state.cls))
                # label is None only on a path of score -inf (a valid path ends in a last piece,
                # and pieces continue their run), which callers reject.
                cut = label is not None and (start == 0 or e == length)
                labels.append(cut_run(label, start, e, length, codes) if cut else label)
                start = None
        out = torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)
        return out, labels

    @torch.no_grad()
    def posteriors(self, emissions: torch.Tensor, lengths: torch.Tensor | None = None, *,
                   codes: torch.Tensor | None = None, constraints: dict | None = None,
                   complete_genes: bool = False):
        """(label_post (B, T, 5), boundary_post (B, T), log_z (B,)) in class space, as
        ``SemiCRFHead.posteriors``: boundary_post[b, t] is P(a run, i.e. a segment of the
        five-class labelling, has its last base at t), from the start and end marginals
        (``PhaseGrammar.run_end_states``: a run ends at a last piece, or at a codon head that
        is a whole 3-bp exon). ``complete_genes``: see ``crf_inputs``."""
        B, T, _ = self._check(emissions)
        lengths = self._lengths(lengths, B, T, emissions.device)
        inputs = {k: v.detach() for k, v in self.crf_inputs(complete_genes).items()}
        with torch.enable_grad():
            em = self.with_content(emissions, codes).detach().requires_grad_(True)
            cons = self._constraints_for(em.detach(), codes, lengths, constraints)
            sb = cons.pop("start_bias").detach().clone().requires_grad_(True)
            eb = cons.pop("end_bias").detach().clone().requires_grad_(True)
            log_z = crf.semicrf_logz(self.expand(em), lengths=lengths, start_bias=sb,
                                     end_bias=eb, **inputs, max_end=cons["max_end"])
            grad_em, grad_sb, grad_eb = marginal_grads(log_z, (em, sb, eb))
        label_post = grad_em[..., :N_CLASSES].nan_to_num(0.0)
        boundary_post = run_end_posterior(grad_sb.nan_to_num(0.0), grad_eb.nan_to_num(0.0),
                                          lengths, self.run_ends, self.run_opens)
        return label_post, boundary_post, log_z.detach()

    @torch.no_grad()
    def decode_and_posteriors(self, emissions: torch.Tensor, lengths: torch.Tensor | None = None,
                              *, codes: torch.Tensor | None = None,
                              constraints: dict | None = None, complete_genes: bool = False):
        """``decode(..., with_labels=True)`` and ``posteriors(...)`` of one batch: (scores, rows,
        run labels, label_post, boundary_post, log_z). Under the compiled CPU backend both come
        from one preparation of the (B, T, 80) inputs (``cpu.viterbi_and_marginals``), which
        saves a sixth of a CPU annotate; elsewhere it is the two calls. There the constraints
        of each sequence are built on the worker thread that scans it, cut at its length, not
        for the padded batch on one thread (3.0 of 12.6 s of the fly test set's CPU annotate)."""
        B, T, _ = self._check(emissions)
        lengths = self._lengths(lengths, B, T, emissions.device)
        on_cpu_twin = crf.resolve(emissions.device) == "cpu"
        if on_cpu_twin and constraints is None and codes is None:
            raise TypeError("the phase head needs codes= (or prebuilt constraints=)")
        cons = (None if on_cpu_twin and constraints is None
                else self._constraints_for(emissions, codes, lengths, constraints))
        if not on_cpu_twin:
            scores, rows, run_labels = self.decode(emissions, lengths, codes=codes,
                                                   with_labels=True, constraints=cons,
                                                   complete_genes=complete_genes)
            return (scores, rows, run_labels,
                    *self.posteriors(emissions, lengths, codes=codes, constraints=cons,
                                     complete_genes=complete_genes))
        from genoseg.crf import cpu

        inputs = {k: v.detach() for k, v in self.crf_inputs(complete_genes).items()}
        emissions = self.with_content(emissions, codes)

        def one_sequence(b):  # its emissions and constraints, cut at its length
            L = int(lengths[b])
            em_b = emissions[b:b + 1, :L]
            return dict(emissions=self.expand(em_b),
                        **self.constraints(em_b, codes[b:b + 1, :L], lengths[b:b + 1]))

        scores, paths, log_z, label_post, boundary_post = cpu.viterbi_and_marginals(
            self.expand(emissions), lengths=lengths, **inputs, **(cons or {}),
            class_of=self.class_of.cpu().numpy(), boundary_states=self.run_ends.cpu().numpy(),
            boundary_starts=self.run_opens.cpu().numpy(),
            sequence_inputs=one_sequence if cons is None else None)
        runs = [self._runs(p, int(L), _codes_row(codes, b, int(L)))
                for b, (p, L) in enumerate(zip(paths, lengths.tolist()))]
        return (scores, [r[0] for r in runs], [r[1] for r in runs], label_post, boundary_post,
                log_z)

    def _lengths(self, lengths, B, T, dev) -> torch.Tensor:
        if lengths is None:
            return torch.full((B,), T, dtype=torch.int64, device=dev)
        return torch.as_tensor(lengths, device=dev).to(torch.int64)

    def _check(self, emissions: torch.Tensor) -> tuple[int, int, int]:
        if emissions.dim() != 3 or emissions.shape[-1] != self.n_outputs:
            raise ValueError(f"emissions must be (B, T, {self.n_outputs}), "
                             f"got {tuple(emissions.shape)}")
        return tuple(emissions.shape)

    def extra_repr(self) -> str:
        return (f"grammar='phase', classes={self.C}, states={self.C_expanded}, K={self.K}, "
                f"min_intron={self.grammar.min_intron}"
                + (", flat_long_runs=True" if self.flat_long_runs else "")
                + (f", content_order={self.content.order}" if self.content is not None else ""))


def run_end_posterior(start_post: torch.Tensor, end_post: torch.Tensor, lengths: torch.Tensor,
                      ends: torch.Tensor, opens: torch.Tensor) -> torch.Tensor:
    """(B, T) P(a run has its last base at t) from the start and end marginals (B, T, C') of
    the states (d log Z / d start_bias, end_bias): the end marginals of ``ends`` at t plus the
    start marginals of ``opens`` at t + 1 (``PhaseGrammar.run_end_states``), and every
    segment end at a sequence's last base. 0 past a length, as the marginals are."""
    post = (end_post * ends).sum(dim=-1)
    post[:, :-1] += (start_post[:, 1:] * opens).sum(dim=-1)
    rows = torch.arange(post.shape[0], device=post.device)
    last = (lengths.to(post.device) - 1).clamp(min=0)
    post[rows, last] = end_post[rows, last].sum(dim=-1)
    return post


def _codes_row(codes: torch.Tensor | None, b: int, length: int) -> np.ndarray | None:
    """(length,) uint8 codes of sequence b of a (B, T) batch, on the host (None: none given)."""
    return None if codes is None else codes[b, :length].cpu().numpy()


def _gather_last(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(-1, index)`` for a (B, T, n) tensor. On a CPU torch gathers along the
    last dimension element by element (0.55 s for 8 x 60,000 x 80 bools, 1.1 s for int64, on
    one core); numpy's take does it in 0.04-0.1 s. With autograd (training on a CPU) rows of
    the (n, B, T) transpose are selected instead (about 2 times faster)."""
    if x.device.type != "cpu":
        return x.index_select(-1, index)
    if not x.requires_grad:  # numpy's take copies whole runs: about 15 times faster
        return torch.from_numpy(np.take(x.numpy(), index.numpy(), axis=-1))
    rows = x.permute(2, 0, 1).contiguous().index_select(0, index)
    return rows.permute(1, 2, 0).contiguous()


def encode_sequences(seqs: list[str], T: int) -> torch.Tensor:
    """(B, T) uint8 codes of sequences (padded with 4 = N)."""
    return pad_codes([codons.encode(s) for s in seqs], T)


def pad_codes(codes: list[np.ndarray], T: int) -> torch.Tensor:
    """(B, T) uint8 batch of sequences' codes (``codons.encode``), padded with 4 = N."""
    out = np.full((len(codes), T), codons.NONE, dtype=np.uint8)
    for b, c in enumerate(codes):
        out[b, :len(c)] = c
    return torch.from_numpy(out)
