"""Running the Triton kernel tests: on CUDA GPUs, or on CPU under Triton's interpreter.

``TRITON_INTERPRET=1 python -m pytest tests/ops -k triton`` runs every ``test_triton_*`` test
on CPU tensors (small shapes, a few minutes on 2 cores); ``python -m pytest tests/ops -k triton``
on a CUDA machine runs them on the GPU, ``-m gpu`` adds the big shapes. Without either, they
skip and say why. ``TRITON_INTERPRET`` must be set before Triton is imported (Triton reads it
when a kernel is decorated), hence an environment variable, not an option.
"""

from __future__ import annotations

import os

import pytest
import torch

from destiny.backend import HAS_CUDA, HAS_TRITON

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_devices() -> list:
    """The devices the kernel tests run on, each a pytest param that skips with its reason."""
    if not HAS_TRITON:
        reason = "Triton is not importable; install destiny[test] on Linux x86-64"
        return [pytest.param("cpu", marks=pytest.mark.skip(reason=reason))]
    if INTERPRET:
        return ["cpu"]
    if HAS_CUDA:
        return ["cuda"]
    reason = ("no CUDA GPU: run the Triton kernels on CPU with TRITON_INTERPRET=1 "
              "python -m pytest tests/ops -k triton")
    return [pytest.param("cpu", marks=pytest.mark.skip(reason=reason))]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "triton: a Triton kernel test (CUDA, or CPU under TRITON_INTERPRET=1)")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.nodeid.split("::")[0].rsplit("/", 1)[-1].startswith("test_triton_"):
            item.add_marker(pytest.mark.triton)
        if "gpu" in item.keywords and not (HAS_CUDA and HAS_TRITON and not INTERPRET):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU with Triton (and TRITON_INTERPRET unset)"))


@pytest.fixture(params=kernel_devices())
def device(request) -> torch.device:
    """Where a kernel test runs: 'cuda', or 'cpu' under the interpreter."""
    return torch.device(request.param)
