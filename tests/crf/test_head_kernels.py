"""The model head on the Triton kernels gives what it gives on the reference.

On a machine without a GPU the kernels run in Triton's interpreter (tests/conftest.py), so this
checks in CI that the head's expanded (tiled) inputs, gold-clamped limits and constraints reach
the kernels in the form they expect. On a GPU the same test runs the compiled kernels.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("triton")

from genoseg.crf import head as head_module  # noqa: E402
from genoseg.crf import reference  # noqa: E402
from genoseg.crf.head import SemiCRFHead  # noqa: E402
from genoseg.io.features import Transcript  # noqa: E402
from genoseg.labels import load_scheme  # noqa: E402
from genoseg.labels.gene import transcripts_to_labels  # noqa: E402

SCHEMES = Path(__file__).resolve().parents[2] / "configs" / "schemes"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _implementation(module):
    return SimpleNamespace(**{name: getattr(module, name) for name in (
        "semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz")})


def _run(monkeypatch, impl, head, em, labels, lengths, **extra):
    """Everything the head computes, on one implementation of the CRF functions. ``extra``:
    the head's extra inputs (the phase head's ``codes``)."""
    from genoseg.crf import phase_head as phase_module

    monkeypatch.setattr(head_module, "crf", impl)
    monkeypatch.setattr(phase_module, "crf", impl)
    head.zero_grad()
    em = em.clone().requires_grad_(True)
    nll, ok = head.nll(em, labels, lengths, **extra)
    nll.sum().backward()
    grads = {name: p.grad.clone() for name, p in head.named_parameters()}
    out = dict(nll=nll.detach(), ok=ok, em_grad=em.grad, grads=grads)
    if extra:
        out["scores"], out["segments"], out["run_labels"] = head.decode(
            em.detach(), lengths, with_labels=True, **extra)
    else:
        out["scores"], out["segments"] = head.decode(em.detach(), lengths)
    out["post"], out["bpost"], out["logz"] = head.posteriors(em.detach(), lengths, **extra)
    return out


def _assert_same(ker: dict, ref: dict) -> None:
    """Kernel results equal the reference's: float32 rounding for values and gradients, exact
    for the decoded segments (and run labels, where the head gives them)."""
    assert torch.equal(ref["ok"], ker["ok"]) and ref["ok"].all()
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ker["nll"], ref["nll"], **tol)
    torch.testing.assert_close(ker["em_grad"], ref["em_grad"], **tol)
    for name, g in ref["grads"].items():
        torch.testing.assert_close(ker["grads"][name], g, **tol, msg=name)
    torch.testing.assert_close(ker["scores"], ref["scores"], **tol)
    for a, b in zip(ker["segments"], ref["segments"]):
        assert torch.equal(a, b)
    assert ker.get("run_labels") == ref.get("run_labels")
    for key in ("post", "bpost", "logz"):
        torch.testing.assert_close(ker[key], ref[key], **tol, msg=key)


def test_head_on_kernels_matches_head_on_reference(monkeypatch):
    import genoseg_kernels.api as gk

    scheme = load_scheme(SCHEMES / "gene_basic.toml")
    head = SemiCRFHead(scheme, K=24).to(DEVICE)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    transcripts = [Transcript("c", "+", "g1", "t1", ((5, 15), (40, 52))),
                   Transcript("c", "-", "g2", "t2", ((60, 70),))]
    gold = torch.from_numpy(transcripts_to_labels(transcripts, "c", 80, scheme))
    labels = torch.stack([gold, gold.roll(30)]).to(DEVICE)
    lengths = torch.tensor([80, 66], device=DEVICE)
    em = (torch.nn.functional.one_hot(labels, scheme.C).float() * 2.0
          + torch.randn(2, 80, scheme.C, generator=gen).to(DEVICE))

    ref = _run(monkeypatch, _implementation(reference), head, em, labels, lengths)
    ker = _run(monkeypatch, _implementation(gk), head, em, labels, lengths)

    _assert_same(ker, ref)


@pytest.mark.parametrize("content_order", [0, 2])
def test_phase_head_on_kernels_matches_head_on_reference(monkeypatch, content_order):
    """The 80-state phase grammar (more states than one 64-wide tile) with sequence-derived
    constraints, learned site scores and tiled exons and introns; with a coding content model
    too (its bias columns and exon emissions, and its weight's gradient)."""
    import genoseg_kernels.api as gk
    import numpy as np

    from genoseg.crf.phase_head import PhaseGeneHead, encode_sequences

    scheme = load_scheme(SCHEMES / "gene_basic.toml")
    head = PhaseGeneHead(scheme, K=12, min_intron=10, content_order=content_order).to(DEVICE)
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if content_order:
            head.content.llr.copy_(torch.randn(head.content.llr.shape, generator=gen))
    # + gene ATG AAA G|GTAAGTTTAG|CT TAA ..., then its reverse complement further on.
    gene = "ATGAAAGGTAAGTTTAGCTTAA"
    rc = gene.translate(str.maketrans("ACGT", "TGCA"))[::-1]
    rng = np.random.default_rng(0)
    pad = lambda n: "".join(rng.choice(list("ACGT"), n))  # noqa: E731
    seq = pad(6) + gene + pad(9) + rc + pad(8)
    T = len(seq)
    transcripts = [Transcript("c", "+", "g1", "t1", ((6, 13), (23, 28))),
                   Transcript("c", "-", "g2", "t2", ((37, 42), (52, 59)))]
    gold = torch.from_numpy(transcripts_to_labels(transcripts, "c", T, scheme))
    labels = torch.stack([gold, gold]).to(DEVICE)
    lengths = torch.tensor([T, T - 5], device=DEVICE)
    codes = encode_sequences([seq, seq], T).to(DEVICE)
    em = (torch.nn.functional.pad(torch.nn.functional.one_hot(labels, 5).float() * 2.0, (0, 8))
          + torch.randn(2, T, head.n_outputs, generator=gen).to(DEVICE))

    ref = _run(monkeypatch, _implementation(reference), head, em, labels, lengths, codes=codes)
    ker = _run(monkeypatch, _implementation(gk), head, em, labels, lengths, codes=codes)

    _assert_same(ker, ref)
