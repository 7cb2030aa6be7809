"""Initial weights (DSSTNE's WeightInit schemes, reference/dsstne.md §1.7), drawn from a
counter-based stream so that any slice of a matrix can be drawn on its own, on any device.

Element g (row-major number in the full matrix) of the matrix ``key`` takes the uniform
``uniform_at(stream, g)`` (Philox4x32-10, ``destiny.ops.random``) or, for the Gaussian
schemes, the Box–Muller normal ``normal_at(stream, g)``, stream = stream_seed(seed, "init",
key). So a process of a model-parallel run draws exactly its shard of the one-process matrix,
on its own GPU, without ever holding the whole matrix (a 10M × 256 layer is 10 GB), and the
numbers do not depend on the device (uniform schemes bitwise; Gaussian ones up to rare
last-bit differences of the libraries' log and cos).

Fixed on purpose (DSSTNE's known bugs): Xavier uses Glorot's full range ±√(6/(n_in+n_out))
(DSSTNE drew half of it), Constant gives +Scale (DSSTNE gave −Scale), SELU draws from
N(0, 1/n_in), i.e. σ = 1/√n_in (DSSTNE used σ = 1/n_in).
"""

from __future__ import annotations

import math

import torch

from destiny.config import WeightInit, WeightInitScheme
from destiny.ops.random import normal_at, stream_seed, uniform_at, uniform_range

CHUNK_ELEMENTS = 1 << 18  # elements drawn at once: ~40 int64 temporaries of 2 MB, which stay in cache (CPU: 2× faster than 4M)
GPU_CHUNK_ELEMENTS = 1 << 23  # on a GPU, where each of a chunk's ~130 kernels costs a launch: 64 MB temporaries


def layer_weight(spec, weight_init: WeightInit, shard, seed: int, dtype: torch.dtype, device,
                 initialize: bool = True) -> torch.Tensor:
    """The initial weights of one matrix of a network (``config.shapes.WeightSpec``): its
    shard (a ``MatrixShard``, or None for the whole matrix) drawn by ``init_weight``; zeros for
    a ClosedForm layer (the solve sets them as training starts — no draw of a matrix it
    overwrites); uninitialised memory when ``initialize`` is False (a network about to be
    loaded)."""
    from destiny.nn import conv

    shape = shard.shape if shard is not None else spec.shape
    if not initialize:
        return torch.empty(shape, dtype=dtype, device=device)
    if weight_init.closed_form is not None:
        return torch.zeros(shape, dtype=dtype, device=device)
    fan_in, fan_out = conv.fans(spec) if spec.convolutional else (spec.shape[0], spec.shape[1])
    rows, cols = (shard.rows, shard.cols) if shard is not None else (None, None)
    return init_weight(spec.shape, weight_init, fan_in, fan_out, seed, f"w{spec.index}", dtype, rows=rows,
                       cols=cols, device=device)


def init_weight(shape: tuple[int, ...], spec: WeightInit, fan_in: int, fan_out: int, seed: int,
                key: str, dtype: torch.dtype = torch.float32, *, rows: tuple[int, int] | None = None,
                cols: tuple[int, int] | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """A new weight tensor: the full ``shape``, or its slice rows × cols of the matrix viewed
    as (shape[0], rest) — one rank's shard, equal to the same slice of the full draw.
    ``key`` names the matrix so each gets its own stream."""
    n_rows = shape[0]
    n_cols = math.prod(shape[1:])
    r0, r1 = rows or (0, n_rows)
    c0, c1 = cols or (0, n_cols)
    whole = (r0, r1, c0, c1) == (0, n_rows, 0, n_cols)
    out_shape = shape if whole else (r1 - r0, c1 - c0)
    s = spec.scale
    scheme = spec.scheme
    if scheme == WeightInitScheme.CONSTANT:
        return torch.full(out_shape, s, dtype=dtype, device=device)
    stream = stream_seed(seed, "init", key)
    gaussian = scheme in (WeightInitScheme.GAUSSIAN, WeightInitScheme.SELU)
    out = torch.empty((r1 - r0, c1 - c0), dtype=torch.float32, device=device)
    chunk = GPU_CHUNK_ELEMENTS if torch.device(device).type == "cuda" else CHUNK_ELEMENTS
    step = max(1, chunk // max(c1 - c0, 1))
    for first in range(r0, r1, step):
        last = min(first + step, r1)
        block = out[first - r0:last - r0]
        if not gaussian and c0 == 0 and c1 == n_cols:  # contiguous elements: a Philox call per 4
            block.view(-1).copy_(uniform_range(stream, first * n_cols, (last - first) * n_cols, device))
            continue
        index = (torch.arange(first, last, dtype=torch.int64, device=device)[:, None] * n_cols
                 + torch.arange(c0, c1, dtype=torch.int64, device=device)[None, :])
        block.copy_(normal_at(stream, index) if gaussian else uniform_at(stream, index))
    if scheme == WeightInitScheme.GAUSSIAN:
        out.mul_(s)
    elif scheme == WeightInitScheme.SELU:  # LeCun normal: N(0, 1/n_in), times Scale
        out.mul_(s / math.sqrt(fan_in))
    else:
        if scheme == WeightInitScheme.XAVIER:
            lo, hi = -s * math.sqrt(6.0 / (fan_in + fan_out)), s * math.sqrt(6.0 / (fan_in + fan_out))
        elif scheme == WeightInitScheme.CAFFE_XAVIER:
            lo, hi = -s * math.sqrt(3.0 / fan_out), s * math.sqrt(3.0 / fan_out)
        elif scheme == WeightInitScheme.UNIFORM:
            lo, hi = -s, s
        else:  # UnitBall
            lo, hi = 0.0, s
        out.mul_(hi - lo).add_(lo)
    return out.view(out_shape).to(dtype)
