"""Initial weights (DSSTNE's WeightInit schemes, reference/dsstne.md §1.7), drawn on the CPU from
a seeded generator so every device and every number of GPUs starts from the same numbers.

Fixed on purpose (DSSTNE's known bugs): Xavier uses Glorot's full range ±√(6/(n_in+n_out))
(DSSTNE drew half of it), Constant gives +Scale (DSSTNE gave −Scale), SELU draws from
N(0, 1/n_in), i.e. σ = 1/√n_in (DSSTNE used σ = 1/n_in).
"""

from __future__ import annotations

import math

import torch

from destiny.config import WeightInit, WeightInitScheme
from destiny.ops.random import stream_seed


def init_weight(shape: tuple[int, ...], spec: WeightInit, fan_in: int, fan_out: int, seed: int,
                key: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A new weight tensor of ``shape``; ``key`` names the matrix so each gets its own stream."""
    g = torch.Generator(device="cpu")
    g.manual_seed(stream_seed(seed, "init", key))
    s = spec.scale
    scheme = spec.scheme
    if scheme == WeightInitScheme.XAVIER:
        bound = s * math.sqrt(6.0 / (fan_in + fan_out))
        return _uniform(shape, -bound, bound, g, dtype)
    if scheme == WeightInitScheme.CAFFE_XAVIER:
        bound = s * math.sqrt(3.0 / fan_out)
        return _uniform(shape, -bound, bound, g, dtype)
    if scheme == WeightInitScheme.GAUSSIAN:
        return torch.randn(shape, generator=g, dtype=torch.float32).mul_(s).to(dtype)
    if scheme == WeightInitScheme.UNIFORM:
        return _uniform(shape, -s, s, g, dtype)
    if scheme == WeightInitScheme.UNIT_BALL:
        return _uniform(shape, 0.0, s, g, dtype)
    if scheme == WeightInitScheme.CONSTANT:
        return torch.full(shape, s, dtype=dtype)
    # SELU (LeCun normal): N(0, 1/n_in), times Scale
    return torch.randn(shape, generator=g, dtype=torch.float32).mul_(s / math.sqrt(fan_in)).to(dtype)


def _uniform(shape, lo: float, hi: float, g: torch.Generator, dtype) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float32).mul_(hi - lo).add_(lo).to(dtype)
