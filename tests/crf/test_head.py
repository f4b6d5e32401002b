"""SemiCRFHead: masks stay exact, NLL against brute force, impossible gold labellings, decoding,
and a toy training run."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import oracles
import pytest
import torch

from genoseg.crf.head import SemiCRFHead
from genoseg.encoders import N_BASE_CHANNELS, DilatedResidualCNN
from genoseg.io.features import Transcript
from genoseg.labels import load_scheme, scheme_from_dict
from genoseg.labels.gene import transcripts_to_labels

SCHEMES = Path(__file__).resolve().parents[2] / "configs" / "schemes"
NEG_INF = -math.inf
GENE_ORDER = ("intergenic", "exon+", "intron+", "exon-", "intron-")


@pytest.fixture(autouse=True)
def one_thread():
    # The reference scans position by position; with cores shared, intra-op threads only add
    # contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    """C = 3, K = 3: a forbidden edge (a -> c), c may not start, b has min_length 2."""
    return scheme_from_dict({
        "name": "tiny", "kind": "generic", "max_duration": 3, "background": "a",
        "transitions": [[x, y] for x in "abc" for y in "abc" if (x, y) != ("a", "c")],
        "init": ["a", "b"], "final": "all",
        "labels": ["a", {"name": "b", "min_length": 2}, "c"],
    })


@pytest.fixture(scope="module")
def gene():
    return load_scheme(SCHEMES / "gene_basic.toml")


def randomise(head: SemiCRFHead, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def test_masks_stay_exact_through_training(tiny):
    head = SemiCRFHead(tiny)
    allowed_t, allowed_d = tiny.transition_allowed(), tiny.duration_allowed()
    torch.manual_seed(0)
    em = torch.randn(2, 6, 3)
    labels = torch.tensor([[0, 0, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]])
    for _ in range(3):
        head.zero_grad()
        loss, n_bad = head.loss(em, labels)
        assert n_bad == 0
        loss.backward()
        assert head.transitions_raw.grad[~allowed_t].abs().sum() == 0
        with torch.no_grad():  # plain gradient steps (torch.optim's first import costs seconds)
            for p in head.parameters():
                p -= 5.0 * p.grad
    inputs = head.crf_inputs()
    assert set(inputs) == {"transitions", "durations", "init", "final"}
    assert torch.equal(torch.isneginf(inputs["transitions"]), ~allowed_t)
    assert torch.equal(torch.isneginf(inputs["durations"]), ~allowed_d)
    assert torch.equal(torch.isneginf(inputs["init"]), ~tiny.init_allowed())
    assert not torch.isneginf(inputs["final"]).any()
    assert torch.isfinite(inputs["transitions"][allowed_t]).all()


@pytest.mark.parametrize("prior", ["loglinear", "free", "flat"])
def test_nll_matches_brute_force(tiny, prior):
    head = SemiCRFHead(tiny, duration_prior=prior).double()
    randomise(head, seed=1)
    B, T = 3, 6
    gen = torch.Generator().manual_seed(2)
    em = torch.randn(B, T, 3, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 1])
    labels = torch.tensor([
        [0, 0, 1, 1, 2, -1],  # -1: unconstrained
        [1, 1, 2, 0, 99, 99],  # junk in the padded tail is ignored
        [0, 99, 99, 99, 99, 99],
    ])
    nll, ok = head.nll(em, labels, lengths)
    assert ok.all()
    inputs = {k: v.detach() for k, v in head.crf_inputs().items()}
    for b in range(B):
        L = int(lengths[b])
        gold = labels[b, :L].tolist()
        logz = oracles.oracle_logz(em[b], inputs["transitions"], inputs["durations"], L,
                                   init=inputs["init"], final=inputs["final"])
        consistent = [
            oracles.segmentation_score(seg, em[b], inputs["transitions"], inputs["durations"], L,
                                       init=inputs["init"], final=inputs["final"])
            for seg in oracles.enumerate_segmentations(L, tiny.K, tiny.C)
            if all(g < 0 or c == g for s, e, c in seg for g in gold[s:e])
        ]
        expected = logz - oracles._logsumexp(consistent)
        assert float(nll[b].detach()) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_nll_nonnegative_and_gradients_flow(gene):
    head = SemiCRFHead(gene, K=32)
    transcripts = [Transcript("c", "+", "g1", "t1", ((10, 30), (60, 80))),
                   Transcript("c", "-", "g2", "t2", ((100, 140),))]
    labels = torch.from_numpy(transcripts_to_labels(transcripts, "c", 150, gene))
    labels = torch.stack([labels, labels.roll(40)])  # the roll cuts a gene at the start
    torch.manual_seed(3)
    em = torch.randn(2, 150, gene.C, requires_grad=True)
    nll, ok = head.nll(em, labels, torch.tensor([150, 120]))
    assert ok.all() and (nll >= -1e-4).all()
    nll.sum().backward()
    assert torch.isfinite(em.grad).all() and em.grad.abs().sum() > 0
    assert (em.grad[1, 120:] == 0).all()  # nothing flows from past the length
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_impossible_gold_is_dropped_not_inf(gene):
    head = SemiCRFHead(gene, K=32)
    randomise(head, seed=4)
    ig, ep, ip, em_ = (gene.index(n) for n in ("intergenic", "exon+", "intron+", "exon-"))
    T = 60
    possible = torch.full((T,), ig)
    possible[10:20] = ep
    strand_switch = possible.clone()
    strand_switch[20:30] = em_  # exon+ -> exon- with no intergenic between: not in the grammar
    short_intron = possible.clone()
    short_intron[20:25] = ip  # 5 bp intron < min_length 20
    short_intron[25:30] = ep
    labels = torch.stack([possible, strand_switch, short_intron])
    torch.manual_seed(5)
    em = torch.randn(3, T, gene.C, requires_grad=True)
    nll, ok = head.nll(em, labels)
    assert ok.tolist() == [True, False, False]
    assert torch.isfinite(nll).all() and (nll[1:] == 0).all()
    loss, n_bad = head.loss(em, labels)
    assert n_bad == 2 and torch.isfinite(loss)
    assert float(loss.detach()) == pytest.approx(float(nll[0].detach()) / T, rel=1e-5)
    loss.backward()
    assert torch.isfinite(em.grad).all() and (em.grad[1:] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())

    em.grad = None
    loss, n_bad = head.loss(em[1:], labels[1:])
    assert n_bad == 2 and float(loss.detach()) == 0.0
    loss.backward()
    assert (em.grad == 0).all()


def test_runs_cut_by_the_window_edges_are_relaxed(gene):
    head = SemiCRFHead(gene, K=32).double()
    ig, ep, ip, em_, im = (gene.index(n) for n in GENE_ORDER)
    labels = torch.full((1, 60), ig)
    labels[0, :5] = ip  # the window starts 5 bp before an intron ends: shorter than min 20
    labels[0, 5:15] = ep
    labels[0, 40:57] = em_
    labels[0, 57:] = im  # and ends 3 bp into an intron
    torch.manual_seed(6)
    em = torch.randn(1, 60, gene.C, dtype=torch.float64)
    _, ok = head.nll(em, labels, relax_cut_runs=False)
    assert not ok.any()
    nll, ok = head.nll(em, labels)
    assert ok.all()
    manual = labels.clone()
    manual[0, :5] = -1
    manual[0, 57:] = -1
    torch.testing.assert_close(nll, head.nll(em, manual, relax_cut_runs=False)[0])
    # A short run in the middle stays impossible; only the edges are relaxed.
    labels[0, 20:25] = ip
    labels[0, 25:30] = ep
    assert not head.nll(em, labels)[1].any()


def test_constraints_pass_through(tiny):
    head = SemiCRFHead(tiny).double()
    em = torch.zeros(1, 4, 3, dtype=torch.float64)
    labels = torch.tensor([[0, 0, 0, 0]])
    # Forbid label a from reaching past position 2: the all-a labelling becomes impossible.
    max_end = torch.full((1, 4, 3), 4, dtype=torch.int64)
    max_end[0, :, 0] = 2
    _, ok = head.nll(em, labels, max_end=max_end)
    assert not ok.any()
    start_bias = torch.zeros(1, 4, 3, dtype=torch.float64)
    nll_plain, _ = head.nll(em, labels)
    nll_biased, _ = head.nll(em, labels, start_bias=start_bias)
    assert torch.equal(nll_plain, nll_biased)
    with pytest.raises(TypeError, match="unexpected constraint"):
        head.nll(em, labels, stop_bias=start_bias)


def test_decode_and_posteriors(gene):
    head = SemiCRFHead(gene, K=32)
    transcripts = [Transcript("c", "+", "g1", "t1", ((10, 30), (60, 80)))]
    gold = torch.from_numpy(transcripts_to_labels(transcripts, "c", 100, gene))
    em = torch.nn.functional.one_hot(gold, gene.C).float()[None] * 5.0  # confident emissions
    em = torch.cat([em, em])
    lengths = torch.tensor([100, 70])
    scores, segments = head.decode(em, lengths)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    for b, L in enumerate(lengths.tolist()):
        seg = segments[b]
        assert seg[0, 0] == 0 and seg[-1, 1] == L and torch.equal(seg[1:, 0], seg[:-1, 1])
        decoded = torch.repeat_interleave(seg[:, 2], seg[:, 1] - seg[:, 0])
        assert torch.equal(decoded, gold[:L])
    label_post, boundary_post, log_z = head.posteriors(em, lengths)
    assert label_post.shape == (2, 100, gene.C) and boundary_post.shape == (2, 100)
    assert log_z.shape == (2,) and torch.isfinite(log_z).all()
    torch.testing.assert_close(label_post[0].sum(dim=1), torch.ones(100), rtol=0, atol=1e-4)
    assert (label_post[1, 70:] == 0).all()


# ----------------------------------------------------------------------------------------------
# Canonical tiling: one segmentation per class labelling, checked against brute force in class
# space.
# ----------------------------------------------------------------------------------------------


def tiled_scheme(K: int, m_a: int = 1, m_b: int = 2, max_b: int = 3):
    """a: tiled (F = K - m_a + 1); b: tiled with max_length (F = max_b - m_b + 1); c: untiled,
    no self edge, length 1..3; c may not follow b, and c may not end a sequence."""
    return scheme_from_dict({
        "name": "tiled", "kind": "generic", "max_duration": K, "background": "a",
        "transitions": [[x, y] for x in "abc" for y in "abc" if x != y and (x, y) != ("b", "c")],
        "init": "all", "final": ["a", "b"],
        "labels": [{"name": "a", "tile": True, "min_length": m_a},
                   {"name": "b", "tile": True, "min_length": m_b, "max_length": max_b},
                   {"name": "c", "max_length": 3}],
    })


def runs_of(labelling):
    runs, start = [], 0
    for t in range(1, len(labelling) + 1):
        if t == len(labelling) or labelling[t] != labelling[start]:
            runs.append((start, t, labelling[start]))
            start = t
    return runs


def labelling_valid(scheme, labelling) -> bool:
    """Class-space validity, straight from the scheme's documented semantics."""
    runs = runs_of(labelling)
    names = scheme.labels
    if names[runs[0][2]] not in scheme.init or names[runs[-1][2]] not in scheme.final:
        return False
    for (_, _, p), (_, _, x) in zip(runs, runs[1:]):
        if (names[p], names[x]) not in scheme.transitions:
            return False
    for s, e, c in runs:
        hi = min(scheme.max_length[c] or scheme.K, scheme.K)
        if e - s < scheme.min_length[c] or (not scheme.tile[c] and e - s > hi):
            return False
    return True


