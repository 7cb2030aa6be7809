"""Settings that make every kernel on the training path reproducible, set once per device.

On CPU, Destiny's ops and PyTorch's are deterministic already. On CUDA: cuBLAS needs a fixed
workspace (CUBLAS_WORKSPACE_CONFIG) for reproducible GEMMs, cuDNN must not benchmark
algorithms, and PyTorch's deterministic mode turns order-dependent atomics into errors, so a
nondeterministic op cannot slip into the training path unnoticed.

Deterministic mode also fills every new uninitialised tensor with NaN by default
(``torch.utils.deterministic.fill_uninitialized_memory``): a debugging net that costs a full
write of every GEMM output, gradient and temporary (a third of the small kernels of a training
step). Destiny's kernels never read memory they did not write, so it is turned off.
"""

from __future__ import annotations

import os

import torch
import torch.utils.deterministic

_done: set[str] = set()


def make_deterministic(device: torch.device, enabled: bool = True) -> None:
    if not enabled or device.type != "cuda" or "cuda" in _done:
        return
    _done.add("cuda")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.utils.deterministic.fill_uninitialized_memory = False
