"""Shared test configuration: hypothesis profiles, the `gpu` skip, and `import oracles`.

Hypothesis profiles: `ci` (default; derandomized so CI is reproducible) and `dev` (random, more
examples). Pick one with HYPOTHESIS_PROFILE=dev or `pytest --hypothesis-profile=dev`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Without a GPU the Triton kernels run in Triton's interpreter (numpy, tiny shapes). The flag is
# read when a kernel module is imported, so it is set before any test imports one.
try:
    import torch as _torch

    if not _torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:
    pass

# tests/oracles.py is imported as `oracles` from any test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# A source checkout works without `pip install -e .`; appended, so an installed genoseg wins.
sys.path.append(str(Path(__file__).resolve().parents[1]))

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a dev extra; property tests importorskip it themselves
    settings = None

if settings is not None:
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=60,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("dev", max_examples=300, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # Also declared in pyproject.toml; repeated so the markers exist under any rootdir/ini.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running (still part of CI)")


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)
