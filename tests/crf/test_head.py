"""SemiCRFHead: masks stay exact, NLL against brute force, impossible gold labellings, decoding,
and a toy training run."""

from __future__ import annotations

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
    label_post, boundary_post = head.posteriors(em, lengths)
    assert label_post.shape == (2, 100, gene.C) and boundary_post.shape == (2, 100)
    torch.testing.assert_close(label_post[0].sum(dim=1), torch.ones(100), rtol=0, atol=1e-4)
    assert (label_post[1, 70:] == 0).all()


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
