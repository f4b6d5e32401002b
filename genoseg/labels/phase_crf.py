"""The codon-phase gene grammar as semi-CRF states, with runs longer than K and exact constraints.

``genoseg.labels.phase`` defines the 45 gene labels and their rules for single segments. Real
exons (fly: 6 % over 1 kb, yeast up to 15 kb) and introns (up to 110 kb) are far longer than any
affordable maximum duration K, so a label's *run* is cut into pieces inside the CRF. Each run
has exactly one segmentation, and every rule still holds exactly, by giving each piece only
the constraints that belong to it:

    exon run        [H] Y*^q X       H: the start codon (+ single/initial) or the stop codon
                                     (- single/terminal) as its own 3-bp piece, when the run's
                                     5'/3' codon sits at its left end; Y*: full pieces of length
                                     F_e (a multiple of 3); X: the label's last piece, whose
                                     length spans F_e values from 1 (3 for a + exon ending in
                                     its stop codon) and has the label's residue mod 3.
    intron run      H I*^q I         H: the 2-bp splice dinucleotide at the left end (donor on +,
                                     acceptor on -) with the left-end checks; I*: full pieces;
                                     I: last piece with the right-end checks.
    intergenic run  G*^q G           as ``genoseg.crf.head`` tiles any label.

Why pieces are exact. A constraint on a run's left end sits on H, one on its right end on the
last piece (X / I), and the interior pieces carry none, so no constraint ever lands on an
interior cut. Exon full pieces have a length divisible by 3, so every piece of a run starts in
the run's reading frame. An in-frame stop codon is forbidden by the ONE piece that holds its
3'-most base on the gene's strand (``piece_max_end``, ``last_piece_max_end``): on + the piece
holding its last base, which looks back at the up to 2 bases of it before the piece; on - the
piece holding its genome-left base, which looks past its right end at the up to 2 bases after
it. A stop straddling two pieces is thus caught by exactly one of them. A piece never knows
whether the exon goes on 3' of it, so a codon that might run past the exon's 3' end (into the
donor's GT/GC) is left to the piece that would hold its 3' base, and past the exon's end there
is none. A check reaches outside the exon only across a run's 5' end, into the acceptor's AG
(read 5' -> 3' on the gene's strand), and no stop (TAA, TAG, TGA) starts with A or G: so the
pieces forbid exactly the in-frame stops inside the exon, and codons split by a splice are the
intron tails' business (``phase.tail_masks``). Uniqueness: a run of length n has one
decomposition, because the last piece ranges over exactly one full piece's worth of
consecutive lengths (restricted to the label's residue mod 3 for exons, which the piece length
preserves).

Shared pieces. Exon full pieces and the exon heads depend only on strand and reading frame, not
on which exon label the run will turn out to be, so they are shared: per strand one piece
family for runs after intergenic sequence (frame 0) and one per intron phase. The last piece
names the label. This keeps the state count at 80 instead of 45 + 2 x 44.

Sequence ends. A training window or a draft contig may cut a run: a path may start in any
state and ends in any last piece, and the edges carry no site constraint but one (the + codon
head at 0 is no stop codon). A decoded run touching an end gets a ``CutRun`` label, which
still gives the run's reading frame at both ends: what partial gene models
(``gene_transcripts``) need for their CDS phases.

States are in class space ``GENE_LABELS`` (intergenic, exon+, intron+, exon-, intron-) for
emissions, gold labels, decoded runs and posteriors; the phase labels only exist inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genoseg.labels import codons
from genoseg.labels.phase import BY_NAME, LABELS, PhaseLabel, _may_follow, tail_masks
from genoseg.labels.scheme import GENE_LABELS

# Encoder site-score channels, after the 5 class emission columns: a learned score for each kind
# of site, added to the bias of the piece whose boundary the site is.
SITES = ("start+", "stop+", "donor+", "acceptor+", "start-", "stop-", "donor-", "acceptor-")


def class_of_label(lab: PhaseLabel) -> int:
    if lab.kind == "intergenic":
        return GENE_LABELS.index("intergenic")
    kind = "exon" if lab.is_exon else "intron"
    return GENE_LABELS.index(f"{kind}{lab.strand}")


@dataclass(frozen=True)
class State:
    """One CRF state. ``role``: "last" (a label's last piece: the run ends here), "piece" (a
    full piece of fixed length) or "head" (H). ``targets``: the labels whose run this state may
    belong to (one for "last"). ``frame`` (exon pieces): reading frame at the piece's 5' side
    on +, at its right end on - (the phase that ``piece_max_end`` takes)."""

    name: str
    role: str
    cls: int
    targets: tuple[str, ...]
    strand: str | None = None
    frame: int | None = None
    site_start: str | None = None  # site channel added to start_bias
    site_end: str | None = None  # site channel added to end_bias


def _has_head(lab: PhaseLabel) -> bool:
    """Exon labels whose left end is a codon (start codon on +, stop codon on -)."""
    return lab.is_exon and ((lab.strand == "+" and lab.starts_cds)
                            or (lab.strand == "-" and lab.ends_cds))


def _piece_key(lab: PhaseLabel) -> str:
    """Which shared full-piece family an exon label's run uses: G after intergenic sequence,
    E<p> after an intron of phase p (the label's entry phase on +, exit phase on -)."""
    if _has_head(lab):
        return f"G{lab.strand}"
    p = lab.entry if lab.strand == "+" else lab.exit
    return f"E{p}{lab.strand}"


@dataclass
class PhaseGrammar:
    """The states and their static tables for maximum duration K.

    Args:
        K: maximum segment duration; every piece fits in it.
        min_intron: shortest intron (bp); must be >= 3 and <= K + 2.
    """

    K: int
    min_intron: int = 40
    states: list[State] = field(init=False)

    def __post_init__(self) -> None:
        K = self.K
        if K < 5:
            raise ValueError(f"the phase grammar needs K >= 5, got {K}")
        if not 3 <= self.min_intron <= K + 2:
            raise ValueError(f"min_intron must lie in [3, K + 2 = {K + 2}], got {self.min_intron}")
        # F_e: a multiple of 3, so that pieces keep the frame, and <= K - 2 so that a last piece
        # holding a + stop codon (lengths [3, F_e + 2]) fits in K.
        self.exon_piece = 3 * ((K - 2) // 3)
        self.intron_last_min = self.min_intron - 2  # I is at least this long
        self.intron_piece = K - self.intron_last_min + 1  # F_i: I ranges over [m, K]
        states = [State(lab.name, "last", class_of_label(lab), (lab.name,), lab.strand,
                        site_start=None, site_end=_end_site(lab)) for lab in LABELS]
        states.append(State("intergenic*", "piece", 0, ("intergenic",)))
        families: dict[str, list[str]] = {}
        for lab in LABELS:
            if lab.is_exon:
                families.setdefault(_piece_key(lab), []).append(lab.name)
        for key, targets in families.items():
            strand = key[-1]
            frame = 0 if key[0] == "G" else int(key[1])
            states.append(State(f"exon{strand}*{key[:-1]}", "piece", class_of_label(
                BY_NAME[targets[0]]), tuple(targets), strand, frame))
        for strand in "+-":
            targets = tuple(lab.name for lab in LABELS if lab.strand == strand and _has_head(lab))
            states.append(State(f"exon{strand}^codon", "head", class_of_label(BY_NAME[targets[0]]),
                                targets, strand, 0,
                                site_start="start+" if strand == "+" else "stop-"))
        for lab in LABELS:
            if lab.kind == "intron":
                states.append(State(f"{lab.name}*", "piece", class_of_label(lab), (lab.name,),
                                    lab.strand))
                states.append(State(f"{lab.name}^splice", "head", class_of_label(lab),
                                    (lab.name,), lab.strand,
                                    site_start="donor+" if lab.strand == "+" else "acceptor-"))
        self.states = states
        self.index = {s.name: i for i, s in enumerate(states)}
        self.n_labels = len(LABELS)

    @property
    def C(self) -> int:
        """Number of states."""
        return len(self.states)

    # ------------------------------------------------------------------------------------------
    # Static tables
    # ------------------------------------------------------------------------------------------

    def class_of(self) -> np.ndarray:
        """(C,) int64: the class (GENE_LABELS column) of each state."""
        return np.array([s.cls for s in self.states], dtype=np.int64)

    def is_last(self) -> np.ndarray:
        return np.array([s.role == "last" for s in self.states])

    def run_end_states(self) -> tuple[np.ndarray, np.ndarray]:
        """(ends (C,), opens (C,)) bool: where a path shows that a run ends at t (t before a
        sequence's last base). Either a segment of an ``ends`` state ends at t (a last piece
        not followed by an intron), or a segment of an ``opens`` state starts at t + 1 (an
        intron's splice head, which comes right after an exon's last piece or after a codon
        head that is a whole 3-bp exon: no end state tells that head apart from one whose run
        goes on). The two are disjoint events, so P(a run ends at t) is the sum of the end
        marginals of ``ends`` at t and the start marginals of ``opens`` at t + 1. At a
        sequence's last base every segment end is a run end (only last pieces end a path)."""
        allowed = self.transitions_allowed()
        opens = np.array([s.role == "head" and s.cls in (2, 4) for s in self.states])
        before_intron = allowed[:, opens].any(axis=1)
        return self.is_last() & ~before_intron, opens

    def _entry_states(self, name: str) -> list[int]:
        """States a run of label ``name`` may begin with."""
        lab = BY_NAME[name]
        if lab.kind == "intergenic":
            return [self.index["intergenic*"], self.index["intergenic"]]
        if lab.kind == "intron":
            return [self.index[f"{name}^splice"]]
        if _has_head(lab):
            return [self.index[f"exon{lab.strand}^codon"]]
        key = _piece_key(lab)
        return [self.index[f"exon{key[-1]}*{key[:-1]}"], self.index[name]]

    def transitions_allowed(self) -> np.ndarray:
        """(C, C) bool: state j may follow state i."""
        C = self.C
        allowed = np.zeros((C, C), dtype=bool)
        for a in LABELS:  # between runs: a's last piece -> the first piece of b's run
            for b in LABELS:
                if _may_follow(a, b) and not (a is b):
                    for j in self._entry_states(b.name):
                        allowed[self.index[a.name], j] = True
        for i, s in enumerate(self.states):  # inside a run
            if s.role == "last":
                continue
            for t in s.targets:
                lab = BY_NAME[t]
                allowed[i, self.index[t]] = True
                if lab.kind == "intergenic":
                    allowed[i, i] = True
                elif lab.kind == "intron":
                    allowed[i, self.index[f"{t}*"]] = True
                else:
                    key = _piece_key(lab)
                    allowed[i, self.index[f"exon{key[-1]}*{key[:-1]}"]] = True
        # A 3-bp exon that is only its codon: ATG then an intron of phase 0 (initial+ of length
        # 3), or a stop codon then an intron of phase 0 (terminal- of length 3). The codon head is
        # the whole run, so it is followed directly by what follows that label.
        for strand, label in (("+", "initial+:0"), ("-", "terminal-:0")):
            head = self.index[f"exon{strand}^codon"]
            for b in LABELS:
                if b.kind == "intron" and _may_follow(BY_NAME[label], b):
                    for j in self._entry_states(b.name):
                        allowed[head, j] = True
        return allowed

    def durations_allowed(self) -> np.ndarray:
        """(K, C) bool: row d - 1 is True where a piece of length d is allowed."""
        K = self.K
        d = np.arange(1, K + 1)
        out = np.zeros((K, self.C), dtype=bool)
        for c, s in enumerate(self.states):
            if s.role == "head":
                out[:, c] = d == (3 if s.cls in (1, 3) else 2)
            elif s.name == "intergenic*":
                out[:, c] = d == K
            elif s.name == "intergenic":
                out[:, c] = True
            elif s.cls in (2, 4):  # intron pieces
                out[:, c] = (d == self.intron_piece) if s.role == "piece" else (
                    d >= self.intron_last_min)
            elif s.role == "piece":  # exon full piece
                out[:, c] = d == self.exon_piece
            else:  # exon last piece
                lab = BY_NAME[s.name]
                lo = last_piece_min(lab)
                out[:, c] = (d >= lo) & (d < lo + self.exon_piece) & (
                    d % 3 == lab.length_residue)
        return out

    def exit_label(self, state: int, next_state: int | None) -> str | None:
        """The label of a run whose final state is ``state`` (None: a run cut by the sequence
        end, label unknown). A codon head that ends its run is a 3-bp exon."""
        s = self.states[state]
        if s.role == "last":
            return s.name
        if s.role == "head" and s.cls in (1, 3) and next_state is not None:
            nxt = self.states[next_state]
            if nxt.cls in (2, 4):
                return "initial+:0" if s.strand == "+" else "terminal-:0"
        return None

    # ------------------------------------------------------------------------------------------
    # Per-sequence constraints
    # ------------------------------------------------------------------------------------------

    def sequence_columns(self, codes: np.ndarray, lean: bool = False) -> dict[str, np.ndarray]:
        """The sequence's hard constraints as their DISTINCT columns; ``column_index`` says which
        column each state uses (many states share one: every + stop-ending exon the same stop
        mask, every exon label of one frame the same stop limit). Keys: ``start_ok`` /
        ``end_ok`` (T, n) bool (a piece may start at s / have its last base at u), ``start_gc``
        / ``end_gc`` (T, n) bool (a GC donor there: it gets the learned GC score), ``max_end``
        (T, n) int64 (no in-frame stop inside an exon piece; values may exceed T). Column 0 is
        the neutral one (True, False, or no limit).

        The sequence's two edges carry no site constraint: a run cut there (a training window,
        a contig end) shows neither its site nor what lies beyond. Decoding reports such runs as
        cut (a ``CutRun``), so they never make a "complete" gene. One exception: the + codon
        head at 0 may not be a stop codon. It is the first codon of the CDS the path reads
        there (frame 0), and no piece checks a head for stops, so a gene cut at 0 would begin
        with one (a partial gene model must translate).

        ``lean``: ``max_end`` clipped at T, as int32 (the lean Viterbi's form: no segment ends
        past T; half the memory, and no second pass over the stacked array)."""
        T = len(codes)
        sites = codons.site_masks(codes)
        no_limit = T if lean else np.iinfo(np.int64).max // 2
        cols = {key: [value] for key, value in (
            ("start_ok", np.ones(T, dtype=bool)), ("end_ok", np.ones(T, dtype=bool)),
            ("start_gc", np.zeros(T, dtype=bool)), ("end_gc", np.zeros(T, dtype=bool)),
            ("max_end", np.full(T, no_limit, dtype=np.int32 if lean else np.int64)))}
        for (key, _), make in self._column_recipes().items():
            column = make(codes, sites)
            if lean and key == "max_end":
                column = np.minimum(column, T).astype(np.int32)
            cols[key].append(column)
        out = {key: np.stack(v, axis=1) for key, v in cols.items()}
        if T:
            out["start_ok"][0], out["end_ok"][T - 1] = True, True
            out["start_gc"][0], out["end_gc"][T - 1] = False, False
            head = self.column_index()["start_ok"][self.index["exon+^codon"]]
            out["start_ok"][0, head] = not (T >= 3 and sites["stop_codon_plus"][2])
        return out

    def _column_recipes(self) -> dict:
        """(key, column id) -> function (codes, sites) -> column, in column order per key; and
        self._column_of[key][state] -> column number. Built once."""
        if getattr(self, "_recipes", None) is not None:
            return self._recipes
        recipes: dict = {}
        column_of = {key: np.zeros(self.C, dtype=np.int64)
                     for key in ("start_ok", "end_ok", "start_gc", "end_gc", "max_end")}
        counts = {key: 1 for key in column_of}

        def use(key, ident, state, make):
            if (key, ident) not in recipes:
                recipes[(key, ident)] = (counts[key], make)
                counts[key] += 1
            column_of[key][state] = recipes[(key, ident)][0]

        for c, st in enumerate(self.states):
            if st.role == "head" and st.cls in (1, 3):
                site = "start_codon_plus" if st.strand == "+" else "stop_codon_minus"
                use("start_ok", site, c, lambda codes, sites, site=site: sites[site])
            elif st.role == "head":  # splice dinucleotide at an intron's left end
                lab = BY_NAME[st.targets[0]]
                if lab.strand == "+":
                    use("start_ok", lab.name, c, lambda codes, sites, lab=lab: (
                        (sites["donor_gt_plus"] | sites["donor_gc_plus"])
                        & tail_masks(codes, "+", lab.entry, lab.tail)[0]))
                    use("start_gc", "gc+", c, lambda codes, sites: (
                        sites["donor_gc_plus"] & ~sites["donor_gt_plus"]))
                else:
                    use("start_ok", lab.name, c, lambda codes, sites, lab=lab: (
                        sites["acceptor_minus"] & tail_masks(codes, "-", lab.entry, lab.tail)[0]))
            elif st.role == "last" and st.cls in (2, 4):
                lab = BY_NAME[st.name]
                if lab.strand == "+":
                    use("end_ok", lab.name, c, lambda codes, sites, lab=lab: (
                        sites["acceptor_plus"] & tail_masks(codes, "+", lab.entry, lab.tail)[1]))
                else:
                    use("end_ok", lab.name, c, lambda codes, sites, lab=lab: (
                        (sites["donor_gt_minus"] | sites["donor_gc_minus"])
                        & tail_masks(codes, "-", lab.entry, lab.tail)[1]))
                    use("end_gc", "gc-", c, lambda codes, sites: (
                        sites["donor_gc_minus"] & ~sites["donor_gt_minus"]))
            elif st.role == "last" and st.cls in (1, 3):
                lab = BY_NAME[st.name]
                plus = lab.strand == "+"
                if plus and lab.ends_cds:
                    use("end_ok", "stop_codon_plus", c,
                        lambda codes, sites: sites["stop_codon_plus"])
                if not plus and lab.starts_cds:
                    use("end_ok", "start_codon_minus", c,
                        lambda codes, sites: sites["start_codon_minus"])
                # With a codon head the run's left-end codon is in the head, so the last piece
                # starts in frame 0 (+: after the ATG) and holds no stop of its own (-). On + the
                # limit does not depend on the length residue.
                terminal = lab.ends_cds and plus
                residue = lab.length_residue if not plus else 0
                ident = ("exon", lab.strand, lab.entry, residue, terminal)
                use("max_end", ident, c, lambda codes, sites, lab=lab: (
                    last_piece_max_end(codes, lab)))
            elif st.role == "piece" and st.cls in (1, 3):
                use("max_end", ("piece", st.strand, st.frame), c,
                    lambda codes, sites, st=st: piece_max_end(codes, st.strand, st.frame))
        ordered = dict(sorted(recipes.items(), key=lambda kv: (kv[0][0], kv[1][0])))
        self._recipes = {k: make for k, (_, make) in ordered.items()}
        self._column_of = column_of
        return self._recipes

    def column_index(self) -> dict[str, np.ndarray]:
        """key -> (C,) int64: the column of ``sequence_columns`` each state uses."""
        self._column_recipes()
        return self._column_of

    def site_channels(self) -> tuple[np.ndarray, np.ndarray]:
        """((C,), (C,)) int64: the SITES channel added to each state's start_bias and end_bias
        (-1: none)."""
        start = np.array([SITES.index(s.site_start) if s.site_start else -1
                          for s in self.states], dtype=np.int64)
        end = np.array([SITES.index(s.site_end) if s.site_end else -1 for s in self.states],
                       dtype=np.int64)
        return start, end

    def codon_positions(self) -> dict[int, tuple[str, int, int]]:
        """Exon state -> (strand, q_start, q_end): the codon position (0, 1, 2, read 5' -> 3'
        on the strand) of the state's first base (genome-left), and the one the base right
        after its last base would have if the reading went on. Every exon state fixes both:
        its pieces keep the run's frame (full pieces and the codon head are multiples of 3),
        and a last piece's length mod 3 is its label's.

        On + the run's left end is its 5' end: a piece starts at the run's entry phase (the
        family's ``frame``; 0 after a start codon), a last piece at its label's entry phase
        and it ends at its exit phase. On - codon positions grow leftwards: the run's right
        end (its last piece's) is the 5' base at the label's entry phase, and its left end,
        where the pieces begin, is at (exit - 1) mod 3 (2 after a stop codon head)."""
        out = {}
        for c, st in enumerate(self.states):
            if st.cls not in (1, 3):
                continue
            if st.role == "last":
                lab = BY_NAME[st.name]
                q = ((lab.entry, lab.exit) if st.strand == "+"
                     else ((lab.exit - 1) % 3, (lab.entry - 1) % 3))
            elif st.strand == "+":
                q = (st.frame, st.frame)
            else:
                q = ((st.frame - 1) % 3,) * 2
            out[c] = (st.strand, *q)
        return out


def last_piece_min(lab: PhaseLabel) -> int:
    """Shortest last piece of an exon label. An exon whose right end is a codon keeps the whole
    codon in its last piece (>= 3 bp). A + exon ending with its stop codon: the stop mask and
    the stop limit that lets the stop be the last codon (``last_piece_max_end``) then judge it
    in one piece. A - exon ending (genomically) with its start codon, i.e. an initial or single
    exon on -: without the minimum, a 1- or 2-bp initial exon alone in its run would pass the
    start-codon mask with the neighbouring intron's bases (found as 3 of 2,586 genes on
    chr2R)."""
    codon_at_right = lab.ends_cds if lab.strand == "+" else lab.starts_cds
    return 3 if codon_at_right else 1


def _end_site(lab: PhaseLabel) -> str | None:
    """The site at a label's right end that its last piece's end_bias scores."""
    if lab.is_exon:
        if lab.strand == "+" and lab.ends_cds:
            return "stop+"
        if lab.strand == "-" and lab.starts_cds:
            return "start-"
        return None
    if lab.kind == "intron":
        return "acceptor+" if lab.strand == "+" else "donor-"
    return None


def piece_max_end(codes: np.ndarray, strand: str, frame: int) -> np.ndarray:
    """(T,) int64 max_end for an exon FULL piece (length divisible by 3) in reading frame
    ``frame``: the entry phase at its left end on +, the phase at its right end on -.

    The piece forbids every in-frame stop codon whose 3'-most base (on the gene's strand) it
    holds, and no other (module docstring): on + a stop whose last base lies in [s, e), which
    may start up to ``frame`` bases before s; on - a stop whose genome-left base lies in [s, e),
    which may run up to 2 bases past e. A stop that would start inside the piece on + and run
    past its end is the next piece's: whether it lies inside the exon depends on how long the
    exon goes on, which only the next piece knows (a 1-bp last piece after a frame-1 piece ends
    the exon one base into such a codon: TA before the donor's G is no TAG). Values may exceed
    T.
    """
    if strand == "+":
        return _plus_max_end(codes, frame, terminal=False)
    if strand != "-":
        raise ValueError(f"strand must be '+' or '-', got {strand!r}")
    T = len(codes)
    s = np.arange(T)
    a = codons.lead(frame)
    # On - codons are counted from the right end e = s + F (F = 0 mod 3): their left ends lie
    # in the class of s - a (mod 3); a stop at q < e is inside (whole, or straddling e if a > 0).
    nxt = codons.next_in_class(codons._matches(codes, codons.STOPS_MINUS))
    return nxt[np.minimum(s + (-a) % 3, T + 2)]


def last_piece_max_end(codes: np.ndarray, lab: PhaseLabel) -> np.ndarray:
    """(T,) int64 max_end for the last piece of an exon label's run (values may exceed T).

    On + the piece starts in frame ``lab.entry`` (after full pieces, or the start codon head:
    frame 0) and forbids the in-frame stops whose last base it holds, looking back at a stop
    that a full piece before it started (``piece_max_end``); a terminal or single exon's last
    codon is its stop. On - the piece holds the run's right (5') end, so it is the exon's own
    limit (``codons.exon_max_end``), without the stop of a - terminal/single exon, which its
    codon head holds."""
    if lab.strand == "+":
        return _plus_max_end(codes, lab.entry, terminal=lab.ends_cds)
    return codons.exon_max_end(codes, "-", lab.entry, lab.length_residue, False)


def _plus_max_end(codes: np.ndarray, frame: int, terminal: bool) -> np.ndarray:
    """max_end of a + exon piece starting at s in reading frame ``frame``: the piece [s, e) may
    hold no in-frame stop whose last base is inside it, except, for ``terminal``, its own last
    codon. In-frame codons start at s - frame + 3k (k >= 0 reaches back ``frame`` bases, to the
    codon that was open at s); the first stop among them, p, allows e <= p + 2 (its last base
    outside), or e <= p + 3 for a terminal piece (the stop as its last codon)."""
    T = len(codes)
    first = np.arange(T) - frame
    first = np.where(first < 0, first + 3, first)  # no base before 0: the class's next codon
    nxt = codons.next_in_class(codons._matches(codes, codons.STOPS))
    return nxt[np.minimum(first, T + 2)] + (3 if terminal else 2)


@dataclass(frozen=True)
class CutRun:
    """The run label ``PhaseGeneHead.decode`` gives a run that touches a sequence end (``left``:
    it starts at 0, ``right``: it ends at the sequence's length), where the run may be cut.

    What the states tell about such a run. Every path ends in a last piece (``final`` is -inf
    elsewhere, in the dense decoder and the lean one alike) and every run's final state names
    its label (``exit_label``), so ``label`` is always a phase label; the sequence's edges
    carry no site constraint (``sequence_columns``), so part of it is no claim:

    - left cut: the path may begin in any state, so the run begins with a head (its codon or
      splice dinucleotide at 0 unchecked, but a + start codon head is no stop codon), a full
      piece of any family, or the last piece. The last piece, inside the sequence, names the
      label with its right-end site checked. The phase at 0 is the label's left-end phase
      (entry on +, exit on -): the stop limits of the pieces read codons from there
      (``codons.lead``), none across 0.
    - right cut: the run's true last piece lies past the end, yet the path ends in a last-piece
      state of the run's piece family (a family's pieces lead only to its target labels, whose
      left-end phase is the family's frame: 0 after intergenic sequence, p after an intron of
      phase p). So the label's left-end phase is the run's real frame there, and its right-end
      phase follows from the run's length (the label's length residue); whether the exon's kind
      ends with a codon there (+ terminal/single: a stop; - initial/single: a start) is free,
      but a + exon may end in an in-frame stop only under a terminal/single label.

    Either way the label's entry and exit phases are the run's reading frame at its two ends;
    only the start/stop codon or splice site its kind names at a cut end may be absent.
    ``stop_at_cut``: the exon's 3' end is the cut end and holds its stop codon, in frame (+:
    terminal/single ending at the length with a stop there; -: terminal/single starting at 0
    with a stop there), so the CDS's 3' end is complete; False where codes were not given.
    """

    label: str
    left: bool
    right: bool
    stop_at_cut: bool = False


def cut_run(label: str, start: int, end: int, length: int, codes=None) -> CutRun:
    """The ``CutRun`` of a run [start, end) of a sequence of ``length`` (codes: its
    ``codons.encode`` codes, or None) whose final state names ``label``."""
    lab = BY_NAME[label]
    left, right = start == 0, end == length
    stop = False
    if codes is not None and lab.is_exon and lab.ends_cds and end - start >= 3:
        if lab.strand == "+" and right:
            stop = bool(codons._matches(codes[end - 3:end], codons.STOPS)[0])
        elif lab.strand == "-" and left:
            stop = bool(codons._matches(codes[start:start + 3], codons.STOPS_MINUS)[0])
    return CutRun(label, left, right, stop)


def _label_of(run_label) -> PhaseLabel | None:
    if isinstance(run_label, CutRun):
        return BY_NAME[run_label.label]
    return BY_NAME.get(run_label) if run_label else None


def gene_transcripts(rows, run_labels, seqid: str, scores=None, partial: bool = False) -> list:
    """Gene models from decoded runs: class rows (n, 3) [start, end, class] in genome order with
    each run's label (``PhaseGeneHead.decode``: a phase label name, or a ``CutRun`` for a run
    touching a sequence end). A gene is a stretch of runs exon (intron exon)* between intergenic
    runs (the grammar allows no other), its CDS parts the exon runs; a complete one runs from
    the exon holding its 5'-most genome-left codon to the one closing it. ``scores``: optional
    per-run values; a transcript's score is the mean over its exons.

    A stretch that reaches a sequence end is a partial gene, kept only with ``partial``: its
    ``span`` runs to that end (through an exon or an intron cut there); ``partial5`` /
    ``partial3`` say which of its ends is missing (the cut one, unless it is the 3' end and the
    exon there holds its stop codon: ``CutRun.stop_at_cut``), and ``phase5`` is the GFF3 phase
    of its 5'-most CDS part, ``codons.lead`` of that exon's entry phase (``CutRun``: the
    label's phases are the run's frame). A 5' end at a sequence edge is always missing: an ATG
    there may be an internal methionine. A stretch without an exon (an intron across the whole
    sequence) is no gene."""
    from genoseg.io.features import Transcript

    rows = [(int(s), int(e), int(c)) for s, e, c in rows]
    intergenic = GENE_LABELS.index("intergenic")
    exon_classes = (GENE_LABELS.index("exon+"), GENE_LABELS.index("exon-"))
    out = []
    i = 0
    while i < len(rows):
        if rows[i][2] == intergenic:
            i += 1
            continue
        first = i
        last = i
        while last + 1 < len(rows) and rows[last + 1][2] != intergenic:
            last += 1
        i = last + 1
        head, tail = run_labels[first], run_labels[last]
        left = isinstance(head, CutRun) and head.left
        right = isinstance(tail, CutRun) and tail.right
        chain = [k for k in range(first, last + 1) if rows[k][2] in exon_classes]
        labs = [_label_of(run_labels[k]) for k in chain]
        if not chain or None in labs or ((left or right) and not partial):
            continue
        strand = labs[0].strand
        if not (left or right):
            if not (_opens(labs[0]) and _closes(labs[-1])):
                continue
            partial5 = partial3 = False
        elif strand == "+":
            partial5 = left
            partial3 = right and not (chain[-1] == last and tail.stop_at_cut)
        else:
            partial5 = right
            partial3 = left and not (chain[0] == first and head.stop_at_cut)
        cds = tuple((rows[k][0], rows[k][1]) for k in chain)
        span = (rows[first][0], rows[last][1])
        n = len(out) + 1
        score = None
        if scores is not None:
            score = float(np.mean([scores[k] for k in chain]))
        five = labs[0] if strand == "+" else labs[-1]
        out.append(Transcript(seqid=seqid, strand=strand, gene_id=f"{seqid}.{n}",
                              transcript_id=f"{seqid}.{n}.t1", cds=cds, score=score,
                              phase5=codons.lead(five.entry), partial5=partial5,
                              partial3=partial3,
                              span=None if span == (cds[0][0], cds[-1][1]) else span))
    return out


def complete_transcripts(rows, run_labels, seqid: str, scores=None) -> list:
    """The complete gene models of ``gene_transcripts``: chains cut by a sequence end are left
    out."""
    return gene_transcripts(rows, run_labels, seqid, scores=scores, partial=False)


def _opens(lab: PhaseLabel) -> bool:
    """The genome-left exon of a complete gene."""
    return lab.is_exon and (lab.starts_cds if lab.strand == "+" else lab.ends_cds)


def _closes(lab: PhaseLabel) -> bool:
    """The genome-right exon of a complete gene."""
    return lab.is_exon and (lab.ends_cds if lab.strand == "+" else lab.starts_cds)
