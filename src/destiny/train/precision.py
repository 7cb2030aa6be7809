"""Arithmetic precision of the dense matrix products, chosen once per run.

fp32: IEEE float32 GEMMs (DSSTNE's default). tf32: float32 storage, TensorFloat-32 matrix
units (10-bit mantissa products, fp32 accumulation). bf16: autocast of the matrix products to
bfloat16 with float32 master weights, float32 optimizer state and float32 losses.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Iterator

import torch

from destiny.errors import UsageError


class Precision(enum.Enum):
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"

    @classmethod
    def parse(cls, text: "str | Precision") -> "Precision":
        if isinstance(text, Precision):
            return text
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            raise UsageError(f"unknown precision {text!r}; use fp32, tf32 or bf16") from None


@contextlib.contextmanager
def matmul_precision(mode: Precision) -> Iterator[None]:
    """float32 products in the block use TF32 when ``mode`` is tf32 (forward and backward);
    torch's global flags are restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == Precision.TF32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def autocast(mode: Precision, device: torch.device, cache: bool = True):
    """The forward pass's autocast for ``mode`` (bf16), else nothing. Backward runs outside it.
    cache=False: no cache of the weights' casts (each weight is cast where it is used, once a
    forward pass anyway), as a CUDA graph capture requires."""
    if mode == Precision.BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()
