"""genoseg.crf.backend: which implementation each call runs, and the errors when the Triton one
cannot. CPU only: a fake ``genoseg_kernels`` in sys.modules stands in for the kernels, and a
stand-in object with ``device = cuda`` for a CUDA tensor, so no GPU or triton is needed."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from genoseg.crf import backend, reference
from genoseg.crf.head import SemiCRFHead
from genoseg.errors import GenosegError
from genoseg.labels import scheme_from_dict

FUNCTIONS = ("semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz")


@pytest.fixture(autouse=True)
def clean_choice(monkeypatch):
    """Every test starts from the default choice (no setter, no GENOSEG_BACKEND) and leaves it."""
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend.set_backend(None)
    yield
    backend.set_backend(None)


class FakeCuda:
    """Stands in for a CUDA emissions tensor: dispatch looks only at ``.device``."""

    device = torch.device("cuda", 0)


def fake_kernels(monkeypatch, *, available=True, drop=()):
    """Install a fake genoseg_kernels whose functions record their calls; returns the call log."""
    calls = []
    module = types.ModuleType("genoseg_kernels")
    if callable(available):
        module.available = available
    else:
        module.available = lambda: available
    for name in FUNCTIONS:
        if name in drop:
            continue

        def kernel(*args, _name=name, **kwargs):
            calls.append((_name, args, kwargs))
            return _name

        setattr(module, name, kernel)
    monkeypatch.setitem(sys.modules, "genoseg_kernels", module)
    return calls


def no_kernels(monkeypatch):
    """Make `import genoseg_kernels` fail, whatever is installed."""
    monkeypatch.setitem(sys.modules, "genoseg_kernels", None)


def inputs(B=2, T=7, C=3, K=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, C, generator=g, dtype=torch.float64),
            torch.randn(C, C, generator=g, dtype=torch.float64),
            torch.randn(K, C, generator=g, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# Choosing


def test_default_is_auto():
    assert backend.current_backend() == "auto"


def test_set_backend_and_reset():
    backend.set_backend("torch")
    assert backend.current_backend() == "torch"
    backend.set_backend(None)
    assert backend.current_backend() == "auto"


def test_use_restores_the_previous_choice_also_on_error():
    backend.set_backend("torch")
    with backend.use("triton") as chosen:
        assert chosen == "triton" and backend.current_backend() == "triton"
    assert backend.current_backend() == "torch"
    with pytest.raises(RuntimeError), backend.use("auto"):
        raise RuntimeError("boom")
    assert backend.current_backend() == "torch"
    with backend.use(None) as chosen:  # None keeps what is in force
        assert chosen == "torch"


def test_env_var_sets_the_default(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "torch")
    assert backend.current_backend() == "torch"
    backend.set_backend("auto")  # an explicit choice wins over the environment
    assert backend.current_backend() == "auto"


@pytest.mark.parametrize("where", ["set_backend", "use", "resolve", "env"])
def test_unknown_name_is_a_one_line_error(where, monkeypatch):
    with pytest.raises(backend.BackendUnavailable) as info:
        if where == "set_backend":
            backend.set_backend("cuda")
        elif where == "use":
            with backend.use("cuda"):
                pass
        elif where == "resolve":
            backend.resolve("cpu", "cuda")
        else:
            monkeypatch.setenv(backend.ENV_VAR, "cuda")
            backend.current_backend()
    message = str(info.value)
    assert "'cuda'" in message and "auto, triton, cpu, torch" in message and "\n" not in message


# ------------------------------------------------------------------------------------------------
# Resolving


@pytest.mark.parametrize("choice", ["auto", "torch"])
def test_cpu_runs_the_reference(choice, monkeypatch):
    calls = fake_kernels(monkeypatch)  # even with kernels "available", a CPU tensor never uses them
    assert backend.resolve("cpu", choice) == "torch"
    assert backend.resolve(None, choice) == "torch"
    assert backend.describe("cpu", choice) == "torch reference (cpu)"
    em, tr, du = inputs()
    with backend.use(choice):
        got = backend.semicrf_logz(em, tr, du)
        scores, paths = backend.semicrf_viterbi(em, tr, du)
    assert torch.equal(got, reference.semicrf_logz(em, tr, du))
    ref_scores, ref_paths = reference.semicrf_viterbi(em, tr, du)
    assert torch.equal(scores, ref_scores)
    assert all(torch.equal(a, b) for a, b in zip(paths, ref_paths))
    assert calls == []


def test_triton_on_cpu_is_a_clear_error(monkeypatch):
    fake_kernels(monkeypatch)
    with pytest.raises(backend.BackendUnavailable) as info:
        backend.resolve("cpu", "triton")
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, GenosegError)
    assert "'triton'" in str(err) and "cpu" in str(err) and "\n" not in str(err)
    em, tr, du = inputs()
    with backend.use("triton"):
        for name in FUNCTIONS:
            with pytest.raises(backend.BackendUnavailable):
                getattr(backend, name)(em, tr, du)


def test_auto_on_cuda_routes_to_the_kernels(monkeypatch):
    calls = fake_kernels(monkeypatch)
    assert backend.resolve("cuda") == "triton"
    assert backend.resolve(torch.device("cuda", 1), "triton") == "triton"
    assert backend.describe("cuda:0") == "triton (cuda:0)"
    em = FakeCuda()
    tr, du = torch.zeros(3, 3), torch.zeros(4, 3)
    for name in FUNCTIONS:
        assert getattr(backend, name)(em, tr, du, None, init=None) == name
    assert backend.semicrf_logz(emissions=em, transitions=tr, durations=du) == "semicrf_logz"
    assert [c[0] for c in calls] == [*FUNCTIONS, "semicrf_logz"]
    # Arguments pass through untouched.
    _, args, kwargs = calls[0]
    assert args[0] is em and args[1] is tr and args[2] is du and kwargs == {"init": None}


def test_torch_on_cuda_never_consults_the_kernels(monkeypatch):
    def probe():
        raise AssertionError("the kernels were consulted under 'torch'")

    fake_kernels(monkeypatch, available=probe)
    assert backend.resolve("cuda", "torch") == "torch"
    assert backend.describe("cuda:0", "torch") == "torch reference (cuda:0)"


def _boom():
    raise RuntimeError("driver\nexploded")


@pytest.mark.parametrize("setup, why", [
    (lambda mp: no_kernels(mp), "cannot be imported"),
    (lambda mp: fake_kernels(mp, available=False), "available() is False"),
    (lambda mp: fake_kernels(mp, drop=("semicrf_viterbi",)), "does not provide semicrf_viterbi"),
    (lambda mp: fake_kernels(mp, available=_boom), "available() failed (RuntimeError: driver "
                                                   "exploded)"),
])
def test_kernels_that_cannot_run(setup, why, monkeypatch):
    setup(monkeypatch)
    # auto falls back to the reference and says why in the log line ...
    assert backend.resolve("cuda", "auto") == "torch"
    line = backend.describe("cuda:0", "auto")
    assert line.startswith("torch reference (cuda:0; ") and why in line and "\n" not in line
    # ... triton refuses with the reason, in one line.
    with pytest.raises(backend.BackendUnavailable) as info:
        backend.resolve("cuda", "triton")
    assert why in str(info.value) and "\n" not in str(info.value)


def test_auto_on_cuda_without_kernels_calls_the_reference(monkeypatch):
    no_kernels(monkeypatch)
    sentinel = object()
    monkeypatch.setattr(reference, "semicrf_logz", lambda *a, **k: sentinel)
    assert backend.semicrf_logz(FakeCuda(), None, None) is sentinel


def test_dispatchers_keep_the_reference_signature_and_docs():
    import inspect

    for name in FUNCTIONS:
        ours, ref = getattr(backend, name), getattr(reference, name)
        assert inspect.signature(ours) == inspect.signature(ref)
        assert ours.__doc__ == ref.__doc__ and ours.__name__ == name


def test_cli_choices_match():
    from genoseg.cli.annotate import annotate
    from genoseg.cli.train import train

    for command in (annotate, train):
        option = next(p for p in command.params if p.name == "backend")
        assert tuple(option.type.choices) == backend.BACKENDS
        assert option.default == "auto" and option.envvar == backend.ENV_VAR


# ------------------------------------------------------------------------------------------------
# Through the model head


@pytest.fixture(scope="module")
def head():
    scheme = scheme_from_dict({
        "name": "tiny", "kind": "generic", "max_duration": 3, "background": "a",
        "transitions": [[x, y] for x in "abc" for y in "abc" if x != y],
        "init": "all", "final": "all",
        "labels": [{"name": "a", "tile": True}, {"name": "b", "min_length": 2}, "c"],
    })
    torch.manual_seed(0)
    h = SemiCRFHead(scheme)
    with torch.no_grad():
        for p in h.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return h


def test_head_goes_through_the_backend(head, monkeypatch):
    fake_kernels(monkeypatch)
    g = torch.Generator().manual_seed(1)
    em = torch.randn(2, 6, 3, generator=g)
    labels = torch.randint(0, 3, (2, 6), generator=g)
    with backend.use("torch"):
        loss_torch, _ = head.loss(em, labels)
        scores_torch, _ = head.decode(em)
    with backend.use("auto"):  # CPU: the reference, bit for bit
        loss_auto, _ = head.loss(em, labels)
        scores_auto, _ = head.decode(em)
    assert torch.equal(loss_torch, loss_auto) and torch.equal(scores_torch, scores_auto)
    assert math.isfinite(loss_torch.item()) and loss_torch.item() > 0
    with backend.use("triton"):
        with pytest.raises(backend.BackendUnavailable):
            head.loss(em, labels)
        with pytest.raises(backend.BackendUnavailable):
            head.decode(em)
        with pytest.raises(backend.BackendUnavailable):
            head.posteriors(em)