def labelling_logz(head, em, labelling) -> float:
    """log sum over ALL expanded segmentations whose classes give ``labelling`` (no canonical
    form assumed): every cut of every run into pieces of length <= K, every piece any expanded
    label of the run's class."""
    x = {k: v.detach().tolist() for k, v in head.crf_inputs().items()}
    class_of = head.class_of.tolist()
    e = em.tolist()
    K, L = head.K, len(labelling)
    run_end = [0] * L
    for s, t, _ in runs_of(labelling):
        for u in range(s, t):
            run_end[u] = t
    scores = []

    def walk(s, prev, acc):
        if acc == -math.inf:
            return
        if s == L:
            scores.append(acc + x["final"][prev])
            return
        for d in range(1, min(K, run_end[s] - s) + 1):
            for lab in range(head.C_expanded):
                if class_of[lab] != labelling[s]:
                    continue
                gain = (x["init"][lab] if prev is None else x["transitions"][prev][lab])
                gain += x["durations"][d - 1][lab]
                gain += sum(e[u][labelling[s]] for u in range(s, s + d))
                walk(s + d, lab, acc + gain)

    walk(0, None, 0.0)
    return oracles._logsumexp(scores) if scores else -math.inf


@pytest.mark.parametrize("K, m_a, m_b", [(4, 1, 2), (5, 2, 1), (6, 1, 1)])
def test_tiling_is_canonical(K, m_a, m_b):
    """All scores zero: the gold-clamped logZ is exactly 0 (one segmentation) for random valid
    labellings with runs up to 3K, and the unclamped logZ counts the valid class labellings."""
    scheme = tiled_scheme(K, m_a, m_b)
    head = SemiCRFHead(scheme, duration_prior="flat").double()
    assert head.n_tiled == 2 and head.C_expanded == 5
    rng = np.random.default_rng(K)
    names = scheme.labels
    labellings = []
    while len(labellings) < 12:
        lab, prev = [], None
        for _ in range(int(rng.integers(1, 6))):
            options = [c for c in range(3) if prev is None
                       or (names[prev], names[c]) in scheme.transitions]
            c = int(rng.choice(options))
            hi = 3 * K if scheme.tile[c] else 3
            lab += [c] * int(rng.integers(scheme.min_length[c], hi + 1))
            prev = c
        if labelling_valid(scheme, lab):
            labellings.append(lab)
    T = max(map(len, labellings))
    labels = torch.full((len(labellings), T), -1)
    for b, lab in enumerate(labellings):
        labels[b, :len(lab)] = torch.tensor(lab)
    lengths = torch.tensor([len(lab) for lab in labellings])
    em = torch.zeros(len(labellings), T, 3, dtype=torch.float64)
    nll, ok = head.nll(em, labels, lengths, relax_cut_runs=False)
    assert ok.all()
    logz = head._logz(head.expand(em), lengths, {})
    logz_gold = logz - nll
    torch.testing.assert_close(logz_gold, torch.zeros_like(logz_gold), rtol=0, atol=1e-9)
    # Unclamped: log(number of valid class labellings), by enumeration for small T.
    for L in range(1, 9):
        count = sum(labelling_valid(scheme, list(lab))
                    for lab in itertools.product(range(3), repeat=L))
        z = head._logz(head.expand(torch.zeros(1, L, 3, dtype=torch.float64)),
                       torch.tensor([L]), {})
        assert float(z.detach()) == pytest.approx(math.log(count), rel=0, abs=1e-9), (L, count)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiled_decode_posteriors_nll_match_brute_force_over_labellings(seed):
    scheme = tiled_scheme(K=3, m_a=1, m_b=2, max_b=3)  # F: a 3, b 2
    head = SemiCRFHead(scheme).double()
    randomise(head, seed=10 + seed)
    gen = torch.Generator().manual_seed(seed)
    B, T = 2, 7
    em = torch.randn(B, T, 3, generator=gen, dtype=torch.float64) * 1.5
    lengths = torch.tensor([7, 6])
    scores, paths = head.decode(em, lengths)
    label_post, boundary_post, log_z = head.posteriors(em, lengths)
    for b in range(B):
        L = int(lengths[b])
        table = {lab: labelling_logz(head, em[b], lab)
                 for lab in itertools.product(range(3), repeat=L)}
        finite = {lab: v for lab, v in table.items() if v > -math.inf}
        assert set(finite) == {lab for lab in table if labelling_valid(scheme, lab)}
        logz = oracles._logsumexp(list(finite.values()))
        assert float(log_z[b]) == pytest.approx(logz, abs=1e-9)
        # Decoding: the most probable labelling (one segmentation each, so Viterbi finds it).
        ranked = sorted(finite.items(), key=lambda kv: -kv[1])
        best, best_score = ranked[0]
        decoded = torch.repeat_interleave(paths[b][:, 2], paths[b][:, 1] - paths[b][:, 0])
        if ranked[1][1] < best_score - 1e-6:
            assert tuple(decoded.tolist()) == best
        assert float(scores[b]) == pytest.approx(best_score, abs=1e-9)
        # Segments are whole runs in class space.
        assert [tuple(r) for r in paths[b].tolist()] == runs_of(list(decoded.tolist()))
        # Posteriors: class marginals and P(a run ends at t).
        prob = {lab: math.exp(v - logz) for lab, v in finite.items()}
        want_lp = torch.zeros(T, 3, dtype=torch.float64)
        want_bp = torch.zeros(T, dtype=torch.float64)
        for lab, p in prob.items():
            for t, c in enumerate(lab):
                want_lp[t, c] += p
            for _, e, _ in runs_of(list(lab)):
                want_bp[e - 1] += p
        torch.testing.assert_close(label_post[b], want_lp, rtol=0, atol=1e-9)
        torch.testing.assert_close(boundary_post[b], want_bp, rtol=0, atol=1e-9)
        torch.testing.assert_close(label_post[b, :L].sum(dim=1),
                                   torch.ones(L, dtype=torch.float64), rtol=0, atol=1e-9)
        # NLL of a labelling = -log P(labelling), also with a -1 (marginalised) position.
        for lab, _ in ranked[:2] + ranked[-1:]:
            labels = torch.full((1, T), 0)
            labels[0, :L] = torch.tensor(lab)
            nll, ok = head.nll(em[b:b + 1], labels, lengths[b:b + 1], relax_cut_runs=False)
            assert ok.all()
            assert float(nll[0].detach()) == pytest.approx(logz - finite[lab], abs=1e-9)
        labels = torch.full((1, T), 0)
        labels[0, :L] = torch.tensor(best)
        labels[0, 2] = -1
        nll, _ = head.nll(em[b:b + 1], labels, lengths[b:b + 1], relax_cut_runs=False)
        consistent = [v for lab, v in finite.items()
                      if all(i == 2 or lab[i] == best[i] for i in range(L))]
        assert float(nll[0].detach()) == pytest.approx(logz - oracles._logsumexp(consistent),
                                                       abs=1e-9)


