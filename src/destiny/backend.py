"""Which hardware Destiny runs on, decided once at import and said once if the GPU path is off.

``HAS_CUDA``: a CUDA device is usable. ``HAS_TRITON``: Triton imports, so the fused kernels in
``destiny.ops.triton`` can run on CUDA tensors (and, with ``TRITON_INTERPRET=1``, on CPU
tensors for tests). Every entry point takes ``device=``; ``resolve_device`` turns "auto",
"cpu", "cuda" or "cuda:N" into a ``torch.device`` and explains a refusal.
"""

from __future__ import annotations

import os
import warnings

import torch

from destiny.errors import ResourceError

HAS_CUDA: bool = torch.cuda.is_available()


def _probe_triton() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return False, f"Triton is not importable ({type(exc).__name__}: {exc})"
    return True, ""


HAS_TRITON, _TRITON_WHY_NOT = _probe_triton()
TRITON_INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"

_warned: set[str] = set()


def say_once(key: str, message: str) -> None:
    """A warning shown once per process (why a faster path is off)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N' or a torch.device."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if HAS_CUDA else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ResourceError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not HAS_CUDA:
            raise ResourceError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU "
                                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                                "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ResourceError(f"device {device!r} asked for, but there are only "
                                f"{torch.cuda.device_count()} GPUs")
    elif dev.type != "cpu":
        raise ResourceError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return dev


def use_triton(device: torch.device) -> bool:
    """True when the fused Triton kernels should run for tensors on ``device``."""
    if device.type == "cuda":
        if not HAS_TRITON:
            say_once("triton", f"{_TRITON_WHY_NOT}; Destiny runs its pure-torch reference ops on the GPU "
                               "(correct, slower)")
        return HAS_TRITON
    return False


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"
