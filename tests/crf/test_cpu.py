"""genoseg.crf.cpu (compiled, float64) against the brute-force oracle and the reference.

The same named cases as the reference's tests (every optional input, -inf entries, junk past
ragged lengths, invalid sequences), at the reference's float64 tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from crf.test_reference import (  # noqa: E402
    CASES,
    assert_gradients_match_oracle,
    call,
    get_case,
    lengths_of,
    make_case,
    oracle,
)
from genoseg.crf import backend, cpu, reference  # noqa: E402

NEG_INF = float("-inf")
TOL = dict(rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_cpu_matches_oracle(name):
    c = get_case(name)
    label_post, boundary_post, logz = call(cpu.posteriors_and_logz, c)
    scores, segments = call(cpu.semicrf_viterbi, c)
    for b, o in enumerate(oracle(name)):
        mg = o["marginals"]
        best, best_seg, unique = o["viterbi"]
        if mg["logz"] == NEG_INF:
            assert logz[b].item() == NEG_INF and scores[b].item() == NEG_INF
            assert tuple(segments[b].shape) == (0, 3)
            assert (label_post[b] == 0).all() and (boundary_post[b] == 0).all()
            continue
        np.testing.assert_allclose(logz[b].item(), mg["logz"], **TOL)
        np.testing.assert_allclose(label_post[b].numpy(), mg["emissions"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(boundary_post[b].numpy(), mg["end_bias"].sum(1), rtol=0,
                                   atol=1e-9)
        np.testing.assert_allclose(scores[b].item(), best, **TOL)
        if unique:
            L = lengths_of(c)[b]
            got = torch.repeat_interleave(segments[b][:, 2], segments[b][:, 1] - segments[b][:, 0])
            want = np.concatenate([[lab] * (e - s) for s, e, lab in best_seg])
            np.testing.assert_array_equal(got.numpy(), want[:L])


@pytest.mark.parametrize("name", CASES)
def test_cpu_gradients_match_oracle(name):
    assert_gradients_match_oracle(name,
                                  lambda case, **leaves: call(cpu.semicrf_logz, case, **leaves))


def test_cpu_matches_reference_on_a_longer_batch():
    c = make_case(40, 3, 300, 6, 24, ragged=True, neg_inf=0.05, max_end=True, scale=2.0)
    got = call(cpu.posteriors_and_logz, c)
    want = call(reference.posteriors_and_logz, c)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-9, atol=1e-9)
    s1, seg1 = call(cpu.semicrf_viterbi, c)
    s2, seg2 = call(reference.semicrf_viterbi, c)
    np.testing.assert_allclose(s1.numpy(), s2.numpy(), rtol=1e-9, atol=1e-9)
    for a, b in zip(seg1, seg2):
        assert torch.equal(a, b)


def test_float32_inputs_give_float32_outputs():
    c = make_case(41, 2, 20, 3, 5, junk=False, dtype=torch.float32)
    assert call(cpu.semicrf_logz, c).dtype == torch.float32


def test_backend_cpu_choice():
    assert backend.resolve("cpu", "cpu") == "cpu"
    assert backend.describe("cpu", "cpu") == "compiled CPU (numba)"
    c = make_case(42, 1, 10, 3, 4, junk=False)
    with backend.use("cpu"):
        got = call(backend.semicrf_logz, c)
    np.testing.assert_allclose(got.numpy(), call(reference.semicrf_logz, c).numpy(), **TOL)
    with pytest.raises(backend.BackendUnavailable, match="needs CPU tensors"):
        backend.resolve("cuda", "cpu")


def test_inputs_are_checked_as_the_reference_checks_them():
    """Each sequence is prepared on its own (``cpu._Sequences``): NaN past a sequence's length
    is ignored, NaN inside it is the reference's error, and wrong shapes or lengths of the batch
    fail before any sequence is scanned."""
    c = make_case(42, 3, 30, 4, 6, junk=False)
    lengths = torch.tensor([30, 12, 20])
    em = c["emissions"].clone()
    em[1, 12:] = float("nan")  # past sequence 1's length
    args = (c["transitions"], c["durations"], lengths)
    got = cpu.semicrf_logz(em, *args)
    want = reference.semicrf_logz(em, *args)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)
    em[2, 5, 1] = float("nan")  # inside sequence 2
    with pytest.raises(ValueError, match="emissions holds NaN"):
        cpu.semicrf_logz(em, *args)
    with pytest.raises(ValueError, match="max_end must be"):
        cpu.semicrf_viterbi(c["emissions"], *args,
                            max_end=torch.zeros(3, 29, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="lengths must lie in"):
        cpu.semicrf_viterbi(c["emissions"], c["transitions"], c["durations"],
                            torch.tensor([30, 0, 5]))


def test_viterbi_and_marginals_reads_per_sequence_inputs_like_slices():
    """``sequence_inputs`` (each sequence's inputs built on its worker thread, cut at its
    length) gives exactly what slices of the batch's own inputs give; a wrong shape is a
    one-line error naming the sequence."""
    c = make_case(43, 3, 40, 4, 6, ragged=True, neg_inf=0.05, max_end=True, junk=False)
    lengths = torch.tensor([40, 17, 29])
    kw = dict(init=c["init"], final=c["final"], start_bias=c["start_bias"],
              end_bias=c["end_bias"], max_end=c["max_end"])
    marg = dict(class_of=np.array([0, 0, 1, 1]), boundary_states=np.array([1, 0, 1, 0], bool))
    want = cpu.viterbi_and_marginals(c["emissions"], c["transitions"], c["durations"], lengths,
                                     **kw, **marg)

    def per_sequence(b):
        L = int(lengths[b])
        return {k: c[k][b:b + 1, :L] for k in ("emissions", "start_bias", "end_bias", "max_end")}

    got = cpu.viterbi_and_marginals(c["emissions"], c["transitions"], c["durations"], lengths,
                                    init=c["init"], final=c["final"], **marg,
                                    sequence_inputs=per_sequence)
    assert torch.equal(got[0], want[0]) and torch.equal(got[2], want[2])
    assert all(torch.equal(a, b) for a, b in zip(got[1], want[1]))
    assert torch.equal(got[3], want[3]) and torch.equal(got[4], want[4])
    with pytest.raises(ValueError, match=r"sequence_inputs\(0\)\['emissions'\] must be"):
        cpu.viterbi_and_marginals(c["emissions"], c["transitions"], c["durations"], lengths,
                                  **marg, sequence_inputs=lambda b: {"emissions": c["emissions"]})