def test_tiled_grammar_and_gradients(gene):
    """Expanded Viterbi paths obey the tiling grammar; decoded runs respect the scheme; every
    tiling parameter learns; encoder gradients stay in C columns."""
    from genoseg.crf import backend

    head = SemiCRFHead(gene, K=24)
    randomise(head, seed=7)
    assert head.n_tiled == 5 and head.piece_length == (24, 24, 5, 24, 5)
    x = head.crf_inputs()
    full = set(range(gene.C, head.C_expanded))
    assert torch.isneginf(x["final"][gene.C:]).all()
    for k, c in enumerate(head.tiled_classes.tolist()):
        allowed_next = torch.isfinite(x["transitions"][gene.C + k]).nonzero().squeeze(1).tolist()
        assert sorted(allowed_next) == sorted([c, gene.C + k])
        assert torch.isinf(x["transitions"][c, c]) and torch.isinf(x["transitions"][c, gene.C + k])
        assert torch.isfinite(x["durations"][:, gene.C + k]).sum() == 1
    torch.manual_seed(8)
    em = torch.randn(3, 200, gene.C) * 0.3
    em[:, 50:150, gene.index("intron+")] += 2.0  # a long intron run: many pieces
    lengths = torch.tensor([200, 180, 77])
    _, raw = backend.semicrf_viterbi(head.expand(em), lengths=lengths, **x)
    _, paths = head.decode(em, lengths)
    allowed = gene.transition_allowed()
    for b, (r, p) in enumerate(zip(raw, paths)):
        labs = r[:, 2].tolist()
        assert labs[-1] not in full
        for u, v in zip(labs, labs[1:]):
            if u in full:
                assert v in (u, head.class_of[u].item())
        assert p[0, 0] == 0 and p[-1, 1] == lengths[b] and torch.equal(p[1:, 0], p[:-1, 1])
        for (_, _, u), (_, _, v) in zip(p.tolist(), p[1:].tolist()):
            assert allowed[u, v]  # no two rows of one class: runs come merged
        for s, e, c in p.tolist():
            assert e - s >= gene.min_length[c]
    assert (paths[0][:, 1] - paths[0][:, 0]).max() > 24  # a run longer than K, in one row
    emg = em.clone().requires_grad_(True)
    labels = torch.full((3, 200), gene.index("intergenic"))
    labels[:, 50:150] = gene.index("intron+")
    labels[:, 40:50] = gene.index("exon+")
    labels[:, 150:160] = gene.index("exon+")
    loss, n_bad = head.loss(emg, labels, lengths)
    assert n_bad == 0
    loss.backward()
    assert emg.grad.shape == (3, 200, gene.C) and torch.isfinite(emg.grad).all()
    for name in ("tile_stay", "tile_exit", "tile_piece"):
        g = getattr(head, name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_checkpoint_without_tile_parameters_loads(tiny):
    head = SemiCRFHead(tiny)
    assert head.n_tiled == 0
    state = {k: v for k, v in head.state_dict().items() if not k.startswith("tile_")}
    SemiCRFHead(tiny).load_state_dict(state)  # strict, yet fine: nothing tiles


def test_training_a_toy_problem_reduces_the_loss():
    # Two labels over random sequence: "gc" segments draw mostly G/C, background mostly A/T. The
    # encoder has to learn the base composition and the head the segment lengths.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    scheme = scheme_from_dict({"name": "toy", "kind": "generic", "max_duration": 16,
                               "transitions": "all", "labels": ["background", "gc"]})
    B, T = 4, 64
    labels = np.zeros((B, T), dtype=np.int64)
    for b in range(B):
        t = 0
        while t < T:
            d = int(rng.integers(4, 14))
            labels[b, t:t + d] = rng.integers(0, 2)
            t += d
    probs = np.where(labels[..., None] == 1, [0.05, 0.45, 0.45, 0.05], [0.45, 0.05, 0.05, 0.45])
    bases = (rng.random((B, T, 1)) > probs.cumsum(-1)).sum(-1).clip(0, 3)
    x = torch.zeros(B, T, N_BASE_CHANNELS)
    x.scatter_(2, torch.from_numpy(bases)[..., None], 1.0)
    labels_t = torch.from_numpy(labels)

    encoder = DilatedResidualCNN(scheme.C, width=8, kernel_size=3, dilations=(1, 2), dropout=0.0)
    head = SemiCRFHead(scheme)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss, n_bad = head.loss(encoder(x), labels_t)
        assert n_bad == 0
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("with_constraints", [False, True])
def test_decode_and_posteriors_in_one_preparation_matches_the_two_calls(with_constraints):
    """On the compiled CPU backend, decode_and_posteriors prepares the batch once; it returns
    what decode and posteriors return under the float64 reference (tiled labels included)."""
    from genoseg.crf import backend as crf
    from genoseg.crf import cpu

    if not cpu.available():
        pytest.skip("needs numba")
    head = SemiCRFHead(tiled_scheme(K=5, m_a=1, m_b=2, max_b=4)).double()
    randomise(head, seed=3)
    gen = torch.Generator().manual_seed(7)
    B, T = 3, 40
    em = torch.randn(B, T, 3, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([40, 33, 17])
    constraints = {}
    if with_constraints:
        constraints = {"start_bias": torch.randn(B, T, 3, generator=gen, dtype=torch.float64),
                       "end_bias": torch.randn(B, T, 3, generator=gen, dtype=torch.float64)}
        constraints["start_bias"][:, 5:9, 1] = -math.inf
    with crf.use("torch"):
        scores, paths = head.decode(em, lengths, **constraints)
        post = head.posteriors(em, lengths, **constraints)
    with crf.use("cpu"):
        got = head.decode_and_posteriors(em, lengths, **constraints)
    torch.testing.assert_close(got[0], scores, rtol=1e-10, atol=1e-10)
    assert all(torch.equal(a, b) for a, b in zip(got[1], paths))
    assert any(len(p) > 3 for p in paths)
    for a, b in zip(got[2:], post):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_marginal_grads_skip_impossible_sequences_without_importing_sympy():
    """``marginal_grads`` sums each possible sequence's gradient, gives an impossible one (log Z
    = -inf) nothing, and stays off torch's sympy import (``autograd.grad`` with grad_outputs
    pulls it in: about 2 s of every GPU annotate). Run in a fresh interpreter, whose modules
    are its own."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from genoseg.crf.head import marginal_grads\n"
        "x = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, 3.0]], dtype=torch.float64,"
        " requires_grad=True)\n"
        "log_z = torch.stack([x[0].logsumexp(0), x[1].logsumexp(0) + float('-inf')])\n"
        "(g,) = marginal_grads(log_z, (x,))\n"
        "assert torch.allclose(g[0], torch.softmax(x[0].detach(), 0), atol=1e-15), g\n"
        "assert torch.equal(g[1], torch.zeros(3, dtype=torch.float64)), g\n"
        "print('sympy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
