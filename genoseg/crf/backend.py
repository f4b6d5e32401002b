"""Semi-CRF backend dispatch: the functions the model head and the annotation pipeline call.

``semicrf_logz``, ``semicrf_viterbi``, ``semicrf_posteriors`` and ``posteriors_and_logz`` have the
signatures and semantics of ``genoseg.crf.reference`` (the specification). Each call runs either
the fused Triton kernels of ``genoseg_kernels`` (their twins) or the reference, by the backend
choice in force and the device of the emissions:

- ``"auto"`` (default): the kernels when the emissions are on CUDA and
  ``genoseg_kernels.available()``; the reference otherwise (any CPU tensor, no triton, no
  kernels package).
- ``"triton"``: the kernels or a :class:`BackendUnavailable` error (one line) when they cannot run
  for that tensor (CPU tensor, kernels not installed, triton or CUDA missing).
- ``"cpu"``: ``genoseg.crf.cpu``, the reference's compiled (numba, float64) CPU twin, for CPU
  tensors; an error elsewhere. ``"auto"`` still runs the reference on a CPU here (the library
  default); ``genoseg annotate`` turns "auto" on a CPU into "cpu" where numba is installed.
- ``"torch"``: always the reference.

Set the choice with :func:`set_backend` (process-wide) or ``with use("torch"): ...`` (restored on
exit); without either, the environment variable ``GENOSEG_BACKEND`` (auto, triton, torch) sets it,
else ``"auto"``. The choice is a plain module-level setting, not per thread. The decision is made
when a function is called, so an autograd backward runs in the implementation its forward ran in.
:func:`resolve` says what a call on a given device would run (for logs) and raises the same error
as the call would; :func:`describe` is its one-line human form.

``genoseg_kernels`` is imported lazily, on the first CUDA call that may use it: a missing package,
a missing function or ``available()`` returning False (or raising) all mean "not available".
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator

import torch

from genoseg.crf import reference
from genoseg.errors import GenosegError

__all__ = ["semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz",
           "BACKENDS", "ENV_VAR", "BackendUnavailable", "set_backend", "use", "current_backend",
           "resolve", "describe", "kernels_status"]

BACKENDS = ("auto", "triton", "cpu", "torch")
ENV_VAR = "GENOSEG_BACKEND"
_KERNELS = "genoseg_kernels"
_FUNCTIONS = ("semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz")

_choice: str | None = None  # None: GENOSEG_BACKEND, else "auto"


class BackendUnavailable(GenosegError, ValueError):
    """The requested semi-CRF backend cannot run here (a one-line message; the CLI shows it as is
    and exits 1). Also raised for an unknown backend name."""


def _check_name(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise BackendUnavailable(f"{where}: unknown semi-CRF backend {name!r} "
                                 f"(choose from {', '.join(BACKENDS)})")
    return name


def set_backend(name: str | None) -> None:
    """Set the backend choice for the whole process ("auto", "triton", "torch"); None goes back
    to the default (``GENOSEG_BACKEND``, else "auto")."""
    global _choice
    _choice = None if name is None else _check_name(name, "set_backend")


@contextlib.contextmanager
def use(name: str | None) -> Iterator[str]:
    """``with use("triton"): ...`` runs the block with that choice and restores the previous one,
    also on error. ``use(None)`` keeps the current choice. Yields the choice in force."""
    global _choice
    previous = _choice
    if name is not None:
        _choice = _check_name(name, "use")
    try:
        yield current_backend()
    finally:
        _choice = previous


def current_backend() -> str:
    """The choice in force: "auto", "triton" or "torch" (not what runs; see :func:`resolve`)."""
    if _choice is not None:
        return _choice
    env = os.environ.get(ENV_VAR, "").strip().lower()
    return _check_name(env, ENV_VAR) if env else "auto"


def _import_kernels():
    """``genoseg_kernels``: installed, or (a source checkout run through PYTHONPATH, as the
    Snakemake rules do) the ``kernels/`` folder next to the ``genoseg`` package."""
    try:
        return importlib.import_module(_KERNELS)
    except ImportError:
        folder = Path(__file__).resolve().parents[2] / "kernels"
        blocked = _KERNELS in sys.modules  # sys.modules[name] = None: import deliberately off
        if blocked or not (folder / "__init__.py").is_file():
            raise
    spec = importlib.util.spec_from_file_location(
        _KERNELS, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[_KERNELS] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[_KERNELS]
        raise
    return module


def kernels_status() -> tuple[object | None, str]:
    """(the ``genoseg_kernels`` module if its kernels can run here, else None; why not)."""
    module = sys.modules.get(_KERNELS)
    if module is None:
        try:
            module = _import_kernels()
        except ImportError as exc:
            return None, f"the {_KERNELS} package cannot be imported ({_one_line(exc)})"
    missing = [name for name in ("available", *_FUNCTIONS) if not callable(getattr(module, name,
                                                                                   None))]
    if missing:
        return None, f"{_KERNELS} does not provide {', '.join(missing)} yet"
    try:
        ok = bool(module.available())
    except Exception as exc:  # noqa: BLE001 -- a broken probe means "not available", never a crash
        return None, f"{_KERNELS}.available() failed ({type(exc).__name__}: {_one_line(exc)})"
    if not ok:
        return None, f"{_KERNELS}.available() is False (triton or CUDA missing)"
    return module, ""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _pick(device: torch.device | str | None, backend: str | None) -> tuple[str, object | None]:
    """("triton", the kernels module), ("cpu", genoseg.crf.cpu) or ("torch", None); raises as
    :func:`resolve` does."""
    choice = current_backend() if backend is None else _check_name(backend, "backend")
    if choice == "torch":
        return "torch", None
    device = torch.device("cpu" if device is None else device)
    if choice == "cpu":
        from genoseg.crf import cpu

        if device.type != "cpu":
            raise BackendUnavailable(f"semi-CRF backend 'cpu' needs CPU tensors, got a tensor on "
                                     f"{device}")
        if not cpu.available():
            raise BackendUnavailable("semi-CRF backend 'cpu' needs numba (pip install numba)")
        return "cpu", cpu
    if device.type != "cuda":
        if choice == "triton":
            raise BackendUnavailable(f"semi-CRF backend 'triton' needs CUDA tensors, got a tensor "
                                     f"on {device} (use backend 'auto' or 'torch' off the GPU)")
        return "torch", None
    module, why = kernels_status()
    if module is None:
        if choice == "triton":
            raise BackendUnavailable(f"semi-CRF backend 'triton' is not available: {why}")
        return "torch", None
    return "triton", module


def resolve(device: torch.device | str | None = None, backend: str | None = None) -> str:
    """What a call with emissions on ``device`` runs under ``backend`` (default: the choice in
    force): "triton", "cpu" or "torch". Raises :class:`BackendUnavailable` for "triton" where the kernels
    cannot run. ``device`` None means CPU."""
    return _pick(device, backend)[0]


def describe(device: torch.device | str | None = None, backend: str | None = None) -> str:
    """One line for logs, e.g. "triton (cuda:0)", "torch reference (cpu)", or on a GPU without
    usable kernels "torch reference (cuda:0; <why the kernels cannot run>)". Raises as
    :func:`resolve` does."""
    device = torch.device("cpu" if device is None else device)
    picked = resolve(device, backend)
    if picked == "triton":
        return f"triton ({device})"
    if picked == "cpu":
        return "compiled CPU (numba)"
    choice = current_backend() if backend is None else backend
    if device.type == "cuda" and choice == "auto":
        return f"torch reference ({device}; {kernels_status()[1]})"
    return f"torch reference ({device})"


def _implementation(name: str, emissions: torch.Tensor):
    _, module = _pick(emissions.device, None)
    return getattr(module if module is not None else reference, name)


def _dispatching(name: str):
    ref = getattr(reference, name)

    @functools.wraps(ref)  # the reference's name, docstring and signature (the specification)
    def dispatch(*args, **kwargs):
        emissions = args[0] if args else kwargs["emissions"]
        return _implementation(name, emissions)(*args, **kwargs)

    return dispatch


semicrf_logz = _dispatching("semicrf_logz")
semicrf_viterbi = _dispatching("semicrf_viterbi")
semicrf_posteriors = _dispatching("semicrf_posteriors")
posteriors_and_logz = _dispatching("posteriors_and_logz")
