"""genoseg_kernels: fused Triton semi-CRF kernels (imported as ``genoseg_kernels``).

Knows tensors only: no genomes, labels, paths or configs. The public functions are twins of
``genoseg.crf.reference`` (same signatures, same semantics, float32 accumulation): see ``api``
for how the posteriors and gradients are assembled, ``chunked`` for the chunk-parallel driver
that spreads one long sequence over the whole GPU, ``scan`` / ``outside`` for the kernels, and
``sparse`` for the sparse-window twins (``scan_sparse`` / ``outside_sparse``) that a model whose
-inf pattern leaves most (duration, label) cells and transitions empty runs on instead.
"""

from __future__ import annotations

__all__ = ["available", "semicrf_logz", "semicrf_viterbi", "semicrf_posteriors",
           "posteriors_and_logz", "last_stats"]


def available() -> bool:
    """True when Triton imports and a CUDA device is present (the kernels' home)."""
    try:
        import torch
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def __getattr__(name):
    # Triton is an optional dependency (extra "gpu"): import it only when a kernel is asked for.
    if name in ("semicrf_logz", "semicrf_viterbi", "semicrf_posteriors", "posteriors_and_logz",
                "last_stats"):
        from genoseg_kernels import api
        return getattr(api, name)
    raise AttributeError(f"module 'genoseg_kernels' has no attribute {name!r}")
